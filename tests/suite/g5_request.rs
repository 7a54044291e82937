//! G5, per call: what a caller may change for one call (`--env`, `--cwd`, `--timeout`), each
//! applied where the policy allows it and refused (125, naming the reason) where it does not; a
//! bare command is found on PATH as the sandbox sees it; an unknown option is an error.

use std::time::{Duration, Instant};

use crate::harness::*;

const POLICY: &str = r#"version = 1
[context.app]
namespaces = ["pid", "mount"]
timeout = 20
env.allow = ["PATH"]
env.caller = ["NODE_ENV", "APP_*"]
secrets.allow = ["APP_TOKEN"]
fs.tmpfs = ["/root"]
"#;

fn policy(d: &TempDir) -> String {
    d.file("policy.toml", POLICY).display().to_string()
}

pub fn env_option_sets_only_allowed_names() -> Result<(), String> {
    needs_isolation()?;
    let d = TempDir::new("req-env");
    let p = policy(&d);
    let r = Cmd::sbx([
        "--policy",
        &p,
        "--ctx",
        "app",
        "--env",
        "NODE_ENV=production",
        "--env",
        "APP_PORT=3000",
        "--",
        "sh",
        "-c",
        "echo $NODE_ENV:$APP_PORT",
    ])
    .run();
    r.expect_code(0, "allowed --env")?;
    check(r.stdout.trim() == "production:3000", || r.show())?;
    for (pair, why) in [
        ("PORT=1", "env] caller"),
        ("LD_PRELOAD=/tmp/evil-value.so", "injects code"),
        ("APP_TOKEN=evil-value", "as a secret"),
    ] {
        let r = Cmd::sbx(["--policy", &p, "--ctx", "app", "--env", pair, "--", "true"]).run();
        r.expect_code(125, pair)?;
        check(
            r.stderr.contains(why) && !r.stderr.contains("evil-value"),
            || r.show(),
        )?;
    }
    Ok(())
}

pub fn cwd_option_moves_the_command_or_refuses() -> Result<(), String> {
    needs_isolation()?;
    let d = TempDir::new("req-cwd");
    let p = policy(&d);
    let work = d.path().join("proj");
    std::fs::create_dir_all(&work).unwrap();
    let r = Cmd::sbx([
        "--policy",
        &p,
        "--ctx",
        "app",
        "--cwd",
        &work.display().to_string(),
        "--",
        "pwd",
    ])
    .run();
    r.expect_code(0, "--cwd")?;
    check(r.stdout.trim() == work.display().to_string(), || r.show())?;
    // Control: without --cwd the command runs where sbx-exec was started (the harness uses /).
    let r = Cmd::sbx(["--policy", &p, "--ctx", "app", "--", "pwd"]).run();
    check(r.stdout.trim() == "/", || r.show())?;
    let r = Cmd::sbx([
        "--policy",
        &p,
        "--ctx",
        "app",
        "--cwd",
        "/nonexistent-sbx-dir",
        "--",
        "pwd",
    ])
    .run();
    r.expect_code(125, "missing --cwd")?;
    check(
        r.stderr.contains("does not exist inside the context"),
        || r.show(),
    )?;
    Ok(())
}

pub fn timeout_option_is_at_most_the_policys() -> Result<(), String> {
    needs_isolation()?;
    let d = TempDir::new("req-timeout");
    let p = policy(&d);
    let started = Instant::now();
    let r = Cmd::sbx([
        "--policy",
        &p,
        "--ctx",
        "app",
        "--timeout",
        "1",
        "--",
        "sleep",
        "30",
    ])
    .limit(Duration::from_secs(20))
    .run();
    r.expect_code(124, "--timeout 1")?;
    check(started.elapsed() < Duration::from_secs(10), || {
        format!("took {:?}", started.elapsed())
    })?;
    let r = Cmd::sbx([
        "--policy",
        &p,
        "--ctx",
        "app",
        "--timeout",
        "21",
        "--",
        "true",
    ])
    .run();
    r.expect_code(125, "--timeout above the policy's")?;
    check(r.stderr.contains("at most 20"), || r.show())?;
    // Control: a timeout within the policy's lets a quick command finish normally.
    Cmd::sbx([
        "--policy",
        &p,
        "--ctx",
        "app",
        "--timeout",
        "5",
        "--",
        "true",
    ])
    .run()
    .expect_code(0, "--timeout 5")?;
    Ok(())
}

pub fn command_is_found_as_the_sandbox_sees_path() -> Result<(), String> {
    needs_isolation()?;
    // A shim directory under /root (a private tmpfs in `user`) first on the caller's PATH: the
    // sandbox cannot see it, so the system's python3 is found, as execvp inside would.
    let d = TempDir::new("req-path");
    let shims =
        std::path::Path::new("/root").join(format!("sbx-suite-shims-{}", std::process::id()));
    std::fs::create_dir_all(&shims).unwrap();
    let shim = shims.join("python3");
    std::fs::write(&shim, "#!/bin/sh\necho shim-ran\n").unwrap();
    std::fs::set_permissions(&shim, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:/usr/local/bin:/usr/bin:/bin", shims.display());
    let r = Cmd::sbx(["--ctx", "user", "--", "python3", "-c", "print(6*7)"])
        .env("PATH", &path)
        .run();
    // Control: outside, the same PATH finds the shim.
    let c = Cmd::sh("python3").env("PATH", &path).run();
    let _ = std::fs::remove_dir_all(&shims);
    drop(d);
    r.expect_code(0, "python3 with a hidden first PATH entry")?;
    check(r.stdout.trim() == "42", || r.show())?;
    check(c.stdout.contains("shim-ran"), || c.show())
}

pub fn unknown_option_is_an_error_not_a_command() -> Result<(), String> {
    let r = Cmd::sbx(["--ctx", "user", "--keep-fdx", "3", "--", "true"]).run();
    r.expect_code(125, "unknown option")?;
    check(
        r.stderr.contains("unexpected argument '--keep-fdx'")
            && !r.stderr.contains("command not found"),
        || r.show(),
    )?;
    // Control: an option-looking word after `--`, or after the command's first word, is the command's.
    let r = Cmd::sbx(["--ctx", "user", "--", "sh", "-c", "echo ok", "--keep-fdx"]).run();
    r.expect_code(0, "option after the command")?;
    check(r.stdout.trim() == "ok", || r.show())
}
