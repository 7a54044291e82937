//! The module graph of `src/`: every module of the library (from `lib.rs` down its `mod`
//! declarations) is a node, and every path it names from `crate::`, `super::` or `self::` (in a
//! `use` or in code, resolved as [`scan`] says) is an edge to the module that path is in. There
//! must be no cycle between modules, and no edge from a lower layer to a higher one (the layers
//! are listed in `src/lib.rs`). A failure prints the offending edges or cycle. Each detector has a
//! control: the same tree read from disk with an upward import or a cycle planted in memory must
//! be caught.

pub(crate) mod scan;

use scan::{Module, Tree};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, lowest first; a module may import its own layer or those below.
const LAYERS: &[&[&str]] = &[
    &["sys", "error"],
    &["model", "cli"],
    &["secrets"],
    &["privilege"],
    &["plan"],
    &["run"],
    &["probe", "commands"],
];

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Every .rs file under `src/`, by its path there.
fn source() -> Tree {
    fn walk(root: &Path, dir: &Path, out: &mut Tree) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut tree = Tree::new();
    walk(&root, &root, &mut tree);
    tree
}

fn name(m: &[String]) -> String {
    m.join("::")
}

/// The module graph of `tree`: each module's edges to the modules its paths name (cut to the
/// longest module they start with; the crate root and the module itself left out).
fn graph(tree: &Tree) -> Graph {
    let modules = scan::modules(tree);
    let cut = |p: &Module| -> Option<String> {
        (1..=p.len())
            .rev()
            .map(|n| &p[..n])
            .find(|m| modules.contains_key(*m))
            .map(name)
    };
    let mut g = Graph::new();
    for (m, file) in &modules {
        if m.is_empty() {
            continue;
        }
        let edges = scan::scan(m, &tree[file]).paths;
        let me = name(m);
        let to: BTreeSet<String> = edges.iter().filter_map(cut).filter(|t| *t != me).collect();
        g.insert(me, to);
    }
    g
}

fn layer_of(module: &str) -> usize {
    let top = module.split("::").next().unwrap();
    LAYERS
        .iter()
        .position(|l| l.contains(&top))
        .unwrap_or_else(|| panic!("module {module} is in no layer of tests/unit/layers.rs"))
}

/// A parent naming its children (`pub mod x;`, re-exports) is a declaration, not a use.
fn declares(from: &str, to: &str) -> bool {
    to.starts_with(&format!("{from}::"))
}

/// Every edge from a lower layer to a higher one, as `from -> to`.
fn upward_imports(g: &Graph) -> Vec<String> {
    g.iter()
        .flat_map(|(from, tos)| tos.iter().map(move |to| (from, to)))
        .filter(|(from, to)| !declares(from, to) && layer_of(to) > layer_of(from))
        .map(|(from, to)| format!("{from} -> {to}"))
        .collect()
}

