//! Raw system calls for the tests that check what a seccomp filter answers: each returns the
//! errno of its call (0 when it succeeded), so `unsafe` stays in `sys`. Tests only; each call
//! is one a filtered thread may or may not be allowed, with arguments that touch nothing else.

use std::ffi::CStr;

fn errno(r: libc::c_long) -> i32 {
    if r < 0 {
        nix::errno::Errno::last_raw()
    } else {
        0
    }
}

/// `openat(AT_FDCWD, path, flags, 0600)`; the fd, if any, is closed at once.
pub fn openat(path: &CStr, flags: libc::c_int) -> i32 {
    // SAFETY: a valid NUL-terminated path; the fd, if any, is closed at once.
    let fd = unsafe { libc::openat(libc::AT_FDCWD, path.as_ptr(), flags, 0o600) };
    if fd >= 0 {
        // SAFETY: the fd just opened, owned here.
        unsafe { libc::close(fd) };
    }
    errno(fd as libc::c_long)
}

/// `openat2(AT_FDCWD, path, {O_RDONLY})`; the fd, if any, is closed at once.
pub fn openat2_read(path: &CStr) -> i32 {
    // struct open_how { flags, mode, resolve }: read-only.
    let how: [u64; 3] = [libc::O_RDONLY as u64, 0, 0];
    // SAFETY: a valid path and open_how, both alive for the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            path.as_ptr(),
            how.as_ptr(),
            std::mem::size_of_val(&how),
        )
    };
    if fd >= 0 {
        // SAFETY: the fd just opened, owned here.
        unsafe { libc::close(fd as libc::c_int) };
    }
    errno(fd)
}

/// This thread's id.
pub fn gettid() -> libc::c_long {
    // SAFETY: no arguments; returns the caller's thread id.
    unsafe { libc::syscall(libc::SYS_gettid) }
}

/// `tgkill(tgid, tid, 0)`: signal 0 only checks that the target exists and may be signalled.
pub fn tgkill(tgid: libc::c_long, tid: libc::c_long) -> i32 {
    // SAFETY: signal 0 is delivered to nobody.
    errno(unsafe { libc::syscall(libc::SYS_tgkill, tgid, tid, 0) })
}

/// `tkill(tid, 0)`.
pub fn tkill(tid: libc::c_long) -> i32 {
    // SAFETY: signal 0 is delivered to nobody.
    errno(unsafe { libc::syscall(libc::SYS_tkill, tid, 0) })
}

/// `kill(pid, 0)`.
pub fn kill(pid: libc::c_long) -> i32 {
    // SAFETY: signal 0 is delivered to nobody.
    errno(unsafe { libc::syscall(libc::SYS_kill, pid, 0) })
}

/// `prctl(PR_GET_DUMPABLE)`'s result: the flag, or -1.
pub fn get_dumpable() -> libc::c_int {
    // SAFETY: PR_GET_DUMPABLE takes no pointer and only reads a flag of this process.
    unsafe { libc::prctl(libc::PR_GET_DUMPABLE) }
}

/// `prctl(PR_GET_DUMPABLE)`.
pub fn get_dumpable_errno() -> i32 {
    errno(get_dumpable() as libc::c_long)
}

/// `prctl(PR_SET_NAME, name)` (at most 16 bytes with the NUL).
pub fn set_name(name: &CStr) -> i32 {
    // SAFETY: a NUL-terminated name, alive for the call; the kernel copies at most 16 bytes.
    errno(unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) } as libc::c_long)
}

/// `prctl(PR_SET_PDEATHSIG, sig)`.
pub fn set_pdeathsig(sig: libc::c_ulong) -> i32 {
    // SAFETY: PR_SET_PDEATHSIG takes a number, no pointer.
    errno(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig) } as libc::c_long)
}
