//! The file tool's system calls ([`crate::run::file`]): opening a path inside the sandbox without
//! magic links, and whether this process was started with more privilege than its caller; and a
//! copy in the kernel at an explicit offset (the CA bundle of bound secrets).

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

/// Copy `count` bytes of `from`, starting at `*offset` (advanced by what was copied; `from`'s
/// own file position is neither used nor moved), to `to` in the kernel (sendfile(2)). Returns
/// how many were copied: 0 at the end of `from`.
pub fn sendfile_at(
    to: BorrowedFd<'_>,
    from: BorrowedFd<'_>,
    offset: &mut i64,
    count: usize,
) -> io::Result<usize> {
    let mut off: libc::off_t = *offset;
    // SAFETY: both fds are borrowed open for the call; `off` is a valid off_t the kernel
    // reads and updates; no memory of this process is written.
    let n = unsafe { libc::sendfile(to.as_raw_fd(), from.as_raw_fd(), &mut off, count) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    *offset = off;
    Ok(n as usize)
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
