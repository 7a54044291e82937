//! Raw system calls that `nix` does not wrap (or wraps in a way that allocates), each in one small
//! function with a `// SAFETY:` note. Everything `unsafe` in sbx-exec lives in this file.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::signal::{SigSet, Signal};
use nix::unistd::Pid;

fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `clone(flags | SIGCHLD)` without a new stack: like `fork`, but the child starts in the new
/// namespaces `flags` asks for. Returns `None` in the child.
pub fn clone_fork(flags: libc::c_int) -> io::Result<Option<Pid>> {
    // SAFETY: with a NULL stack the child runs on a copy of the parent's stack exactly as after
    // fork(2). sbx-exec is single-threaded when it calls this (no thread is ever spawned), so no
    // lock can be held by a thread that does not exist in the child. The parent-tid/child-tid/tls
    // arguments are unused (0) because CLONE_*SETTID/SETTLS are not in `flags`.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    match check(ret)? {
        0 => Ok(None),
        pid => Ok(Some(Pid::from_raw(pid as i32))),
    }
}

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

/// Open the program at `path` (a canonical path: no symlink in it) as an `O_PATH | O_CLOEXEC`
/// handle, refusing any symlink or magic link on the way: the handle names exactly the file the
/// exec checks looked at, and the target executes it through [`execveat_fd`].
pub fn open_program(path: &CStr) -> io::Result<OwnedFd> {
    openat2_nofollow(path, libc::O_PATH | libc::O_CLOEXEC)
}

/// `execveat(fd, "", argv, envp, AT_EMPTY_PATH)`: execute the file behind `fd` (an `O_PATH`
/// handle), whatever its path names now. Returns only on failure, with the error.
pub fn execveat_fd(
    fd: RawFd,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> io::Error {
    debug_assert!(argv.last().is_some_and(|p| p.is_null()));
    debug_assert!(envp.last().is_some_and(|p| p.is_null()));
    // SAFETY: the empty path is a valid C string; argv and envp are NULL-terminated arrays of
    // pointers to NUL-terminated strings owned by the caller and alive for the call; the kernel
    // only reads them. `fd` is an open descriptor (an invalid one only makes the call fail).
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd,
            c"".as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    io::Error::last_os_error()
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

/// The magic-link path of an fd, for syscalls that only take paths (`mount`).
pub fn fd_path(fd: &OwnedFd) -> CString {
    CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("no NUL in a number")
}

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

/// Does the kernel have seccomp? (`prctl(PR_GET_SECCOMP)`: EINVAL without CONFIG_SECCOMP.) Asked
/// without /proc, so a missing /proc is not taken for a missing seccomp.
pub fn seccomp_supported() -> bool {
    // SAFETY: PR_GET_SECCOMP takes no pointer and only returns this thread's seccomp mode.
    let ret = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) };
    ret >= 0
}

/// Bring the loopback interface up in a fresh network namespace.
pub fn loopback_up() -> io::Result<()> {
    // SAFETY: a plain socket(2) call; the returned fd is owned by the OwnedFd below.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` was just returned by socket(2) and is owned by nothing else.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write `req`, a valid ifreq for the whole call.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Wait for one of `set` (blocked by the caller), at most `timeout` if given. `Ok(None)` on timeout.
pub fn wait_signal(
    set: &SigSet,
    timeout: Option<std::time::Duration>,
) -> io::Result<Option<Signal>> {
    wait_signal_from(set, timeout).map(|got| got.map(|(sig, _)| sig))
}

/// `execve(path, argv, envp)`; returns only on failure, with the error.
pub fn execve(
    path: &CStr,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> io::Error {
    debug_assert!(argv.last().is_some_and(|p| p.is_null()));
    debug_assert!(envp.last().is_some_and(|p| p.is_null()));
    // SAFETY: path is NUL-terminated; argv and envp are NULL-terminated arrays of pointers to
    // NUL-terminated strings owned by the caller, alive for the call.
    unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    io::Error::last_os_error()
}

/// Leave immediately, without running destructors or flushing stdio: for a forked child whose
/// copy of the parent's state must not be torn down twice.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is async-signal-safe and never returns.
    unsafe { libc::_exit(code) }
}

/// `fork()`, for sbx-exec's single-threaded processes.
pub fn fork() -> nix::Result<nix::unistd::ForkResult> {
    // SAFETY: sbx-exec never starts a thread, so the child cannot inherit a lock held by another
    // thread; the child only sets itself up and execs or exits.
    unsafe { nix::unistd::fork() }
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

/// The Landlock ABI version of the running kernel, or 0 without Landlock.
pub fn landlock_abi() -> i32 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a NULL attribute pointer, size 0 and the VERSION flag the kernel only returns
    // a number; nothing is read or written.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if ret < 0 {
        0
    } else {
        ret as i32
    }
}

