//! `sbx-exec ctx list` and `ctx stop`: root-only management of persistent contexts.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;

use super::keeper::{now_secs, pidns_inode, verify};
use super::state;
use crate::run::apply::cgroup;
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
    pid: i32,
    processes: usize,
    age: u64,
}

/// `sbx-exec ctx list`: every context with a state, whether its keeper runs, its process count
/// (besides the keeper) and age.
pub fn list(json: bool, policy: Option<&Path>) -> Result<i32> {
    require_root("list")?;
    if policy.is_some() {
        crate::model::load(policy)?;
    }
    let mut rows = Vec::new();
    if let Some(dir) = state::dir(false)? {
        for name in state::names(&dir)? {
            let Some(state) = state::read(&dir, &name)? else {
                continue;
            };
            let running = verify(&state).is_some();
            rows.push(Row {
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
                serde_json::json!({"name": r.name, "running": r.running, "keeper_pid": r.pid,
                                   "processes": r.processes, "age_secs": r.age})
            })
            .collect();
        println!("{}", serde_json::Value::Array(v));
    } else {
        println!(
            "{:<20} {:>8} {:>10} {:>9}  STATUS",
            "CONTEXT", "KEEPER", "PROCESSES", "AGE(s)"
        );
        for r in &rows {
            let status = if r.running {
                "running"
            } else {
                "dead (cleaned up on next use)"
            };
            println!(
                "{:<20} {:>8} {:>10} {:>9}  {status}",
                r.name, r.pid, r.processes, r.age
            );
        }
    }
    Ok(0)
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
    let Some(state) = state::read(&dir, name)? else {
        return not_running();
    };
    let Some(pidfd) = verify(&state) else {
        state::remove(&dir, name);
        cgroup::remove(&cgroup::Host, &state.cgroups);
        return not_running();
    };
    sys::pidfd_send_signal(&pidfd, Signal::SIGTERM).context("cannot signal the keeper")?;
    if !wait_exit(&pidfd, Duration::from_secs(timeout)) {
        let _ = sys::pidfd_send_signal(&pidfd, Signal::SIGKILL);
        if !wait_exit(&pidfd, Duration::from_secs(30)) {
            bail!(
                "the keeper of context {name:?} (pid {}) did not finish within 30 s of SIGKILL: the kernel ends a context only once \
                 every process of it has been reaped, and a command whose sbx-exec was killed is reaped by the container's init; \
                 run under an init that reaps orphans (sbx-exec control mode, tini, docker run --init)",
                state.pid
            );
        }
    }
    state::remove(&dir, name);
    for _ in 0..50 {
        cgroup::remove(&cgroup::Host, &state.cgroups);
        if state.cgroups.iter().all(|p| !p.exists()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(0)
}

/// Wait until the process behind `pidfd` has exited (for a keeper: after the kernel has killed
/// and released everything else in its pid namespace).
fn wait_exit(pidfd: &OwnedFd, timeout: Duration) -> bool {
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    let ms = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
    loop {
        match poll(&mut fds, ms) {
            Ok(n) => return n > 0,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return false,
        }
    }
}
