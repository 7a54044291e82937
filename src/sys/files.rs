//! The file tool's system calls ([`crate::run::file`]): opening a path inside the sandbox without
//! magic links, and whether this process was started with more privilege than its caller.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `openat2(dir or AT_FDCWD, path, flags | O_CLOEXEC, mode, RESOLVE_NO_MAGICLINKS)`, owned:
/// ordinary symbolic links are followed as `open` would (the last one only without
/// `O_NOFOLLOW`), a magic link (`/proc/PID/fd/N`, `/proc/PID/root`, ...) never. On a kernel
/// without `openat2` (before 5.6), plain `openat` with the same flags.
pub fn open_beneath_magic(
    dir: Option<BorrowedFd<'_>>,
    path: &CStr,
    flags: libc::c_int,
    mode: u32,
) -> io::Result<OwnedFd> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
    let dirfd = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    let flags = flags | libc::O_CLOEXEC;
    // openat2 refuses a mode without O_CREAT (EINVAL).
    let mode = if flags & libc::O_CREAT != 0 { mode } else { 0 };
    let how = OpenHow::new()
        .flags(OFlag::from_bits_retain(flags))
        .mode(nix::sys::stat::Mode::from_bits_truncate(mode))
        .resolve(ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = match nix::fcntl::openat2(dirfd, path, how) {
        Err(nix::errno::Errno::ENOSYS) => nix::fcntl::openat(
            Some(dirfd),
            path,
            OFlag::from_bits_retain(flags),
            nix::sys::stat::Mode::from_bits_truncate(mode),
        )?,
        r => r?,
    };
    // SAFETY: the kernel just returned this new fd; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Was this program started with privileges its caller does not have (a setuid or setgid bit,
/// file capabilities: the kernel's `AT_SECURE`)?
pub fn started_secure() -> bool {
    // SAFETY: getauxval only reads the auxiliary vector the kernel gave this process.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_links_are_refused_and_plain_paths_open() {
        let dev_null = std::fs::File::open("/dev/null").unwrap();
        let magic = std::ffi::CString::new(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&dev_null)
        ))
        .unwrap();
        let e = open_beneath_magic(None, &magic, libc::O_RDONLY, 0).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{e}");
        assert!(open_beneath_magic(None, c"/dev/null", libc::O_RDONLY, 0).is_ok());
        assert!(!started_secure());
    }
}
