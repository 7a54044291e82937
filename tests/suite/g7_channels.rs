//! G7 (no shared channel), the device part of issue 15: a confined context gets a private /dev.
//! No pseudo-terminal held outside and no host device node is reachable from `user`; its own ptys
//! and the standard devices work; a setuid bit or a device node in a shared work area is inert.
//! Each attack is shown to fail inside and the same action to succeed outside.
//!
//! Devices are probed by opening them (read-only, then append-only) and closing them again:
//! nothing is read or written.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::*;

/// Python that opens each argument read-only and then append-only (non-blocking, never as a
/// controlling tty), closes it at once, and prints `path ro=RESULT wo=RESULT` (`ok` or an errno
/// name).
const PROBE_OPEN: &str = r#"
import os, sys, errno
def probe(p, mode):
    try:
        fd = os.open(p, mode | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        os.close(fd)
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
for p in sys.argv[1:]:
    print(p, "ro=" + probe(p, os.O_RDONLY), "wo=" + probe(p, os.O_WRONLY | os.O_APPEND))
"#;

/// Host device nodes the attacks reached from `user` (issue 15).
const HOST_DEVICES: &[&str] = &[
    "/dev/userfaultfd",
    "/dev/kmsg",
    "/dev/loop-control",
    "/dev/loop0",
    "/dev/kvm",
    "/dev/tty0",
    "/dev/tty1",
    "/dev/console",
    "/dev/ttyS0",
    "/dev/mem",
    "/dev/vcs",
    "/dev/vcsa",
    "/dev/hwrng",
    "/dev/cpu_dma_latency",
    "/dev/btrfs-control",
    "/dev/fuse",
    "/dev/net/tun",
];

fn probe_open(inside: bool, paths: &[&str]) -> Run {
    let mut c = if inside {
        Cmd::sbx(["--ctx", "user", "--", "python3", "-c", PROBE_OPEN])
    } else {
        let mut c = Cmd::new("python3");
        c.command().args(["-c", PROBE_OPEN]);
        c
    };
    c.command().args(paths);
    c.run()
}

/// `(ro, wo)` of `path` in a [`PROBE_OPEN`] run.
fn opened<'a>(r: &'a Run, path: &str) -> Option<(&'a str, &'a str)> {
    r.stdout.lines().find_map(|l| {
        let mut it = l.split(' ');
        (it.next() == Some(path)).then_some(())?;
        let ro = it.next()?.strip_prefix("ro=")?;
        let wo = it.next()?.strip_prefix("wo=")?;
        Some((ro, wo))
    })
}

/// (a) A process outside holds a pty whose input is waiting ("typed" into its master); `user`
/// tries to open that pty by name and read it. Control: the process outside reads it afterwards.
pub fn host_pty_input_cannot_be_read() -> Result<(), String> {
    needs_isolation()?;
    const HOLDER: &str = r#"
import os, sys
m, s = os.openpty()
os.write(m, b"secret-typed-password\n")
print(os.ttyname(s), flush=True)
sys.stdin.readline()
os.set_blocking(s, False)
try:
    print("read:" + os.read(s, 100).decode().strip(), flush=True)
except OSError as e:
    print("error:", e, flush=True)
"#;
    let mut holder = Command::new("python3")
        .args(["-c", HOLDER])
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the pty holder: {e}"))?;
    let mut out = BufReader::new(holder.stdout.take().unwrap());
    let mut name = String::new();
    out.read_line(&mut name).map_err(|e| e.to_string())?;
    let name = name.trim().to_string();
    let steal = "import os, errno, sys\n\
                 try:\n fd = os.open(sys.argv[1], os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)\n \
                 print('stolen:' + os.read(fd, 100).decode().strip())\n\
                 except OSError as e:\n print('refused:' + errno.errorcode.get(e.errno, str(e.errno)))";
    let attack = Cmd::sbx(["--ctx", "user", "--", "python3", "-c", steal, &name]).run();
    let mut stdin = holder.stdin.take().unwrap();
    let _ = stdin.write_all(b"go\n");
    drop(stdin);
    let mut control = String::new();
    let _ = out.read_to_string_lossy(&mut control);
    let _ = holder.wait();
    check(name.starts_with("/dev/pts/"), || {
        format!("the holder's pty has no /dev/pts name: {name:?}")
    })?;
    check(attack.stdout.trim() == "refused:ENOENT", || {
        format!(
            "user reached the pty {name} held outside: {}",
            attack.show()
        )
    })?;
    check(control.contains("read:secret-typed-password"), || {
        format!("control: the holder could not read its own pty {name}: {control:?}")
    })
}

