//! Waiting and forwarding: the sandbox's pid 1 (reaps every zombie, forwards signals to the
//! target, exits with the target's status) and the outer process (forwards signals to the sandbox,
//! enforces the timeout, reports the status).
//!
//! Both block the signals they forward before the sandbox exists and take them with
//! `sigtimedwait`, so none is lost between start-up and the loop, and no handler code runs.

use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::sys;

/// Signals passed on to the target.
pub const FORWARDED: &[Signal] = &[
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// The forwarded signals plus SIGCHLD: the set blocked while sbx-exec waits.
pub fn blocked_set() -> SigSet {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(*s);
    }
    set.add(Signal::SIGCHLD);
    set
}

/// The exit status a shell would report for `status` (128+N for a signal).
pub fn shell_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

/// Pid 1 of the sandbox: wait for `target`, reaping every other child, forwarding signals to it.
/// Exits with the target's status when it ends (the kernel then kills whatever is left).
pub fn pid1(target: Pid) -> ! {
    let set = blocked_set();
    loop {
        match sys::wait_signal(&set, None) {
            Ok(Some(Signal::SIGCHLD)) | Err(_) => {}
            Ok(Some(sig)) => {
                let _ = kill(target, sig);
                continue;
            }
            Ok(None) => continue,
        }
        if let Some(code) = reap(Some(target)) {
            sys::exit_now(code);
        }
    }
}

/// Reap every child that has ended (the target, and orphans re-parented to this process). Returns
/// the shell status of `target` if it was among them.
pub fn reap(target: Option<Pid>) -> Option<i32> {
    let mut found = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return found,
            Ok(status) if target.is_some() && status.pid() == target => {
                found = shell_code(status).or(found);
            }
            Ok(_) | Err(_) => {}
        }
    }
}

/// What the outer process saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The sandbox ended with this shell status.
    Exited(i32),
    /// The context's timeout ran out and the sandbox was killed.
    TimedOut,
}

/// How long the target gets after SIGTERM on timeout before everything is killed.
pub const TIMEOUT_GRACE: Duration = Duration::from_secs(5);

/// The outer process: forward signals to `child` until it ends; on `timeout`, SIGTERM it, then
/// SIGKILL after [`TIMEOUT_GRACE`]. With `on_io`, SIGIO (blocked by the caller) is taken too and
/// calls it: the egress proxy starts on its first connection ([`crate::run::net::Running`]).
pub fn supervise(
    child: Pid,
    timeout: Option<Duration>,
    mut on_io: Option<&mut dyn FnMut()>,
) -> Outcome {
    let mut set = blocked_set();
    if on_io.is_some() {
        set.add(Signal::SIGIO);
    }
    let start = Instant::now();
    let mut deadline = timeout.map(|t| start + t);
    let mut timed_out = false;
    loop {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        match sys::wait_signal(&set, left) {
            Ok(None) => {
                // Deadline reached: first a polite SIGTERM, then SIGKILL.
                if timed_out {
                    let _ = kill(child, Signal::SIGKILL);
                    deadline = None;
                } else {
                    timed_out = true;
                    let _ = kill(child, Signal::SIGTERM);
                    deadline = Some(Instant::now() + TIMEOUT_GRACE);
                }
                continue;
            }
            Ok(Some(Signal::SIGCHLD)) | Err(_) => {}
            Ok(Some(Signal::SIGIO)) => {
                if let Some(f) = on_io.as_mut() {
                    f();
                }
                continue;
            }
            Ok(Some(sig)) => {
                let _ = kill(child, sig);
                continue;
            }
        }
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(status) => {
                if let Some(code) = shell_code(status) {
                    return if timed_out {
                        Outcome::TimedOut
                    } else {
                        Outcome::Exited(code)
                    };
                }
            }
            Err(Errno::ECHILD) => return Outcome::Exited(crate::error::EXIT_SBX),
            Err(_) => {}
        }
    }
}

/// The exit status sbx-exec reports for `outcome`: the command's, or 124 after the policy's
/// timeout, said on stderr (`note` adds what happens to background processes).
pub fn exit_code(
    ctx_name: &str,
    timeout: Option<u64>,
    outcome: Outcome,
    limit: TimeoutSource,
    note: &str,
) -> i32 {
    match outcome {
        Outcome::Exited(code) => code,
        Outcome::TimedOut => {
            let source = match limit {
                TimeoutSource::Call => "--timeout",
                TimeoutSource::Policy => "timeout in the policy",
            };
            eprintln!(
                "sbx-exec: context {ctx_name:?} timed out after {}s; the command was stopped ({source}{note})",
                timeout.unwrap_or(0)
            );
            crate::error::EXIT_TIMEOUT
        }
    }
}

/// Where a call's timeout came from, for the message when it runs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutSource {
    /// `--timeout`
    Call,
    /// The context's `timeout`
    Policy,
}
