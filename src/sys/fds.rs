//! File descriptors: opening without following links, ownership of inherited fds, closing and
//! arranging them before exec, passing them over unix sockets.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::check;

/// Open `path` as an `O_PATH` handle without following any symlink in it, so a mount placed on
/// `/proc/self/fd/N` lands exactly where the policy said, not where an attacker's link points.
pub fn open_path_nofollow(path: &CStr) -> io::Result<OwnedFd> {
    openat2_nofollow(path, libc::O_PATH | libc::O_CLOEXEC)
}

/// `openat2(AT_FDCWD, path, flags, RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)` (nix's wrapper),
/// owned.
fn openat2_nofollow(path: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
    let how = OpenHow::new()
        .flags(OFlag::from_bits_retain(flags))
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = nix::fcntl::openat2(libc::AT_FDCWD, path, how)?;
    // SAFETY: the kernel just returned this new fd; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `openat(dir, name, flags | O_NOFOLLOW | O_CLOEXEC, mode)`, owned: the last component is never
/// a followed symlink.
pub fn openat_nofollow(
    dir: &OwnedFd,
    name: &CStr,
    flags: nix::fcntl::OFlag,
    mode: u32,
) -> io::Result<OwnedFd> {
    use nix::fcntl::OFlag;
    let fd = nix::fcntl::openat(
        Some(dir.as_raw_fd()),
        name,
        flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::from_bits_truncate(mode),
    )?;
    // SAFETY: the kernel just returned this new fd; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Open the directory at `path` for reading (`O_DIRECTORY`), refusing any symlink on the way.
pub fn open_dir_nofollow(path: &CStr) -> io::Result<OwnedFd> {
    openat2_nofollow(path, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC)
}

/// The value of extended attribute `name` of `fd`; `None` when it has none (`ENODATA`).
pub fn fgetxattr(fd: &OwnedFd, name: &CStr) -> io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: `buf` is valid for `buf.len()` bytes of writes; the kernel writes at most that many.
    let n = unsafe {
        libc::fgetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENODATA) => Ok(None),
            _ => Err(e),
        };
    }
    buf.truncate(n as usize);
    Ok(Some(buf))
}

/// Set extended attribute `name` of `fd` to `value`.
pub fn fsetxattr(fd: &OwnedFd, name: &CStr, value: &[u8]) -> io::Result<()> {
    // SAFETY: `value` is valid for `value.len()` bytes of reads; `name` is NUL-terminated.
    let r = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    check(r as libc::c_long).map(drop)
}

/// Open the program at `path` (a canonical path: no symlink in it) as an `O_PATH | O_CLOEXEC`
/// handle, refusing any symlink or magic link on the way: the handle names exactly the file the
/// exec checks looked at, and the target executes it through [`super::execveat_fd`].
pub fn open_program(path: &CStr) -> io::Result<OwnedFd> {
    openat2_nofollow(path, libc::O_PATH | libc::O_CLOEXEC)
}

/// This process's own executable, as an `O_PATH | O_CLOEXEC` handle (through the magic link
/// `/proc/self/exe`: the file that runs, even if its path now names another).
pub fn open_self_exe() -> io::Result<OwnedFd> {
    let fd = nix::fcntl::open(
        c"/proc/self/exe",
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    // SAFETY: the kernel just returned this new fd; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A close-on-exec duplicate of `fd` numbered `min` or above, owned.
pub fn dup_cloexec_above(fd: RawFd, min: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC only creates a new descriptor; `fd` is not consumed.
    let ret = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this new fd; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(ret) })
}

