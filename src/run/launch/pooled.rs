//! A one-shot call in a prepared sandbox ([`crate::run::pool`]): claimed after the output
//! masking started (which must not hold the sandbox's socket), the target forked straight into
//! its namespaces, supervised and reported like any one-shot call; then the sandbox ends.
//!
//! This process enters the sandbox's pid namespace for its next child only, and only in the
//! outer pid namespace can anything see it: the target's parent is outside, as a join's is. The
//! target joins the sandbox's cgroup and enters its other namespaces before its own steps
//! ([`crate::run::confine::TARGET_ORDER`]); its working directory is resolved inside the
//! sandbox's root after its capabilities are cut, as a join's is.

use std::os::fd::{AsFd, IntoRawFd, OwnedFd, RawFd};
use std::time::Instant;

use anyhow::{anyhow, Context as _, Result};
use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::unistd::{ForkResult, Pid};

use super::{kill_started, supervised, OneShot};
use crate::error::EXIT_SBX;
use crate::plan::launch::{Sandbox, Target};
use crate::plan::namespaces;
use crate::run::apply::cgroup;
use crate::run::pool::Claimed;
use crate::run::status::{children_cpu_ms, report};
use crate::sys;

/// Where the pid namespace is among a prepared sandbox's namespaces (nssock's order).
const PID_NS: usize = 3;

/// Claim a prepared sandbox for this call, if it may have one and one is ready.
pub(super) fn claim(call: &OneShot, sandbox: &Sandbox, target: &Target) -> Option<Claimed> {
    let mode = crate::privilege::mode();
    if !crate::run::pool::claimable(mode, call.ctx, sandbox, target) {
        return None;
    }
    let dir = std::path::Path::new(crate::run::persist::state::RUNTIME_DIR);
    let key = crate::run::pool::key(sandbox, call.ctx);
    let claimed = crate::run::pool::claim(dir, call.ctx_name, key)?;
    // A CA with the sandbox exactly when the call's bound secrets need one (else it ends here,
    // unused, and the call builds its own).
    (claimed.ca.is_some() == sandbox.ca().is_some()).then_some(claimed)
}

/// Run the call in `claimed` (output masking, if any, already running: detached here once the
/// target exists).
pub(super) fn masked(
    call: OneShot,
    claimed: Claimed,
    sandbox: &Sandbox,
    target: &mut Target,
    proxying: crate::run::net::Proxying,
    masking: &mut Option<crate::run::masking::Redactor>,
) -> Result<i32> {
    let OneShot {
        ctx_name,
        status,
        mut errors,
        limit,
        timeout,
        ..
    } = call;
    let wall = Instant::now();
    let cpu_before = children_cpu_ms();
    target.cwd_in_root = sandbox.cwd.as_ref().map(|w| w.to_c()).transpose()?;
    // A user namespace made for this sandbox: the target enters it, and makes none of its own.
    if claimed.userns.is_some() {
        target.identity = None;
    }
    let started = start(&claimed, sandbox, target, errors.write_fd());
    errors.close_write();
    if let Some(m) = masking {
        m.detach();
    }
    let Claimed {
        pidfd,
        ctl,
        ns,
        outer,
        cgroup_procs,
        cgroup_dirs,
        ..
    } = claimed;
    // The sandbox's pid 1 and the target hold the namespaces: their teardown happens as pid 1
    // exits, which this call waits for only when something of it is left inside.
    drop((ns, cgroup_procs));
    let child = started?;
    let net = match (&sandbox.net, outer) {
        (Some(plan), Some(outer)) => Some(
            crate::run::net::start_claimed(plan, outer, proxying)
                .inspect_err(|_| kill_started(child))?,
        ),
        _ => None,
    };
    let watch = (ctx_name, status, limit, timeout);
    let (code, mut end) = supervised(watch, child, net, (wall, cpu_before));
    if status.is_some() && !cgroup_dirs.is_empty() {
        let version = crate::plan::host::cgroup::detect().version;
        let s = cgroup::stats_of(&cgroup::Host, version, &cgroup_dirs);
        end.oom_kills = s.oom_kills;
        end.pids_refused = s.pids_refused;
        end.peak_memory = s.peak_memory;
        if let Some(ns) = s.cpu_ns {
            end.cpu_ms = ns / 1_000_000;
        }
    }
    end_sandbox(ctl, &pidfd, &cgroup_dirs);
    if let Some(m) = masking.take() {
        m.wait();
    }
    report(status, &errors.end_json(&end));
    Ok(code)
}

