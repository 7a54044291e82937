//! Persistent contexts (`persist = true`): the first call starts a keeper, pid 1 of the context's
//! namespaces, that stays; every later call joins those namespaces through a pidfd, so processes
//! started by one call are seen and signalled by the next (`startProcess`, then `ps`, `kill`).
//!
//! ```text
//! first call:  sbx-exec ─fork─> helper ─clone(NEW*)─> keeper (pid 1: mounts, /proc, reaps)
//!                 │               └ exits at once, so the keeper is nobody's zombie
//!                 ├ waits for "ready", records the keeper in /run/sbx/NAME.state
//!                 └ net = "private" with allow/publish: starts the net helper (proxy, forwarders)
//!                   outside the context's network namespace, records it too (nethelper.rs)
//! every call:  sbx-exec ─fork─> joiner ─setns(pidfd, PID|NS|IPC|UTS[|NET])─fork─> target ─> exec
//!                                  └ relays signals and the exit status (invisible in the context)
//! ```
//! The outer sbx-exec never enters the sandbox's namespaces. The joiner, still in the outer pid
//! namespace (so nothing in the context can see or signal it), enters every namespace of the
//! context at once and only then forks the target: the first process of a call that the context
//! can see is already inside its mount namespace, so `/proc/PID/root` of it leads nowhere outside
//! (the freeze-and-swap escape: code in the context stopping a joining call that was still in the
//! container's mount namespace, and steering a later call's working directory through it). The
//! target enters its working directory after dropping its capabilities, resolved inside the
//! context's root without magic links (`Target::cwd_in_root`), then execs like any launch. The
//! keeper is identified by pid, start time and pid-namespace inode, re-checked after
//! `pidfd_open`, so a recycled pid or a dead keeper is never joined.

pub mod ctl;
pub mod keeper;
pub mod lifecycle;
pub mod live;
pub mod netctl;
pub mod nethelper;
pub mod nssock;
pub mod state;

pub use ctl::{list, stop};
pub use live::net;

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

use anyhow::Result;
use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::unistd::ForkResult;

use crate::error::EXIT_SBX;
use crate::model::Context;
use crate::plan::launch::{Sandbox, Target};
use crate::plan::namespaces;
use crate::run::apply::cgroup;
use crate::run::reaper;
use crate::run::status::{children_cpu_ms, started_json, End, Reason, SetupErrors};
use crate::sys;
use keeper::Keeper;

/// One call of a persistent context: what it reports to.
pub struct Call<'a> {
    pub ctx_name: &'a str,
    pub ctx: &'a Context,
    /// Writes a status record.
    pub report: &'a dyn Fn(&str),
    /// Where the joiner and the target say why they gave up before the command ran.
    pub errors: SetupErrors,
    pub limit: reaper::TimeoutSource,
    /// The call's timeout in seconds.
    pub timeout: Option<u64>,
    /// The context's `[limits]`, carried out when a keeper is started.
    pub cgroup: &'a crate::plan::cgroup::Decision,
}

