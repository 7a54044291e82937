//! A private /proc for a context with its own PID namespace, masked the way Docker masks it.
//!
//! A fresh procfs shows only the context's processes, but it also brings back what the container
//! runtime had hidden: `/proc/kcore`, `/proc/sysrq-trigger`, a writable `/proc/sys` (where root
//! could set `kernel/core_pattern`, a classic escape). Those masks are re-applied here, and `/sys`
//! is made read-only so cgroup and device files cannot be written or created (unless the plan has
//! already made it so: see [`sys_already_read_only`]).

use std::ffi::CStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{anyhow, Context as _, Result};
use nix::mount::{mount, MsFlags};

use crate::mounts::{hide, open, read_only, show, Step};
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

/// Whether the mount steps before the private /proc already leave `/sys` and every mount below it
/// read-only: "/" was made read-only recursively (which covers /sys and its submounts) and no
/// later step made writable, or mounted a tmpfs on, /sys, a path below it or "/" again. Binding
/// /sys onto itself a second time would then only copy its ~15 mounts for nothing.
///
/// Only valid when every step succeeded, i.e. not under `degrade` (which skips failed steps).
pub fn sys_already_read_only(steps: &[Step]) -> bool {
    let sys = Path::new("/sys");
    let touches_sys = |p: &CStr| {
        let p = Path::new(std::ffi::OsStr::from_bytes(p.to_bytes()));
        p.starts_with(sys) || sys.starts_with(p)
    };
    let mut read_only = false;
    for step in steps {
        match step {
            Step::ReadOnly(p) if p.to_bytes() == b"/" => read_only = true,
            Step::ReadOnly(_) | Step::MakePrivate => {}
            Step::Writable(p) | Step::Tmpfs(p, _) | Step::Hide(p) if touches_sys(p) => {
                read_only = false
            }
            Step::Writable(_) | Step::Tmpfs(..) | Step::Hide(_) => {}
            Step::PrivateProc => break,
        }
    }
    read_only
}

/// Mount a fresh procfs on /proc, then apply the masks. With `sys_read_only` (from
/// [`sys_already_read_only`]) /sys is left as it is.
pub fn mount_private(sys_read_only: bool) -> Result<()> {
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
        let Some(fd) = open(path)? else { continue };
        hide(&fd).with_context(|| format!("cannot mask {}", show(path)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mounts::{plan, Step};
    use crate::policy::{AbsPath, FsPolicy};

    fn fs(read_only: &[&str], writable: &[&str], tmpfs: &[&str]) -> FsPolicy {
        let v = |l: &[&str]| l.iter().map(|s| AbsPath(s.to_string())).collect();
        FsPolicy {
            read_only: v(read_only),
            writable: v(writable),
            tmpfs: v(tmpfs),
            hide: v(&["/run/sbx"]),
        }
    }

    #[test]
    fn sys_is_skipped_only_under_a_read_only_root() {
        let protect = [Path::new("/usr/bin/sbx-exec")];
        // The user context: / read-only, work areas writable, scratch tmpfs elsewhere.
        let user = fs(
            &["/"],
            &["/workspace", "/home"],
            &["/tmp", "/root", "/dev/shm"],
        );
        assert!(sys_already_read_only(&plan(&user, &protect, true).steps));
        // The platform context: / stays writable, so /sys must be remounted.
        let platform = fs(&[], &[], &["/root"]);
        assert!(!sys_already_read_only(
            &plan(&platform, &protect, true).steps
        ));
        // Read-only parts that do not cover /sys do not count.
        let usr = fs(&["/usr", "/sysroot"], &[], &[]);
        assert!(!sys_already_read_only(&plan(&usr, &protect, true).steps));
    }

    #[test]
    fn anything_reopening_sys_keeps_the_remount() {
        for (writable, tmpfs) in [
            (&["/sys"][..], &[][..]),
            (&["/sys/fs/cgroup"], &[]),
            (&["/"], &[]),
            (&[], &["/sys/kernel"]),
        ] {
            let p = plan(&fs(&["/"], writable, tmpfs), &[], true);
            assert!(!sys_already_read_only(&p.steps), "{writable:?} {tmpfs:?}");
        }
        // A sibling that merely starts with the same letters is not below /sys.
        let p = plan(&fs(&["/"], &["/sysroot"], &["/system"]), &[], true);
        assert!(sys_already_read_only(&p.steps));
    }

    #[test]
    fn a_read_only_root_after_proc_does_not_count() {
        let steps = [
            Step::MakePrivate,
            Step::PrivateProc,
            Step::ReadOnly(c"/".into()),
        ];
        assert!(!sys_already_read_only(&steps));
    }
}
