//! The policy on the command line: checking, showing, strict errors, and the embedded default.

use std::path::{Path, PathBuf};

use crate::harness::*;

pub const DEFAULT_TOML: &str = include_str!("../../policies/default.toml");

/// A copy of the default policy with `extra` lines added to `[context.NAME]`, written into `dir`.
pub fn default_with(dir: &Path, ctx: &str, extra: &str) -> PathBuf {
    let header = format!("[context.{ctx}]\n");
    let text = DEFAULT_TOML.replacen(&header, &format!("{header}{extra}"), 1);
    assert_ne!(
        text, DEFAULT_TOML,
        "context {ctx} not found in the default policy"
    );
    write_policy(dir, &text)
}

pub fn write_policy(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("policy.toml");
    std::fs::write(&p, text).unwrap();
    p
}

pub fn every_shipped_policy_checks() -> Result<(), String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "toml") {
            n += 1;
            let r = Cmd::sbx(["policy".as_ref(), "check".as_ref(), e.path().as_os_str()]).run();
            r.expect_code(0, &format!("policy check {}", e.path().display()))?;
        }
    }
    check(n > 0, || "no policies found".into())
}

pub fn show_prints_embedded_default_verbatim() -> Result<(), String> {
    let r = Cmd::sbx(["policy", "show"]).run();
    r.expect_code(0, "policy show")?;
    if Path::new("/etc/sbx/policy.toml").exists() {
        return check(r.stdout.contains("system policy"), || r.show());
    }
    let body = r.stdout.split_once('\n').map(|x| x.1).unwrap_or("");
    check(
        r.stdout.starts_with("# source: embedded default policy"),
        || r.show(),
    )?;
    check(body == DEFAULT_TOML, || {
        "policies/default.toml differs from the embedded default".into()
    })
}

pub fn show_one_context() -> Result<(), String> {
    let r = Cmd::sbx(["policy", "show", "--ctx", "user"]).run();
    r.expect_code(0, "policy show --ctx")?;
    check(
        r.stdout.contains("[context.user") && !r.stdout.contains("[context.platform"),
        || r.show(),
    )
}

pub fn bad_policies_name_file_line_column() -> Result<(), String> {
    let d = TempDir::new("badpolicy");
    let cases = [
        ("version = 1\n[context.x]\nnamespacez = []\n", "policy.toml:3:1", "unknown field"),
        ("version = 1\n[context.x]\nnet = \"maybe\"\n", "policy.toml:3:", "unknown variant"),
        ("version = 1\n[context.x]\ntimeout = \"soon\"\n", "policy.toml:3:", "invalid type"),
        ("version = 1\n[context.x]\nnamespaces = [\"pid\"]\n", "policy.toml:2", "\"mount\""),
        ("version = 1\n[context.x.security]\ncaps = [\"SYS_ADMIN\"]\n[context.x]\nnamespaces = [\"pid\", \"mount\"]\n", "policy.toml", "SYS_ADMIN"),
        ("version = 1\n[context.x\n", "policy.toml:2:", ""),
    ];
    for (text, at, what) in cases {
        let p = write_policy(d.path(), text);
        let r = Cmd::sbx(["policy".as_ref(), "check".as_ref(), p.as_os_str()]).run();
        r.expect_code(125, text)?;
        check(r.stderr.contains(at) && r.stderr.contains(what), || {
            format!("{text:?} -> {}", r.show())
        })?;
        // The same policy refuses a launch, before anything runs.
        let r = Cmd::sbx([
            "--policy".as_ref(),
            p.as_os_str(),
            "--ctx".as_ref(),
            "x".as_ref(),
            "--".as_ref(),
            "true".as_ref(),
        ])
        .run();
        r.expect_code(125, "launch with a bad policy")?;
    }
    let r = Cmd::sbx(["policy", "check", "/nonexistent/policy.toml"]).run();
    r.expect_code(125, "missing file")?;
    check(r.stderr.contains("/nonexistent/policy.toml"), || r.show())
}

pub fn version_flag() -> Result<(), String> {
    let r = Cmd::sbx(["--version"]).run();
    r.expect_code(0, "--version")?;
    check(r.stdout.starts_with("sbx-exec "), || r.show())
}
