//! Applying a [`crate::plan::mounts::Plan`] in the sandbox's private mount namespace.
//!
//! Every path is opened with `openat2(RESOLVE_NO_SYMLINKS)` and mounted through its
//! `/proc/self/fd/N` handle, so a symlink planted in a path cannot redirect a mount.

use anyhow::{Context as _, Result};
use nix::mount::{mount, MsFlags};
use nix::unistd::{Gid, Uid};

use super::fs::{hide, open, read_only, set_flag_on_bind, show, tmpfs};
use crate::plan::mounts::{already_read_only, sys_already_read_only, Plan, Step};
use crate::sys::MountFlag;

/// Apply the plan in this (new, private) mount namespace. Stops at the first failure unless
/// `degrade`, in which case failures are reported on stderr and skipped.
pub fn apply(plan: &Plan, degrade: bool) -> Result<()> {
    // Under degrade a failed step is skipped, so what the plan says is not what was done.
    let sys_read_only = !degrade && sys_already_read_only(&plan.steps);
    let mut private_sys = false;
    for (i, step) in plan.steps.iter().enumerate() {
        // A path already read-only needs no bind of its own; one that is or goes through a
        // symlink (its target may be anywhere) still goes to `read_only`, which refuses it.
        if let Step::ReadOnly(p) = step {
            if p.to_bytes() != b"/"
                && !degrade
                && already_read_only(&plan.steps[..i], p)
                && open(p).is_ok()
            {
                continue;
            }
        }
        let done = apply_step(step, sys_read_only, &mut private_sys);
        if let (Ok(()), Step::Tmpfs(p, 0o755), Some((uid, gid))) = (&done, step, plan.tmpfs_owner) {
            give_new_tmpfs(p, uid, gid)?;
        }
        if let Err(e) = done {
            if degrade {
                eprintln!("sbx-exec: warning: degraded: {e:#}");
            } else {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// `private_sys` is set once a private /sys is mounted (its empty mount points need no mask).
fn apply_step(step: &Step, sys_read_only: bool, private_sys: &mut bool) -> Result<()> {
    match step {
        Step::MakePrivate => mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .context("cannot make mount propagation private (mount --make-rprivate /)"),
        Step::ReadOnly(p) => {
            read_only(p).with_context(|| format!("cannot make {} read-only", show(p)))
        }
        Step::Writable(p) => match open(p)? {
            None => Ok(()),
            Some(fd) => set_flag_on_bind(p, fd, MountFlag::WritableNoSuidNoDev)
                .with_context(|| format!("cannot make {} writable (nosuid, nodev)", show(p))),
        },
        Step::Tmpfs(p, mode) => match open(p)? {
            None => Ok(()),
            Some(fd) => tmpfs(&fd, *mode, MsFlags::empty())
                .with_context(|| format!("cannot mount a private tmpfs on {}", show(p))),
        },
        Step::NoExec(p) => match open(p)? {
            None => Ok(()),
            Some(fd) => set_flag_on_bind(p, fd, MountFlag::NoExec)
                .with_context(|| format!("cannot make {} noexec", show(p))),
        },
        Step::NoSymFollow(p) => match open(p)? {
            None => Ok(()),
            Some(fd) => set_flag_on_bind(p, fd, MountFlag::NoSymFollow).with_context(|| {
                format!(
                    "cannot make {} nosymfollow (needs Linux 5.10 or later)",
                    show(p)
                )
            }),
        },
        Step::Hide(p) => match open(p)? {
            None => Ok(()),
            Some(fd) => hide(&fd).with_context(|| format!("cannot hide {}", show(p))),
        },
        Step::PrivateDev(extra) => crate::run::apply::dev::mount_private(extra),
        Step::PrivateSys(cgroups) => {
            crate::run::apply::sysfs::mount_private(cgroups)?;
            *private_sys = true;
            Ok(())
        }
        Step::PrivateProc => crate::run::apply::procfs::mount_private(sys_read_only, *private_sys),
    }
}

/// Setuid mode, in pid 1 right after mounting a private tmpfs at `p` (nothing else runs in the
/// sandbox yet): give its root to the caller, so a tmpfs HOME is writable by the target. Only a
/// tmpfs is ever changed (a path whose mount was skipped keeps its owner).
pub fn give_new_tmpfs(p: &std::ffi::CStr, uid: u32, gid: u32) -> Result<()> {
    use nix::fcntl::AtFlags;
    use nix::sys::statfs::{fstatfs, TMPFS_MAGIC};
    let fd = match crate::sys::open_path_nofollow(p) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", p.to_string_lossy())),
    };
    if fstatfs(&fd)?.filesystem_type() != TMPFS_MAGIC {
        return Ok(());
    }
    nix::unistd::fchownat(
        Some(std::os::fd::AsRawFd::as_raw_fd(&fd)),
        "",
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        AtFlags::AT_EMPTY_PATH,
    )
    .with_context(|| {
        format!(
            "cannot give the private tmpfs {} to uid {uid}",
            p.to_string_lossy()
        )
    })
}
