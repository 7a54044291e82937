//! Raw system calls that `nix` does not wrap (or wraps in a way that allocates), each in one small
//! function with a `// SAFETY:` note. Everything `unsafe` in sbx-exec lives in this module (this
//! file and its children: `fds`, `files`, `mount`, `signals`, `caps`, and for tests `errno_of`): the
//! crate denies `unsafe_code` everywhere else (`#![deny(unsafe_code)]` in `lib.rs`).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::unistd::Pid;

mod caps;
#[cfg(test)]
pub mod errno_of;
mod fds;
mod files;
mod mount;
pub mod route;
mod signals;

pub use caps::*;
pub use fds::*;
pub use files::*;
pub use mount::*;
pub use signals::*;

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

/// 64 random bits from the kernel (`getrandom(2)`), or `None` if it cannot give them now.
pub fn random_u64() -> Option<u64> {
    let mut buf = [0u8; 8];
    // SAFETY: `buf` is valid for 8 bytes of writes for the whole call.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), libc::GRND_NONBLOCK) };
    (n == 8).then(|| u64::from_ne_bytes(buf))
}

/// Empty this process's environment (setuid mode keeps a private copy of the caller's).
pub fn clear_environment() {
    // SAFETY: called once at start-up, before any thread exists and before anything holds a
    // pointer into environ; clearenv only frees/resets libc's environment array.
    unsafe { libc::clearenv() };
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
