//! G7 (no shared channel), the device part of issue 15: a confined context gets a private /dev.
//! No pseudo-terminal held outside and no host device node is reachable from `user`; its own ptys
//! and the standard devices work; a setuid bit or a device node in a shared work area is inert.
//! Each attack is shown to fail inside and the same action to succeed outside.
//!
//! Devices are probed by opening them (read-only, then append-only) and closing them again:
//! nothing is read or written.
//!
//! One file per channel: [`terminals`] (a pty held outside, the sandbox's own ptys), [`devices`]
//! (host device nodes, the standard devices, nodes and setuid bits in shared areas, `fs.devices`),
//! [`sockets`] (the socket families). The tests are re-exported here.

mod devices;
mod sockets;
mod terminals;

pub use devices::*;
pub use sockets::*;
pub use terminals::*;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
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
