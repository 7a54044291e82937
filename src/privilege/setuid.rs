//! The setuid stages that touch the process: reset what the caller controls (stage 1), close its
//! fds (2), load the trusted policy (3), look paths up as the caller (5), drop to the caller for
//! good (6, with [`super::drop`]) and enter its directory as it.

use std::ffi::OsString;
use std::os::fd::RawFd;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{bail, Context as _, Result};
use nix::unistd::{Gid, Uid};

use super::Mode;
use crate::model;

static CALLER_ENV: OnceLock<Vec<(OsString, OsString)>> = OnceLock::new();

/// Stage 1 of setuid mode: reset what the caller controls before anything else runs.
pub fn enter_setuid_mode() -> Result<()> {
    use nix::sys::resource::{setrlimit, Resource};
    use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};
    // Nobody may ptrace this process or read its memory while it holds privilege (the kernel
    // already makes a setuid exec non-dumpable; say it explicitly, it never changes back).
    nix::sys::prctl::set_dumpable(false).context("cannot make sbx-exec non-dumpable")?;
    // Fds 0, 1 and 2 are already open: `sys::startup`, before `main` calls anything else.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    // No core file of a process holding privilege or secrets, in it or in anything it starts.
    setrlimit(Resource::RLIMIT_CORE, 0, 0).context("cannot disable core dumps")?;
    crate::sys::reset_signal_dispositions();
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .context("cannot reset the signal mask")?;
    // The caller's variables leave the process: nothing here (libc, Rust's runtime, a panic
    // message) may read RUST_BACKTRACE, TMPDIR or the like; the allowlist reads the copy.
    let env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    crate::sys::clear_environment();
    let _ = CALLER_ENV.set(env);
    Ok(())
}

/// The stack sbx-exec needs, at least: the soft RLIMIT_STACK is raised to this (and the hard
/// limit with it, which root may do) when the caller set less.
pub const STACK_FLOOR: u64 = 8 << 20;
/// Below this stack limit (when it cannot be raised) sbx-exec refuses to run.
const STACK_MIN: u64 = 1 << 20;

/// Raise a caller's RLIMIT_STACK below [`STACK_FLOOR`] to it, first thing in `main`: a tiny limit
/// would make sbx-exec die of SIGSEGV on its first deep call instead of refusing with 125. The main
/// thread's stack grows on demand up to the current limit, so this takes effect at once. Root
/// (setuid root too) raises the hard limit with it; anyone else up to the hard limit.
pub fn raise_stack_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_STACK) else {
        return;
    };
    if soft >= STACK_FLOOR {
        return;
    }
    if setrlimit(Resource::RLIMIT_STACK, STACK_FLOOR, hard.max(STACK_FLOOR)).is_err() {
        // Without CAP_SYS_RESOURCE (a container's bounding set may lack it) only up to the hard
        // limit; below a working minimum, refuse with 125 using next to no stack.
        let _ = setrlimit(Resource::RLIMIT_STACK, STACK_FLOOR.min(hard), hard);
        if hard < STACK_MIN {
            use std::io::Write;
            let _ = std::io::stderr().write_all(
                b"sbx-exec: the stack size limit (RLIMIT_STACK, ulimit -s) is below 1 MiB and cannot be raised; \
                  raise it (ulimit -s 8192) and try again\n",
            );
            crate::sys::exit_now(crate::error::EXIT_SBX);
        }
    }
}

/// The caller's environment, for the context's allowlist only.
pub fn caller_env() -> Vec<(OsString, OsString)> {
    match CALLER_ENV.get() {
        Some(env) => env.clone(),
        None => std::env::vars_os().collect(),
    }
}

/// Stage 2 of setuid mode: close every fd the caller left open but 0, 1, 2 and those named.
pub fn close_caller_fds(named: &[RawFd]) -> Result<()> {
    let mut keep: Vec<RawFd> = named.iter().copied().filter(|&fd| fd > 2).collect();
    keep.sort_unstable();
    keep.dedup();
    crate::sys::close_fds_from(3, &keep, false).context("cannot close inherited file descriptors")
}

/// Stage 3: the effective policy. In setuid mode only the system policy (checked) or the embedded
/// default; `--policy` is refused.
pub fn load_policy(mode: &Mode, flag: Option<&Path>) -> Result<model::Loaded> {
    match (mode, flag) {
        (Mode::Setuid { caller }, Some(file)) => bail!(
            "--policy {} is refused: sbx-exec runs setuid root for uid {}, and then only the system policy ({}) or the embedded default applies; \
             ask root to install the policy as {}, or run without --policy",
            file.display(),
            caller.uid,
            model::SYSTEM_POLICY,
            model::SYSTEM_POLICY
        ),
        (Mode::Setuid { .. }, None) => {
            crate::privilege::system_policy::load_trusted(Path::new(model::SYSTEM_POLICY))
        }
        _ => model::load(flag),
    }
}

/// Stage 5: run `f` with the caller's filesystem uid/gid (its groups are already the process's),
/// so path lookups the caller asked for are answered with the caller's access, not root's.
pub fn as_caller<T>(mode: &Mode, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let Some(caller) = mode.caller() else {
        return f();
    };
    use nix::unistd::{setfsgid, setfsuid};
    setfsgid(Gid::from_raw(caller.gid));
    setfsuid(Uid::from_raw(caller.uid));
    // setfsuid returns the previous value: asking again tells whether the switch took.
    let switched = setfsuid(Uid::from_raw(caller.uid)).as_raw() == caller.uid
        && setfsgid(Gid::from_raw(caller.gid)).as_raw() == caller.gid;
    let out = if switched {
        f()
    } else {
        Err(anyhow::anyhow!(
            "cannot take the caller's filesystem identity"
        ))
    };
    setfsuid(nix::unistd::geteuid());
    setfsgid(nix::unistd::getegid());
    out
}
