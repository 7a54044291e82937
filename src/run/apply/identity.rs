//! `identity`: the target alone enters a user namespace of its own whose root is an unprivileged
//! host uid, so nothing it does outside (a file it writes or marks setuid, a peer credential on a
//! filesystem socket) carries root's uid or a real account's.
//!
//! The handshake needs no fd: right after the fork the target calls `unshare(CLONE_NEWUSER)` and
//! stops itself (`SIGSTOP`); its parent (sandbox pid 1), or for a join of a persistent context the
//! outer sbx-exec (told the pid by the joiner; root in the parent namespace, the only one allowed
//! to map a range), waits for the stop,
//! writes the maps, and continues it; the target then becomes the namespace's root. Pid 1 and the
//! mounts stay in the parent namespace: the target owns none of its other namespaces, so it cannot
//! mount, and a fresh /proc needs no "fully visible" procfs (which a container's masked /proc is
//! not).
//!
//! Where the kernel refuses the user namespace: exit 125, or with `degrade` run the target as the
//! range's host uid itself with no capabilities (the same identity outside, not root inside).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{bail, Context as _, Result};
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, raise, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::model::IdRange;
use crate::privilege::userns::{become_mapped_root, write_range_maps};
use crate::run::reaper::shell_code;

/// In the target, first thing after its new session: enter a new user namespace and wait there
/// for the parent's maps, then become its root. `Ok(false)`: the kernel refused and `degrade`
/// says run without it (the caller then runs as the range's host ids, without capabilities).
pub fn enter(degrade: bool) -> Result<bool> {
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
    // The parent looks while this process is stopped: a new namespace gets its maps.
    raise(Signal::SIGSTOP).context("cannot stop for the user namespace maps")?;
    if made.is_err() {
        return Ok(false);
    }
    become_mapped_root()?;
    Ok(true)
}

/// In the target's parent, right after the fork: wait until the target has stopped, write the
/// maps of its new user namespace (if it made one), continue it. `Ok(Some(code))`: the target
/// ended before it stopped (it reported why); it is reaped, and `code` is its shell status.
pub fn map_child(child: Pid, range: &IdRange) -> Result<Option<i32>> {
    loop {
        match waitpid(child, Some(WaitPidFlag::WUNTRACED)) {
            Ok(WaitStatus::Stopped(_, Signal::SIGSTOP)) => break,
            Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                return Ok(shell_code(status));
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).context("cannot wait for the command to stop"),
        }
    }
    let mapped = write_maps(child, range);
    if mapped.is_err() {
        let _ = kill(child, Signal::SIGKILL);
    }
    let _ = kill(child, Signal::SIGCONT);
    mapped.map(|()| None)
}

/// Like [`map_child`], for a target that is not this process's child (a join of a persistent
/// context, whose joiner forked it): wait (up to 10 s) until `/proc` shows it stopped, write the
/// maps, continue it. A target that ends before it stops is left to its parent to report.
pub fn map_stopped(target: Pid, range: &IdRange) -> Result<()> {
    let stat = format!("/proc/{}/stat", target.as_raw());
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let state = std::fs::read_to_string(&stat).ok().and_then(|s| {
            s.rfind(')')
                .and_then(|i| s[i + 1..].trim_start().chars().next())
        });
        match state {
            Some('T') => break,
            None | Some('Z' | 'X' | 'x') => return Ok(()),
            Some(_) if std::time::Instant::now() > end => {
                let _ = kill(target, Signal::SIGKILL);
                bail!("the command did not stop for its user namespace maps within 10 s");
            }
            Some(_) => std::thread::sleep(std::time::Duration::from_millis(1)),
        }
    }
    let mapped = write_maps(target, range);
    if mapped.is_err() {
        let _ = kill(target, Signal::SIGKILL);
    }
    let _ = kill(target, Signal::SIGCONT);
    mapped
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
    let child_ns = ns(&proc.join(child.as_raw().to_string()).join("ns/user"))?;
    if child_ns == ns(&proc.join("self/ns/user"))? {
        // The kernel refused the namespace and the target degrades: nothing to map.
        return Ok(());
    }
    write_range_maps(proc, child.as_raw(), range)
        .context("cannot map the command's user namespace (identity)")
}
