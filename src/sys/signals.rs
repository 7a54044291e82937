//! Signals: waiting for them synchronously, their dispositions, pidfds, and who sent one.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::signal::{SigSet, Signal};
use nix::unistd::Pid;

use super::check;

/// Wait for one of `set` (blocked by the caller), at most `timeout` if given. `Ok(None)` on timeout.
pub fn wait_signal(
    set: &SigSet,
    timeout: Option<std::time::Duration>,
) -> io::Result<Option<Signal>> {
    wait_signal_from(set, timeout).map(|got| got.map(|(sig, _)| sig))
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

/// Die with the parent: arm the parent-death signal (SIGKILL when the parent exits), then check
/// that the parent is still there. `alive` is the read end of a pipe whose write end only the
/// parent holds open, so a readable `alive` (end of file) means it is gone, perhaps before the
/// signal was armed. `Ok(false)`: gone (a failed `poll` counts as gone: fail closed). The one
/// copy of this for pid 1, a join's joiner and target, and a target after its last change of ids
/// (which clears the signal). Allocation-free: safe between fork and exec.
pub fn die_with_parent(alive: BorrowedFd<'_>) -> io::Result<bool> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
    let mut fds = [PollFd::new(alive, PollFlags::POLLIN)];
    Ok(poll(&mut fds, PollTimeout::ZERO).unwrap_or(1) == 0)
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

/// Ask for SIGIO (to this process) when `fd` turns readable — for a listening socket, when a
/// connection is queued — or stop asking (`on = false`). The caller blocks SIGIO first and takes it
/// with [`wait_signal`]: its default action would end the process.
pub fn notify_on_input(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    if on {
        // SAFETY: F_SETOWN takes an fd and a pid and only changes who the fd's signals go to.
        check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETOWN, libc::getpid()) }.into())?;
    }
    let mut flags = OFlag::from_bits_truncate(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL)?);
    flags.set(OFlag::O_ASYNC, on);
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags))?;
    Ok(())
}

/// The part of Rust's runtime start-up that sbx-exec needs, done by hand (main.rs defines C's
/// `main` and skips the rest of it, which reads /proc/self/maps for a stack guard and installs
/// stack-overflow handlers: a measurable part of every launch). As the runtime does: fds 0, 1
/// and 2 are made open (on /dev/null when the caller closed one, so no file sbx-exec opens lands
/// there and is written as output), and SIGPIPE is ignored (a write to a closed pipe is an EPIPE
/// error to report, not death; the target gets the default back).
pub fn startup() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    loop {
        // SAFETY: `fds` is a valid array of 3 pollfd for the duration of the call.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) };
        if r >= 0 {
            break;
        }
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            // poll itself failed (no memory): check each fd instead.
            _ => {
                for p in &mut fds {
                    // SAFETY: F_GETFD only queries the fd's flags.
                    if unsafe { libc::fcntl(p.fd, libc::F_GETFD) } == -1 {
                        p.revents = libc::POLLNVAL;
                    }
                }
                break;
            }
        }
    }
    for p in fds.iter().filter(|p| p.revents & libc::POLLNVAL != 0) {
        // SAFETY: a NUL-terminated path and plain flags; the result is checked below.
        let got = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        if got != p.fd {
            // Nothing can be reported safely without the standard fds: stop, as Rust's runtime does.
            std::process::abort();
        }
    }
    let _ = set_signal_handler(Signal::SIGPIPE, nix::sys::signal::SigHandler::SigIgn);
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
