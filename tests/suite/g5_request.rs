//! G5, per call: what a caller may change for one call (`--env`, `--cwd`, `--timeout`), each
//! applied where the policy allows it and refused (125, naming the reason) where it does not; a
//! bare command is found on PATH as the sandbox sees it; an unknown option is an error.

use std::path::{Path, PathBuf};
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
        r.stderr
            .contains("--cwd /nonexistent-sbx-dir: no such directory inside the context"),
        || r.show(),
    )?;
    Ok(())
}

/// A caller directory the context does not have (a clone under /root or /tmp, private there) is
/// not a refusal: the command starts in the context's workdir, the first writable area that
/// exists. `--in-workdir` starts there whatever the caller's directory is; a `--cwd` the context
/// does not have is refused with a status record that says so.
pub fn hidden_caller_directory_starts_in_workdir() -> Result<(), String> {
    needs_isolation()?;
    let d = TempDir::new("req-workdir");
    // The work area outside /tmp (private in the context), made by root as a fresh one is.
    let area = PathBuf::from(format!("/var/lib/{}", unique_name("workdir")));
    std::fs::create_dir_all(&area).map_err(|e| e.to_string())?;
    let text = format!(
        "version = 1\n[context.app]\nextends = \"user\"\nfs.writable = [\"/nonexistent-area\", \"{}\"]\n",
        area.display()
    );
    let p = crate::policy_tests::write_policy(d.path(), &text);
    let p = p.to_str().unwrap();
    let in_dir = |dir: &Path, args: &[&str]| {
        let mut c = Cmd::sbx(args);
        c.command().current_dir(dir);
        c.run()
    };
    let hidden = in_dir(d.path(), &["--policy", p, "--ctx", "app", "--", "pwd"]);
    let flag = Cmd::sbx(["--policy", p, "--ctx", "app", "--in-workdir", "--", "pwd"]).run();
    let status = d.path().join("status.jsonl");
    let mut c = Cmd::new("/bin/sh");
    c.command()
        .arg("-c")
        .arg(format!(
            "exec \"$0\" --policy {p} --ctx app --status-fd 3 --cwd /nonexistent-area -- pwd 3>{}",
            status.display()
        ))
        .arg(bin());
    let missing = c.run();
    // Control: a caller directory the context shares is kept.
    let shared = in_dir(
        Path::new("/usr"),
        &["--policy", p, "--ctx", "app", "--", "pwd"],
    );
    let _ = std::fs::remove_dir_all(&area);
    hidden.expect_code(0, "hidden caller directory")?;
    check(hidden.stdout.trim() == area.display().to_string(), || {
        hidden.show()
    })?;
    flag.expect_code(0, "--in-workdir")?;
    check(flag.stdout.trim() == area.display().to_string(), || {
        flag.show()
    })?;
    missing.expect_code(125, "missing --cwd")?;
    let last = std::fs::read_to_string(&status).unwrap_or_default();
    let last: serde_json::Value = last
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_default();
    check(
        last["reason"] == "refused"
            && last["message"]
                .as_str()
                .is_some_and(|m| m.contains("--cwd /nonexistent-area")),
        || format!("status record {last}: {}", missing.show()),
    )?;
    shared.expect_code(0, "shared caller directory")?;
    check(shared.stdout.trim() == "/usr", || shared.show())
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