/// A persistent launch: find or start the keeper, join it, run the command, report its status.
/// `egress_log`: where a new keeper's net helper logs its proxy's events (the audit log).
pub fn run(
    call: Call,
    sandbox: &Sandbox,
    target: Target,
    egress_log: Option<crate::run::audit::EgressLog>,
) -> Result<i32> {
    let (ctx_name, report, limit, timeout) = (call.ctx_name, call.report, call.limit, call.timeout);
    let mut errors = call.errors;
    let started = std::time::Instant::now();
    let keeper = keeper::ensure_keeper(ctx_name, call.ctx, sandbox, call.cgroup, egress_log)?;
    let join_flags = CloneFlags::from_bits_truncate(namespaces::flags(&sandbox.kinds));
    let (alive_r, alive_w) = pipe()?;
    // `identity`: the joiner says the target's pid, so this process (which sees it in /proc) can
    // map the target's user namespace; the handshake's pipes go through the joiner to the target.
    let (pid_r, pid_w) = pipe()?;
    let handshake = match target.identity {
        Some(_) => Some(crate::run::apply::identity::Handshake::new()?),
        None => None,
    };
    let forked = sys::fork().map_err(|e| {
        anyhow::anyhow!("cannot fork the command: {}", crate::error::errno_cause(e))
    })?;
    let child = match forked {
        ForkResult::Child => {
            drop(alive_w);
            drop(pid_r);
            let tell = target.identity.is_some().then_some(pid_w);
            let ends = handshake.as_ref().map(|h| h.target_ends());
            let links = crate::run::confine::Links {
                handshake: ends,
                parent_alive: None,
                errors: errors.write_fd(),
            };
            joiner(ctx_name, &keeper, join_flags, alive_r, tell, &target, links)
        }
        ForkResult::Parent { child } => child,
    };
    drop(alive_r);
    drop(pid_w);
    errors.close_write();
    map_joined(&target, handshake, pid_r)?;
    report(&started_json(child.as_raw()));
    // The context's cgroup counts every call: this call's share is the difference.
    let version = crate::plan::host::cgroup::detect().version;
    let counted = || cgroup::stats_of(&cgroup::Host, version, &keeper.state.cgroups);
    let before = counted();
    let limit_s = timeout.filter(|t| *t > 0).map(Duration::from_secs);
    let outcome = reaper::supervise(child, limit_s, None);
    let code = reaper::exit_code(
        ctx_name,
        timeout,
        outcome,
        limit,
        "; processes it started in the background keep running",
    );
    drop(alive_w);
    let context_ended = (code > 128)
        .then(|| ended_under(ctx_name, &keeper))
        .flatten();
    let after = counted();
    let end = End {
        code,
        timed_out: outcome == reaper::Outcome::TimedOut,
        oom_kills: after.oom_kills.saturating_sub(before.oom_kills),
        pids_refused: after.pids_refused.saturating_sub(before.pids_refused),
        wall_ms: started.elapsed().as_millis() as u64,
        cpu_ms: children_cpu_ms(),
        // The context's peak, not this call's: left out.
        peak_memory: None,
        context_ended,
    };
    report(&errors.end_json(&end));
    Ok(code)
}

/// A pipe, close-on-exec.
fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| anyhow::anyhow!("cannot make a pipe: {}", crate::error::errno_cause(e)))
}

/// `identity`: the joiner says the target's pid on `pid_r`, and this process (which sees it in
/// /proc, root in the parent namespace) maps the target's user namespace over the handshake.
fn map_joined(
    target: &Target,
    handshake: Option<crate::run::apply::identity::Handshake>,
    pid_r: OwnedFd,
) -> Result<()> {
    if let (Some(m), Some(h)) = (&target.identity, handshake) {
        let ends = h.parent();
        let mut buf = [0u8; 4];
        if nix::unistd::read(pid_r.as_raw_fd(), &mut buf).unwrap_or(0) == 4 {
            let pid = nix::unistd::Pid::from_raw(i32::from_ne_bytes(buf));
            crate::run::apply::identity::map_child(pid, &m.range, ends, false)?;
        }
    }
    Ok(())
}

/// Did the context end under this call (its command died by a signal)? Stopped if the state says
/// `stopping` or is gone while the keeper exits; the keeper died if it exits while its state still
/// says `running`. Says so on stderr.
fn ended_under(ctx_name: &str, keeper: &Keeper) -> Option<Reason> {
    let exiting = lifecycle::exiting(&keeper.pidfd, keeper.state.pid);
    let dir = std::path::Path::new(state::RUNTIME_DIR);
    let now = state::read(dir, ctx_name).ok().flatten();
    let same = now.as_ref().filter(|s| s.pid == keeper.state.pid);
    let reason = match same {
        Some(s) if s.phase == state::Phase::Stopping => Reason::Stopped,
        Some(_) if exiting => Reason::KeeperDied,
        None if exiting => Reason::Stopped,
        _ => return None,
    };
    match reason {
        Reason::Stopped => eprintln!(
            "sbx-exec: context {ctx_name:?} was stopped (ctx stop) while this command ran"
        ),
        _ => eprintln!(
            "sbx-exec: the keeper of context {ctx_name:?} died while this command ran (it was killed; \
             everything in the context ended with it); the next call starts a new one"
        ),
    }
    Some(reason)
}