trait ReadAll {
    fn read_to_string_lossy(&mut self, s: &mut String) -> std::io::Result<()>;
}

impl<R: std::io::Read> ReadAll for R {
    fn read_to_string_lossy(&mut self, s: &mut String) -> std::io::Result<()> {
        let mut v = Vec::new();
        self.read_to_end(&mut v)?;
        s.push_str(&String::from_utf8_lossy(&v));
        Ok(())
    }
}

/// (b) The host device nodes the attacks used are absent from `user`'s /dev, which holds only
/// what the private /dev puts there. Control: the same paths exist and open outside (those this
/// host has).
pub fn host_device_nodes_are_unreachable() -> Result<(), String> {
    needs_isolation()?;
    let present: Vec<&str> = HOST_DEVICES
        .iter()
        .copied()
        .filter(|p| Path::new(p).exists())
        .collect();
    let outside = probe_open(false, &present);
    let opened_outside = present
        .iter()
        .filter(|p| opened(&outside, p).is_some_and(|(ro, wo)| ro == "ok" || wo == "ok"))
        .count();
    check(opened_outside >= 3, || {
        format!(
            "control: fewer than 3 of {present:?} open outside, the test shows nothing here: {}",
            outside.show()
        )
    })?;
    let inside = probe_open(true, HOST_DEVICES);
    inside.expect_code(0, "probe in user")?;
    for p in HOST_DEVICES {
        check(opened(&inside, p) == Some(("ENOENT", "ENOENT")), || {
            format!("{p} is reachable from user: {}", inside.show())
        })?;
    }
    // Nothing else of the host's /dev either: exactly the private /dev's entries.
    let ls = Cmd::sbx([
        "--ctx",
        "user",
        "--",
        "python3",
        "-c",
        "import os; print(' '.join(sorted(os.listdir('/dev'))), '|', ' '.join(sorted(os.listdir('/dev/pts'))))",
    ])
    .run();
    check(
        ls.stdout.trim()
            == "fd full null ptmx pts random shm stderr stdin stdout tty urandom zero | ptmx",
        || format!("user's /dev is not the private one: {}", ls.show()),
    )?;
    // The nodes are made in the private /dev (no host node is mounted there), which is read-only,
    // nosuid and noexec (never nodev: they must open).
    let mi = Cmd::sbx(["--ctx", "user", "--", "cat", "/proc/self/mountinfo"]).run();
    let dev = mi
        .stdout
        .lines()
        .rfind(|l| l.split(' ').nth(4) == Some("/dev"))
        .map(|l| l.split(' ').nth(5).unwrap_or("").to_string());
    check(
        dev.as_ref().is_some_and(|o| {
            let has = |f: &str| o.split(',').any(|x| x == f);
            has("ro") && has("nosuid") && has("noexec") && !has("nodev")
        }),
        || format!("the private /dev is not ro,nosuid,noexec without nodev: {dev:?}"),
    )?;
    for node in ["null", "zero", "full", "random", "urandom", "tty"] {
        let mount_point = format!(" /dev/{node} ");
        check(!mi.stdout.lines().any(|l| l.contains(&mount_point)), || {
            format!(
                "/dev/{node} is a mount (a host node bound in): {}",
                mi.show()
            )
        })?;
    }
    // Each is the character device it should be and works (control); root in `user` cannot add a
    // node or a file there, not even a copy of /dev/null (the attack).
    const NODES: &str = r#"
import os, stat
for n in ["null", "zero", "full", "random", "urandom", "tty"]:
    st = os.stat("/dev/" + n)
    print(n, stat.S_ISCHR(st.st_mode), os.major(st.st_rdev), os.minor(st.st_rdev))
with open("/dev/null", "w") as f:
    f.write("x")
with open("/dev/zero", "rb") as f:
    print("zero-read", len(f.read(4)))
for what, make in [
    ("mknod", lambda: os.mknod("/dev/sbx-planted", stat.S_IFCHR | 0o666, os.makedev(1, 3))),
    ("create", lambda: open("/dev/sbx-planted", "w")),
    ("unlink", lambda: os.unlink("/dev/null")),
]:
    try:
        make()
        print(what, "DONE")
    except OSError as e:
        print(what, "refused", e.errno)
"#;
    let nodes = Cmd::sbx(["--ctx", "user", "--", "python3", "-c", NODES]).run();
    nodes.expect_code(0, "device nodes in user")?;
    let want = [
        "null True 1 3",
        "zero True 1 5",
        "full True 1 7",
        "random True 1 8",
        "urandom True 1 9",
        "tty True 5 0",
        "zero-read 4",
    ];
    for w in want {
        check(nodes.stdout.lines().any(|l| l == w), || {
            format!("control: no {w:?} in user: {}", nodes.show())
        })?;
    }
    for what in ["mknod", "create", "unlink"] {
        check(
            nodes
                .stdout
                .lines()
                .any(|l| l.starts_with(&format!("{what} refused"))),
            || format!("{what} in user's /dev was not refused: {}", nodes.show()),
        )?;
    }
    // Root with DAC_OVERRIDE and no identity (`platform`) meets the read-only mount itself.
    let plat = Cmd::sbx(["--ctx", "platform", "--", "python3", "-c", NODES]).run();
    plat.expect_code(0, "device nodes in platform")?;
    let erofs = format!("create refused {}", libc::EROFS);
    check(plat.stdout.lines().any(|l| l == erofs), || {
        format!("platform's /dev is not read-only: {}", plat.show())
    })?;
    Ok(())
}

