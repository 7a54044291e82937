//! Persistent contexts (`persist = true`): processes started by one call are seen and signalled by
//! later calls of the same context, never by other contexts; one keeper per context even under
//! concurrent first calls; `ctx stop` leaves nothing; a dead keeper is replaced; cgroup limits hold.
//!
//! Every test uses its own context names and stops them at the end. The runtime dir /run/sbx is a
//! private tmpfs mounted in the suite's throwaway mount namespace, so the host's is never touched.
//!
//! One file per concern: [`sharing`] (what calls of one context share, and other contexts do
//! not), [`lifecycle`] (stop, replacement, limits, exit status, killed launchers), [`integrity`]
//! (what a policy, a forged signal, a swapped directory or a lost record cannot do). The tests are
//! re-exported here.

mod integrity;
mod lifecycle;
mod sharing;

pub use integrity::*;
pub use lifecycle::*;
pub use sharing::*;

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::Duration;

use crate::harness::*;
use crate::limits::{bomb, started};
use crate::support::{run_in, stop, Policy};

/// Mount a private tmpfs (0700) on /run/sbx, once, inside the suite's throwaway namespace: every
/// test that starts a persistent context calls this first, so keepers and their state never reach
/// the host's /run/sbx.
pub(crate) fn runtime() -> Result<(), String> {
    in_throwaway_namespace()?;
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let r =
            Cmd::sh("{ [ -d /run/sbx ] || mkdir -m 0700 /run/sbx; } && mount -t tmpfs -o mode=0700 sbx-suite /run/sbx").run();
        check(r.ok(), || {
            format!("cannot mount a tmpfs on /run/sbx: {}", r.show())
        })
    })
    .clone()
}

/// A policy with persistent contexts `names`, a one-shot `oneshot` and a one-shot `platform`.
/// `limits` (TOML lines) go into every persistent context's `[limits]`, if given.
fn policy(dir: &TempDir, names: &[&str], limits: Option<&str>) -> String {
    let mut p = Policy::new();
    for n in names {
        p = p.persistent(n);
        if let Some(l) = limits {
            p = p.limits(n, l);
        }
    }
    p.confined("oneshot")
        .confined("platform")
        .write(dir.path())
        .display()
        .to_string()
}

/// Alive = exists and is not a zombie (killed keepers stay zombies of the suite's pid 1).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 1..].trim_start().to_string()))
        .is_some_and(|rest| !rest.starts_with('Z') && !rest.starts_with('X'))
}

fn alive_argv0(mark: &str) -> bool {
    process_argv0(mark).is_some_and(alive)
}

/// Start a background `sleep 300` named `mark` in the persistent context `ctx` (the call returns
/// at once, printing `started`) and wait until it runs; `what` names the call in a failure.
fn start_sleeper(pol: &str, ctx: &str, mark: &str, what: &str) -> Result<(), String> {
    let r = run_in(
        pol,
        ctx,
        &[
            "bash",
            "-c",
            &format!("exec -a {mark} sleep 300 >/dev/null 2>&1 & echo started"),
        ],
    );
    r.expect_code(0, what)?;
    check(
        wait_until(Duration::from_secs(5), || alive_argv0(mark)),
        || format!("the background process did not start: {}", r.show()),
    )
}

/// `ctx list --json`: (keeper pid, running) of `name`'s entries.
fn listed(name: &str) -> Result<Vec<(i32, bool)>, String> {
    let r = Cmd::sbx(["ctx", "list", "--json"]).run();
    r.expect_code(0, "ctx list --json")?;
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim())
        .map_err(|e| format!("bad JSON: {e}: {}", r.show()))?;
    Ok(v.as_array()
        .ok_or("not an array")?
        .iter()
        .filter(|e| e["name"] == name)
        .map(|e| {
            (
                e["keeper_pid"].as_i64().unwrap_or(0) as i32,
                e["running"] == true,
            )
        })
        .collect())
}

fn keeper_of(name: &str) -> Result<i32, String> {
    match listed(name)?.as_slice() {
        [(pid, true)] => Ok(*pid),
        other => Err(format!(
            "expected one running keeper of {name}, got {other:?}"
        )),
    }
}

/// Keepers in the suite's namespace: live processes named sbx-keeper that are pid 1 of their own.
pub fn keepers() -> BTreeSet<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            status.lines().any(|l| l == "Name:\tsbx-keeper")
                && status
                    .lines()
                    .any(|l| l.starts_with("NSpid:") && l.ends_with("\t1"))
                && alive(*pid)
        })
        .collect()
}
