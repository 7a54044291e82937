//! Sockets: only unix, inet, inet6 and netlink sockets can be made inside.

use super::*;

/// Tries to create one socket of each family named (create only: never bound, connected or sent
/// on) and prints `NAME:ok` or `NAME:ERRNO`.
const SOCKET_FAMILIES: &str = r#"
import socket, sys
tries = [("vsock", 40, socket.SOCK_STREAM), ("alg", 38, socket.SOCK_SEQPACKET),
         ("packet", 17, socket.SOCK_DGRAM), ("key", 15, socket.SOCK_RAW),
         ("inet", 2, socket.SOCK_STREAM), ("unix", 1, socket.SOCK_STREAM)]
for name, fam, kind in tries:
    try:
        s = socket.socket(fam, kind, 2 if name == "key" else 0)
        s.close()
        print(name + ":ok")
    except OSError as e:
        print(name + ":" + str(e.errno))
    if name == "unix":
        try:
            a, b = socket.socketpair(40, socket.SOCK_STREAM)
            print("vsockpair:ok")
        except OSError as e:
            print("vsockpair:" + str(e.errno))
"#;

/// No socket goes around the gate (G9): in every confined context (the default `user` and
/// `platform`, sandbox-sdk's `agent` and `notebook`) `socket()` of AF_VSOCK (the VM-wide port
/// space and the hypervisor), AF_ALG, AF_PACKET and AF_KEY fails with EAFNOSUPPORT, as does a
/// vsock `socketpair()`; AF_INET and AF_UNIX work. Control: outside, as root, AF_PACKET (and AF_KEY
/// where the kernel has it) is created. Nothing is bound, connected or sent.
pub fn only_four_socket_families_exist_inside() -> Result<(), String> {
    needs_isolation()?;
    require_tool("python3")?;
    let sdk = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/sandbox-sdk.toml");
    let mut outside = Cmd::new("python3");
    outside.command().args(["-c", SOCKET_FAMILIES]);
    let outside = outside.run();
    check(outside.stdout.contains("packet:ok"), || {
        format!(
            "control: root outside cannot create an AF_PACKET socket: {}",
            outside.show()
        )
    })?;
    let sdk = sdk.to_str().unwrap();
    for args in [
        vec!["--ctx", "user"],
        vec!["--ctx", "platform"],
        vec!["--policy", sdk, "--ctx", "agent"],
        vec!["--policy", sdk, "--ctx", "notebook"],
    ] {
        let mut all = args.clone();
        all.extend(["--", "python3", "-c", SOCKET_FAMILIES]);
        let r = Cmd::sbx(all).run();
        r.expect_code(0, &format!("{args:?}"))?;
        for name in ["vsock", "alg", "packet", "key", "vsockpair"] {
            check(
                r.stdout.contains(&format!("{name}:{}", libc::EAFNOSUPPORT)),
                || {
                    format!(
                        "{args:?}: {name} was not refused with EAFNOSUPPORT: {}",
                        r.show()
                    )
                },
            )?;
        }
        check(
            r.stdout.contains("inet:ok") && r.stdout.contains("unix:ok"),
            || format!("{args:?}: inet or unix refused: {}", r.show()),
        )?;
    }
    Ok(())
}
