//! Reading `src/` as the compiler does, as far as the layering test needs: the module tree from
//! `lib.rs` down (`mod x;`, `mod x { .. }`, `#[path = ".."]`), and in each file every path that
//! starts at `crate::`, `super::` or `self::`, with `super::super::` chains and nested `use`
//! groups (`use crate::{a::{b, c}, d}`) resolved against the module the path is written in (an
//! inline `mod tests { use super::*; }` included). Comments, string and character literals are
//! not code.

use std::collections::{BTreeMap, BTreeSet};

/// A source tree: path under `src/` ("run/proxy/mod.rs") → text.
pub type Tree = BTreeMap<String, String>;

/// A module path, without `crate`: `["run", "proxy"]`; the crate root is `[]`.
pub type Module = Vec<String>;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    Sep,
    Punct(char),
    Str(String),
}

/// The tokens of `text` that matter here: identifiers, `::`, punctuation and string literals
/// (their contents kept, for `#[path]`); comments, character literals and lifetimes dropped.
fn tokens(text: &str) -> Vec<Tok> {
    let c: Vec<char> = text.chars().collect();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            loop {
                if i >= c.len() {
                    break;
                } else if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if let Some((s, next)) = raw_string(&c, i) {
            out.push(Tok::Str(s));
            i = next;
        } else if ch == '"' {
            let mut s = String::new();
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    i += 1;
                }
                s.push(at(i));
                i += 1;
            }
            out.push(Tok::Str(s));
            i += 1;
        } else if ch == '\'' {
            // A character literal ('x', '\n', '\''), else a lifetime (its name is read next).
            if at(i + 1) == '\\' {
                i += 3;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                i += 1;
            }
        } else if ident(ch) {
            let start = i;
            while i < c.len() && ident(c[i]) {
                i += 1;
            }
            out.push(Tok::Ident(c[start..i].iter().collect()));
        } else if ch == ':' && at(i + 1) == ':' {
            out.push(Tok::Sep);
            i += 2;
        } else {
            if !ch.is_whitespace() {
                out.push(Tok::Punct(ch));
            }
            i += 1;
        }
    }
    out
}

/// A raw string (`r"…"`, `r#"…"#`, `br"…"`) starting at `i`: its contents and the index after it.
pub(crate) fn raw_string(c: &[char], i: usize) -> Option<(String, usize)> {
    if i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_') {
        return None;
    }
    let mut j = i;
    if c.get(j) == Some(&'b') {
        j += 1;
    }
    if c.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let hashes = c[j..].iter().take_while(|&&h| h == '#').count();
    j += hashes;
    if c.get(j) != Some(&'"') {
        return None;
    }
    let close: Vec<char> = std::iter::once('"')
        .chain(std::iter::repeat_n('#', hashes))
        .collect();
    let start = j + 1;
    let end = (start..c.len()).find(|&k| c[k..].starts_with(&close))?;
    Some((c[start..end].iter().collect(), end + close.len()))
}

/// Every path of the use tree starting at `toks[*i]`, each as its segments: `a::{b, c::{d, self}}`
/// gives `a::b`, `a::c::d`, `a::c::self`; a glob ends its path.
fn use_tree(toks: &[Tok], i: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut path = prefix;
    loop {
        match toks.get(*i) {
            Some(Tok::Ident(s)) => {
                path.push(s.clone());
                *i += 1;
                if toks.get(*i) == Some(&Tok::Sep) {
                    *i += 1;
                    continue;
                }
                out.push(path);
                return;
            }
            Some(Tok::Punct('{')) => {
                *i += 1;
                loop {
                    if toks.get(*i) == Some(&Tok::Punct('}')) {
                        *i += 1;
                        return;
                    }
                    use_tree(toks, i, path.clone(), out);
                    if toks.get(*i) == Some(&Tok::Ident("as".into())) {
                        *i += 2;
                    }
                    match toks.get(*i) {
                        Some(Tok::Punct(',')) => *i += 1,
                        Some(Tok::Punct('}')) => {
                            *i += 1;
                            return;
                        }
                        _ => return,
                    }
                }
            }
            _ => {
                out.push(path);
                return;
            }
        }
    }
}

/// `path` (starting at `crate`, `super` or `self`) written in module `at`, as a module path from
/// the crate root; `None` if it climbs above the root.
fn resolve(at: &[String], path: &[String]) -> Option<Module> {
    let mut segs = path.iter().peekable();
    let mut base: Module = match segs.peek().map(|s| s.as_str()) {
        Some("crate") => {
            segs.next();
            Vec::new()
        }
        _ => at.to_vec(),
    };
    while let Some(s) = segs.peek() {
        match s.as_str() {
            "super" => {
                base.pop()?;
            }
            "self" => {}
            _ => break,
        }
        segs.next();
    }
    base.extend(segs.filter(|s| *s != "self").cloned());
    Some(base)
}

