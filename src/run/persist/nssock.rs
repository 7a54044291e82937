//! A keeper hands its namespaces to the calls that join it, over a socket only root reaches
//! (`/run/sbx/NAME.ns`, mode 0600, in the root-only runtime directory every persistent context
//! hides): for where a join cannot take them itself. `setns(2)` on the keeper's pidfd, and
//! opening its `/proc/PID/ns/*` links, need ptrace access to it; the keeper is non-dumpable (no
//! process in its context may read its memory), so that takes CAP_SYS_PTRACE, which a container
//! started with `--cap-add SYS_ADMIN` alone does not give. The keeper opens its own links (a
//! process may), and answers each connection from uid 0 with them, in [`KINDS`]' order.
//!
//! The first call binds the socket before the keeper exists and hands the keeper the listener;
//! the keeper is told of a connection by SIGIO ([`serve`] from its wait loop).

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Context as _, Result};
use nix::sched::CloneFlags;

use crate::sys;

/// The namespaces handed out, in this order.
pub const KINDS: [(&str, CloneFlags); 5] = [
    ("net", CloneFlags::CLONE_NEWNET),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

pub fn path(dir: &Path, ctx: &str) -> PathBuf {
    dir.join(format!("{ctx}.ns"))
}

/// The listener, bound (a stale socket of an ended keeper replaced), 0600, non-blocking.
pub fn listen(dir: &Path, ctx: &str) -> Result<UnixListener> {
    let p = path(dir, ctx);
    let _ = std::fs::remove_file(&p);
    let l = UnixListener::bind(&p).with_context(|| format!("cannot bind {}", p.display()))?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot make {} root-only", p.display()))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

pub fn remove(dir: &Path, ctx: &str) {
    let _ = std::fs::remove_file(path(dir, ctx));
}

/// The keeper's own namespaces, in [`KINDS`]' order (its /proc is its own by then).
pub fn open_own() -> Result<Vec<OwnedFd>> {
    KINDS
        .iter()
        .map(|(kind, _)| {
            std::fs::File::open(format!("/proc/self/ns/{kind}"))
                .map(OwnedFd::from)
                .with_context(|| format!("cannot open the keeper's {kind} namespace"))
        })
        .collect()
}

/// Ask for SIGIO on connections to `listener` (the keeper waits for it with its other signals).
pub fn watch(listener: &UnixListener) -> std::io::Result<()> {
    sys::notify_on_input(listener.as_fd(), true)
}

/// Answer every pending connection: a peer of the keeper's uid (root) gets `own`; any other is
/// closed.
pub fn serve(listener: &UnixListener, own: &[OwnedFd]) {
    while let Ok((conn, _)) = listener.accept() {
        if super::netctl::peer_is_us(&conn) {
            let raw: Vec<i32> = own.iter().map(AsRawFd::as_raw_fd).collect();
            let _ = conn.set_nonblocking(false);
            let _ = conn.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = sys::send_fds(conn.as_raw_fd(), &raw);
        }
    }
}

/// The keeper's namespaces, from its socket (within a few seconds).
pub fn fetch(dir: &Path, ctx: &str) -> Result<Vec<OwnedFd>> {
    let p = path(dir, ctx);
    let conn =
        UnixStream::connect(&p).with_context(|| format!("cannot connect to {}", p.display()))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let fds = sys::recv_fds(conn.as_raw_fd(), KINDS.len())
        .with_context(|| format!("the keeper did not answer on {}", p.display()))?;
    if fds.len() != KINDS.len() {
        return Err(anyhow!(
            "the keeper handed {} namespaces, not {}",
            fds.len(),
            KINDS.len()
        ));
    }
    Ok(fds)
}

/// Enter the namespaces of `fds` (from [`fetch`]) that `flags` names.
pub fn enter(fds: &[OwnedFd], flags: CloneFlags) -> nix::Result<()> {
    for ((_, kind), fd) in KINDS.iter().zip(fds) {
        if flags.contains(*kind) {
            nix::sched::setns(fd, *kind)?;
        }
    }
    Ok(())
}
