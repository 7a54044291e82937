//! The keeper of a persistent context: found and verified, or started (through a helper, so it is
//! nobody's zombie) with the one sandbox init ([`crate::run::confine::pid1::setup`]), then
//! reaping forever.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use super::lifecycle::{self, now_secs, pidns_inode, proc_stat, verify};
use super::nethelper;
use super::nssock;
use super::state::{self, Phase, State};
use crate::error::EXIT_SBX;
use crate::model::Context;
use crate::plan::cgroup::Decision;
use crate::plan::launch::Sandbox;
use crate::run::apply::cgroup;
use crate::run::audit::EgressLog;
use crate::run::init::Entered;
use crate::run::net::Bridge;
use crate::run::reaper;
use crate::sys;
use std::os::unix::net::UnixListener;

/// How long a first call waits for a new keeper to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A verified, running keeper, and what a target needs to join it.
pub struct Keeper {
    pub state: State,
    pub pidfd: OwnedFd,
    pub cgroup_procs: Vec<OwnedFd>,
}

/// The recorded keeper if it is alive and the same one, else a new one. A call that finds the
/// lock taken and the context `stopping` is refused at once; one that waited while the context
/// was stopped is refused too (a stop sticks while callers are active). Under the lock, a record
/// left `starting` or `stopping` by a call or stop that died is ended first.
pub fn ensure_keeper(
    ctx_name: &str,
    ctx: &Context,
    sandbox: &Sandbox,
    limits: &Decision,
    log: Option<EgressLog>,
) -> Result<Keeper> {
    let dir = state::dir(true)?.context("no runtime directory")?;
    let (_lock, seen) = match state::try_lock(&dir, ctx_name)? {
        Some(lock) => (lock, None),
        None => {
            let seen = state::read(&dir, ctx_name).ok().flatten();
            if seen.as_ref().is_some_and(|s| s.phase == Phase::Stopping) {
                bail!("{}", being_stopped(ctx_name));
            }
            (state::lock(&dir, ctx_name)?, seen)
        }
    };
    let fp = sandbox.fingerprint();
    let recorded = state::read(&dir, ctx_name).map_err(|e| without_record(ctx_name, Some(e)))?;
    if recorded.is_none() && lifecycle::find_keepers().iter().any(|k| k.name == ctx_name) {
        return Err(without_record(ctx_name, None));
    }
    match recorded {
        None if seen.is_some_and(|s| s.phase != Phase::Starting) => bail!(
            "context {ctx_name:?} was stopped (sbx-exec ctx stop) while this call waited for it; nothing was run"
        ),
        None => {}
        Some(state) if state.phase == Phase::Stopping => {
            // The stop that wrote this died (it held the lock): finish it, and refuse.
            lifecycle::end(&dir, ctx_name, &state)?;
            bail!("{}", being_stopped(ctx_name));
        }
        // The first call that wrote this died (it held the lock): end what it left.
        Some(state) if state.phase == Phase::Starting => lifecycle::end(&dir, ctx_name, &state)?,
        Some(state) => match verify(&state)
            .with_context(|| format!("cannot join context {ctx_name:?}"))?
        {
            Some(pidfd) if state.policy == fp => {
                let cgroup_procs = cgroup::open_procs(&state.cgroups)?;
                let mut state = state;
                let keeper = (&pidfd, cgroup_procs.as_slice());
                if let Err(e) = net_again(ctx_name, sandbox, &dir, &mut state, keeper, log) {
                    // The rest of the context still works: the call runs, without egress.
                    eprintln!("sbx-exec: warning: context {ctx_name:?} has no egress proxy and no published ports now: {e:#}");
                }
                return Ok(Keeper {
                    state,
                    pidfd,
                    cgroup_procs,
                });
            }
            Some(_) => bail!(
                "context {ctx_name:?} is running with different namespaces or filesystem settings than this policy gives it \
                 (the policy or the sbx-exec binary changed since its keeper started); stop it with `sbx-exec ctx stop {ctx_name}` and retry"
            ),
            // The keeper died (or its pid was reused): forget it; the kernel already killed
            // everything that was in its pid namespace.
            None => lifecycle::end(&dir, ctx_name, &state)?,
        },
    }
    start_keeper(ctx_name, ctx, (sandbox, limits), &dir, fp, log)
}

