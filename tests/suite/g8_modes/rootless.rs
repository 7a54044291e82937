//! Rootless: a user namespace mapping the caller to itself where unprivileged user namespaces
//! are allowed, and an unprivileged caller where they cannot be made.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::caller::*;
use crate::harness::*;

/// A uid with no account, distinct from the overflow uid (65534) that unmapped ids show as.
const ROOTLESS_UID: &str = "4243";

/// Run sbx-exec as uid/gid 4243 with no capabilities (no setuid bit): rootless where user
/// namespaces are allowed.
fn as_plain_user(args: &[&str]) -> Run {
    let mut c = Cmd::new("setpriv");
    c.command()
        .args([
            &format!("--reuid={ROOTLESS_UID}"),
            &format!("--regid={ROOTLESS_UID}"),
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            bin(),
        ])
        .args(args);
    c.run()
}

/// Run sbx-exec as uid 65534 with no capabilities where user namespaces really cannot be created:
/// inside a user namespace (mapping 0 and 65534) whose `user.max_user_namespaces` is 0.
pub fn as_nobody_without_userns(args: &[&str]) -> Run {
    let inner = "echo 0 > /proc/sys/user/max_user_namespaces || exit 99; \
                 exec setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all \"$@\"";
    // Wait (bounded) for the map, then exec again: only an exec as the mapped uid 0 gets
    // capabilities in the namespace, needed to lower its limit.
    let outer = "i=0; while [ -z \"$(cat /proc/self/uid_map)\" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; \
                 exec /bin/sh -c \"$0\" sh \"$@\"";
    let child = Cmd::new("unshare")
        .args(["--user", "--", "/bin/sh", "-c", outer, inner, bin()])
        .args(args)
        .piped()
        .spawn();
    let pid = child.id();
    let mine = std::fs::read_link("/proc/self/ns/user").ok();
    let entered = wait_until(Duration::from_secs(10), || {
        std::fs::read_link(format!("/proc/{pid}/ns/user")).ok() != mine
    });
    if entered {
        for map in ["uid_map", "gid_map"] {
            let _ = std::fs::write(
                format!("/proc/{pid}/{map}"),
                format!("0 0 1\n{NOBODY} {NOBODY} 1\n"),
            );
        }
    }
    child.output()
}

pub fn rootless_runs_for_an_unprivileged_user() -> Result<(), String> {
    needs_isolation()?;
    if !nix::unistd::geteuid().is_root() {
        return Err(format!("{SKIP}needs root to drop to an unprivileged uid"));
    }
    let p = as_plain_user(&["probe", "--json"]);
    if !p.stdout.contains("\"mode\":\"rootless\"") {
        return Err(format!(
            "{SKIP}unprivileged user namespaces are not allowed here: {}",
            p.show()
        ));
    }
    // A sentinel the caller owns, below a path the user context makes read-only.
    let dir = PathBuf::from(format!(
        "/var/lib/sbx-suite-{}-rootless",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sentinel = dir.join("sentinel");
    std::fs::write(&sentinel, "").unwrap();
    let own = |p: &Path| {
        let id: u32 = ROOTLESS_UID.parse().unwrap();
        nix::unistd::chown(p, Some(id.into()), Some(id.into())).unwrap();
    };
    own(&dir);
    own(&sentinel);
    let probe = format!(
        "if ( : >> {} ) 2>/dev/null; then echo WRITABLE; else echo REFUSED; fi",
        sentinel.display()
    );
    let cleanup = || std::fs::remove_dir_all(&dir);
    // Control: the same user outside the sandbox can open it for writing.
    let mut outside = Cmd::new("setpriv");
    outside.command().args([
        &format!("--reuid={ROOTLESS_UID}"),
        &format!("--regid={ROOTLESS_UID}"),
        "--clear-groups",
        "sh",
        "-c",
        &probe,
    ]);
    let o = outside.run();
    let inside = as_plain_user(&[
        "--ctx",
        "user",
        "--",
        "sh",
        "-c",
        &format!(
            "{probe}; echo uid_map $(cat /proc/self/uid_map); id -u; \
             echo x > /dev/null && echo devnull-ok; grep ' /dev/null ' /proc/self/mountinfo | cut -d' ' -f6; \
             ps -e -o pid=,comm="
        ),
    ]);
    let _ = cleanup();
    check(o.stdout.contains("WRITABLE"), || {
        format!("control: {}", o.show())
    })?;
    inside.expect_code(0, "rootless launch")?;
    check(inside.stdout.contains("REFUSED"), || inside.show())?;
    // In a user namespace mapping the caller to itself, running as the caller.
    let map = format!("uid_map {ROOTLESS_UID} {ROOTLESS_UID} 1");
    check(inside.stdout.lines().any(|l| l.trim() == map), || {
        format!(
            "no user namespace mapping {ROOTLESS_UID} to itself: {}",
            inside.show()
        )
    })?;
    check(
        inside.stdout.lines().any(|l| l.trim() == ROOTLESS_UID),
        || format!("the target is not uid {ROOTLESS_UID}: {}", inside.show()),
    )?;
    // No CAP_MKNOD in a user namespace: the private /dev binds the host's nodes instead (each
    // nosuid, noexec), and they work.
    check(inside.stdout.lines().any(|l| l == "devnull-ok"), || {
        format!("/dev/null does not work rootless: {}", inside.show())
    })?;
    check(
        inside
            .stdout
            .lines()
            .any(|l| l.starts_with("ro,") && l.contains("nosuid") && l.contains("noexec")),
        || {
            format!(
                "rootless /dev/null is not a nosuid,noexec bind: {}",
                inside.show()
            )
        },
    )?;
    // ps inside shows the sandbox only: its pid 1 (sbx-exec), the shell and ps.
    let procs: Vec<&str> = inside
        .stdout
        .lines()
        .filter(|l| {
            l.trim_start()
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit())
        })
        .filter(|l| l.split_whitespace().count() == 2)
        .collect();
    check(
        procs.len() <= 3 && procs.iter().any(|l| l.trim() == "1 sbx-exec"),
        || {
            format!(
                "ps sees more than the sandbox: {procs:?}\n{}",
                inside.show()
            )
        },
    )?;
    // The same launch with the context saying userns = "never" is refused, and probe agrees.
    let d = TempDir::new("usernsnever");
    let p = crate::policy_tests::default_with(d.path(), "user", "userns = \"never\"\n");
    std::fs::set_permissions(d.path(), PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&p, PermissionsExt::from_mode(0o644)).unwrap();
    let p = p.to_str().unwrap();
    let r = as_plain_user(&["--policy", p, "--ctx", "user", "--", "true"]);
    r.expect_code(125, "userns = never")?;
    check(r.stderr.contains("userns = \"never\""), || r.show())?;
    let probe = as_plain_user(&["probe", "--json", "--policy", p]);
    let json: serde_json::Value = serde_json::from_str(&probe.stdout).unwrap_or_default();
    let user = &json["contexts"]["user"];
    check(
        user["degrade"] == false && user["missing"][0] == "pid namespace",
        || probe.show(),
    )
}
