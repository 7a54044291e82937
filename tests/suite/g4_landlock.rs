//! G3/G4 depth: Landlock port rules and scoping (where the kernel has them).

use std::net::TcpListener;
use std::os::unix::net::UnixListener;

use crate::harness::*;
use crate::policy_tests::{write_policy, DEFAULT_TOML};

/// The kernel's Landlock ABI, asked directly (`landlock_create_ruleset` with
/// `LANDLOCK_CREATE_RULESET_VERSION`), not through the launcher's code: the ABI, or why not.
fn landlock_abi() -> Result<i64, String> {
    // SAFETY: with a null attribute, size 0 and only the VERSION flag, the call reads no memory.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            1u32,
        )
    };
    if abi < 1 {
        return Err(format!(
            "this kernel has no Landlock: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(abi)
}

trait Args {
    fn stdin_null_cmd(self, args: &[&str]) -> Cmd;
}

impl Args for Cmd {
    fn stdin_null_cmd(mut self, args: &[&str]) -> Cmd {
        self.command().args(args);
        self
    }
}

/// The Landlock layer these tests need (ABI `n`): present, or a skip (a failure under
/// `SBX_REQUIRE_ISOLATION=1`) that says which. `sbx-exec probe` must report the same ABI.
fn need_abi(n: i64) -> Result<(), String> {
    needs_isolation()?;
    require_tool("python3")?;
    let abi = landlock_abi();
    let probe = Cmd::sbx(["probe", "--json"]).run();
    let v: serde_json::Value = serde_json::from_str(probe.stdout.trim())
        .map_err(|e| format!("probe --json is not JSON ({e}): {}", probe.show()))?;
    let reported = v["landlock_abi"].as_i64().unwrap_or(0);
    check(reported == *abi.as_ref().unwrap_or(&0), || {
        format!("sbx-exec probe reports Landlock ABI {reported}, the kernel says {abi:?}")
    })?;
    match abi {
        Ok(abi) if abi >= n => Ok(()),
        Ok(abi) => Err(format!(
            "{SKIP}Landlock ABI {abi} < {n} on this kernel: this layer cannot be tested here"
        )),
        Err(why) => Err(format!("{SKIP}{why}")),
    }
}

pub fn abstract_unix_sockets_outside_are_unreachable() -> Result<(), String> {
    need_abi(6)?;
    let name = marker("abstract");
    let addr =
        <std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(
            name.as_bytes(),
        )
        .unwrap();
    let _listener = UnixListener::bind_addr(&addr).unwrap();
    let probe = format!(
        "import socket\ns=socket.socket(socket.AF_UNIX)\ntry:\n s.connect('\\0{name}'); print('connected')\nexcept OSError as e: print('refused', e.errno)"
    );
    // Control: outside, and in platform (no scope), the socket is reachable.
    let c = Cmd::new("python3").stdin_null_cmd(&["-c", &probe]).run();
    check(c.stdout.contains("connected"), || {
        format!("control: {}", c.show())
    })?;
    let p = Cmd::sbx(["--ctx", "platform", "--", "python3", "-c", &probe]).run();
    check(p.stdout.contains("connected"), || {
        format!("platform (unscoped): {}", p.show())
    })?;
    let u = Cmd::sbx(["--ctx", "user", "--", "python3", "-c", &probe]).run();
    check(u.stdout.contains("refused 1"), || {
        format!("user reached an outside abstract socket: {}", u.show())
    })
}

pub fn denied_ports_cannot_be_bound_or_called() -> Result<(), String> {
    need_abi(4)?;
    // Two free ports: one to reserve, one to show binding still works.
    let (reserved, other) = {
        let a = TcpListener::bind("127.0.0.1:0").unwrap();
        let b = TcpListener::bind("127.0.0.1:0").unwrap();
        (
            a.local_addr().unwrap().port(),
            b.local_addr().unwrap().port(),
        )
    };
    let d = TempDir::new("landlock");
    let text = DEFAULT_TOML.replacen(
        "scope = true ",
        &format!("deny_bind = [{reserved}]\ndeny_connect = [{reserved}]\nscope = true "),
        2,
    );
    check(text.contains("deny_bind = ["), || {
        "could not build the policy".into()
    })?;
    let policy = write_policy(d.path(), &text);
    let probe = format!(
        r#"
import socket, errno
def try_bind(fam, addr, port, reuse):
    s = socket.socket(fam, socket.SOCK_STREAM)
    if reuse:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        s.bind((addr, port)); s.listen(); return "bound"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    finally:
        s.close()
for reuse in (False, True):
    print("v4", reuse, try_bind(socket.AF_INET, "0.0.0.0", {reserved}, reuse))
    print("v6", reuse, try_bind(socket.AF_INET6, "::", {reserved}, reuse))
print("other", try_bind(socket.AF_INET, "127.0.0.1", {other}, False))
c = socket.socket()
c.settimeout(2)
print("connect", errno.errorcode.get(c.connect_ex(("127.0.0.1", {reserved})), "ok"))
"#
    );
    // Control: outside, the reserved port binds on both families.
    let c = Cmd::new("python3").stdin_null_cmd(&["-c", &probe]).run();
    check(
        c.stdout.contains("v4 False bound") && c.stdout.contains("v6 True bound"),
        || format!("control: {}", c.show()),
    )?;
    let r = Cmd::sbx([
        "--policy",
        policy.to_str().unwrap(),
        "--ctx",
        "user",
        "--",
        "python3",
        "-c",
        &probe,
    ])
    .run();
    r.expect_code(0, "probe in user")?;
    for line in [
        "v4 False EACCES",
        "v6 False EACCES",
        "v4 True EACCES",
        "v6 True EACCES",
        "other bound",
        "connect EACCES",
    ] {
        check(r.stdout.contains(line), || {
            format!("expected {line:?}: {}", r.show())
        })?;
    }
    Ok(())
}
