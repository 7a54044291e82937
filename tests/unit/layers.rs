//! The module graph of `src/`: every `crate::` (and `super::`) path outside comments in every
//! file is an edge from that file's module to the module it names. There must be no cycle between files, and no edge from a lower
//! layer to a higher one (the layers are listed in `src/lib.rs`). A failure prints the offending
//! edge or cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

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

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every .rs file under `dir`, recursively.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `src/run/apply/mounts.rs` → `run::apply::mounts`; `src/plan/mod.rs` → `plan`.
fn module_of(file: &Path) -> String {
    let rel = file.strip_prefix(src()).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
        parts.pop();
    }
    // `#[path = "seccomp_tests.rs"] mod tests;` belongs to its parent module.
    if let Some(l) = parts.last_mut() {
        if let Some(stem) = l.strip_suffix("_tests") {
            *l = stem.to_string();
        }
    }
    parts.join("::")
}

/// The module paths named after `crate::` in `text`, cut to modules that exist, plus those
/// named in `use crate::{a, b::c}` groups and `super::` paths.
fn edges(module: &str, text: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let resolve = |path: &str| -> Option<String> {
        let segs: Vec<&str> = path.split("::").collect();
        (1..=segs.len())
            .rev()
            .map(|n| segs[..n].join("::"))
            .find(|m| known.contains(m))
    };
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + 7..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(0)];
            for item in inner.split(',') {
                let item = item.trim();
                if let Some(m) = resolve(item) {
                    out.insert(m);
                }
            }
            continue;
        }
        let path: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        if let Some(m) = resolve(path.trim_end_matches(':')) {
            out.insert(m);
        }
    }
    for (i, _) in text.match_indices("super::") {
        let path: String = text[i + 7..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        let parent = module.rsplit_once("::").map_or("", |(p, _)| p);
        let full = if parent.is_empty() {
            path.clone()
        } else {
            format!("{parent}::{}", path.trim_end_matches(':'))
        };
        if let Some(m) = resolve(&full) {
            out.insert(m);
        }
    }
    out.remove(module);
    out
}

fn layer_of(module: &str) -> usize {
    let top = module.split("::").next().unwrap();
    LAYERS
        .iter()
        .position(|l| l.contains(&top))
        .unwrap_or_else(|| panic!("module {module} is in no layer of tests/unit/layers.rs"))
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut all = Vec::new();
    files(&src(), &mut all);
    let modules: BTreeMap<String, PathBuf> = all
        .iter()
        .filter(|p| p.file_name().is_some_and(|n| n != "main.rs"))
        .map(|p| (module_of(p), p.clone()))
        .collect();
    let known: BTreeSet<String> = modules.keys().filter(|m| !m.is_empty()).cloned().collect();
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, p) in &modules {
        // Comments (doc links to other layers included) are not imports.
        let text: String = std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .map(|l| format!("{l}\n"))
            .collect();
        g.entry(m.clone())
            .or_default()
            .extend(edges(m, &text, &known));
    }
    g.remove("");
    g
}

#[test]
fn no_module_imports_a_higher_layer() {
    let g = graph();
    assert!(g.len() > 30, "found only {} modules", g.len());
    let mut bad = Vec::new();
    for (from, tos) in &g {
        for to in tos {
            // A parent module re-exporting its children is not an upward edge.
            if to.starts_with(&format!("{from}::")) {
                continue;
            }
            if layer_of(to) > layer_of(from) {
                bad.push(format!("{from} -> {to}"));
            }
        }
    }
    assert!(bad.is_empty(), "upward imports:\n{}", bad.join("\n"));
}

#[test]
fn module_graph_has_no_cycle() {
    let g = graph();
    // Depth-first search with colours; a grey node reached again closes a cycle.
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        colour: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        colour.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            // Parent → child edges are declarations (`pub mod x;`, re-exports), not uses.
            if m.starts_with(&format!("{n}::")) {
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
            if let Some(c) = visit(n, &g, &mut colour, &mut Vec::new()) {
                panic!("module cycle: {}", c.join(" -> "));
            }
        }
    }
}

#[test]
fn the_checker_sees_edges_and_cycles() {
    // Control: the parser finds the edges of a known file, so an empty graph cannot pass.
    let known: BTreeSet<String> = ["run::launch", "plan::launch", "model", "privilege"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let e = edges(
        "run::launch",
        "use crate::plan::launch::{self, Sandbox};\nuse crate::{model, privilege::Mode};\n",
        &known,
    );
    assert_eq!(
        e.into_iter().collect::<Vec<_>>(),
        ["model", "plan::launch", "privilege"]
    );
    assert!(layer_of("model") < layer_of("run::launch"));
}