/// A running keeper's net helper, checked by a call under the context's lock: one that is gone,
/// or stopped (SIGSTOP: it would hold the ports and answer nothing), is replaced by a new one
/// with the same sockets made again ([`Bridge::reattach`]) and the context's live egress rules
/// (the record's: `sbx-exec ctx net` may have changed the policy's). Connections in flight
/// through the old one are lost; this call and later ones have egress again. `Err`: it could not
/// be replaced.
fn net_again(
    ctx_name: &str,
    sandbox: &Sandbox,
    dir: &Path,
    state: &mut State,
    keeper: (&OwnedFd, &[OwnedFd]),
    log: Option<EgressLog>,
) -> Result<()> {
    let Some(plan) = sandbox.net.as_ref().filter(|_| state.net_pid != 0) else {
        return Ok(());
    };
    if let Some(net) = lifecycle::verify_net(state)? {
        let stopped = proc_stat(state.net_pid).is_some_and(|(s, _)| matches!(s, 'T' | 't'));
        if !stopped {
            return Ok(());
        }
        let _ = sys::pidfd_send_signal(&net, Signal::SIGKILL);
        if !lifecycle::wait_exit(&net, Duration::from_secs(10)) {
            bail!("its stopped net helper (pid {}) did not end", state.net_pid);
        }
    }
    let live = match state.net_allow.as_deref().and_then(|a| plan.with_allow(a)) {
        Some(p) => Some(p.context("the context's recorded egress rules")?),
        None => None,
    };
    // The keeper's network namespace as it hands it out ([`nssock`]: no CAP_SYS_PTRACE needed),
    // or through its pidfd.
    let handed = nssock::fetch(dir, ctx_name).ok();
    let netns = handed.as_ref().map_or(keeper.0, |fds| &fds[0]);
    let bridge = Bridge::reattach(live.as_ref().unwrap_or(plan), netns)?;
    let mut record_net = |pid: i32, start: u64| -> Result<()> {
        state.net_pid = pid;
        state.net_start = start;
        state::write(dir, ctx_name, state)
    };
    nethelper::start(ctx_name, bridge, keeper, log, &mut record_net)?;
    eprintln!(
        "sbx-exec: context {ctx_name:?}: its net helper was gone or stopped; a new one runs (connections through the old one were lost)"
    );
    Ok(())
}

/// A keeper runs (or may run) for `ctx_name`, and its record is missing or damaged (`damaged`):
/// refused, naming the recovery (`ctx stop` finds the keeper without the record).
fn without_record(ctx_name: &str, damaged: Option<anyhow::Error>) -> anyhow::Error {
    let what = match damaged {
        Some(e) => format!("its record is damaged ({e:#})"),
        None => format!("its keeper runs but its record /run/sbx/{ctx_name}.state is gone"),
    };
    anyhow::anyhow!(
        "context {ctx_name:?}: {what}; nothing was run. Stop it with `sbx-exec ctx stop {ctx_name}` (it finds the keeper \
         without the record and ends everything in it) and call again"
    )
}

fn being_stopped(ctx_name: &str) -> String {
    format!(
        "context {ctx_name:?} is being stopped (sbx-exec ctx stop); nothing was run. Retry once the stop has finished"
    )
}