/// (c) The context's own ptys work: a child on a new pty, its output read through the master;
/// `script` (util-linux) where it is installed.
pub fn own_ptys_work() -> Result<(), String> {
    needs_isolation()?;
    const PTY: &str = r#"
import pty, os
pid, fd = pty.fork()
if pid == 0:
    os.write(1, ("child-on-pty " + os.ttyname(0) + "\n").encode())
    os._exit(0)
out = b""
while True:
    try:
        b = os.read(fd, 1024)
    except OSError:
        break
    if not b:
        break
    out += b
os.waitpid(pid, 0)
print(out.decode().strip())
"#;
    let r = Cmd::sbx(["--ctx", "user", "--", "python3", "-c", PTY]).run();
    r.expect_code(0, "pty.fork in user")?;
    check(
        r.stdout.trim().starts_with("child-on-pty /dev/pts/"),
        || r.show(),
    )?;
    if Path::new("/usr/bin/script").exists() {
        let s = Cmd::sbx([
            "--ctx",
            "user",
            "--",
            "script",
            "-qc",
            "tty; echo via-script",
            "/dev/null",
        ])
        .run();
        s.expect_code(0, "script in user")?;
        check(
            s.stdout.contains("/dev/pts/") && s.stdout.contains("via-script"),
            || s.show(),
        )?;
    }
    Ok(())
}

/// (d) The standard devices work inside.
pub fn standard_devices_work() -> Result<(), String> {
    needs_isolation()?;
    let script = "head -c 16 /dev/urandom | wc -c; head -c 16 /dev/random | wc -c; \
                  head -c 4 /dev/zero | od -An -tx1; echo gone > /dev/null && echo null-ok; \
                  cat /dev/null | wc -c; (echo x > /dev/full) 2>/dev/null || echo full-refused; \
                  ls -l /dev/ptmx /dev/fd/ | head -1; echo shm > /dev/shm/probe && cat /dev/shm/probe; \
                  readlink /dev/stdin /dev/stdout /dev/stderr /dev/ptmx";
    let r = Cmd::sbx(["--ctx", "user", "--", "sh", "-c", script]).run();
    r.expect_code(0, "standard devices")?;
    let want = [
        "16\n16\n",
        " 00 00 00 00\n",
        "null-ok\n0\nfull-refused\n",
        "shm\n/proc/self/fd/0\n/proc/self/fd/1\n/proc/self/fd/2\npts/ptmx\n",
    ];
    for w in want {
        check(r.stdout.contains(w), || {
            format!("missing {w:?}: {}", r.show())
        })?;
    }
    Ok(())
}

/// A directory outside /tmp (which `user`-like contexts cover with a tmpfs), removed on drop.
struct WorkDir(PathBuf);

