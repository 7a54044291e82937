//! `identity`: the target alone enters a user namespace of its own whose root is an unprivileged
//! host uid, so nothing it does outside (a file it writes or marks setuid, a peer credential on a
//! filesystem socket) carries root's uid or a real account's.
//!
//! The handshake is two pipes ([`Handshake`]): in its step `UserNamespace` (where it comes in the
//! target's order: [`crate::run::confine::TARGET_ORDER`]) the target calls
//! `unshare(CLONE_NEWUSER)` and says so on one; its parent (sandbox pid 1), or for a join of a
//! persistent context the outer sbx-exec (told the pid by the joiner; root in the parent
//! namespace, the only one allowed to map a range), writes the maps and answers on the other; the
//! target then becomes the namespace's root. No signal and no polling of /proc: it works under
//! `strace -f`, and a parent that dies midway is end of file, not a target stopped for ever. Pid 1 and the
//! mounts stay in the parent namespace: the target owns none of its other namespaces, so it cannot
//! mount, and a fresh /proc needs no "fully visible" procfs (which a container's masked /proc is
//! not).
//!
//! Where the kernel refuses the user namespace: exit 125, or with `degrade` run the target as the
//! range's host uid itself with no capabilities (the same identity outside, not root inside).

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{bail, Context as _, Result};
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use crate::model::IdRange;
use crate::privilege::userns::{become_mapped_root, write_range_maps};
use crate::run::reaper::shell_code;

/// The two pipes of the identity handshake: the target writes on `ready` (1: a new user
/// namespace waits for its maps, 0: the kernel refused and it degrades) and reads one byte on
/// `go` (`K`: mapped). Made before the fork; each side closes the ends it does not use.
#[derive(Debug)]
pub struct Handshake {
    pub ready_r: std::os::fd::OwnedFd,
    pub ready_w: std::os::fd::OwnedFd,
    pub go_r: std::os::fd::OwnedFd,
    pub go_w: std::os::fd::OwnedFd,
}

impl Handshake {
    pub fn new() -> Result<Handshake> {
        let pipe = || {
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .context("cannot make the identity handshake's pipe")
        };
        let (ready_r, ready_w) = pipe()?;
        let (go_r, go_w) = pipe()?;
        Ok(Handshake {
            ready_r,
            ready_w,
            go_r,
            go_w,
        })
    }

    /// The target's two ends (raw: the target allocates nothing after the fork).
    pub fn target_ends(&self) -> (RawFd, RawFd) {
        (self.ready_w.as_raw_fd(), self.go_r.as_raw_fd())
    }

    /// The parent's side, once the target is forked: its ends closed here, so the target's death
    /// is end of file.
    pub fn parent(self) -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
        (self.ready_r, self.go_w)
    }
}

/// In the target (its step `UserNamespace`): enter a new user namespace, tell the parent
/// (`ready`), wait for its maps (`go`), then become the namespace's root. `Ok(false)`: the
/// kernel refused and `degrade` says run without it (the caller then runs as the range's host
/// ids, without capabilities).
pub fn enter(degrade: bool, (ready, go): (RawFd, RawFd)) -> Result<bool> {
    let made = nix::sched::unshare(CloneFlags::CLONE_NEWUSER);
    if let Err(e) = made {
        if !degrade {
            bail!(
                "cannot create the user namespace that identity asks for ({e}): allow user namespaces \
                 (sysctl user.max_user_namespaces > 0; a container runtime's seccomp profile must permit \
                 clone/unshare with CLONE_NEWUSER), remove identity from the context, or set degrade = true \
                 to run as the mapped host uid without root inside"
            );
        }
        eprintln!(
            "sbx-exec: warning: degraded (degrade = true): no user namespace ({e}); the command runs as the identity's host uid, without capabilities"
        );
    }
    let said = crate::sys::write_raw(ready, &[u8::from(made.is_ok())]);
    if said.map_or(true, |n| n != 1) {
        bail!("the caller is gone (identity handshake)");
    }
    let mut answer = [0u8; 1];
    loop {
        match nix::unistd::read(go, &mut answer) {
            Ok(1) if answer[0] == b'K' => break,
            Err(nix::errno::Errno::EINTR) => continue,
            _ => {
                bail!("the user namespace was not mapped (the caller is gone, or could not map it)")
            }
        }
    }
    if made.is_err() {
        return Ok(false);
    }
    become_mapped_root()?;
    Ok(true)
}

/// In the target's parent, right after the fork: wait (up to 10 s) until the target says its user
/// namespace exists, write the maps (if it made one), answer. `Ok(Some(code))`: the target ended
/// before (it reported why); it is reaped, and `code` is its shell status. `child` is this
/// process's child (one-shot pid 1) or, for a join, the joiner's (`reap` false: its parent
/// reports).
pub fn map_child(
    child: Pid,
    range: &IdRange,
    (ready, go): (std::os::fd::OwnedFd, std::os::fd::OwnedFd),
    reap: bool,
) -> Result<Option<i32>> {
    let mut said = [0u8; 1];
    let mut fds = [nix::poll::PollFd::new(
        ready.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    let waited = loop {
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(10_000u16)) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other,
        }
    };
    let got = match waited {
        Ok(n) if n > 0 => nix::unistd::read(ready.as_raw_fd(), &mut said).unwrap_or(0),
        _ => {
            let _ = kill(child, Signal::SIGKILL);
            bail!("the command did not ask for its user namespace maps within 10 s");
        }
    };
    if got == 0 {
        // It ended before: it said why on stderr.
        return Ok(match reap {
            true => match waitpid(child, None) {
                Ok(status) => shell_code(status),
                Err(_) => Some(crate::error::EXIT_SBX),
            },
            false => None,
        });
    }
    let mapped = match said[0] {
        1 => write_maps(child, range),
        _ => Ok(()),
    };
    match &mapped {
        Ok(()) => {
            let _ = nix::unistd::write(&go, b"K");
        }
        Err(_) => {
            let _ = kill(child, Signal::SIGKILL);
        }
    }
    mapped.map(|()| None)
}

fn write_maps(child: Pid, range: &IdRange) -> Result<()> {
    let proc = Path::new("/proc");
    // The /proc in use must number processes as fork did (this process's own pid namespace).
    let me = std::fs::read_link(proc.join("self")).context("cannot read /proc/self")?;
    if me.to_str() != Some(nix::unistd::getpid().as_raw().to_string().as_str()) {
        bail!("/proc does not show this process's pid namespace, so the command's user namespace cannot be mapped");
    }
    let ns = |p: &Path| -> Result<(u64, u64)> {
        let m = std::fs::metadata(p).with_context(|| format!("cannot read {}", p.display()))?;
        Ok((m.dev(), m.ino()))
    };
    // A check for a clearer message: reading the link of a non-dumpable child needs
    // CAP_SYS_PTRACE, which a container may not give (`--cap-add SYS_ADMIN` alone); without it the
    // write below is the check (a user namespace takes its maps once: one that has them, as this
    // process's has, refuses them with EPERM).
    let child_link = proc.join(child.as_raw().to_string()).join("ns/user");
    match std::fs::metadata(&child_link) {
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => {}
        _ => {
            if ns(&child_link)? == ns(&proc.join("self/ns/user"))? {
                bail!("the command's user namespace is not there to map");
            }
        }
    }
    write_range_maps(proc, child.as_raw(), range)
        .context("cannot map the command's user namespace (identity)")
}