/// Enter the namespaces `flags` of context `ctx_name` in one `setns`: through the keeper's
/// pidfd; where that needs a capability the container does not give (CAP_SYS_PTRACE: EPERM),
/// through the namespaces the keeper hands out ([`nssock`]).
fn enter_namespaces(ctx_name: &str, keeper: &Keeper, flags: CloneFlags) -> Result<(), String> {
    match nix::sched::setns(keeper.pidfd.as_fd(), flags) {
        Err(nix::errno::Errno::EPERM) => state::dir(false)
            .ok()
            .flatten()
            .ok_or_else(|| anyhow::anyhow!("no runtime directory"))
            .and_then(|dir| nssock::fetch(&dir, ctx_name))
            .and_then(|fds| nssock::enter(&fds, flags).map_err(anyhow::Error::from))
            .map_err(|e| format!("{e:#}")),
        other => other.map_err(|e| e.to_string()),
    }
}

/// The joiner: die with sbx-exec, enter the context's cgroups and, in one `setns`, all its
/// namespaces (the pid namespace for its children), then fork the target and relay signals and
/// its exit status; with `tell`, write the target's pid there (for `identity`'s maps). Never
/// returns.
fn joiner(
    ctx_name: &str,
    keeper: &Keeper,
    flags: CloneFlags,
    alive: OwnedFd,
    tell: Option<OwnedFd>,
    target: &Target,
    links: crate::run::confine::Links,
) -> ! {
    let fail = |what: &str, e: &dyn std::fmt::Display| -> ! {
        let msg = format!("{what}: {e}");
        eprintln!("sbx-exec: {msg}");
        crate::run::status::tell_setup_error(links.errors, &msg);
        sys::exit_now(EXIT_SBX)
    };
    match sys::die_with_parent(alive.as_fd()) {
        Ok(true) => drop(alive),
        Ok(false) => sys::exit_now(EXIT_SBX),
        Err(e) => fail("cannot set the parent-death signal", &e),
    }
    if let Err(e) = cgroup::join(&keeper.cgroup_procs) {
        fail("cannot enter the context's cgroup", &e);
    }
    // Best effort, as in a one-shot sandbox's pid 1.
    let _ = cgroup::set_oom_score_adj(cgroup::CONFINED_OOM_SCORE_ADJ);
    if let Err(e) = enter_namespaces(ctx_name, keeper, flags) {
        fail(
            &format!("cannot join the namespaces of context {ctx_name:?}"),
            &e,
        );
    }
    // The target dies with the joiner; if the joiner is already gone when that is set up (its
    // copy of this pipe closed), the target stops there.
    let (up_r, up_w) = match nix::unistd::pipe2(OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => fail("cannot make a pipe", &e),
    };
    match sys::fork() {
        Ok(ForkResult::Child) => {
            drop(up_w);
            match sys::die_with_parent(up_r.as_fd()) {
                Ok(true) => {}
                Ok(false) => sys::exit_now(EXIT_SBX),
                Err(e) => fail("cannot set the parent-death signal", &e),
            }
            // The joiner's pipe stays open in the target until its exec: after its last change
            // of ids (which clears the parent-death signal) it arms the signal again and looks.
            target.exec_with(crate::run::confine::Links {
                parent_alive: Some(std::os::fd::IntoRawFd::into_raw_fd(up_r)),
                ..links
            })
        }
        Ok(ForkResult::Parent { child }) => {
            drop(up_r);
            // up_w stays open in the joiner until it exits.
            std::mem::forget(up_w);
            // The target's ends of the identity handshake are the target's alone: if it dies
            // before it speaks, the launcher sees end of file.
            for fd in links.handshake.into_iter().flat_map(|(r, g)| [r, g]) {
                let _ = nix::unistd::close(fd);
            }
            if let Some(tell) = tell {
                let _ = nix::unistd::write(&tell, &child.as_raw().to_ne_bytes());
            }
            reaper::pid1(child)
        }
        Err(e) => fail("cannot fork the command", &e),
    }
}
