//! Every `src/…` path the documentation names exists: in README.md, SECURITY.md, BENCHMARKS.md,
//! docs/**/*.md, bench/*.md and clients/**/README.md (a client's dependencies in node_modules left
//! out). A path is read from `src/` (at the start of a word: `clients/bun/src/x` is not one) to
//! the first character that cannot be in one; a trailing `.` or `,` ends the sentence, not the
//! path. A pattern (a path with `…`, `*`, `?` or `{`) is skipped. A path must exist from the
//! repository's root or, for a client's README, from the client's own directory (its `src/`).

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Markdown files whose paths are checked, under `root`.
fn markdown_files(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, deep: bool, keep: &dyn Fn(&Path) -> bool, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for p in entries.flatten().map(|e| e.path()) {
            if p.is_dir() {
                if deep && p.file_name().is_some_and(|n| n != "node_modules") {
                    walk(&p, deep, keep, out);
                }
            } else if keep(&p) {
                out.push(p);
            }
        }
    }
    let md = |p: &Path| p.extension().is_some_and(|x| x == "md");
    let readme = |p: &Path| p.file_name().is_some_and(|n| n == "README.md");
    let mut out: Vec<PathBuf> = ["README.md", "SECURITY.md", "BENCHMARKS.md"]
        .iter()
        .map(|f| root.join(f))
        .filter(|p| p.is_file())
        .collect();
    walk(&root.join("docs"), true, &md, &mut out);
    walk(&root.join("bench"), false, &md, &mut out);
    walk(&root.join("clients"), true, &readme, &mut out);
    out.sort();
    out
}

/// The `src/…` paths in `text`, with their line numbers (from 1); patterns left out.
fn src_paths(text: &str) -> Vec<(usize, String)> {
    let in_path = |c: char| c.is_alphanumeric() || "_./-*?…{},".contains(c);
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        for (at, _) in line.match_indices("src/") {
            if line[..at].chars().next_back().is_some_and(in_path) {
                continue;
            }
            let path: String = line[at..].chars().take_while(|&c| in_path(c)).collect();
            let path = path.trim_end_matches(['.', ',']);
            if path.contains(['…', '*', '?', '{', '}']) {
                continue;
            }
            out.push((n + 1, path.to_string()));
        }
    }
    out
}

/// `FILE:LINE: PATH` for each path of `text` (the file `file`, under `root`) that does not exist.
fn missing(root: &Path, file: &Path, text: &str) -> Vec<String> {
    let own = file.parent().unwrap_or(root);
    let shown = file.strip_prefix(root).unwrap_or(file).display();
    src_paths(text)
        .into_iter()
        .filter(|(_, p)| !root.join(p).exists() && !own.join(p).exists())
        .map(|(n, p)| format!("{shown}:{n}: {p}"))
        .collect()
}

#[test]
fn every_src_path_in_the_docs_exists() {
    let root = root();
    let files = markdown_files(&root);
    assert!(
        files.iter().any(|f| f.ends_with("docs/DESIGN.md")),
        "the docs were not found under {}",
        root.display()
    );
    let mut bad = Vec::new();
    let mut seen = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        seen += src_paths(&text).len();
        bad.extend(missing(&root, f, &text));
    }
    assert!(seen > 10, "only {seen} src/ paths found in {files:?}");
    assert!(
        bad.is_empty(),
        "src/ paths named in the docs that do not exist (a moved file?):\n{}",
        bad.join("\n")
    );
}

/// Control: the reader finds paths in backticks, links and prose, skips patterns and paths that
/// are not `src/…`; a path that does not exist is reported with its file and line, one that does
/// (a file, a directory, a client's own `src/`) is not.
#[test]
fn a_missing_src_path_is_named_with_its_line() {
    let text = "Intro `src/lib.rs` and [the gate](src/run/proxy/mod.rs).\n\
                Moved: src/no/such/file.rs, and `src/run/` is a directory.\n\
                Patterns: `src/run/apply/{mounts,fs}.rs`, `src/plan/…`, `src/*.rs`.\n\
                Not ours: `clients/bun/src/nowhere.ts`, ../src/gone.rs; in a sentence src/cli.rs.\n\
                A client's own: `src/index.ts`.\n";
    let found: Vec<(usize, String)> = src_paths(text);
    let want: Vec<(usize, String)> = [
        (1, "src/lib.rs"),
        (1, "src/run/proxy/mod.rs"),
        (2, "src/no/such/file.rs"),
        (2, "src/run/"),
        (4, "src/cli.rs"),
        (5, "src/index.ts"),
    ]
    .iter()
    .map(|(n, p)| (*n, p.to_string()))
    .collect();
    assert_eq!(found, want);
    let root = root();
    let client = root.join("clients/bun/README.md");
    assert_eq!(
        missing(&root, &client, text),
        ["clients/bun/README.md:2: src/no/such/file.rs"]
    );
    // Outside a client, its src/index.ts is not there to be found.
    assert_eq!(
        missing(&root, &root.join("docs/x.md"), text),
        [
            "docs/x.md:2: src/no/such/file.rs",
            "docs/x.md:5: src/index.ts"
        ]
    );
}