impl WorkDir {
    fn new(tag: &str) -> WorkDir {
        let p = PathBuf::from(format!("/var/lib/{}", marker(tag)));
        std::fs::create_dir_all(&p).unwrap();
        WorkDir(p)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// (e) A setuid-root program and a device node placed in a shared writable area are inert inside
/// (nosuid, nodev), while the same in a read-only (not nosuid/nodev) area of the same sandbox still
/// work: the check can fail. The target runs as nobody without no_new_privs, so only the mount
/// flags stand between it and euid 0.
pub fn setuid_and_device_nodes_in_shared_areas_are_inert() -> Result<(), String> {
    needs_isolation()?;
    let shared = WorkDir::new("g7-shared");
    let other = WorkDir::new("g7-other");
    for d in [&shared, &other] {
        let ok = Cmd::sh(&format!(
            "cp /usr/bin/id {0}/id-suid && chown 0:0 {0}/id-suid && chmod 4755 {0}/id-suid && \
             chmod 755 {0} && mknod -m 666 {0}/null c 1 3",
            d.0.display()
        ))
        .run();
        ok.expect_code(0, "set up the setuid copy and the device node")?;
    }
    let policy_dir = TempDir::new("g7-policy");
    let policy = crate::policy_tests::write_policy(
        policy_dir.path(),
        &format!(
            "version = 1\n[context.t]\nnamespaces = [\"pid\", \"mount\", \"ipc\", \"uts\"]\n\
             env.allow = [\"PATH\"]\n\
             [context.t.fs]\nread_only = [\"/\"]\nwritable = [\"{}\"]\n\
             [context.t.security]\nno_new_privs = false\nrun_as = {{ uid = 65534, gid = 65534 }}\n",
            shared.0.display()
        ),
    );
    let script = format!(
        "for d in {} {}; do echo \"$d euid=$($d/id-suid -u)\"; \
         if echo x > $d/null 2>/dev/null; then echo \"$d node=ok\"; else echo \"$d node=refused\"; fi; done",
        shared.0.display(),
        other.0.display()
    );
    let r = Cmd::sbx([
        "--policy",
        policy.to_str().unwrap(),
        "--ctx",
        "t",
        "--",
        "sh",
        "-c",
        &script,
    ])
    .run();
    r.expect_code(0, "setuid probe")?;
    let has = |d: &WorkDir, what: &str| r.stdout.contains(&format!("{} {what}\n", d.0.display()));
    if !has(&other, "euid=0") {
        return Err(format!(
            "{SKIP}the host's filesystem does not honour setuid here (nosuid?), so the control cannot show it: {}",
            r.show()
        ));
    }
    check(has(&other, "node=ok"), || {
        format!(
            "control: a device node outside the shared area did not open: {}",
            r.show()
        )
    })?;
    check(has(&shared, "euid=65534"), || {
        format!(
            "a setuid-root program in the shared area gave root: {}",
            r.show()
        )
    })?;
    check(has(&shared, "node=refused"), || {
        format!("a device node in the shared area opened: {}", r.show())
    })?;
    // And the default user context cannot make a device node at all (no CAP_MKNOD).
    let m = Cmd::sbx([
        "--ctx",
        "user",
        "--",
        "sh",
        "-c",
        "mknod /tmp/n c 1 3 2>/dev/null && echo made || echo refused",
    ])
    .limit(Duration::from_secs(30))
    .run();
    check(m.stdout.trim() == "refused", || m.show())
}

/// `fs.devices` adds a host character device on purpose; a block device or a missing one is
/// refused at launch with 125, naming it.
pub fn fs_devices_are_checked_at_launch() -> Result<(), String> {
    needs_isolation()?;
    let chr = ["/dev/fuse", "/dev/net/tun", "/dev/kmsg"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let blk = ["/dev/loop0", "/dev/vda", "/dev/sda"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let dir = TempDir::new("g7-devices");
    let launch = |device: &str| {
        let policy = crate::policy_tests::write_policy(
            dir.path(),
            &format!(
                "version = 1\n[context.t]\nnamespaces = [\"pid\", \"mount\"]\n\
                 [context.t.fs]\ndevices = [\"{device}\"]\n"
            ),
        );
        Cmd::sbx([
            "--policy",
            policy.to_str().unwrap(),
            "--ctx",
            "t",
            "--",
            "ls",
            "-lR",
            "/dev",
        ])
        .run()
    };
    if let Some(chr) = chr {
        let r = launch(chr);
        r.expect_code(0, chr)?;
        let name = Path::new(chr).file_name().unwrap().to_string_lossy();
        check(r.stdout.contains(&*name), || {
            format!("{chr} was not added: {}", r.show())
        })?;
    }
    if let Some(blk) = blk {
        let r = launch(blk);
        r.expect_code(125, blk)?;
        check(r.stderr.contains("block device"), || r.show())?;
    }
    let r = launch("/dev/sbx-no-such-device");
    r.expect_code(125, "a missing device")?;
    check(r.stderr.contains("/dev/sbx-no-such-device"), || r.show())
}

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
