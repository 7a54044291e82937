//! `sbx-exec ctx list` and `ctx stop`: root-only management of persistent contexts.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use nix::sys::signal::Signal;

use super::lifecycle::{self, now_secs, pidns_inode, verify, wait_exit};
use super::state::{self, Phase};
use crate::sys;

/// `ctx stop` of a context that is not running exits with this status.
pub const EXIT_NOT_RUNNING: i32 = 1;

fn require_root(what: &str) -> Result<()> {
    if !nix::unistd::getuid().is_root() {
        bail!("`sbx-exec ctx {what}` is for root only (persistent contexts belong to the container's administrator)");
    }
    Ok(())
}

fn checked_name(name: &str) -> Result<&str> {
    crate::model::ContextName::try_from(name.to_string()).map_err(|e| anyhow::anyhow!(e))?;
    Ok(name)
}

/// One row of `ctx list`.
struct Row {
    name: String,
    running: bool,
    status: String,
    pid: i32,
    /// The net helper's pid (0: none), and whether it runs.
    net_pid: i32,
    net_running: bool,
    processes: usize,
    age: u64,
}

/// `sbx-exec ctx list`: every context with a state, whether its keeper runs, its net helper (if
/// any), its process count (besides the keeper) and age.
pub fn list(json: bool, policy: Option<&Path>) -> Result<i32> {
    require_root("list")?;
    if policy.is_some() {
        crate::model::load(policy)?;
    }
    let mut rows = Vec::new();
    if let Some(dir) = state::dir(false)? {
        for name in state::names(&dir)? {
            let Some((state, status)) = examine(&dir, &name)? else {
                continue;
            };
            let running = status == "running" || status == "stopping";
            let net_running = matches!(lifecycle::verify_net(&state), Ok(Some(_)));
            rows.push(Row {
                net_pid: state.net_pid,
                net_running,
                status,
                processes: if running {
                    count_in(state.pidns) - 1
                } else {
                    0
                },
                age: now_secs().saturating_sub(state.created),
                pid: state.pid,
                running,
                name,
            });
        }
    }
    if json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                let net_pid = (r.net_pid != 0).then_some(r.net_pid);
                serde_json::json!({"name": r.name, "running": r.running, "keeper_pid": r.pid,
                                   "net_pid": net_pid, "net_running": r.net_running,
                                   "processes": r.processes, "age_secs": r.age, "status": r.status})
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
    } else {
        println!(
            "{:<20} {:>8} {:>8} {:>10} {:>9}  STATUS",
            "CONTEXT", "KEEPER", "NET", "PROCESSES", "AGE(s)"
        );
        for r in &rows {
            let net = match (r.net_pid, r.net_running) {
                (0, _) => "-".to_string(),
                (pid, true) => pid.to_string(),
                (_, false) => "gone".to_string(),
            };
            println!(
                "{:<20} {:>8} {:>8} {:>10} {:>9}  {}",
                r.name, r.pid, net, r.processes, r.age, r.status
            );
        }
    }
    Ok(0)
}

/// One context's state and status for `ctx list`. A record left `starting` or `stopping` by a
/// call or stop that died (nobody holds the lock) is ended here, and not listed.
fn examine(dir: &Path, name: &str) -> Result<Option<(state::State, String)>> {
    let lock = state::try_lock(dir, name)?;
    let Some(state) = state::read(dir, name)? else {
        return Ok(None);
    };
    if state.phase != Phase::Running {
        if lock.is_none() {
            let phase = state.phase.name().to_string();
            return Ok(Some((state, phase)));
        }
        lifecycle::end(dir, name, &state)?;
        eprintln!(
            "sbx-exec: context {name:?}: ended what a {} that died left behind",
            if state.phase == Phase::Starting {
                "first call"
            } else {
                "ctx stop"
            }
        );
        return Ok(None);
    }
    let status = match verify(&state) {
        Ok(Some(_)) => "running".to_string(),
        Ok(None) => "dead (cleaned up on next use)".to_string(),
        Err(e) => format!("unknown: {e:#}"),
    };
    Ok(Some((state, status)))
}

/// Processes (in sbx-exec's own /proc) whose pid namespace is `pidns`.
fn count_in(pidns: u64) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| pidns_inode(*pid) == Some(pidns))
        .count()
        .max(1)
}

/// `sbx-exec ctx stop NAME`: SIGTERM to everything in the context (the keeper passes it on), then
/// SIGKILL to the keeper after `timeout` (the kernel then kills the rest). When this returns 0,
/// nothing of the context runs and its state and cgroups are gone. Not running: exit 1.
pub fn stop(name: &str, timeout: u64, policy: Option<&Path>) -> Result<i32> {
    require_root("stop")?;
    let name = checked_name(name)?;
    if policy.is_some() {
        crate::model::load(policy)?;
    }
    let not_running = || {
        eprintln!("sbx-exec: context {name:?} is not running (nothing to stop)");
        Ok(EXIT_NOT_RUNNING)
    };
    let Some(dir) = state::dir(false)? else {
        return not_running();
    };
    let _lock = state::lock(&dir, name)?;
    let Some(mut state) = state::read(&dir, name)? else {
        return not_running();
    };
    if state.phase == Phase::Starting {
        // Its first call died while starting it (it held this lock): end what it left.
        lifecycle::end(&dir, name, &state)?;
        eprintln!("sbx-exec: context {name:?}: stopped what a first call that died had started");
        return Ok(0);
    }
    let Some(pidfd) = verify(&state)? else {
        lifecycle::end(&dir, name, &state)?;
        return not_running();
    };
    // Calls arriving from now on are refused (they see this under the lock we hold), and calls
    // in flight learn why their command ended.
    state.phase = Phase::Stopping;
    if let Err(e) = state::write(&dir, name, &state) {
        eprintln!("sbx-exec: warning: cannot mark context {name:?} as stopping: {e:#}");
    }
    sys::pidfd_send_signal(&pidfd, Signal::SIGTERM).context("cannot signal the keeper")?;
    if !wait_exit(&pidfd, Duration::from_secs(timeout)) {
        lifecycle::kill_keeper(&pidfd, name, state.pid)?;
    }
    // The net helper exits once the keeper has; end it now, so its ports are closed on return.
    lifecycle::end_net(name, &state)?;
    lifecycle::remove_cgroups(name, &state.cgroups)?;
    state::remove(&dir, name);
    Ok(0)
}