/// Place `fds` on 3, 4, ... in order, without close-on-exec (for the LISTEN_FDS protocol and
/// `--keep-fd`), allocating nothing (it runs between fork and exec). They are first copied above
/// every number involved, so that no dup2 clobbers one still to be moved; every other fd is
/// closed by the caller afterwards. `keep` (the program's handle) is neither moved nor
/// overwritten: the copies go above it too.
pub fn arrange_fds(fds: &[RawFd], keep: RawFd) -> io::Result<()> {
    let n = fds.len() as RawFd;
    let base = fds.iter().copied().max().unwrap_or(0).max(2 + n).max(keep) + 1;
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

/// Reset `sig` to its default action (Rust ignores SIGPIPE; a target must not inherit that).
pub fn signal_default(sig: Signal) -> nix::Result<()> {
    // SAFETY: SIG_DFL is not a Rust function, so no handler code can run with broken invariants.
    unsafe { nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigDfl) }.map(drop)
}

/// Set `sig` to `handler` (SIG_IGN, SIG_DFL or a handler returned earlier by this function);
/// returns the previous one. Only dispositions, never Rust handler code, so nothing unsafe can run.
pub fn set_signal_handler(
    sig: Signal,
    handler: nix::sys::signal::SigHandler,
) -> nix::Result<nix::sys::signal::SigHandler> {
    // SAFETY: `handler` is SIG_IGN, SIG_DFL or a previous disposition of this process given back.
    unsafe { nix::sys::signal::signal(sig, handler) }
}

/// 64 random bits from the kernel (`getrandom(2)`), or `None` if it cannot give them now.
pub fn random_u64() -> Option<u64> {
    let mut buf = [0u8; 8];
    // SAFETY: `buf` is valid for 8 bytes of writes for the whole call.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), libc::GRND_NONBLOCK) };
    (n == 8).then(|| u64::from_ne_bytes(buf))
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

/// `pidfd_open(pid, 0)`: a handle on exactly this process, immune to pid reuse from now on.
pub fn pidfd_open(pid: Pid) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and only returns a new fd (or an error).
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0 as libc::c_uint) };
    let fd = check(ret)? as RawFd;
    // SAFETY: the kernel just returned this new fd; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reset every signal's disposition to the default (a setuid caller may have set some to
/// "ignore", which survives exec; SIGCHLD ignored would make children vanish unreaped).
pub fn reset_signal_dispositions() {
    for sig in 1..=libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: sigaction with SIG_DFL installs no handler code; `act` is a valid, zeroed
        // sigaction; numbers the kernel or libc reserve fail with EINVAL, which is ignored.
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = libc::SIG_DFL;
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaction(sig, &act, std::ptr::null_mut());
        }
    }
}

/// Empty this process's environment (setuid mode keeps a private copy of the caller's).
pub fn clear_environment() {
    // SAFETY: called once at start-up, before any thread exists and before anything holds a
    // pointer into environ; clearenv only frees/resets libc's environment array.
    unsafe { libc::clearenv() };
}

/// `pidfd_send_signal(pidfd, sig, NULL, 0)`: signal the process the pidfd refers to (never a
/// process that reused its pid).
pub fn pidfd_send_signal(pidfd: &OwnedFd, sig: Signal) -> io::Result<()> {
    // SAFETY: the fd is open; a NULL siginfo makes the kernel build a plain kill()-style siginfo.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig as libc::c_int,
            std::ptr::null::<libc::siginfo_t>(),
            0 as libc::c_uint,
        )
    };
    check(ret).map(drop)
}

/// Who sent a signal, from its siginfo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sender {
    /// The sender's pid as this process sees it (0 when it is outside this pid namespace).
    pub pid: libc::pid_t,
    /// `si_code`: `SI_USER` for kill/tgkill/pidfd_send_signal, `SI_KERNEL` from the kernel,
    /// negative (`SI_QUEUE`, ...) when the sender wrote the siginfo itself (rt_sigqueueinfo).
    pub code: libc::c_int,
}

impl Sender {
    /// Sent from outside this process's pid namespace by `kill(2)` (the kernel sets `si_pid` 0),
    /// or by the kernel. A siginfo the sender wrote itself (`rt_sigqueueinfo`, any negative
    /// `si_code`) can carry a forged `si_pid` of 0 and never counts.
    pub fn is_outside(&self) -> bool {
        (self.code == libc::SI_USER && self.pid == 0) || self.code == libc::SI_KERNEL
    }
}

