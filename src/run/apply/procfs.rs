//! A private /proc for a context with its own PID namespace, masked the way Docker masks it.
//!
//! A fresh procfs shows only the context's processes, but it also brings back what the container
//! runtime had hidden: `/proc/kcore`, `/proc/sysrq-trigger`, a writable `/proc/sys` (where root
//! could set `kernel/core_pattern`, a classic escape). Those masks are re-applied here, and `/sys`
//! is made read-only so cgroup and device files cannot be written or created (unless the plan has
//! already made it so: see [`crate::plan::mounts::sys_already_read_only`]).

use std::ffi::CStr;

use anyhow::{anyhow, Context as _, Result};
use nix::mount::{mount, MsFlags};

use super::fs::{hide, open, read_only, show};
use crate::sys;

/// Covered with `/dev/null` (files) or an empty read-only tmpfs (directories).
pub const MASKED: &[&CStr] = &[
    c"/proc/kcore",
    c"/proc/keys",
    c"/proc/key-users",
    c"/proc/timer_list",
    c"/proc/timer_stats",
    c"/proc/sched_debug",
    c"/proc/latency_stats",
    c"/proc/kmsg",
    c"/proc/acpi",
    c"/proc/asound",
    c"/proc/scsi",
    c"/proc/driver",
    c"/sys/firmware",
    c"/sys/devices/virtual/powercap",
    c"/sys/kernel/security",
    c"/sys/kernel/debug",
];

/// Made read-only (recursively).
pub const READ_ONLY: &[&CStr] = &[
    c"/proc/sysrq-trigger",
    c"/proc/sys",
    c"/proc/bus",
    c"/proc/irq",
    c"/proc/fs",
    c"/proc/sysvipc",
    c"/sys",
];

/// In a fresh sysfs (`fs.sys = "private"`) these are empty directories, where the host mounts
/// securityfs and debugfs: nothing to mask.
const EMPTY_IN_PRIVATE_SYS: &[&CStr] = &[c"/sys/kernel/security", c"/sys/kernel/debug"];

/// Mount a fresh procfs on /proc, then apply the masks. With `sys_read_only` (from
/// [`crate::plan::mounts::sys_already_read_only`]) /sys is left as it is; with `private_sys` (a
/// fresh sysfs is on /sys) its empty mount points are not masked.
pub fn mount_private(sys_read_only: bool, private_sys: bool) -> Result<()> {
    let proc_dir = open(c"/proc")?.ok_or_else(|| anyhow!("/proc does not exist"))?;
    let at = sys::fd_path(&proc_dir);
    mount(
        Some(c"proc"),
        at.as_c_str(),
        Some(c"proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .context("cannot mount a private /proc for the context's pid namespace: the container runtime must allow mounting proc (e.g. docker --cap-add SYS_ADMIN --security-opt apparmor=unconfined), or remove \"pid\" from the context's namespaces")?;
    drop(proc_dir);
    for path in READ_ONLY {
        if sys_read_only && path.to_bytes() == b"/sys" {
            continue;
        }
        // Paths absent here (/sys in minimal containers) are skipped: nothing to protect.
        read_only(path).with_context(|| format!("cannot make {} read-only", show(path)))?;
    }
    for path in MASKED {
        if private_sys && EMPTY_IN_PRIVATE_SYS.contains(path) {
            continue;
        }
        let Some(fd) = open(path)? else { continue };
        hide(&fd).with_context(|| format!("cannot mask {}", show(path)))?;
    }
    Ok(())
}
