//! Control mode: sbx-exec as the container's PID 1 (or any supervisor), what tini/dumb-init do
//! plus the reserved ports. It becomes a subreaper, binds the reserved ports before anything runs,
//! starts the control plane with the sockets inherited, reaps every zombie, forwards signals,
//! stops gracefully (SIGTERM, then SIGKILL after `stop_timeout`), and restarts the control plane
//! on failure with backoff while holding the ports the whole time.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::{ForkResult, Pid};

use crate::model::{Restart, Supervise};
use crate::plan::launch::Target;
use crate::run::ports::ReservedPorts;
use crate::run::reaper::{blocked_set, reap};
use crate::sys;

/// Signals that stop the control plane for good (others are only passed on).
const STOPPING: &[Signal] = &[Signal::SIGTERM, Signal::SIGINT, Signal::SIGQUIT];

/// Run the supervisor; returns the exit status for sbx-exec. Signals must already be blocked.
pub fn run(
    ctx_name: &str,
    sup: &Supervise,
    mut target: Target,
    on_start: impl Fn(Pid),
) -> Result<i32> {
    nix::sys::prctl::set_child_subreaper(true).context("cannot become a subreaper")?;
    // The control plane (which inherits this) is the last thing the OOM killer picks. Lowering
    // it needs CAP_SYS_RESOURCE; without it the value stays, confined sandboxes still raise
    // theirs to +500, and probe says so.
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
    let ports = ReservedPorts::bind(&sup.ports)?;
    let set = blocked_set();
    let mut restarts: Vec<Instant> = Vec::new();
    loop {
        let child = spawn(&mut target, &ports)?;
        on_start(child);
        let (code, stopping) = supervise_one(child, sup, &set);
        if stopping {
            return Ok(code);
        }
        let failed = code != 0;
        let again = match sup.restart {
            Restart::Never => false,
            Restart::OnFailure => failed,
            Restart::Always => true,
        };
        if !again {
            return Ok(code);
        }
        let now = Instant::now();
        let window = Duration::from_secs(sup.restart_window);
        restarts.retain(|t| now.duration_since(*t) < window);
        if restarts.len() as u32 >= sup.max_restarts {
            eprintln!(
                "sbx-exec: the control plane of context {ctx_name:?} ended (status {code}) {} times within {}s; giving up \
                 (max_restarts / restart_window in [context.{ctx_name}.supervise])",
                restarts.len() + 1,
                sup.restart_window
            );
            return Ok(code);
        }
        restarts.push(now);
        let delay = backoff(sup.restart_delay_ms, restarts.len());
        eprintln!(
            "sbx-exec: the control plane ended (status {code}); restarting in {} ms, ports still held",
            delay.as_millis()
        );
        if let Some(sig) = pause(&set, delay) {
            // A stop request during the backoff: do not restart.
            eprintln!("sbx-exec: {sig} received while restarting; stopping");
            return Ok(code);
        }
    }
}

/// Delay before restart number `n` (1-based): doubling from `base_ms`, at most 10 s.
pub fn backoff(base_ms: u64, n: usize) -> Duration {
    let factor = 1u64 << (n.saturating_sub(1)).min(16);
    Duration::from_millis(base_ms.saturating_mul(factor).min(10_000))
}

/// Start the control plane with the reserved sockets on fds 3.. and the LISTEN_* variables.
fn spawn(target: &mut Target, ports: &ReservedPorts) -> Result<Pid> {
    match sys::fork().context("cannot fork the control plane")? {
        ForkResult::Parent { child } => Ok(child),
        ForkResult::Child => {
            let top = 3 + ports.len() as i32;
            if let Err(e) = target.move_program_above(top, (3..top).collect()) {
                eprintln!("sbx-exec: cannot keep the program's handle: {e}");
                sys::exit_now(crate::error::EXIT_SBX);
            }
            if let Err(e) = sys::arrange_fds(&ports.fds()) {
                eprintln!("sbx-exec: cannot pass the reserved ports: {e}");
                sys::exit_now(crate::error::EXIT_SBX);
            }
            if !ports.is_empty() {
                let pid = std::process::id().to_string();
                target.env.set_var("LISTEN_FDS", &ports.len().to_string());
                target.env.set_var("LISTEN_PID", &pid);
                target.env.set_var("LISTEN_FDNAMES", &ports.names());
            }
            target.exec()
        }
    }
}

/// Wait for `child`, reaping everything else, forwarding signals. Returns its shell status and
/// whether a stop was requested.
fn supervise_one(child: Pid, sup: &Supervise, set: &nix::sys::signal::SigSet) -> (i32, bool) {
    let mut stopping = false;
    let mut deadline: Option<Instant> = None;
    loop {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        match sys::wait_signal(set, left) {
            Ok(None) => {
                // The graceful stop ran out of time.
                let _ = kill(child, Signal::SIGKILL);
                deadline = None;
                continue;
            }
            Ok(Some(Signal::SIGCHLD)) | Err(_) => {}
            Ok(Some(sig)) => {
                let _ = kill(child, sig);
                if STOPPING.contains(&sig) && !stopping {
                    stopping = true;
                    deadline = Some(Instant::now() + Duration::from_secs(sup.stop_timeout));
                }
                continue;
            }
        }
        // Reap every child that ended: the control plane, and orphans re-parented to us.
        if let Some(code) = reap(Some(child)) {
            return (code, stopping);
        }
    }
}

/// Sleep for `delay` while still reaping; returns a stopping signal if one arrives.
fn pause(set: &nix::sys::signal::SigSet, delay: Duration) -> Option<Signal> {
    let end = Instant::now() + delay;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        match sys::wait_signal(set, Some(left)) {
            Ok(Some(sig)) if STOPPING.contains(&sig) => return Some(sig),
            Ok(Some(Signal::SIGCHLD)) => {
                reap(None);
            }
            Ok(None) => return None,
            _ => {}
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
