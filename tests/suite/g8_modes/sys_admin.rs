//! CAP_SYS_ADMIN alone (what `docker run --cap-add SYS_ADMIN` and most platforms give): every
//! shipped context of policies/sandbox-sdk.toml works without CAP_SYS_PTRACE and CAP_NET_ADMIN,
//! and the socket through which a persistent context's keeper hands its namespaces to joins
//! (without CAP_SYS_PTRACE a join cannot take them itself) answers root only.
//!
//! The capabilities are taken away with `setpriv --bounding-set` (Docker's set plus SYS_ADMIN: no
//! SYS_PTRACE, no NET_ADMIN), in a mount namespace of the test's own with a tmpfs on /run/sbx, so
//! the contexts it starts are its own. tests/container runs the same contexts in a real container.

use std::time::Duration;

use crate::harness::*;

/// Docker's default capabilities and SYS_ADMIN.
const CAPS: &str = "+sys_admin,+chown,+dac_override,+fowner,+fsetid,+kill,+setgid,+setuid,\
+setpcap,+net_bind_service,+net_raw,+sys_chroot,+mknod,+audit_write,+setfcap";

/// Connects to the socket argv[1] and prints how many fds it was handed.
const FDS_CLIENT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
try:
    s.connect(sys.argv[1])
    _, fds, _, _ = socket.recv_fds(s, 16, 16)
except Exception as e:
    print("fds=0", e)
    sys.exit(0)
print("fds=%d" % len(fds))
"#;

/// The test, as root under the reduced bounding set: $1 the binary, $2 the policy, $3 the client.
const SCRIPT: &str = r#"
B=$1 P=$2 C=$3
mkdir -p /run/sbx && mount -t tmpfs -o mode=0700 sbx-sys-admin /run/sbx || { echo "setup=failed"; exit 0; }
echo "bounding=$(awk '/^CapBnd/ {print $2}' /proc/self/status)"
"$B" --policy "$P" --ctx user -- sh -c 'sleep 3141 >/dev/null 2>&1 & echo started'
echo "start=$?"
"$B" --policy "$P" --ctx user -- sh -c 'ps -e -o comm= | tr "\n" " "; echo; test -e /run/sbx/user.ns && echo inside=sees-socket || echo inside=no-socket'
echo "join=$?"
test -S /run/sbx/user.ns && echo "socket=yes"
chmod 0711 /run/sbx && chmod 0666 /run/sbx/user.ns
printf 'nobody-'; setpriv --reuid 65534 --regid 65534 --clear-groups python3 "$C" /run/sbx/user.ns
printf 'root-'; python3 "$C" /run/sbx/user.ns
chmod 0700 /run/sbx
old=$("$B" ctx list | awk '$1 == "user" {print $3}')
kill -9 "$old"
i=0; while kill -0 "$old" 2>/dev/null && [ "$(awk '{print $3}' /proc/$old/stat 2>/dev/null)" != Z ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
"$B" --policy "$P" --ctx user -- sh -c 'ps -e -o comm= | grep -c "^sleep"'
echo "rejoin=$?"
new=$("$B" ctx list | awk '$1 == "user" {print $3}')
[ -n "$new" ] && [ "$new" != "$old" ] && kill -0 "$new" && echo "helper=replaced"
"$B" --policy "$P" --ctx agent -- true; echo "agent=$?"
"$B" --policy "$P" --ctx notebook -- true; echo "notebook=$?"
"$B" --ctx user -- true; echo "default-user=$?"
"$B" --policy "$P" ctx stop user; echo "stop=$?"
pgrep -a -x sleep | grep -q ' 3141$' && echo "leftover=yes" || echo "leftover=none"
test -e /run/sbx/user.ns && echo "socket-after-stop=yes" || echo "socket-after-stop=gone"
"#;

/// The value of `key=` in `out`'s lines.
fn field<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    out.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

/// Under CAP_SYS_ADMIN alone: the persistent `user` of sandbox-sdk.toml starts, is joined (a
/// process of one call seen by the next), gets a new net helper after its old one was killed and
/// is stopped with nothing left; `agent`, `notebook` and the embedded default's `user` run. The
/// control: the bounding set really lacks CAP_SYS_PTRACE and CAP_NET_ADMIN and has SYS_ADMIN. The
/// attack: the keeper's namespace socket, made reachable on purpose (0666 in a 0711 directory),
/// hands nothing to uid 65534 (the control: root gets all five), and user code cannot see it.
pub fn sys_admin_alone_runs_every_context() -> Result<(), String> {
    crate::persist::runtime()?;
    let _ = require_tool("python3")?;
    let _ = require_tool("setpriv")?;
    let dir = TempDir::new("sysadmin");
    let client = dir.path().join("fds.py");
    std::fs::write(&client, FDS_CLIENT).map_err(|e| e.to_string())?;
    let policy = staged("policies/sandbox-sdk.toml")?;
    let policy = policy.to_str().unwrap();
    let r = Cmd::new("setpriv")
        .args([
            "--bounding-set",
            &format!("-all,{CAPS}"),
            "--inh-caps",
            "-all",
            "--",
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            SCRIPT,
            "sh",
            bin(),
            policy,
            client.to_str().unwrap(),
        ])
        .limit(Duration::from_secs(120))
        .run();
    let out = &r.stdout;
    let f = |k: &str| field(out, k).unwrap_or("");
    let why = || format!("under CAP_SYS_ADMIN alone:\n{}", r.show());
    check(f("setup") != "failed", why)?;
    let bounding = u64::from_str_radix(f("bounding"), 16).map_err(|e| format!("{e}: {}", why()))?;
    let has = |cap: u32| bounding & (1u64 << cap) != 0;
    // CAP_SYS_ADMIN 21, CAP_SYS_PTRACE 19, CAP_NET_ADMIN 12.
    check(has(21) && !has(19) && !has(12), || {
        format!(
            "the control: the bounding set {bounding:x} must have SYS_ADMIN only of the three: {}",
            why()
        )
    })?;
    for (k, v) in [
        ("start", "0"),
        ("join", "0"),
        ("socket", "yes"),
        ("inside", "no-socket"),
        ("rejoin", "0"),
        ("helper", "replaced"),
        ("agent", "0"),
        ("notebook", "0"),
        ("default-user", "0"),
        ("stop", "0"),
        ("leftover", "none"),
        ("socket-after-stop", "gone"),
    ] {
        check(f(k) == v, || {
            format!("{k}: expected {v}, got {:?}; {}", f(k), why())
        })?;
    }
    check(
        out.contains("started")
            && out
                .lines()
                .any(|l| l.contains("sbx-keeper") && l.contains("sleep")),
        || format!("the join did not see the first call's process: {}", why()),
    )?;
    check(out.lines().any(|l| l == "1"), || {
        format!(
            "after the helper's replacement the process is gone: {}",
            why()
        )
    })?;
    // The attack and its control.
    check(f("nobody-fds").starts_with('0'), || {
        format!("uid 65534 got the keeper's namespaces: {}", why())
    })?;
    check(f("root-fds") == "5", || {
        format!(
            "the control: root did not get the five namespaces: {}",
            why()
        )
    })
}
