//! The keeper of a persistent context: found and verified, or started (through a helper, so it is
//! nobody's zombie) with the one sandbox init ([`crate::run::init::setup`]), then reaping forever.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use super::state::{self, State};
use crate::error::EXIT_SBX;
use crate::model::Context;
use crate::plan::launch::Sandbox;
use crate::run::apply::cgroup;
use crate::run::reaper;
use crate::sys;

/// How long a first call waits for a new keeper to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A verified, running keeper, and what a target needs to join it.
pub struct Keeper {
    pub state: State,
    pub pidfd: OwnedFd,
    pub cgroup_procs: Vec<OwnedFd>,
}

/// Under the context's lock: the recorded keeper if it is alive and the same one, else a new one.
pub fn ensure_keeper(ctx_name: &str, ctx: &Context, sandbox: &Sandbox) -> Result<Keeper> {
    let dir = state::dir(true)?.context("no runtime directory")?;
    let _lock = state::lock(&dir, ctx_name)?;
    let fp = sandbox.fingerprint();
    if let Some(state) = state::read(&dir, ctx_name)? {
        match verify(&state) {
            Some(pidfd) if state.policy == fp => {
                let cgroup_procs = cgroup::open_procs(&state.cgroups)?;
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
            None => {
                // The keeper died (or its pid was reused): forget it; the kernel already killed
                // everything that was in its pid namespace.
                state::remove(&dir, ctx_name);
                cgroup::remove(&cgroup::Host, &state.cgroups);
            }
        }
    }
    start_keeper(ctx_name, ctx, sandbox, &dir, fp)
}

/// The pidfd of the recorded keeper if, after opening it, the process is still that keeper:
/// alive (not a zombie), same start time, same pid namespace.
pub fn verify(state: &State) -> Option<OwnedFd> {
    let pidfd = sys::pidfd_open(Pid::from_raw(state.pid)).ok()?;
    let (run_state, start) = proc_stat(state.pid)?;
    if matches!(run_state, 'Z' | 'X' | 'x') || start != state.start {
        return None;
    }
    // A keeper on its way out has already let go of its mount namespace.
    std::fs::metadata(format!("/proc/{}/ns/mnt", state.pid)).ok()?;
    (pidns_inode(state.pid)? == state.pidns).then_some(pidfd)
}

/// State letter and start time (field 22) from /proc/PID/stat.
pub fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

fn parse_stat(text: &str) -> Option<(char, u64)> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

pub fn pidns_inode(pid: i32) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/pid"))
        .ok()
        .map(|m| m.ino())
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Start a keeper and record it. Runs under the context's lock.
fn start_keeper(
    ctx_name: &str,
    ctx: &Context,
    sandbox: &Sandbox,
    dir: &Path,
    fp: u64,
) -> Result<Keeper> {
    let mut cg_plan = match &ctx.limits {
        Some(l) if !l.is_empty() => crate::plan::cgroup::plan_for(ctx_name, l, ctx.degrade)?,
        _ => None,
    };
    let cgroup_procs = match (&cg_plan, &ctx.limits) {
        (Some(p), Some(l)) => match cgroup::create(&cgroup::Host, p) {
            Ok(procs) => procs,
            Err(e) => {
                // Refused unless `required = false` or `degrade = true`, as a one-shot call.
                let why = format!("{e:#}");
                crate::plan::cgroup::unavailable(ctx_name, l, ctx.degrade, &why)
                    .with_context(|| format!("cannot set up [context.{ctx_name}.limits]"))?;
                cg_plan = None;
                Vec::new()
            }
        },
        _ => Vec::new(),
    };
    let cg_paths: Vec<PathBuf> = cg_plan
        .iter()
        .flat_map(|p| p.dirs.iter().map(|d| d.path.clone()))
        .collect();
    let r = spawn_keeper(ctx_name, sandbox, &cgroup_procs).and_then(|(pid, pidfd)| {
        let record = || -> Result<State> {
            let (_, start) = proc_stat(pid.as_raw()).context("the new keeper vanished")?;
            let state = State {
                pid: pid.as_raw(),
                start,
                pidns: pidns_inode(pid.as_raw())
                    .context("cannot read the keeper's pid namespace")?,
                created: now_secs(),
                policy: fp,
                cgroups: cg_paths.clone(),
            };
            state::write(dir, ctx_name, &state)?;
            Ok(state)
        };
        match record() {
            Ok(state) => Ok(Keeper {
                state,
                pidfd,
                cgroup_procs,
            }),
            Err(e) => {
                let _ = sys::pidfd_send_signal(&pidfd, Signal::SIGKILL);
                Err(e)
            }
        }
    });
    if r.is_err() {
        // Wait briefly for a killed keeper to leave its cgroups, then remove them.
        for _ in 0..50 {
            cgroup::remove(&cgroup::Host, &cg_paths);
            if cg_paths.iter().all(|p| !p.exists()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    r
}

/// Fork a helper that creates the keeper in new namespaces and exits at once; wait until the
/// keeper says it is ready. Returns its pid and a pidfd on it.
fn spawn_keeper(
    ctx_name: &str,
    sandbox: &Sandbox,
    cgroup_procs: &[OwnedFd],
) -> Result<(Pid, OwnedFd)> {
    let (info_r, info_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("pipe")?;
    let (ready_r, ready_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("pipe")?;
    let helper = match sys::fork().context("cannot fork")? {
        ForkResult::Child => {
            drop(info_r);
            drop(ready_r);
            if let Err(e) = cgroup::join(cgroup_procs) {
                eprintln!("sbx-exec: cannot enter the context's cgroup: {e}");
                sys::exit_now(EXIT_SBX);
            }
            let mut sandbox = sandbox.clone();
            match crate::run::init::enter(ctx_name, &mut sandbox) {
                Ok(Some(pid)) => {
                    let _ = nix::unistd::write(&info_w, &pid.as_raw().to_ne_bytes());
                    sys::exit_now(0)
                }
                Ok(None) => {
                    drop(info_w);
                    keeper_main(&sandbox, ready_w)
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
    let mut fds = [PollFd::new(ready_r.as_fd(), PollFlags::POLLIN)];
    let ms = PollTimeout::try_from(READY_TIMEOUT).unwrap_or(PollTimeout::MAX);
    let ready = poll(&mut fds, ms).unwrap_or(0) > 0
        && nix::unistd::read(ready_r.as_raw_fd(), &mut buf[..1]).unwrap_or(0) == 1
        && buf[0] == b'R';
    if !ready {
        let _ = sys::pidfd_send_signal(&pidfd, Signal::SIGKILL);
        bail!("the keeper of context {ctx_name:?} failed to set up its sandbox (see the message above)");
    }
    Ok((pid, pidfd))
}

/// The keeper: pid 1 of the context. Sets up the sandbox with the same init as a one-shot pid 1,
/// detached from the caller (new session, stdio on /dev/null, no other fds, working directory
/// `/`), says "ready", then reaps forever.
fn keeper_main(sandbox: &Sandbox, ready: OwnedFd) -> ! {
    let role = crate::run::init::Role::Keeper { ready: &ready };
    if let Err(e) = crate::run::init::setup(sandbox, role) {
        eprintln!("sbx-exec: keeper: {e:#}");
        sys::exit_now(EXIT_SBX);
    }
    let _ = nix::unistd::write(&ready, b"R");
    drop(ready);
    keeper_loop()
}

/// Reap every orphan; on SIGTERM from outside the context (`ctx stop`: `kill(2)` from another pid
/// namespace, `si_code` `SI_USER` with `si_pid` 0), SIGTERM everything in it and exit once nothing
/// else is left. A sender inside has a pid here, and one that forges `si_pid` 0 with
/// `rt_sigqueueinfo` has a negative `si_code` ([`sys::Sender::is_outside`]).
fn keeper_loop() -> ! {
    let set = reaper::blocked_set();
    let mut stopping = false;
    loop {
        let wait = stopping.then_some(Duration::from_millis(50));
        let got = sys::wait_signal_from(&set, wait);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_after_the_last_paren() {
        // comm may contain spaces and parens.
        let line = "42 (a) b) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_stat(line), Some(('S', 987654)));
        assert_eq!(parse_stat("garbage"), None);
    }
}