/// A cycle of `g` (its modules in order, the first repeated at the end), if there is one.
fn find_cycle(g: &Graph) -> Option<Vec<String>> {
    // Depth-first search with colours; a grey node reached again closes a cycle.
    fn visit(
        n: &str,
        g: &Graph,
        colour: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        colour.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            if declares(n, m) {
                continue;
            }
            match colour.get(m.as_str()).copied().unwrap_or(0) {
                1 => {
                    let at = stack.iter().position(|s| s == m).unwrap();
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(m, g, colour, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        colour.insert(n.to_string(), 2);
        None
    }
    let mut colour = BTreeMap::new();
    for n in g.keys() {
        if colour.get(n.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(n, g, &mut colour, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn no_module_imports_a_higher_layer() {
    let g = graph(&source());
    assert!(g.len() > 30, "found only {} modules", g.len());
    let bad = upward_imports(&g);
    assert!(bad.is_empty(), "upward imports:\n{}", bad.join("\n"));
}

#[test]
fn module_graph_has_no_cycle() {
    if let Some(c) = find_cycle(&graph(&source())) {
        panic!("module cycle: {}", c.join(" -> "));
    }
}

/// `path` (a module path from the root) as written in module `at`: `super::` up to the nearest
/// common ancestor, then the rest as nested groups (`super::super::{a::{b::{self}}}`).
fn relative_use(at: &[String], path: &[String]) -> String {
    let common = at.iter().zip(path).take_while(|(a, b)| a == b).count();
    let mut s = "use ".to_string();
    for _ in common..at.len() {
        s.push_str("super::");
    }
    let rest = &path[common..];
    for seg in rest {
        s.push_str(&format!("{{{seg}::"));
    }
    s.push_str("self");
    s.push_str(&"}".repeat(rest.len()));
    s.push_str(";\n");
    s
}

/// The module and file of `tree` deepest in the modules `pick` admits.
fn deepest(tree: &Tree, pick: impl Fn(&Module) -> bool) -> (Module, String) {
    scan::modules(tree)
        .into_iter()
        .filter(|(m, _)| !m.is_empty() && pick(m))
        .max_by_key(|(m, _)| m.len())
        .expect("a module to plant into")
}

/// Control of the upward check: the tree from disk, with one upward import planted in the deepest
/// module of the lowest layer, written as `super::super::…` and nested groups, is caught.
#[test]
fn a_planted_upward_import_is_caught() {
    let mut tree = source();
    let (low, file) = deepest(&tree, |m| layer_of(&m[0]) == 0);
    let top = LAYERS.len() - 1;
    let (high, _) = deepest(&tree, |m| layer_of(&m[0]) == top);
    let plant = relative_use(&low, &high);
    assert!(plant.contains("super::super::") || low.len() < 2, "{plant}");
    tree.get_mut(&file).unwrap().push_str(&plant);
    let want = format!("{} -> {}", name(&low), name(&high));
    let bad = upward_imports(&graph(&tree));
    assert!(
        bad.contains(&want),
        "{plant} in {file}: not caught: {bad:?}"
    );
}

/// Control of the cycle check: the tree from disk, with a path back along one of its own edges
/// planted (in nested groups, from an inline `mod tests`), has a cycle through both modules.
#[test]
fn a_planted_cycle_is_caught() {
    let mut tree = source();
    let modules = scan::modules(&tree);
    let g = graph(&tree);
    let by_name: BTreeMap<String, &Module> = modules.keys().map(|m| (name(m), m)).collect();
    // An edge a -> b between modules neither of which contains the other, b as deep as can be.
    let (a, b) = g
        .iter()
        .flat_map(|(a, tos)| tos.iter().map(move |b| (a.clone(), b.clone())))
        .filter(|(a, b)| !declares(a, b) && !declares(b, a))
        .max_by_key(|(_, b)| by_name[b].len())
        .expect("an edge between two modules");
    let mut inside = by_name[&b].clone();
    inside.push("tests".into());
    let plant = format!(
        "#[cfg(test)]\nmod tests {{\n    {}}}\n",
        relative_use(&inside, by_name[&a])
    );
    tree.get_mut(&modules[by_name[&b]])
        .unwrap()
        .push_str(&plant);
    let cycle = find_cycle(&graph(&tree)).unwrap_or_else(|| panic!("{plant} in {b}: no cycle"));
    assert!(
        cycle.contains(&a) && cycle.contains(&b),
        "{plant} in {b}: {cycle:?}"
    );
}

/// The resolver alone: `super::` chains (from an inline module too), nested groups with `self`
/// and `as`, `crate::` in code; nothing from comments, strings or character literals.
#[test]
fn the_resolver_reads_super_chains_and_nested_groups() {
    let at: Module = ["plan", "a", "b"].iter().map(|s| s.to_string()).collect();
    let text = r##"
use super::super::model::{x, y::{z as zed, self}};
use crate::{run::{launch::{self, Sandbox}, proxy}, sys};
fn f() -> char { let _ = crate::secrets::read(); '{' }
// use crate::commented;
/* use crate::{block, /* nested */ comment}; */
const S: &str = "crate::in_a_string";
const R: &str = r#"crate::in_a_raw_string"#;
#[cfg(test)]
mod tests {
    use super::super::sibling;
    use self::inner::thing;
}
use super::after_the_inline_module;
"##;
    let got: BTreeSet<String> = scan::scan(&at, text)
        .paths
        .iter()
        .map(|p| name(p))
        .collect();
    let want: BTreeSet<String> = [
        "plan::model::x",
        "plan::model::y::z",
        "plan::model::y",
        "run::launch",
        "run::launch::Sandbox",
        "run::proxy",
        "sys",
        "secrets::read",
        "plan::a::sibling",
        "plan::a::b::tests::inner::thing",
        "plan::a::after_the_inline_module",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(got, want);
    // And the module tree: `mod x;`, `mod x { mod y; }` and `#[path]`.
    let tree: Tree = [
        (
            "lib.rs",
            "pub mod plan;\n#[path = \"odd/place.rs\"]\nmod placed;",
        ),
        ("plan/mod.rs", "mod a;\nmod inline { mod deep; }"),
        ("plan/a.rs", ""),
        ("plan/inline/deep.rs", ""),
        ("odd/place.rs", ""),
    ]
    .iter()
    .map(|(p, t)| (p.to_string(), t.to_string()))
    .collect();
    let mods: Vec<String> = scan::modules(&tree).keys().map(|m| name(m)).collect();
    assert_eq!(
        mods,
        ["", "placed", "plan", "plan::a", "plan::inline::deep"]
    );
}
