//! The filesystem view of a context: a plan built from the policy before any process is created
//! (pure data, unit-tested), then applied by the sandbox's pid 1 inside its private mount namespace.
//!
//! Every path is opened with `openat2(RESOLVE_NO_SYMLINKS)` and mounted through its
//! `/proc/self/fd/N` handle, so a symlink planted in a path cannot redirect a mount.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{anyhow, bail, Context as _, Result};
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{fstat, SFlag};

use crate::policy::FsPolicy;
use crate::sys::{self, MountFlag};

/// One mount operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Stop mount events from propagating back to the host (`mount --make-rprivate /`).
    MakePrivate,
    /// Make `path` and everything below it read-only.
    ReadOnly(CString),
    /// Make `path` and everything below it writable again (skipped when missing).
    Writable(CString),
    /// Mount a fresh tmpfs (nosuid, nodev) with this mode (skipped when missing).
    Tmpfs(CString, u32),
    /// Hide: a directory becomes an empty read-only tmpfs, a file is covered by `/dev/null`.
    Hide(CString),
    /// Mount a fresh procfs on /proc (needs the pid namespace) and mask it like Docker does.
    PrivateProc,
}

/// The ordered mount operations for one launch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// Setuid mode: the caller's uid/gid, given the private (mode 0755) tmpfs mounts such as HOME.
    pub tmpfs_owner: Option<(u32, u32)>,
}

fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("policy paths contain no NUL")
}

/// Build the plan: private propagation, the policy's read-only, writable, tmpfs and hidden paths,
/// `protect` (the sbx-exec binary and the policy file: always read-only), then a private /proc.
pub fn plan(fs: &FsPolicy, protect: &[&Path], private_proc: bool) -> Plan {
    let mut steps = vec![Step::MakePrivate];
    steps.extend(fs.read_only.iter().map(|p| Step::ReadOnly(c(p.as_path()))));
    steps.extend(fs.writable.iter().map(|p| Step::Writable(c(p.as_path()))));
    steps.extend(fs.tmpfs.iter().map(|p| {
        let mode = if p.0 == "/tmp" || p.0 == "/var/tmp" || p.0 == "/dev/shm" {
            0o1777
        } else {
            0o755
        };
        Step::Tmpfs(c(p.as_path()), mode)
    }));
    steps.extend(fs.hide.iter().map(|p| Step::Hide(c(p.as_path()))));
    steps.extend(protect.iter().map(|p| Step::ReadOnly(c(p))));
    if private_proc {
        steps.push(Step::PrivateProc);
    }
    Plan {
        steps,
        tmpfs_owner: None,
    }
}

/// Apply the plan in this (new, private) mount namespace. Stops at the first failure unless
/// `degrade`, in which case failures are reported on stderr and skipped.
pub fn apply(plan: &Plan, degrade: bool) -> Result<()> {
    // Under degrade a failed step is skipped, so what the plan says is not what was done.
    let sys_read_only = !degrade && crate::procfs::sys_already_read_only(&plan.steps);
    for step in &plan.steps {
        let done = apply_step(step, sys_read_only);
        if let (Ok(()), Step::Tmpfs(p, 0o755), Some((uid, gid))) = (&done, step, plan.tmpfs_owner) {
            crate::privilege::give_new_tmpfs(p, uid, gid)?;
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

fn apply_step(step: &Step, sys_read_only: bool) -> Result<()> {
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
            Some(fd) => set_flag_on_bind(p, fd, MountFlag::Writable)
                .with_context(|| format!("cannot make {} writable", show(p))),
        },
        Step::Tmpfs(p, mode) => match open(p)? {
            None => Ok(()),
            Some(fd) => tmpfs(&fd, *mode, MsFlags::empty())
                .with_context(|| format!("cannot mount a private tmpfs on {}", show(p))),
        },
        Step::Hide(p) => match open(p)? {
            None => Ok(()),
            Some(fd) => hide(&fd).with_context(|| format!("cannot hide {}", show(p))),
        },
        Step::PrivateProc => crate::procfs::mount_private(sys_read_only),
    }
}

pub(crate) fn show(p: &CStr) -> String {
    p.to_string_lossy().into_owned()
}

/// Open a path without following symlinks; `None` when it does not exist.
pub(crate) fn open(p: &CStr) -> Result<Option<OwnedFd>> {
    match sys::open_path_nofollow(p) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => bail!(
            "{} is or goes through a symbolic link; sbx-exec mounts only real paths (give the link's target instead, in the context's [fs] paths or to --policy)",
            show(p)
        ),
        Err(e) => Err(anyhow!(e)).with_context(|| format!("cannot open {}", show(p))),
    }
}