/// What one file says about modules.
#[derive(Debug, Default)]
pub struct Scan {
    /// `mod name;` declarations: the inline modules around it, its name, its `#[path]`.
    pub mods: Vec<(Vec<String>, String, Option<String>)>,
    /// Every path from `crate::`, `super::` or `self::`, resolved (not yet cut to a module).
    pub paths: BTreeSet<Module>,
}

/// Read one file whose module is `module`.
pub fn scan(module: &[String], text: &str) -> Scan {
    let toks = tokens(text);
    let mut out = Scan::default();
    let mut depth = 0usize;
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut path_attr: Option<String> = None;
    let mut i = 0;
    while i < toks.len() {
        let here = || -> Module {
            let mut m = module.to_vec();
            m.extend(inline.iter().map(|(n, _)| n.clone()));
            m
        };
        match &toks[i] {
            Tok::Punct('#') => {
                if let [Tok::Punct('['), Tok::Ident(p), Tok::Punct('='), Tok::Str(s), Tok::Punct(']'), ..] =
                    &toks[i + 1..]
                {
                    if p == "path" {
                        path_attr = Some(s.clone());
                        i += 6;
                        continue;
                    }
                }
                i += 1;
            }
            Tok::Ident(k) if k == "mod" => match &toks[i + 1..] {
                [Tok::Ident(name), Tok::Punct(';'), ..] => {
                    let around = inline.iter().map(|(n, _)| n.clone()).collect();
                    out.mods.push((around, name.clone(), path_attr.take()));
                    i += 3;
                }
                [Tok::Ident(name), Tok::Punct('{'), ..] => {
                    depth += 1;
                    inline.push((name.clone(), depth));
                    path_attr = None;
                    i += 3;
                }
                _ => i += 1,
            },
            Tok::Ident(k)
                if matches!(k.as_str(), "crate" | "super" | "self")
                    && toks.get(i + 1) == Some(&Tok::Sep)
                    && (i == 0 || toks[i - 1] != Tok::Sep) =>
            {
                let mut found = Vec::new();
                use_tree(&toks, &mut i, Vec::new(), &mut found);
                let at = here();
                out.paths
                    .extend(found.iter().filter_map(|p| resolve(&at, p)));
            }
            Tok::Punct('{') => {
                depth += 1;
                i += 1;
            }
            Tok::Punct('}') => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
                i += 1;
            }
            Tok::Punct(';') => {
                path_attr = None;
                i += 1;
            }
            _ => i += 1,
        }
    }
    out
}

/// The directory (under `src/`) of `file`, and where the modules it declares live.
fn dirs(file: &str) -> (String, String) {
    let (dir, name) = file.rsplit_once('/').unwrap_or(("", file));
    let stem = name.trim_end_matches(".rs");
    let children = match stem {
        "mod" | "lib" | "main" => dir.to_string(),
        _ if dir.is_empty() => stem.to_string(),
        _ => format!("{dir}/{stem}"),
    };
    (dir.to_string(), children)
}

fn join(dir: &str, rel: &str) -> String {
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for p in rel.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            _ => parts.push(p),
        }
    }
    parts.join("/")
}

/// Every module of the library, from `lib.rs` down its `mod` declarations, with its file.
pub fn modules(tree: &Tree) -> BTreeMap<Module, String> {
    let mut found = BTreeMap::new();
    let mut todo = vec![(Module::new(), "lib.rs".to_string())];
    while let Some((m, file)) = todo.pop() {
        let Some(text) = tree.get(&file) else {
            continue;
        };
        let (dir, children) = dirs(&file);
        for (around, name, attr) in scan(&m, text).mods {
            let mut child = m.clone();
            child.extend(around.iter().cloned());
            child.push(name.clone());
            let candidates = match attr {
                Some(p) => vec![join(&dir, &p)],
                None => {
                    let base = join(&children, &around.join("/"));
                    vec![
                        join(&base, &format!("{name}.rs")),
                        join(&base, &format!("{name}/mod.rs")),
                    ]
                }
            };
            if let Some(f) = candidates.into_iter().find(|f| tree.contains_key(f)) {
                todo.push((child, f));
            }
        }
        found.insert(m, file);
    }
    found
}