/// The call is done: its socket closed, pid 1 ends, and the kernel kills whatever the command
/// left inside; wait (a few seconds at most) until it has, so nothing of the call outlives it.
/// When the sandbox's cgroup counts its pid 1 alone, nothing of the call is left: no wait.
fn end_sandbox(ctl: OwnedFd, pidfd: &OwnedFd, dirs: &[std::path::PathBuf]) {
    let alone = dirs
        .iter()
        .find_map(|d| std::fs::read_to_string(d.join("pids.current")).ok())
        .is_some_and(|n| n.trim() == "1");
    drop(ctl);
    if alone {
        return;
    }
    let mut fds = [nix::poll::PollFd::new(
        pidfd.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(5000u16)).unwrap_or(0) == 0 {
        eprintln!("sbx-exec: warning: the prepared sandbox's pid 1 did not end within 5 s of the call's end");
    }
}

/// Fork the target into the claimed sandbox: this process enters its pid namespace for the
/// fork only; the child joins the rest ([`child`]). `identity`: its user namespace mapped here.
fn start(c: &Claimed, sandbox: &Sandbox, target: &Target, errors: Option<RawFd>) -> Result<Pid> {
    let flags = CloneFlags::from_bits_truncate(namespaces::flags(&sandbox.kinds));
    let own = std::fs::File::open("/proc/self/ns/pid")
        .context("cannot open this process's pid namespace")?;
    let (alive_r, alive_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("pipe")?;
    let handshake = match target.identity {
        Some(_) => Some(crate::run::apply::identity::Handshake::new()?),
        None => None,
    };
    let pidns = c.ns.get(PID_NS).context("no pid namespace")?;
    nix::sched::setns(pidns, CloneFlags::CLONE_NEWPID)
        .map_err(|e| anyhow!("cannot enter the prepared sandbox's pid namespace: {e}"))?;
    let forked = sys::fork();
    if let Ok(ForkResult::Child) = forked {
        drop(alive_w);
        let ends = handshake.as_ref().map(|h| h.target_ends());
        child(c, flags, alive_r, ends, target, errors);
    }
    // This process's later children (the gate) are born in its own pid namespace again.
    let back = nix::sched::setns(&own, CloneFlags::CLONE_NEWPID);
    let child = match forked {
        Ok(ForkResult::Parent { child }) => child,
        Ok(ForkResult::Child) => sys::exit_now(EXIT_SBX),
        Err(e) => {
            return Err(anyhow!(
                "cannot fork the command: {}",
                crate::error::errno_cause(e)
            ))
        }
    };
    drop(alive_r);
    // alive_w stays open in this process until it exits: the target watches it.
    std::mem::forget(alive_w);
    if let Err(e) = back {
        let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
        return Err(anyhow!(
            "cannot return to sbx-exec's own pid namespace: {e}"
        ));
    }
    if let (Some(m), Some(h)) = (&target.identity, handshake) {
        crate::run::apply::identity::map_child(child, &m.range, h.parent(), false)?;
    }
    Ok(child)
}

/// The target, born in the sandbox's pid namespace: die with this call, join the sandbox's
/// cgroup and its other namespaces, then its own steps and exec. Never returns.
fn child(
    c: &Claimed,
    flags: CloneFlags,
    alive: OwnedFd,
    handshake: Option<(RawFd, RawFd)>,
    target: &Target,
    errors: Option<RawFd>,
) -> ! {
    let fail = |what: &str, e: &dyn std::fmt::Display| -> ! {
        let msg = format!("{what}: {e}");
        eprintln!("sbx-exec: {msg}");
        crate::run::status::tell_setup_error(errors, &msg);
        sys::exit_now(EXIT_SBX)
    };
    match sys::die_with_parent(alive.as_fd()) {
        Ok(true) => {}
        Ok(false) => sys::exit_now(EXIT_SBX),
        Err(e) => fail("cannot set the parent-death signal", &e),
    }
    if let Err(e) = cgroup::join(&c.cgroup_procs) {
        fail("cannot enter the prepared sandbox's cgroup", &e);
    }
    // Best effort, as in a one-shot sandbox's pid 1.
    let _ = cgroup::set_oom_score_adj(cgroup::CONFINED_OOM_SCORE_ADJ);
    let rest = flags - CloneFlags::CLONE_NEWPID;
    if let Err(e) = crate::run::persist::nssock::enter(&c.ns, rest) {
        fail("cannot enter the prepared sandbox's namespaces", &e);
    }
    // `identity`, its user namespace made and mapped ahead: entered last (the others belong to
    // the container's user namespace), then its root.
    if let Some(user) = &c.userns {
        let entered = nix::sched::setns(user, CloneFlags::CLONE_NEWUSER)
            .map_err(anyhow::Error::from)
            .and_then(|()| crate::privilege::userns::become_mapped_root());
        if let Err(e) = entered {
            fail(
                "cannot enter the prepared sandbox's user namespace",
                &format!("{e:#}"),
            );
        }
    }
    target.exec_with(crate::run::confine::Links {
        handshake,
        parent_alive: Some(alive.into_raw_fd()),
        errors,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_pid_namespace_is_where_the_sandbox_hands_it_out() {
        let kinds = crate::run::persist::nssock::KINDS;
        assert_eq!(kinds[super::PID_NS].0, "pid");
    }
}