/// A borrowed handle of `fd`, which the caller keeps open as long as the handle lives (an fd it
/// holds until exec).
pub fn borrow_raw<'a>(fd: RawFd) -> std::os::fd::BorrowedFd<'a> {
    // SAFETY: the caller holds `fd` open for the whole life of the returned handle.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}

/// One `write(2)` of `bytes` to a raw fd (which may be closed: EBADF), allocating nothing.
pub fn write_raw(fd: RawFd, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: `bytes` is valid for `bytes.len()` bytes of reads; the kernel checks the fd.
    let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// The magic-link path of an fd, for syscalls that only take paths (`mount`).
pub fn fd_path(fd: &OwnedFd) -> CString {
    CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("no NUL in a number")
}

/// Close (or, with `cloexec`, mark close-on-exec) every fd from `first` up, except those in
/// `keep` (sorted ascending).
pub fn close_fds_from(first: RawFd, keep: &[RawFd], cloexec: bool) -> io::Result<()> {
    let flags = if cloexec {
        libc::CLOSE_RANGE_CLOEXEC as libc::c_int
    } else {
        0
    };
    let mut lo = first as libc::c_uint;
    for &k in keep.iter().filter(|&&k| k >= first) {
        let k = k as libc::c_uint;
        if k > lo {
            close_range(lo, k - 1, flags)?;
        }
        lo = k + 1;
    }
    close_range(lo, libc::c_uint::MAX, flags)
}

fn close_range(lo: libc::c_uint, hi: libc::c_uint, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: close_range only closes (or flags) descriptors. Callers run it just before exec (or
    // in a freshly forked sandbox process), where nothing in this process uses the fds in range
    // again; any Rust owner of one is never dropped, as the process execs or _exits.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, lo, hi, flags as libc::c_uint) };
    check(ret).map(drop)
}

/// Close every fd from 3 up except `keep` (sorted ascending), at the start of a launch, right
/// after [`claim_named_fds`]: the fds closed are those the caller left open, which nothing in
/// sbx-exec owns (the named ones are in `keep`).
pub fn close_inherited_fds(keep: &[RawFd]) -> io::Result<()> {
    close_fds_from(3, keep, false)
}

/// A close-on-exec duplicate of `fd`, owned.
pub fn dup_cloexec(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC only creates a new descriptor; `fd` is not consumed.
    let ret = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this new fd; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(ret) })
}

/// Place `fds` on 3, 4, ... in order, without close-on-exec (for the LISTEN_FDS protocol and
/// `--keep-fd`), allocating nothing (it runs between fork and exec). They are first copied above
/// every number involved, so that no dup2 clobbers one still to be moved; every other fd is
/// closed by the caller afterwards. `keep` (the program's handle, the set-up error pipe: all above
/// the destinations) are neither moved nor overwritten: the copies go above them too.
pub fn arrange_fds(fds: &[RawFd], keep: &[RawFd]) -> io::Result<()> {
    let n = fds.len() as RawFd;
    let top = keep.iter().copied().max().unwrap_or(0);
    let base = fds.iter().copied().max().unwrap_or(0).max(2 + n).max(top) + 1;
    for (i, &fd) in fds.iter().enumerate() {
        // SAFETY: dup3 only makes `base + i` a close-on-exec copy of `fd`. Nothing this process
        // still needs lives there: `base` is above every source fd, every destination and `keep`,
        // and the process is about to exec, keeping only 0-2, the destinations and `keep`.
        if unsafe { libc::dup3(fd, base + i as RawFd, libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    for i in 0..n {
        // SAFETY: dup2 onto 3+i replaces whatever was there (this process is about to exec and
        // keeps nothing else on those numbers); the new fd has no close-on-exec flag.
        if unsafe { libc::dup2(base + i, 3 + i) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `base + i` is the copy made above, owned by nothing else.
        unsafe { libc::close(base + i) };
    }
    Ok(())
}

/// What a kept fd is (fstat, SO_ACCEPTCONN, getsockname).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FdFacts {
    pub is_socket: bool,
    /// A listening stream socket (SO_ACCEPTCONN).
    pub listening: bool,
    /// The bound port of an IPv4 or IPv6 socket.
    pub port: Option<u16>,
}

/// What a kept fd is: a socket? listening? bound to which IPv4/IPv6 port?
pub fn fd_facts(fd: &OwnedFd) -> FdFacts {
    use nix::sys::socket::{getsockname, getsockopt, sockopt, SockaddrLike, SockaddrStorage};
    use nix::sys::stat::{fstat, SFlag};
    let is_socket = fstat(fd.as_raw_fd())
        .is_ok_and(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFSOCK);
    if !is_socket {
        return Default::default();
    }
    let listening = getsockopt(fd, sockopt::AcceptConn).unwrap_or(false);
    let port = getsockname::<SockaddrStorage>(fd.as_raw_fd())
        .ok()
        .and_then(|a| match a.family() {
            Some(nix::sys::socket::AddressFamily::Inet) => a.as_sockaddr_in().map(|a| a.port()),
            Some(nix::sys::socket::AddressFamily::Inet6) => a.as_sockaddr_in6().map(|a| a.port()),
            _ => None,
        });
    FdFacts {
        is_socket,
        listening,
        port,
    }
}

/// Take ownership of an fd inherited from the caller (`None` if it is not open or is stdio).
///
/// # Safety
/// Nothing in this process may own `fd` already (no `OwnedFd`, `File` or other handle of
/// sbx-exec's own may have that number), or two owners would close it.
unsafe fn take_inherited_fd(fd: RawFd) -> Option<OwnedFd> {
    if fd < 3 || nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).is_err() {
        return None;
    }
    // SAFETY: the fd is open (checked above) and, by this function's contract, owned by nothing
    // else in this process.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Take ownership of an fd a parent placed on a known number for this process (the egress gate's
/// and its dialer's fds, placed by the launcher before the exec): `None` when it is not open (a
/// process started by hand) or when this number was already taken here (each at most once).
pub fn claim_placed_fd(fd: RawFd) -> Option<OwnedFd> {
    use std::collections::BTreeSet;
    use std::sync::Mutex;
    static TAKEN: Mutex<BTreeSet<RawFd>> = Mutex::new(BTreeSet::new());
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    if taken.contains(&fd) {
        return None;
    }
    // SAFETY: the placed fds are the process's from its exec, and each number is taken once
    // (TAKEN): the OwnedFd made here is the only owner of its fd.
    let owned = unsafe { take_inherited_fd(fd) }?;
    taken.insert(fd);
    Some(owned)
}

/// Take over the fds named on the command line (`--secrets-fd`, `--status-fd`, `--keep-fd`,
/// `--listen-fd`), once per
/// process, as the first thing a launch does: `None` for a name that is not an open fd ≥ 3.
/// Two options naming the same fd are refused.
pub fn claim_named_fds(fds: &[RawFd]) -> Result<Vec<Option<OwnedFd>>, String> {
    use std::sync::atomic::{AtomicBool, Ordering};
    static CLAIMED: AtomicBool = AtomicBool::new(false);
    for (i, fd) in fds.iter().enumerate() {
        if fds[..i].contains(fd) {
            return Err(format!(
                "file descriptor {fd} is named twice (--secrets-fd, --status-fd and the kept fds must differ)"
            ));
        }
    }
    if CLAIMED.swap(true, Ordering::SeqCst) {
        return Err("the named file descriptors were already taken over".into());
    }
    // SAFETY: called once per process (CLAIMED), before a launch opens any fd of its own that it
    // keeps: the only fds >= 3 open now are inherited from the caller, and the numbers are
    // distinct (checked above), so each OwnedFd made here is the only owner of its fd.
    Ok(fds
        .iter()
        .map(|&fd| unsafe { take_inherited_fd(fd) })
        .collect())
}

/// `chdir` to the absolute `path` resolved inside this process's root directory
/// (`openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` from `/`, then `fchdir`): no `..` or
/// symlink climbs out of the root, and no magic link such as `/proc/PID/root` leads into another
/// mount namespace. Then the runc CVE-2024-21626 check: the new directory must be reachable from
/// the root (`getcwd` answers with a path). Allocation-free: runs between fork and exec.
pub fn chdir_in_root(path: &CStr) -> io::Result<()> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let root = nix::fcntl::open(c"/", flags, nix::sys::stat::Mode::empty())?;
    // SAFETY: the kernel just returned this new fd; this OwnedFd is its only owner.
    let root = unsafe { OwnedFd::from_raw_fd(root) };
    let bytes = path.to_bytes_with_nul();
    let skip = bytes.iter().take_while(|&&b| b == b'/').count();
    let rel = match CStr::from_bytes_with_nul(&bytes[skip..]) {
        Ok(r) if !r.is_empty() => r,
        _ => c".",
    };
    let how = OpenHow::new()
        .flags(flags)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let dir = nix::fcntl::openat2(root.as_raw_fd(), rel, how)?;
    // SAFETY: the kernel just returned this new fd; this OwnedFd is its only owner.
    let dir = unsafe { OwnedFd::from_raw_fd(dir) };
    nix::unistd::fchdir(dir.as_raw_fd())?;
    let mut buf = [0u8; 4096];
    // SAFETY: `buf` is valid for `buf.len()` bytes of writes; getcwd writes at most that many.
    let got = unsafe { libc::getcwd(buf.as_mut_ptr().cast(), buf.len()) };
    if got.is_null() || buf[0] != b'/' {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "the directory is not reachable from the context's root",
        ));
    }
    Ok(())
}

/// Write `bytes` to the file at `path` (opened write-only, close-on-exec, not following a final
/// symlink), in one `write`. Allocation-free: safe between fork and exec.
pub fn write_path(path: &CStr, bytes: &[u8]) -> io::Result<()> {
    let flags = libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW;
    // SAFETY: `path` is a valid NUL-terminated string; open only reads it.
    let fd = unsafe { libc::open(path.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this new fd; this OwnedFd is its only owner and closes it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let n = nix::unistd::write(&fd, bytes)?;
    if n != bytes.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short write"));
    }
    Ok(())
}

/// Open `path` for reading without following any symlink in it (setuid mode reads the system
/// policy this way, so a link cannot point it at another file).
pub fn open_read_nofollow(path: &CStr) -> io::Result<OwnedFd> {
    openat2_nofollow(
        path,
        libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NOFOLLOW,
    )
}

/// Own `fd`, just returned by a system call that makes a new fd (`accept4`).
pub fn own_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: the caller passes an fd the kernel has just made for this process and nothing
    // else refers to, so it is owned here exactly once.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Send `fds` (with one byte of data) over the unix socket `sock` (`SCM_RIGHTS`).
pub fn send_fds(sock: RawFd, fds: &[RawFd]) -> io::Result<()> {
    send_msg(sock, &[1u8], fds)
}

/// Send `data` (not empty) and `fds` in one message over the unix socket `sock`.
pub fn send_msg(sock: RawFd, data: &[u8], fds: &[RawFd]) -> io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    // No unsafe: nix builds the control message (its buffer sized by CMSG_SPACE) itself.
    let iov = [io::IoSlice::new(data)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsg: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
    sendmsg::<()>(sock, &iov, cmsg, MsgFlags::MSG_NOSIGNAL, None)?;
    Ok(())
}

/// Receive up to `max` fds sent by [`send_fds`] (close-on-exec, owned); end of file (the peer
/// closed without sending) is an error of kind `UnexpectedEof`.
pub fn recv_fds(sock: RawFd, max: usize) -> io::Result<Vec<OwnedFd>> {
    recv_msg(sock, &mut [0u8; 1], max).map(|(_, fds)| fds)
}

/// Receive one message into `data` (its length returned) with up to `max` fds ([`send_msg`]);
/// end of file is an error of kind `UnexpectedEof`.
pub fn recv_msg(sock: RawFd, data: &mut [u8], max: usize) -> io::Result<(usize, Vec<OwnedFd>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut iov = [io::IoSliceMut::new(data)];
    // Room for as many as the kernel sends in one message (SCM_MAX_FD); more than `max` are
    // closed. (The sandbox's network hands out 4 + one per captured port.)
    let mut space = nix::cmsg_space!([RawFd; 253]);
    let max = max.min(253);
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)?;
    let n = msg.bytes;
    if n == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let mut out = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for fd in fds {
                // SAFETY: the kernel just installed `fd` in this process for this message
                // (SCM_RIGHTS); nothing else refers to it, so it is owned here exactly once.
                let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                if out.len() < max {
                    out.push(owned);
                }
            }
        }
    }
    Ok((n, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::IntoRawFd;

    #[test]
    fn named_fds_are_claimed_once_and_never_twice() {
        assert!(claim_named_fds(&[5, 5])
            .unwrap_err()
            .contains("named twice"));
        let (r, w) = nix::unistd::pipe().unwrap();
        // Released by the test, so the claim below is its only owner.
        let (r, w) = (r.into_raw_fd(), w.into_raw_fd());
        let got = claim_named_fds(&[r, w, 1, 999]).unwrap();
        assert!(got[0].is_some() && got[1].is_some());
        assert!(got[2].is_none(), "stdio is never taken");
        assert!(got[3].is_none(), "a closed fd is None");
        assert!(claim_named_fds(&[r]).unwrap_err().contains("already"));
    }
}