/// Start a keeper and record it. Runs under the context's lock. The record comes first
/// (`starting`, with the cgroups it is about to create), then the keeper's identity as soon as it
/// exists, then `running`; only then does the keeper get its commit byte. A keeper whose caller
/// dies before that ends itself, and the next call ends what the record names.
fn start_keeper(
    ctx_name: &str,
    ctx: &Context,
    (sandbox, limits): (&Sandbox, &Decision),
    dir: &Path,
    fp: u64,
    log: Option<EgressLog>,
) -> Result<Keeper> {
    let cg_plan = match (limits, &ctx.limits) {
        (Decision::Make(p), _) => Some(p.clone()),
        (Decision::Unavailable(why), Some(l)) => {
            cgroup::go_without(ctx_name, l, ctx.degrade, why)?;
            None
        }
        _ => None,
    };
    let mut state = State {
        phase: Phase::Starting,
        pid: 0,
        start: 0,
        pidns: 0,
        created: now_secs(),
        policy: fp,
        cgroups: cg_plan
            .iter()
            .flat_map(|p| p.dirs.iter().map(|d| d.path.clone()))
            .collect(),
        net_pid: 0,
        net_start: 0,
        // The rules its net helper starts with; `ctx net` changes them.
        net_allow: sandbox
            .net
            .as_ref()
            .filter(|p| p.egress.is_some())
            .map(|p| p.allow_text.clone()),
    };
    state::write(dir, ctx_name, &state)?;
    let cg = cg_plan.as_ref();
    let r = start_recorded(ctx_name, ctx, sandbox, dir, cg, &mut state, log);
    if r.is_err() {
        if let Err(e) = lifecycle::end(dir, ctx_name, &state) {
            eprintln!("sbx-exec: warning: {e:#}");
        }
    }
    r
}

/// The part of [`start_keeper`] after the first record: published ports, cgroups, keeper, net
/// helper, records, commit. A published port in use fails here, before anything runs.
fn start_recorded(
    ctx_name: &str,
    ctx: &Context,
    sandbox: &Sandbox,
    dir: &Path,
    cg_plan: Option<&crate::plan::cgroup::Plan>,
    state: &mut State,
    log: Option<EgressLog>,
) -> Result<Keeper> {
    let bridge = sandbox.net.as_ref().map(Bridge::prepare).transpose()?;
    let cgroup_procs = match (cg_plan, &ctx.limits) {
        (Some(p), Some(l)) => match cgroup::create(&cgroup::Host, p) {
            Ok(procs) => procs,
            Err(e) => {
                // Refused unless `required = false` or `degrade = true`, as a one-shot call.
                let why = format!("{e:#}");
                cgroup::go_without(ctx_name, l, ctx.degrade, &why)
                    .with_context(|| format!("cannot set up [context.{ctx_name}.limits]"))?;
                // Running without them: later calls must not look for cgroups never made.
                state.cgroups.clear();
                state::write(dir, ctx_name, state)?;
                Vec::new()
            }
        },
        _ => Vec::new(),
    };
    let mut record = |pid: Pid| -> Result<()> {
        let (_, start) = proc_stat(pid.as_raw()).context("the new keeper vanished")?;
        state.pid = pid.as_raw();
        state.start = start;
        // 0 when the link cannot be read (no CAP_SYS_PTRACE): checks then go without it.
        state.pidns = pidns_inode(pid.as_raw()).unwrap_or(0);
        state::write(dir, ctx_name, state)
    };
    let net = bridge.as_ref().map(|b| b.inner().as_raw_fd());
    let ns_listener = nssock::listen(dir, ctx_name)
        .context("cannot make the socket the keeper hands its namespaces out on")?;
    // The context's cgroups are shown in its private /sys as planned, or none if they could not
    // be made.
    let fallback;
    let sandbox = match (cg_plan, cgroup_procs.is_empty()) {
        (Some(_), true) => {
            fallback = sandbox.without_cgroups();
            &fallback
        }
        _ => sandbox,
    };
    let fds = (net, &ns_listener);
    let (pidfd, commit) = spawn_keeper(ctx_name, sandbox, &cgroup_procs, fds, &mut record)?;
    drop(ns_listener);
    if let Some(bridge) = bridge {
        let mut record_net = |pid: i32, start: u64| -> Result<()> {
            state.net_pid = pid;
            state.net_start = start;
            state::write(dir, ctx_name, state)
        };
        nethelper::start(
            ctx_name,
            bridge,
            (&pidfd, &cgroup_procs),
            log,
            &mut record_net,
        )?;
    }
    state.phase = Phase::Running;
    state::write(dir, ctx_name, state)?;
    if nix::unistd::write(&commit, b"C") != Ok(1) {
        bail!("the keeper of context {ctx_name:?} ended before it was committed");
    }
    Ok(Keeper {
        state: state.clone(),
        pidfd,
        cgroup_procs,
    })
}