/// Like [`wait_signal`], but also returns who sent it ([`Sender`]).
pub fn wait_signal_from(
    set: &SigSet,
    timeout: Option<std::time::Duration>,
) -> io::Result<Option<(Signal, Sender)>> {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs() as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    loop {
        // SAFETY: siginfo_t is plain old data; all-zero is a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid sigset; `info` and `ts` are valid for the whole call.
        let ret = unsafe {
            libc::sigtimedwait(
                set.as_ref(),
                &mut info,
                ts.as_ref()
                    .map_or(std::ptr::null(), |t| t as *const libc::timespec),
            )
        };
        if ret >= 0 {
            // SAFETY: the kernel filled `info` for the signal it returned; si_pid is valid for
            // signals sent by kill/pidfd_send_signal and SIGCHLD, and 0 otherwise.
            let pid = unsafe { info.si_pid() };
            let from = Sender {
                pid,
                code: info.si_code,
            };
            return Ok(Signal::try_from(ret).ok().map(|s| (s, from)));
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) => return Ok(None),
            _ => return Err(err),
        }
    }
}

/// The three capability sets of a thread as bit masks (bit n = capability n).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapSets {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `capget(2)` for this thread: all three sets in one call.
pub fn capget() -> io::Result<CapSets> {
    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: version 3 takes a header and an array of two cap_user_data_t, both valid and
    // writable for the call; the kernel writes at most that.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut hdr as *mut CapHeader,
            data.as_mut_ptr(),
        )
    };
    check(ret)?;
    let join = |f: fn(&CapData) -> u32| u64::from(f(&data[0])) | (u64::from(f(&data[1])) << 32);
    Ok(CapSets {
        effective: join(|d| d.effective),
        permitted: join(|d| d.permitted),
        inheritable: join(|d| d.inheritable),
    })
}

/// `capset(2)` for this thread: all three sets in one call (the kernel also drops from the
/// ambient set whatever is no longer both permitted and inheritable).
pub fn capset(sets: CapSets) -> io::Result<()> {
    let hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let split = |m: u64| [m as u32, (m >> 32) as u32];
    let (e, p, i) = (
        split(sets.effective),
        split(sets.permitted),
        split(sets.inheritable),
    );
    let data = [0, 1].map(|n| CapData {
        effective: e[n],
        permitted: p[n],
        inheritable: i[n],
    });
    // SAFETY: header and the two-element data array are valid for the call; the kernel only
    // reads them.
    let ret = unsafe { libc::syscall(libc::SYS_capset, &hdr as *const CapHeader, data.as_ptr()) };
    check(ret).map(drop)
}

/// `prctl(PR_CAPBSET_DROP, cap)`: remove `cap` from this thread's bounding set (a no-op when it
/// is not in it). EINVAL means the running kernel knows no capability with that number.
pub fn capbset_drop(cap: u32) -> io::Result<()> {
    // SAFETY: PR_CAPBSET_DROP takes a capability number and touches no memory.
    let ret = unsafe {
        libc::prctl(
            libc::PR_CAPBSET_DROP,
            cap as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    check(ret.into()).map(drop)
}

/// Can this process create the namespaces in `flags`? Tried in a throwaway child (a `clone` with
/// those flags) that exits at once.
pub fn can_clone(flags: libc::c_int) -> bool {
    use nix::sys::wait::{waitpid, WaitStatus};
    match clone_fork(flags) {
        Ok(None) => exit_now(0),
        Ok(Some(pid)) => matches!(waitpid(pid, None), Ok(WaitStatus::Exited(_, 0))),
        Err(_) => false,
    }
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

#[cfg(test)]
mod sender_tests {
    use super::Sender;

    #[test]
    fn only_kill_from_outside_or_the_kernel_counts() {
        let s = |pid, code| Sender { pid, code };
        assert!(s(0, libc::SI_USER).is_outside());
        assert!(s(0, libc::SI_KERNEL).is_outside());
        assert!(
            !s(7, libc::SI_USER).is_outside(),
            "a sender inside has a pid"
        );
        assert!(
            !s(0, libc::SI_QUEUE).is_outside(),
            "forged by rt_sigqueueinfo"
        );
        assert!(!s(0, libc::SI_TKILL).is_outside());
        assert!(!s(0, -60).is_outside());
    }
}

/// Send `fds` (with one byte of data) over the unix socket `sock` (`SCM_RIGHTS`).
pub fn send_fds(sock: RawFd, fds: &[RawFd]) -> io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    // No unsafe: nix builds the control message (its buffer sized by CMSG_SPACE) itself.
    let data = [1u8];
    let iov = [io::IoSlice::new(&data)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsg: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
    sendmsg::<()>(sock, &iov, cmsg, MsgFlags::MSG_NOSIGNAL, None)?;
    Ok(())
}

/// Receive up to `max` fds sent by [`send_fds`] (close-on-exec, owned); end of file (the peer
/// closed without sending) is an error of kind `UnexpectedEof`.
pub fn recv_fds(sock: RawFd, max: usize) -> io::Result<Vec<OwnedFd>> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut data = [0u8; 1];
    let mut iov = [io::IoSliceMut::new(&mut data)];
    let mut space = nix::cmsg_space!([RawFd; 8]);
    let max = max.min(8);
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)?;
    if msg.bytes == 0 {
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
    Ok(out)
}
