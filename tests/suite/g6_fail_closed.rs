//! G6: fail closed; `degrade = true` runs with what the kernel gives and says so. Also the
//! `net = "none"` network namespace.

use std::net::TcpListener;

use crate::harness::*;
use crate::policy_tests::{write_policy, DEFAULT_TOML};

/// Run sbx-exec as uid/gid 65534 with no capabilities, where user namespaces cannot be created
/// either (rootless mode would otherwise succeed): the kernel then refuses namespaces.
fn as_nobody(args: &[&str]) -> Run {
    crate::g8_modes::as_nobody_without_userns(args)
}

fn degrading_policy(dir: &std::path::Path) -> std::path::PathBuf {
    let text = DEFAULT_TOML.replacen("[context.user]\n", "[context.user]\ndegrade = true\n", 1);
    let p = write_policy(dir, &text);
    // Readable by the unprivileged caller.
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    p
}

pub fn refuses_when_namespaces_are_refused() -> Result<(), String> {
    needs_isolation()?;
    if !nix::unistd::geteuid().is_root() {
        return Err(format!("{SKIP}needs root to drop to an unprivileged uid"));
    }
    let r = as_nobody(&["--ctx", "user", "--", "true"]);
    r.expect_code(125, "unprivileged launch")?;
    for needed in ["pid", "mount", "degrade = true"] {
        check(r.stderr.contains(needed), || {
            format!("message does not name {needed:?}: {}", r.show())
        })?;
    }
    // Control: the same launch as root runs.
    Cmd::sbx(["--ctx", "user", "--", "true"])
        .run()
        .expect_code(0, "root launch")?;
    Ok(())
}

pub fn degrade_runs_and_warns() -> Result<(), String> {
    needs_isolation()?;
    if !nix::unistd::geteuid().is_root() {
        return Err(format!("{SKIP}needs root to drop to an unprivileged uid"));
    }
    let d = TempDir::new("degrade");
    let p = degrading_policy(d.path());
    let r = as_nobody(&[
        "--policy",
        p.to_str().unwrap(),
        "--ctx",
        "user",
        "--",
        "sh",
        "-c",
        "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status",
    ]);
    r.expect_code(0, "degraded launch")?;
    check(
        r.stderr.contains("degraded") && r.stderr.contains("pid"),
        || format!("no warning: {}", r.show()),
    )?;
    // What still holds without namespaces: no_new_privs and the seccomp filter.
    check(
        r.stdout.contains("NoNewPrivs:\t1") && r.stdout.contains("Seccomp:\t2"),
        || r.show(),
    )
}

pub fn net_none_has_only_loopback() -> Result<(), String> {
    needs_isolation()?;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let probe = format!(
        "python3 -c 'import socket,sys; s=socket.socket(); s.settimeout(2); \
         r=s.connect_ex((\"127.0.0.1\",{port})); print(\"connect\", r); \
         l=socket.socket(); l.bind((\"127.0.0.1\",0)); l.listen(); c=socket.create_connection(l.getsockname(),2); print(\"loopback ok\")'"
    );
    // Control: with the host network, the listener outside is reachable.
    let hd = TempDir::new("nethost");
    let hp = write_policy(
        hd.path(),
        &crate::g7_net::user_net_policy("mode = \"host\"", ""),
    );
    let host = Cmd::sbx([
        "--policy",
        hp.to_str().unwrap(),
        "--ctx",
        "user",
        "--",
        "sh",
        "-c",
        &probe,
    ])
    .run();
    host.expect_code(0, "host net")?;
    check(host.stdout.contains("connect 0"), || {
        format!("control could not connect: {}", host.show())
    })?;
    let d = TempDir::new("netnone");
    let p = write_policy(
        d.path(),
        &crate::g7_net::user_net_policy("mode = \"none\"", ""),
    );
    let r = Cmd::sbx([
        "--policy",
        p.to_str().unwrap(),
        "--ctx",
        "user",
        "--",
        "sh",
        "-c",
        &format!("{probe}; cat /proc/net/dev"),
    ])
    .run();
    r.expect_code(0, "net none")?;
    check(!r.stdout.contains("connect 0"), || {
        format!("reached the host's listener: {}", r.show())
    })?;
    check(r.stdout.contains("loopback ok"), || {
        format!("loopback is not up: {}", r.show())
    })?;
    let ifaces: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.contains(':') && !l.contains('|') && !l.starts_with("connect"))
        .collect();
    check(
        ifaces.iter().all(|l| l.trim_start().starts_with("lo:")),
        || format!("interfaces besides lo: {ifaces:?}"),
    )
}
