//! Setuid root with a hostile caller: it runs as itself without capabilities, and neither
//! `--policy`, persistent contexts, its environment nor an unlisted caller get past the system
//! policy, which must itself be root's alone.

use std::os::unix::fs::PermissionsExt;

use super::caller::*;
use crate::harness::*;

pub fn setuid_caller_runs_as_itself_without_capabilities() -> Result<(), String> {
    let su = setuid_prereqs()?;
    // The copy really runs in setuid mode for the caller.
    let p = as_caller(su.path(), true, &[], &["probe", "--json"]);
    check(p.stdout.contains("\"mode\":\"setuid\""), || p.show())?;
    for ctx in ["user", "platform"] {
        let r = as_caller(
            su.path(),
            true,
            &[],
            &["--ctx", ctx, "--", "cat", "/proc/self/status"],
        );
        r.expect_code(0, &format!("setuid caller in {ctx}"))?;
        let want = [
            ("Uid", "65534 65534 65534 65534"),
            ("Gid", "65534 65534 65534 65534"),
            ("Groups", GROUP),
            ("CapEff", "0000000000000000"),
            ("CapPrm", "0000000000000000"),
            ("CapBnd", "0000000000000000"),
            ("CapAmb", "0000000000000000"),
            ("NoNewPrivs", "1"),
        ];
        for (k, v) in want {
            check(status_field(&r.stdout, k).as_deref() == Some(v), || {
                format!("{ctx}: {k} is not {v:?}: {}", r.show())
            })?;
        }
    }
    // The private tmpfs HOME is the caller's; the host's /root stays root's.
    let home_owner = || std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/root").unwrap());
    let before = home_owner();
    let r = as_caller(
        su.path(),
        true,
        &[],
        &[
            "--ctx",
            "user",
            "--",
            "sh",
            "-c",
            "touch \"$HOME/probe\" && stat -c %u \"$HOME\"",
        ],
    );
    r.expect_code(0, "the caller writes its private HOME")?;
    check(r.stdout.trim() == NOBODY, || r.show())?;
    check(home_owner() == before, || {
        "the host's /root changed owner".into()
    })?;
    // Control: root running the same binary (real uid 0: root mode) keeps uid 0 and the context's
    // bounding set, so the checks above can tell the difference.
    let r = Cmd::new(su.path())
        .command_args(&["--ctx", "user", "--", "cat", "/proc/self/status"])
        .run();
    r.expect_code(0, "root with the same binary")?;
    check(
        status_field(&r.stdout, "Uid").as_deref() == Some("0 0 0 0")
            && status_field(&r.stdout, "CapBnd").as_deref() != Some("0000000000000000"),
        || r.show(),
    )
}

pub fn setuid_refuses_policy_flag() -> Result<(), String> {
    let su = setuid_prereqs()?;
    let d = TempDir::new("suidpolicy");
    let p = crate::policy_tests::write_policy(d.path(), crate::policy_tests::DEFAULT_TOML);
    std::fs::set_permissions(d.path(), PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&p, PermissionsExt::from_mode(0o644)).unwrap();
    let args = [
        "--policy",
        p.to_str().unwrap(),
        "--ctx",
        "user",
        "--",
        "true",
    ];
    let r = as_caller(su.path(), false, &[], &args);
    r.expect_code(125, "--policy from a setuid caller")?;
    check(
        r.stderr.contains("--policy") && r.stderr.contains("/etc/sbx/policy.toml"),
        || r.show(),
    )?;
    // Control: root may use --policy with the same file and binary.
    Cmd::new(su.path())
        .command_args(&args)
        .run()
        .expect_code(0, "root with --policy")?;
    Ok(())
}

const PERSIST_POLICY: &str = r#"version = 1
[context.shared]
namespaces = ["pid", "mount"]
persist = true
fs.hide = ["/run/sbx"]
"#;

pub fn setuid_refuses_persistent_contexts() -> Result<(), String> {
    let su = setuid_prereqs()?;
    // The control starts a keeper: its state goes to the suite's private /run/sbx.
    crate::persist::runtime()?;
    let _policy = SystemPolicy::install(PERSIST_POLICY, 0o644, 0o755)?;
    let args = ["--ctx", "shared", "--", "true"];
    let r = as_caller(su.path(), false, &[], &args);
    r.expect_code(125, "persistent context from a setuid caller")?;
    check(r.stderr.contains("persist"), || r.show())?;
    // Control: root runs the same context from the same system policy, then stops it.
    let root = Cmd::new(su.path()).command_args(&args).run();
    let stop = Cmd::new(su.path())
        .command_args(&["ctx", "stop", "shared", "--timeout", "2"])
        .run();
    root.expect_code(0, "root in the persistent context")?;
    stop.expect_code(0, "ctx stop")?;
    Ok(())
}

const OPEN_POLICY: &str = r#"version = 1
[context.open]
namespaces = ["pid", "mount"]
env.allow = ["*"]
env.hygiene = false
"#;

