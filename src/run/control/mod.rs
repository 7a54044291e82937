//! Control mode: sbx-exec as the container's PID 1 (or any supervisor), what tini/dumb-init do
//! plus the reserved ports. It becomes a subreaper, binds the reserved ports before anything runs,
//! starts the control plane with the sockets inherited, then the services of `supervise.services`
//! (each confined in its context with its own ports, [`service`]), reaps every zombie, forwards
//! signals, restarts the control plane and the services on failure with backoff while holding the
//! ports the whole time, and on SIGTERM stops the services in reverse order, then the control plane
//! (SIGTERM, then SIGKILL after `stop_timeout`).

pub mod service;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use nix::errno::Errno;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use crate::model::{Restart, Supervise};
use crate::plan::launch::Target;
use crate::run::ports::ReservedPorts;
use crate::run::reaper::{blocked_set, shell_code};
use crate::sys;
use service::Service;

/// Signals that stop the control plane for good (others are only passed on).
const STOPPING: &[Signal] = &[Signal::SIGTERM, Signal::SIGINT, Signal::SIGQUIT];

/// The control plane's run: its pid while it runs, its restarts, its last status.
struct Plane {
    pid: Option<Pid>,
    restarts: Vec<Instant>,
    restart_at: Option<Instant>,
    code: i32,
}

/// Run the supervisor; returns the exit status for sbx-exec (the control plane's). Signals must
/// already be blocked. `policy` is the `--policy` file the services are launched with.
pub fn run(
    ctx_name: &str,
    sup: &Supervise,
    target: Target,
    (policy, pools): (Option<&Path>, bool),
    on_start: impl Fn(Pid),
) -> Result<i32> {
    nix::sys::prctl::set_child_subreaper(true).context("cannot become a subreaper")?;
    lower_oom_score(ctx_name);
    let ports = ReservedPorts::bind(&sup.ports)?;
    let theirs: Vec<u16> = sup.services.iter().flat_map(|s| s.ports.clone()).collect();
    let target = ports
        .handed(&theirs, true)
        .give_to(target)
        .context("cannot place the control plane's sockets")?;
    let mut services = Vec::new();
    for spec in &sup.services {
        let handed = ports.handed(&spec.ports, false);
        services.push(Service::prepare(spec, policy, &handed, target.sigmask)?);
    }
    // Contexts with `pool = N`: their prepared sandboxes are kept by a service of their own.
    if pools {
        services.push(Service::pool_server(policy, target.sigmask)?);
    }
    let set = blocked_set();
    let mut plane = Plane {
        pid: Some(spawn(&target)?),
        restarts: Vec::new(),
        restart_at: None,
        code: 0,
    };
    on_start(plane.pid.unwrap());
    for s in &mut services {
        s.start(sup);
    }
    loop {
        let next = services
            .iter()
            .filter_map(Service::restart_at)
            .chain(plane.restart_at)
            .min();
        let left = next.map(|t| t.saturating_duration_since(Instant::now()));
        match sys::wait_signal(&set, left) {
            Ok(Some(sig)) if STOPPING.contains(&sig) => {
                return Ok(stop_all(sig, &mut plane, &mut services, sup, &set));
            }
            Ok(Some(Signal::SIGCHLD)) | Ok(None) | Err(_) => {}
            Ok(Some(sig)) => {
                if let Some(pid) = plane.pid {
                    let _ = kill(pid, sig);
                }
                continue;
            }
        }
        if !reap_ended(ctx_name, sup, &mut plane, &mut services) {
            return Ok(stop_all(
                Signal::SIGTERM,
                &mut plane,
                &mut services,
                sup,
                &set,
            ));
        }
        let now = Instant::now();
        if plane.restart_at.is_some_and(|t| t <= now) {
            plane.restart_at = None;
            let pid = spawn(&target)?;
            plane.pid = Some(pid);
            on_start(pid);
        }
        for s in services
            .iter_mut()
            .filter(|s| s.restart_at().is_some_and(|t| t <= now))
        {
            s.start(sup);
        }
    }
}

/// Reap what ended: a service is scheduled for restart; the control plane too, or false when it
/// is not restarted (then everything stops).
fn reap_ended(
    ctx_name: &str,
    sup: &Supervise,
    plane: &mut Plane,
    services: &mut [Service],
) -> bool {
    let mut go_on = true;
    for (pid, code) in reap_all() {
        if plane.pid == Some(pid) {
            plane.pid = None;
            plane.code = code;
            go_on = plane.schedule(ctx_name, sup);
        } else if let Some(s) = services.iter_mut().find(|s| s.pid == Some(pid)) {
            s.ended(code, sup);
        }
    }
    go_on
}

