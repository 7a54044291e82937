//! A private /sys (`fs.sys = "private"`): the container's /sys is another channel to the trusted
//! side. It shows the container's network interfaces and their counters, and /sys/fs/cgroup holds
//! the counters of every cgroup: the control plane's, the container's, every other call's. So pid 1
//! mounts a fresh sysfs, read-only, over it. A fresh sysfs belongs to the network namespace of
//! the process that mounts it, which is the sandbox's own here, and has nothing mounted on
//! /sys/fs/cgroup (nor on /sys/kernel/security or /sys/kernel/debug).
//!
//! Runtimes that size themselves from their cgroup limits (the JVM, Node, Go) look for them at the
//! paths /proc/self/cgroup names. So the call's own cgroup directories are shown, read-only, at
//! those paths: handles on them are taken while the host's /sys is still in view, and they are bound
//! into a read-only tmpfs on the new /sys/fs/cgroup.

use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;

use anyhow::{anyhow, Context as _, Result};
use nix::mount::{mount, MsFlags};

use super::fs::{bind, open, show, tmpfs};
use crate::sys::{self, MountFlag};

/// Mount the private /sys, showing `cgroups` (host paths below /sys/fs/cgroup) in it.
pub fn mount_private(cgroups: &[CString]) -> Result<()> {
    // Before the new sysfs covers them. A directory that is missing, or reached through a link
    // (v1's cpu -> cpu,cpuacct), is not shown: its limits are still enforced, only not readable.
    let shown: Vec<(&CString, OwnedFd)> = cgroups
        .iter()
        .filter_map(|dir| open(dir).ok().flatten().map(|fd| (dir, fd)))
        .collect();
    let sys_dir = open(c"/sys")?.ok_or_else(|| anyhow!("/sys does not exist"))?;
    let at = sys::fd_path(&sys_dir);
    // Read-only as a mount, at the end, not as a superblock: a sysfs of a network namespace that
    // already has one (net = "host") shares its superblock, which is writable.
    let mounted = mount(
        Some(c"sysfs"),
        at.as_c_str(),
        Some(c"sysfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    );
    let mounted = match mounted {
        // The kernel refuses a superblock on the very mount point where it already is: /sys is
        // already this network namespace's sysfs. The same, without what is mounted below it.
        Err(nix::errno::Errno::EBUSY) => bind(&sys_dir, &sys_dir),
        other => other.map_err(Into::into),
    };
    mounted.context("cannot mount a private /sys (fs.sys = \"private\"): the container runtime must allow mounting sysfs (as for the private /proc), or set fs.sys = \"host\"")?;
    drop(sys_dir);
    if !shown.is_empty() {
        let root = open(c"/sys/fs/cgroup")?
            .ok_or_else(|| anyhow!("the new /sys has no /sys/fs/cgroup"))?;
        tmpfs(&root, 0o755, MsFlags::MS_NOEXEC)
            .context("cannot mount a tmpfs on /sys/fs/cgroup")?;
        drop(root);
        for (dir, fd) in shown {
            show_one(dir, &fd).with_context(|| format!("cannot show cgroup {}", show(dir)))?;
        }
    }
    let sys_dir = open(c"/sys")?.ok_or_else(|| anyhow!("/sys vanished"))?;
    sys::mount_setattr(&sys_dir, MountFlag::ReadOnly).context("cannot make /sys read-only")
}

/// Make `dir`'s path in the new tmpfs (nothing else runs in the sandbox yet) and bind the host
/// directory `fd` there.
fn show_one(dir: &CString, fd: &OwnedFd) -> Result<()> {
    let path = std::path::Path::new(std::ffi::OsStr::from_bytes(dir.as_bytes()));
    std::fs::create_dir_all(path).context("mkdir")?;
    let at = open(dir)?.ok_or_else(|| anyhow!("{} vanished", show(dir)))?;
    bind(fd, &at)
}

/// Whether a private /sys can be mounted here (for `probe`), in new mount and network namespaces.
pub fn can_mount_private(userns: Option<&crate::privilege::userns::IdMap>) -> bool {
    super::fs::can_mount(libc::CLONE_NEWNET, userns, || mount_private(&[]))
}
