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

/// An identity whose host ids the user namespace sbx-exec runs in lacks (a container with a user
/// namespace of its own: rootless Podman's or Kubernetes' 65536 ids; here a namespace mapping
/// root alone, made by the test) is refused before anything is set up, naming the ids and the
/// fix, with `degrade = true` too, and `probe` says the context is unavailable and why. The
/// controls: a context without identity runs there and probe calls it full; the same `user`
/// runs in the suite's own namespace, which has every id.
pub fn identity_ids_missing_fail_closed_and_probe_names_them() -> Result<(), String> {
    needs_isolation()?;
    if !nix::unistd::geteuid().is_root() {
        return Err(format!("{SKIP}needs root"));
    }
    let dir = TempDir::new("idmap");
    let degrading = degrading_policy(dir.path());
    let script = r#"B=$1 D=$2
echo "map=$(awk '{print $1, $2, $3}' /proc/self/uid_map | tr '\n' ';')"
"$B" --ctx user -- true 2>&1; echo "user=$?"
"$B" --policy "$D" --ctx user -- true 2>&1; echo "degrade=$?"
"$B" --ctx platform -- true; echo "platform=$?"
"$B" probe | awk '$1 == "user" || $1 == "platform" { print "probe-" $0 }'
"#;
    let r = Cmd::new("unshare")
        .args([
            "--map-root-user",
            "--mount",
            "--pid",
            "--fork",
            "--mount-proc",
        ])
        .args(["sh", "-c", script, "sh", bin(), degrading.to_str().unwrap()])
        .run();
    let out = &r.stdout;
    let line = |k: &str| out.lines().find(|l| l.starts_with(k)).unwrap_or("");
    check(line("map=") == "map=0 0 1;", || {
        format!("the test's namespace does not map root alone: {}", r.show())
    })?;
    for (k, what) in [("user=", "user"), ("degrade=", "user with degrade = true")] {
        check(line(k) == format!("{k}125"), || {
            format!("{what} was not refused: {}", r.show())
        })?;
    }
    let refusals = out
        .lines()
        .filter(|l| l.starts_with("sbx-exec: ") && l.contains("uid 100000..165535"))
        .filter(|l| l.contains("not mapped"))
        .count();
    check(refusals == 2, || {
        format!("the refusals do not name the ids: {}", r.show())
    })?;
    let probe_user = line("probe-user ");
    check(
        probe_user.contains("unavailable") && probe_user.contains("not mapped"),
        || format!("probe does not say user cannot run: {}", r.show()),
    )?;
    // The controls.
    check(line("platform=") == "platform=0", || {
        format!("platform (no identity) did not run there: {}", r.show())
    })?;
    check(line("probe-platform ").contains("full"), || {
        format!("probe does not call platform full: {}", r.show())
    })?;
    Cmd::sbx(["--ctx", "user", "--", "true"])
        .run()
        .expect_code(0, "user in the suite's own namespace")
        .map(|_| ())
}