pub fn setuid_environment_is_allowlist_only() -> Result<(), String> {
    let su = setuid_prereqs()?;
    let _policy = SystemPolicy::install(OPEN_POLICY, 0o644, 0o755)?;
    // A directory the caller controls, with a program named like one it hopes to hijack.
    let evil = TempDir::new("evilpath");
    std::fs::set_permissions(evil.path(), PermissionsExt::from_mode(0o755)).unwrap();
    let tool = evil.path().join("sbxprobetool");
    std::fs::write(&tool, "#!/bin/sh\necho hijacked\n").unwrap();
    std::fs::set_permissions(&tool, PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:/usr/bin:/bin", evil.path().display());
    let env = [
        ("LD_PRELOAD", "/nonexistent/sbx-test.so"),
        ("BASH_ENV", "/nonexistent/bashenv"),
        ("SBXMARK", "visible"),
        ("PATH", path.as_str()),
    ];
    let shown = |r: &Run, k: &str| r.stdout.lines().any(|l| l.starts_with(&format!("{k}=")));
    // Control: root, same policy (hygiene off, allow all): the variables and PATH come through.
    let mut root = Cmd::new(su.path());
    for (k, v) in env {
        root = root.env(k, v);
    }
    let r = root
        .command_args(&["--ctx", "open", "--", "/usr/bin/env"])
        .run();
    r.expect_code(0, "root in open")?;
    check(
        shown(&r, "BASH_ENV") && shown(&r, "SBXMARK") && r.stdout.contains(&path),
        || format!("control: variables did not pass for root: {}", r.show()),
    )?;
    let mut root = Cmd::new(su.path());
    root = root.env("PATH", &path);
    let r = root
        .command_args(&["--ctx", "open", "--", "sbxprobetool"])
        .run();
    r.expect_code(0, "root resolves in its PATH")?;
    check(r.stdout.contains("hijacked"), || r.show())?;
    // The setuid caller: hygiene forced, PATH from the policy.
    let r = as_caller(
        su.path(),
        false,
        &env,
        &["--ctx", "open", "--", "/usr/bin/env"],
    );
    r.expect_code(0, "setuid caller in open")?;
    check(shown(&r, "SBXMARK"), || r.show())?;
    for k in ["LD_PRELOAD", "BASH_ENV"] {
        check(!shown(&r, k), || {
            format!("{k} reached the target: {}", r.show())
        })?;
    }
    check(
        !r.stdout.contains(evil.path().to_str().unwrap()) && shown(&r, "PATH"),
        || format!("the caller's PATH reached the target: {}", r.show()),
    )?;
    let r = as_caller(
        su.path(),
        false,
        &env,
        &["--ctx", "open", "--", "sbxprobetool"],
    );
    r.expect_code(127, "the caller's PATH is not searched")?;
    check(!r.stdout.contains("hijacked"), || r.show())
}

const CALLERS_POLICY: &str = r#"version = 1
[context.staff]
namespaces = ["pid", "mount"]
allow_callers = { gids = [4242] }
[context.admins]
namespaces = ["pid", "mount"]
allow_callers = { uids = [0] }
"#;

pub fn allow_callers_admits_only_listed() -> Result<(), String> {
    let su = setuid_prereqs()?;
    let _policy = SystemPolicy::install(CALLERS_POLICY, 0o644, 0o755)?;
    as_caller(su.path(), true, &[], &["--ctx", "staff", "--", "true"])
        .expect_code(0, "caller in group 4242 uses staff")?;
    let r = as_caller(su.path(), true, &[], &["--ctx", "admins", "--", "true"]);
    r.expect_code(125, "caller not in admins")?;
    check(
        r.stderr.contains("\"admins\"") && r.stderr.contains("allow_callers"),
        || r.show(),
    )?;
    // Without the group the same caller is refused staff too.
    let r = as_caller(su.path(), false, &[], &["--ctx", "staff", "--", "true"]);
    r.expect_code(125, "caller without group 4242")?;
    check(r.stderr.contains("\"staff\""), || r.show())
}

pub fn system_policy_writable_by_others_is_refused() -> Result<(), String> {
    let su = setuid_prereqs()?;
    let args = ["--ctx", "staff", "--", "true"];
    {
        let _p = SystemPolicy::install(CALLERS_POLICY, 0o666, 0o755)?;
        let r = as_caller(su.path(), true, &[], &args);
        r.expect_code(125, "policy mode 0666")?;
        check(
            r.stderr.contains("writable by group or others") && r.stderr.contains("666"),
            || r.show(),
        )?;
    }
    {
        let _p = SystemPolicy::install(CALLERS_POLICY, 0o644, 0o777)?;
        let r = as_caller(su.path(), true, &[], &args);
        r.expect_code(125, "policy directory mode 0777")?;
        check(r.stderr.contains("/etc/sbx "), || r.show())?;
    }
    // Control: the same file, root-owned 0644 in a 0755 directory, is accepted.
    let _p = SystemPolicy::install(CALLERS_POLICY, 0o644, 0o755)?;
    as_caller(su.path(), true, &[], &args).expect_code(0, "policy mode 0644")?;
    Ok(())
}