/// Fork a helper that creates the keeper in new namespaces and exits at once; wait until the
/// keeper says it is ready. Returns its pid and a pidfd on it.
/// `record` runs as soon as the keeper's pid is known, before it is ready. Returns a pidfd on it
/// and the write end of its commit pipe.
fn spawn_keeper(
    ctx_name: &str,
    sandbox: &Sandbox,
    cgroup_procs: &[OwnedFd],
    (net, ns): (Option<RawFd>, &UnixListener),
    record: &mut dyn FnMut(Pid) -> Result<()>,
) -> Result<(OwnedFd, OwnedFd)> {
    let pipe = || {
        nix::unistd::pipe2(OFlag::O_CLOEXEC)
            .map_err(|e| anyhow::anyhow!("cannot make a pipe: {}", crate::error::errno_cause(e)))
    };
    let (info_r, info_w) = pipe()?;
    let (ready_r, ready_w) = pipe()?;
    let (commit_r, commit_w) = pipe()?;
    let forked = sys::fork()
        .map_err(|e| anyhow::anyhow!("cannot fork: {}", crate::error::errno_cause(e)))?;
    let helper = match forked {
        ForkResult::Child => {
            drop(info_r);
            drop(ready_r);
            drop(commit_w);
            if let Err(e) = cgroup::join(cgroup_procs) {
                eprintln!("sbx-exec: cannot enter the context's cgroup: {e}");
                sys::exit_now(EXIT_SBX);
            }
            match crate::run::init::enter(ctx_name, sandbox) {
                Ok(Entered::Parent(pid)) => {
                    let _ = nix::unistd::write(&info_w, &pid.as_raw().to_ne_bytes());
                    sys::exit_now(0)
                }
                Ok(Entered::Child(sandbox)) => {
                    drop(info_w);
                    keeper_main(&sandbox, ready_w, commit_r, (net, ns))
                }
                Err(e) => {
                    eprintln!("sbx-exec: {e:#}");
                    sys::exit_now(EXIT_SBX)
                }
            }
        }
        ForkResult::Parent { child } => child,
    };
    drop(info_w);
    drop(ready_w);
    drop(commit_r);
    let status = waitpid(helper, None).context("cannot wait for the keeper's helper")?;
    if status == WaitStatus::Exited(helper, EXIT_SBX) {
        bail!("cannot start the keeper of context {ctx_name:?} (see the message above)");
    }
    let mut buf = [0u8; 4];
    let n = nix::unistd::read(info_r.as_raw_fd(), &mut buf).unwrap_or(0);
    if n != 4 {
        bail!("cannot start the keeper of context {ctx_name:?} (helper ended with {status:?})");
    }
    let pid = Pid::from_raw(i32::from_ne_bytes(buf));
    let pidfd = sys::pidfd_open(pid).context("pidfd_open on the new keeper")?;
    if let Err(e) = record(pid) {
        let _ = sys::pidfd_send_signal(&pidfd, Signal::SIGKILL);
        return Err(e);
    }
    let mut fds = [PollFd::new(ready_r.as_fd(), PollFlags::POLLIN)];
    let ms = PollTimeout::try_from(READY_TIMEOUT).unwrap_or(PollTimeout::MAX);
    let ready = poll(&mut fds, ms).unwrap_or(0) > 0
        && nix::unistd::read(ready_r.as_raw_fd(), &mut buf[..1]).unwrap_or(0) == 1
        && buf[0] == b'R';
    if !ready {
        let _ = sys::pidfd_send_signal(&pidfd, Signal::SIGKILL);
        bail!("the keeper of context {ctx_name:?} failed to set up its sandbox (see the message above)");
    }
    Ok((pidfd, commit_w))
}