impl Plane {
    /// The control plane ended with `self.code`: schedule its restart (true), or not (false:
    /// sbx-exec stops with that status).
    fn schedule(&mut self, ctx_name: &str, sup: &Supervise) -> bool {
        let code = self.code;
        let again = match sup.restart {
            Restart::Never => false,
            Restart::OnFailure => code != 0,
            Restart::Always => true,
        };
        if !again {
            return false;
        }
        let now = Instant::now();
        let window = Duration::from_secs(sup.restart_window);
        self.restarts.retain(|t| now.duration_since(*t) < window);
        if self.restarts.len() as u32 >= sup.max_restarts {
            eprintln!(
                "sbx-exec: the control plane of context {ctx_name:?} ended (status {code}) {} times within {}s; giving up \
                 (max_restarts / restart_window in [context.{ctx_name}.supervise])",
                self.restarts.len() + 1,
                sup.restart_window
            );
            return false;
        }
        self.restarts.push(now);
        let delay = backoff(sup.restart_delay_ms, self.restarts.len());
        eprintln!(
            "sbx-exec: the control plane ended (status {code}); restarting in {} ms, ports still held",
            delay.as_millis()
        );
        self.restart_at = Some(now + delay);
        true
    }
}

/// The control plane (which inherits this) is the last thing the OOM killer picks. Lowering it
/// needs CAP_SYS_RESOURCE; without it the value stays, confined sandboxes still raise theirs to
/// +500, and probe says so.
fn lower_oom_score(ctx_name: &str) {
    if let Err(e) = crate::run::apply::cgroup::set_oom_score_adj(
        crate::run::apply::cgroup::CONTROL_OOM_SCORE_ADJ,
    ) {
        if nix::unistd::geteuid().is_root() {
            eprintln!(
                "sbx-exec: warning: cannot lower oom_score_adj of context {ctx_name:?} to -900 ({e}): \
                 it needs CAP_SYS_RESOURCE; confined contexts still run at +500, so they are killed first"
            );
        }
    }
}

/// Delay before restart number `n` (1-based): doubling from `base_ms`, at most 10 s.
pub fn backoff(base_ms: u64, n: usize) -> Duration {
    let factor = 1u64 << (n.saturating_sub(1)).min(16);
    Duration::from_millis(base_ms.saturating_mul(factor).min(10_000))
}

/// Start the control plane; its reserved sockets go to fds 3.. with the LISTEN_* variables
/// (see [`crate::run::ports::Handed::give_to`]).
fn spawn(target: &Target) -> Result<Pid> {
    match sys::fork().context("cannot fork the control plane")? {
        ForkResult::Parent { child } => Ok(child),
        ForkResult::Child => target.exec(),
    }
}

/// Stop everything, services in reverse order, then the control plane: `sig` to each, SIGKILL
/// after `stop_timeout`. Returns the control plane's status.
fn stop_all(
    sig: Signal,
    plane: &mut Plane,
    services: &mut [Service],
    sup: &Supervise,
    set: &SigSet,
) -> i32 {
    let grace = Duration::from_secs(sup.stop_timeout);
    for s in services.iter_mut().rev() {
        if let Some(pid) = s.pid.take() {
            stop_one(pid, sig, grace, set);
        }
    }
    if let Some(pid) = plane.pid.take() {
        plane.code = stop_one(pid, sig, grace, set);
    }
    plane.code
}

/// Send `sig` to `pid` and wait for it, reaping everything else; SIGKILL after `grace`. Further
/// signals are passed on to it. Returns its shell status.
fn stop_one(pid: Pid, sig: Signal, grace: Duration, set: &SigSet) -> i32 {
    if kill(pid, sig) == Err(Errno::ESRCH) {
        // Already reaped (never the case for a pid still recorded as running).
        return crate::error::EXIT_SBX;
    }
    let mut deadline = Some(Instant::now() + grace);
    loop {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        match sys::wait_signal(set, left) {
            Ok(None) => {
                // The graceful stop ran out of time.
                let _ = kill(pid, Signal::SIGKILL);
                deadline = None;
                continue;
            }
            Ok(Some(Signal::SIGCHLD)) | Err(_) => {}
            Ok(Some(other)) => {
                let _ = kill(pid, other);
                continue;
            }
        }
        if let Some((_, code)) = reap_all().into_iter().find(|(p, _)| *p == pid) {
            return code;
        }
    }
}

/// Reap every child that has ended (the control plane, services, and orphans re-parented to this
/// subreaper); returns the pids and shell statuses.
fn reap_all() -> Vec<(Pid, i32)> {
    let mut ended = Vec::new();
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return ended,
            Ok(status) => {
                if let (Some(pid), Some(code)) = (status.pid(), shell_code(status)) {
                    ended.push((pid, code));
                }
            }
            Err(_) => return ended,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(100, 1), Duration::from_millis(100));
        assert_eq!(backoff(100, 2), Duration::from_millis(200));
        assert_eq!(backoff(100, 4), Duration::from_millis(800));
        assert_eq!(backoff(100, 60), Duration::from_secs(10));
    }
}
