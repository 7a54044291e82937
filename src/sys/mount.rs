//! `mount_setattr(2)`: per-mount flags, recursively.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use super::check;

const MOUNT_ATTR_RDONLY: u64 = 0x1;

const MOUNT_ATTR_NOSUID: u64 = 0x2;

const MOUNT_ATTR_NODEV: u64 = 0x4;

const MOUNT_ATTR_NOEXEC: u64 = 0x8;

const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Which per-mount flags to set or clear with [`mount_setattr`].
#[derive(Debug, Clone, Copy)]
pub enum MountFlag {
    ReadOnly,
    /// Writable, where a setuid bit or a device node means nothing (a shared work area).
    WritableNoSuidNoDev,
    /// No setuid bit and no program runs from here (a device node bound into a private /dev).
    NoSuidNoExec,
    /// Nothing on it can be executed or mapped executable.
    NoExec,
    /// Symlinks on it are not followed (a link planted there cannot redirect a write).
    NoSymFollow,
}

/// `mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE)`: change the flags of the mount at `fd`
/// and every mount below it, in this mount namespace only.
pub fn mount_setattr(fd: &OwnedFd, flag: MountFlag) -> io::Result<()> {
    let (attr_set, attr_clr) = match flag {
        MountFlag::ReadOnly => (MOUNT_ATTR_RDONLY, 0),
        MountFlag::WritableNoSuidNoDev => (MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, MOUNT_ATTR_RDONLY),
        MountFlag::NoSuidNoExec => (MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, 0),
        MountFlag::NoExec => (MOUNT_ATTR_NOEXEC, 0),
        MountFlag::NoSymFollow => (MOUNT_ATTR_NOSYMFOLLOW, 0),
    };
    let attr = MountAttr {
        attr_set,
        attr_clr,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: fd is open, the empty path is a valid C string, and `attr` is a valid mount_attr
    // whose size is passed; the kernel only reads it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    check(ret).map(drop)
}