/// The keeper: pid 1 of the context. Sets up the sandbox with the same init as a one-shot pid 1,
/// detached from the caller (new session, stdio on /dev/null, no other fds, working directory
/// `/`), says "ready", waits for the caller's commit (the caller has recorded it by then; end of
/// file instead means the caller died first, and the keeper ends, taking its namespaces with it),
/// then reaps forever.
fn keeper_main(
    sandbox: &Sandbox,
    ready: OwnedFd,
    commit: OwnedFd,
    (net, listener): (Option<RawFd>, &UnixListener),
) -> ! {
    let role = crate::run::confine::Role::Keeper {
        ready: &ready,
        commit: &commit,
        net,
        ns: Some(listener.as_raw_fd()),
    };
    if let Err(e) = crate::run::confine::pid1::setup(&crate::run::confine::Host, sandbox, role) {
        eprintln!("sbx-exec: keeper: {e:#}");
        sys::exit_now(EXIT_SBX);
    }
    // Its namespaces, for joins that cannot take them through its pidfd ([`nssock`]), on the
    // listener its first call bound (kept through the set-up's fd clean-up).
    let own = match nssock::open_own().and_then(|own| {
        nssock::watch(listener)?;
        Ok(own)
    }) {
        Ok(own) => own,
        Err(e) => {
            eprintln!("sbx-exec: keeper: {e:#}");
            sys::exit_now(EXIT_SBX);
        }
    };
    let _ = nix::unistd::write(&ready, b"R");
    drop(ready);
    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(commit.as_raw_fd(), &mut byte) {
            Ok(1) if byte[0] == b'C' => break,
            Err(nix::errno::Errno::EINTR) => continue,
            _ => sys::exit_now(EXIT_SBX),
        }
    }
    drop(commit);
    keeper_loop(listener, &own)
}

/// Reap every orphan; on SIGTERM from outside the context (`ctx stop`: `kill(2)` from another pid
/// namespace, `si_code` `SI_USER` with `si_pid` 0), SIGTERM everything in it and exit once nothing
/// else is left. A sender inside has a pid here, and one that forges `si_pid` 0 with
/// `rt_sigqueueinfo` has a negative `si_code` ([`sys::Sender::is_outside`]).
fn keeper_loop(listener: &UnixListener, own: &[OwnedFd]) -> ! {
    let mut set = reaper::blocked_set();
    // SIGIO: a join asks for the namespaces ([`nssock::serve`]). Blocked like the rest, and
    // taken in the wait (its default action would end the keeper).
    set.add(Signal::SIGIO);
    let _ =
        nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_BLOCK, Some(&set), None);
    let mut stopping = false;
    nssock::serve(listener, own);
    loop {
        let wait = stopping.then_some(Duration::from_millis(50));
        let got = sys::wait_signal_from(&set, wait);
        if let Ok(Some((Signal::SIGIO, _))) = got {
            nssock::serve(listener, own);
        }
        if let Ok(Some((Signal::SIGTERM, from))) = got {
            if from.is_outside() && !stopping {
                stopping = true;
                let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
            }
        }
        reaper::reap(None);
        if stopping && !others_alive() {
            sys::exit_now(0);
        }
    }
}

/// Is anything but the keeper alive in its pid namespace (its private /proc)?
fn others_alive() -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|e| {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<i32>().ok()) else {
            return false;
        };
        pid != 1 && proc_stat(pid).is_some_and(|(s, _)| !matches!(s, 'Z' | 'X' | 'x'))
    })
}
