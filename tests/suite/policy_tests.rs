//! The policy on the command line: checking, showing, strict errors, and the embedded default.

use std::path::Path;

use crate::harness::*;

pub use crate::support::policy::{default_with, write_policy, DEFAULT_TOML};

pub fn every_shipped_policy_checks() -> Result<(), String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "toml") {
            n += 1;
            let r = Cmd::sbx(["policy".as_ref(), "check".as_ref(), e.path().as_os_str()]).run();
            r.expect_code(0, &format!("policy check {}", e.path().display()))?;
            // Shipped policies are the safe examples: no weak untrusted context, no warning.
            check(!r.stderr.contains("warning"), || {
                format!("policy check {} warns: {}", e.path().display(), r.show())
            })?;
        }
    }
    check(n > 0, || "no policies found".into())
}

/// A context written from scratch for untrusted code is weak in five ways; `policy check` says
/// each, naming its line, and still accepts the file. The same context written as `extends =
/// "user"` gets no warning, launches with user's walls (read-only /usr, its own network) and its
/// own override, and `policy show` prints it merged. `--policy` before the subcommand works.
pub fn weak_contexts_are_named_and_extends_starts_from_a_safe_one() -> Result<(), String> {
    let dir = TempDir::new("weak");
    let weak = dir.path().join("weak.toml");
    std::fs::write(
        &weak,
        "version = 1\n\n# a quick one\n[context.job]\nnamespaces = [\"mount\"]\ntimeout = 60\n",
    )
    .unwrap();
    let r = Cmd::sbx(["policy".as_ref(), "check".as_ref(), weak.as_os_str()]).run();
    r.expect_code(0, "policy check of a weak policy")?;
    let warnings: Vec<&str> = r.stderr.lines().filter(|l| l.contains("warning")).collect();
    check(
        warnings.len() == 5
            && warnings
                .iter()
                .all(|l| l.contains("line 4: context \"job\"")),
        || format!("expected five warnings naming line 4: {}", r.show()),
    )?;
    let safe = dir.path().join("safe.toml");
    std::fs::write(
        &safe,
        "version = 1\n[context.job]\nextends = \"user\"\ntimeout = 60\n",
    )
    .unwrap();
    let r = Cmd::sbx([
        "--policy".as_ref(),
        safe.as_os_str(),
        "policy".as_ref(),
        "check".as_ref(),
    ])
    .run();
    r.expect_code(0, "policy check of the extending policy")?;
    check(!r.stderr.contains("warning"), || r.show())?;
    let shown = Cmd::sbx([
        "--policy".as_ref(),
        safe.as_os_str(),
        "policy".as_ref(),
        "show".as_ref(),
        "--ctx".as_ref(),
        "job".as_ref(),
    ])
    .run();
    shown.expect_code(0, "policy show --ctx job")?;
    check(
        shown.stdout.contains("timeout = 60")
            && shown.stdout.contains("identity")
            && shown.stdout.contains("extends = \"user\""),
        || shown.show(),
    )?;
    needs_isolation()?;
    let run = Cmd::sbx([
        "--policy".as_ref(),
        safe.as_os_str(),
        "--ctx".as_ref(),
        "job".as_ref(),
        "--".as_ref(),
        "sh".as_ref(),
        "-c".as_ref(),
        "touch /usr/x 2>/dev/null || echo ro; grep -c : /proc/net/dev".as_ref(),
    ])
    .run();
    run.expect_code(0, "launch of the extending context")?;
    check(run.stdout == "ro\n1\n", || run.show())
}

/// `policy show` prints the embedded default verbatim (comments included), and what it prints is
/// the policy the documentation describes: read as TOML and checked key by key, and accepted back
/// by `policy check`. (The embedded text is `policies/default.toml` by construction, through
/// `include_str!` in src/policy.rs; comparing the two files proves nothing more, so the test checks
/// what the binary prints.)
pub fn show_prints_embedded_default_verbatim() -> Result<(), String> {
    if Path::new("/etc/sbx/policy.toml").exists() {
        return Err(format!(
            "{SKIP}/etc/sbx/policy.toml exists, so policy show prints it instead of the embedded default"
        ));
    }
    let r = Cmd::sbx(["policy", "show"]).run();
    r.expect_code(0, "policy show")?;
    let (source, body) = r.stdout.split_once('\n').ok_or_else(|| r.show())?;
    check(source == "# source: embedded default policy", || r.show())?;
    check(body == DEFAULT_TOML, || {
        "policy show does not print the embedded policy verbatim".into()
    })?;
    let doc: toml::Table =
        toml::from_str(body).map_err(|e| format!("policy show is not TOML: {e}"))?;
    let get = |path: &str| -> toml::Value {
        path.split('.')
            .try_fold(toml::Value::Table(doc.clone()), |v, k| v.get(k).cloned())
            .unwrap_or_else(|| toml::Value::String(format!("<{path} missing>")))
    };
    let strings = |path: &str| -> Vec<String> {
        get(path)
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_else(|| vec![format!("<{path} not an array>")])
    };
    let contexts: Vec<&String> = doc
        .get("context")
        .and_then(|c| c.as_table())
        .map(|t| t.keys().collect())
        .unwrap_or_default();
    check(contexts == ["control", "platform", "user"], || {
        format!("contexts: {contexts:?}")
    })?;
    // What README.md and DESIGN.md promise of the default.
    let confined = ["pid", "mount", "ipc", "uts"];
    for ctx in ["platform", "user"] {
        let ns = strings(&format!("context.{ctx}.namespaces"));
        check(confined.iter().all(|n| ns.iter().any(|x| x == n)), || {
            format!("{ctx}: namespaces {ns:?}")
        })?;
        check(
            get(&format!("context.{ctx}.security.seccomp")).as_str() == Some("default"),
            || format!("{ctx}: seccomp is not the default filter"),
        )?;
        check(
            strings(&format!("context.{ctx}.fs.hide")) == ["/run/sbx"],
            || format!("{ctx}: /run/sbx is not hidden"),
        )?;
    }
    let facts: [(&str, toml::Value); 6] = [
        ("context.user.secrets.allow", toml::Value::Array(vec![])),
        ("context.user.security.scope", toml::Value::Boolean(true)),
        (
            "context.platform.secrets.allow",
            toml::Value::Array(vec!["*".into()]),
        ),
        (
            "context.platform.exec.verify_owner",
            toml::Value::Boolean(true),
        ),
        ("context.control.namespaces", toml::Value::Array(vec![])),
        (
            "context.control.supervise.ports",
            toml::Value::Array(vec![8080.into(), 8888.into()]),
        ),
    ];
    for (path, want) in facts {
        check(get(path) == want, || {
            format!("{path} is {}, want {want}", get(path))
        })?;
    }
    check(strings("context.user.fs.read_only") == ["/"], || {
        "user: / is not read-only".into()
    })?;
    // What show printed is a valid policy in its own right.
    let d = TempDir::new("shown");
    let p = write_policy(d.path(), body);
    Cmd::sbx(["policy".as_ref(), "check".as_ref(), p.as_os_str()])
        .run()
        .expect_code(0, "policy check of what policy show printed")?;
    Ok(())
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
        ("version = 1\n[context.x]\nnet = \"maybe\"\n", "policy.toml:3:", "invalid net"),
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
