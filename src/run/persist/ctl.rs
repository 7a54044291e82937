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

pub(super) fn require_root(what: &str) -> Result<()> {
    if !nix::unistd::getuid().is_root() {
        bail!("`sbx-exec ctx {what}` is for root only (persistent contexts belong to the container's administrator)");
    }
    Ok(())
}

pub(super) fn checked_name(name: &str) -> Result<&str> {
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
    /// `None`: not known (the pid namespace links need CAP_SYS_PTRACE, which a container may
    /// not give).
    processes: Option<usize>,
    age: u64,
}

/// `sbx-exec ctx list`: every context with a state, whether its keeper runs, its net helper (if
/// any), its process count (besides the keeper) and age.
pub fn list(json: bool, policy: Option<&Path>) -> Result<i32> {
    require_root("list")?;
    if policy.is_some() {
        crate::model::load(policy)?;
    }
    let mut rows = recorded_rows()?;
    unrecorded_keepers(&mut rows);
    if json {
        print_json(&rows);
    } else {
        print_table(&rows);
    }
    Ok(0)
}

/// A row for each context with a record (a damaged one warned about and left out).
fn recorded_rows() -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    if let Some(dir) = state::dir(false)? {
        for name in state::names(&dir)? {
            let examined = match examine(&dir, &name) {
                Ok(e) => e,
                Err(e) => {
                    // A damaged record: the keeper, if the kernel shows one, is listed below.
                    eprintln!("sbx-exec: warning: context {name:?}: {e:#}");
                    continue;
                }
            };
            let Some((state, status)) = examined else {
                continue;
            };
            let running = status == "running" || status == "stopping";
            let net_running = matches!(lifecycle::verify_net(&state), Ok(Some(_)));
            rows.push(Row {
                net_pid: state.net_pid,
                net_running,
                status,
                processes: match running {
                    true => count_in(state.pidns).map(|n| n - 1),
                    false => Some(0),
                },
                age: now_secs().saturating_sub(state.created),
                pid: state.pid,
                running,
                name,
            });
        }
    }
    Ok(rows)
}

/// Keepers the kernel shows that no record names (removed or damaged): listed, with the way to
/// end them.
fn unrecorded_keepers(rows: &mut Vec<Row>) {
    for k in lifecycle::find_keepers() {
        if rows.iter().any(|r| r.pid == k.pid) {
            continue;
        }
        rows.push(Row {
            status: format!(
                "running without its record (/run/sbx/{}.state removed or damaged): stop it with `sbx-exec ctx stop {}`",
                k.name, k.name
            ),
            running: true,
            pid: k.pid,
            net_pid: 0,
            net_running: false,
            processes: count_in(pidns_inode(k.pid).unwrap_or(0)).map(|n| n.saturating_sub(1)),
            age: 0,
            name: k.name,
        });
    }
}

/// `ctx list --json`: one JSON array, an object a row.
fn print_json(rows: &[Row]) {
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
}

/// `ctx list`: a table, a line a row.
fn print_table(rows: &[Row]) {
    println!(
        "{:<20} {:>8} {:>8} {:>10} {:>9}  STATUS",
        "CONTEXT", "KEEPER", "NET", "PROCESSES", "AGE(s)"
    );
    for r in rows {
        let net = match (r.net_pid, r.net_running) {
            (0, _) => "-".to_string(),
            (pid, true) => pid.to_string(),
            (_, false) => "gone".to_string(),
        };
        let processes = r.processes.map_or("?".to_string(), |n| n.to_string());
        println!(
            "{:<20} {:>8} {:>8} {:>10} {:>9}  {}",
            r.name, r.pid, net, processes, r.age, r.status
        );
    }
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

/// Stop a keeper found without its record: SIGTERM (it passes it on), SIGKILL after `timeout`;
/// then its net helpers (found in its cgroups) and with them the published ports, its cgroups
/// (from the kernel's /proc/PID/cgroup, read before) and the damaged record.
fn stop_found(dir: &Path, k: &lifecycle::Found, timeout: u64) -> Result<i32> {
    let cgroups = lifecycle::own_cgroups(k.pid);
    let helpers = lifecycle::net_helpers_in(&cgroups);
    let pidfd = sys::pidfd_open(nix::unistd::Pid::from_raw(k.pid)).with_context(|| {
        format!(
            "cannot open the keeper of context {:?} (pid {})",
            k.name, k.pid
        )
    })?;
    // Still the process found (not a pid reused since).
    if lifecycle::proc_stat(k.pid).map(|(_, s)| s) != Some(k.start) {
        eprintln!("sbx-exec: context {:?}: its keeper is gone", k.name);
        return Ok(EXIT_NOT_RUNNING);
    }
    sys::pidfd_send_signal(&pidfd, Signal::SIGTERM).context("cannot signal the keeper")?;
    if !wait_exit(&pidfd, Duration::from_secs(timeout)) {
        lifecycle::kill_keeper(&pidfd, &k.name, k.pid)?;
    }
    lifecycle::end_net_helpers(&k.name, &helpers)?;
    lifecycle::remove_cgroups(&k.name, &cgroups)?;
    state::remove(dir, &k.name);
    eprintln!(
        "sbx-exec: context {:?}: stopped its keeper (pid {}), which ran without its record",
        k.name, k.pid
    );
    Ok(0)
}

/// Processes (in sbx-exec's own /proc) whose pid namespace is `pidns`; `None` when that cannot
/// be known (`pidns` 0: the keeper's link could not be read, nor can its processes').
fn count_in(pidns: u64) -> Option<usize> {
    if pidns == 0 {
        return None;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Some(1);
    };
    let n = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| pidns_inode(*pid) == Some(pidns))
        .count();
    Some(n.max(1))
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
    let recorded = match state::read(&dir, name) {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "sbx-exec: warning: context {name:?}: {e:#}; looking for its keeper without it"
            );
            None
        }
    };
    let Some(mut state) = recorded else {
        // No record (removed or damaged): the kernel's own shows the keeper, if one runs.
        return match lifecycle::find_keepers()
            .into_iter()
            .find(|k| k.name == name)
        {
            Some(k) => stop_found(&dir, &k, timeout),
            None => {
                state::remove(&dir, name);
                not_running()
            }
        };
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
