//! No suite test can be forgotten: `tests/suite/main.rs` lists the tests by hand (in the order
//! they run), so a check reads every source of the suite and fails for a test that is not in the
//! list. A test is a `pub fn NAME() -> Result<(), String>` in `tests/suite/M.rs` or under
//! `tests/suite/M/` (re-exported by `M`), registered as `M::NAME`; a helper with that signature
//! is `pub(crate)`. (The compiler warns about a test nothing calls, but not about one that another
//! test or helper calls.)

use std::path::{Path, PathBuf};

use super::{check, REGISTERED};

/// Every test the sources define, as `module::name`: `sources` are (top-level module, text).
pub(crate) fn defined_tests(sources: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for (module, text) in sources {
        // Whole-line comments (doc comments included) are not code.
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        for (at, _) in code.match_indices("pub fn ") {
            if at > 0 && !code[..at].ends_with(char::is_whitespace) {
                continue;
            }
            let rest = &code[at + "pub fn ".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let signature: String = rest[name.len()..]
                .chars()
                .take_while(|&c| c != '{' && c != ';')
                .filter(|c| !c.is_whitespace())
                .collect();
            if !name.is_empty() && signature == "()->Result<(),String>" {
                out.push(format!("{module}::{name}"));
            }
        }
    }
    out
}

/// What is wrong with `registered` against `defined`: tests not registered, and names
/// registered more than once.
pub(crate) fn registration_errors(defined: &[String], registered: &[String]) -> Vec<String> {
    let mut errors: Vec<String> = defined
        .iter()
        .filter(|d| !registered.contains(d))
        .map(|d| format!("{d} is not registered in tests/suite/main.rs: it never runs"))
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    for r in registered {
        if !seen.insert(r) {
            errors.push(format!("{r} is registered more than once"));
        }
    }
    errors
}

/// Every .rs file under `dir` but main.rs, with its top-level module.
fn suite_sources(dir: &Path) -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for p in std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
        {
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, &mut files);
    files.sort();
    files
        .into_iter()
        .filter(|p| p.strip_prefix(dir).is_ok_and(|r| r != Path::new("main.rs")))
        .map(|p| {
            let rel = p.strip_prefix(dir).unwrap();
            let top = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy();
            let module = top.trim_end_matches(".rs").to_string();
            (module, std::fs::read_to_string(&p).unwrap_or_default())
        })
        .collect()
}

/// The suite's own sources against the list it runs.
pub fn every_suite_test_is_registered() -> Result<(), String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/suite");
    let defined = defined_tests(&suite_sources(&dir));
    let registered = REGISTERED.get().cloned().unwrap_or_default();
    check(defined.len() > 100, || {
        format!("only {} tests found in {}", defined.len(), dir.display())
    })?;
    let errors = registration_errors(&defined, &registered);
    check(errors.is_empty(), || errors.join("\n"))
}

/// Control: a forgotten test (its signature over two lines, or without spaces) is found in
/// sources given as text, and a name registered twice; a registered test, a `pub(crate)`
/// helper, a function with arguments and a test in a comment are not reported.
pub fn a_forgotten_suite_test_is_found() -> Result<(), String> {
    // Written with placeholders, so that this file itself holds no such definition.
    let t = |s: &str| {
        s.replace("PUBFN", "pub fn")
            .replace("PUBCRATEFN", "pub(crate) fn")
    };
    let alpha = "use crate::harness::*;\n\
                 PUBFN registered() -> Result<(), String> {\n    Ok(())\n}\n\
                 PUBFN forgotten()\n    -> Result<(), String>\n{\n    Ok(())\n}\n\
                 PUBCRATEFN helper() -> Result<(), String> {\n    Ok(())\n}\n\
                 PUBFN with_args(n: u8) -> Result<(), String> {\n    Ok(())\n}\n\
                 // PUBFN commented() -> Result<(), String> {\n\
                 /// PUBFN in_a_doc() -> Result<(), String> {\n\
                 PUBFN other() -> Result<u8, String> {\n    Ok(1)\n}\n";
    let beta = "PUBFN also_forgotten()->Result<(),String>{ Ok(()) }\n";
    let sources = [
        ("alpha".to_string(), t(alpha)),
        ("beta".to_string(), t(beta)),
    ];
    let defined = defined_tests(&sources);
    let want = [
        "alpha::registered",
        "alpha::forgotten",
        "beta::also_forgotten",
    ];
    check(defined == want, || format!("defined: {defined:?}"))?;
    let registered = [
        "alpha::registered".to_string(),
        "alpha::registered".to_string(),
    ];
    let errors = registration_errors(&defined, &registered);
    check(
        errors
            == [
                "alpha::forgotten is not registered in tests/suite/main.rs: it never runs",
                "beta::also_forgotten is not registered in tests/suite/main.rs: it never runs",
                "alpha::registered is registered more than once",
            ],
        || format!("errors: {errors:?}"),
    )
}