/// Make `p` (if it exists) and everything below it read-only, as its own bind mount.
pub(crate) fn read_only(p: &CStr) -> Result<()> {
    let Some(fd) = open(p)? else { return Ok(()) };
    if p.to_bytes() == b"/" {
        // The root mount itself: a bind on top of "/" would not be seen through the process root.
        return sys::mount_setattr(&fd, MountFlag::ReadOnly).map_err(Into::into);
    }
    set_flag_on_bind(p, fd, MountFlag::ReadOnly)
}

/// Bind `p` onto itself (so the change affects only this subtree) and set `flag` recursively.
fn set_flag_on_bind(p: &CStr, fd: OwnedFd, flag: MountFlag) -> Result<()> {
    let at = sys::fd_path(&fd);
    mount(
        Some(at.as_c_str()),
        at.as_c_str(),
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .context("bind mount")?;
    drop(fd);
    // Reopen: the handle must name the new bind mount, not the one underneath it.
    let fd = open(p)?.ok_or_else(|| anyhow!("{} vanished during setup", show(p)))?;
    sys::mount_setattr(&fd, flag).context("mount_setattr")
}

pub(crate) fn tmpfs(fd: &OwnedFd, mode: u32, extra: MsFlags) -> io::Result<()> {
    let at = sys::fd_path(fd);
    let data = CString::new(format!("mode={mode:o},size=50%")).expect("no NUL");
    mount(
        Some(c"tmpfs"),
        at.as_c_str(),
        Some(c"tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | extra,
        Some(data.as_c_str()),
    )
    .map_err(io::Error::from)
}

/// Cover a directory with an empty read-only tmpfs, or a file with `/dev/null`.
pub(crate) fn hide(fd: &OwnedFd) -> Result<()> {
    let st = fstat(fd.as_raw_fd())?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
        tmpfs(fd, 0o755, MsFlags::MS_RDONLY | MsFlags::MS_NOEXEC)?;
        return Ok(());
    }
    let null = dev_null()?;
    let src = sys::fd_path(&null);
    let at = sys::fd_path(fd);
    mount(
        Some(src.as_c_str()),
        at.as_c_str(),
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .context("bind /dev/null")?;
    Ok(())
}

/// `/dev/null`, checked to really be the null device (not a file or link planted in its place).
fn dev_null() -> Result<OwnedFd> {
    let fd = open(c"/dev/null")?.context("/dev/null does not exist")?;
    let st = fstat(fd.as_raw_fd())?;
    let is_chr = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR;
    if !is_chr || st.st_rdev != libc::makedev(1, 3) {
        bail!(
            "/dev/null is not the null device (mode {:o}); refusing to use it as a mask",
            st.st_mode
        );
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::AbsPath;

    fn paths(v: &[&str]) -> Vec<AbsPath> {
        v.iter().map(|s| AbsPath(s.to_string())).collect()
    }

    #[test]
    fn plan_orders_steps_and_protects_launcher() {
        let fs = FsPolicy {
            read_only: paths(&["/"]),
            writable: paths(&["/workspace"]),
            tmpfs: paths(&["/tmp", "/root"]),
            hide: paths(&["/run/sbx"]),
        };
        let p = plan(&fs, &[Path::new("/usr/bin/sbx-exec")], true);
        assert_eq!(
            p.steps,
            vec![
                Step::MakePrivate,
                Step::ReadOnly(c"/".into()),
                Step::Writable(c"/workspace".into()),
                Step::Tmpfs(c"/tmp".into(), 0o1777),
                Step::Tmpfs(c"/root".into(), 0o755),
                Step::Hide(c"/run/sbx".into()),
                Step::ReadOnly(c"/usr/bin/sbx-exec".into()),
                Step::PrivateProc,
            ]
        );
    }

    #[test]
    fn no_proc_without_pid_namespace() {
        let p = plan(&FsPolicy::default(), &[], false);
        assert_eq!(p.steps, vec![Step::MakePrivate]);
    }
}
