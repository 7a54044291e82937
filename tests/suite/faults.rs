//! Nothing lost under faults (issue #19): a launcher killed at any instant, a keeper killed with
//! calls in flight, a runtime directory that is read-only, full or missing, a caller with few fds
//! or no pids left, secrets writers that close early or never, a status pipe nobody reads, a
//! control plane that keeps crashing. Each case checks that nothing is left behind (processes,
//! zombies, mounts, cgroups, state files) against a snapshot taken before it. Every kill and every
//! load stays inside the suite's throwaway namespaces; cases that change /run/sbx or /proc do so
//! in a further mount namespace of their own (`unshare --mount`).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::harness::*;
use crate::persist::keepers;
use crate::support::{run_in, stop, Policy};

/// What a case may leave behind, seen from the suite's pid 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    procs: BTreeSet<i32>,
    zombies: BTreeSet<i32>,
    mounts: usize,
    cgroups: BTreeSet<String>,
    state: BTreeSet<String>,
}

fn stat_of(pid: i32) -> Option<(char, i32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest: Vec<&str> = s[s.rfind(')')? + 1..].split_whitespace().collect();
    Some((rest.first()?.chars().next()?, rest.get(1)?.parse().ok()?))
}

/// The cgroups of this file's contexts (`sbx-fk*`, `sbx-once-*`, `sbx-sec-*`; other suites may run
/// on the same host), a few levels deep in every hierarchy.
fn sbx_cgroups() -> BTreeSet<String> {
    fn walk(dir: &std::path::Path, depth: usize, out: &mut BTreeSet<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            if ["sbx-fk", "sbx-once-", "sbx-sec-"]
                .iter()
                .any(|p| name.starts_with(p))
            {
                out.insert(e.path().display().to_string());
            }
            if depth > 0 {
                walk(&e.path(), depth - 1, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(std::path::Path::new("/sys/fs/cgroup"), 4, &mut out);
    out
}

pub fn snapshot() -> Snapshot {
    let (mut procs, mut zombies) = (BTreeSet::new(), BTreeSet::new());
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        match stat_of(pid) {
            // An orphan re-parented to the suite (pid 1): the suite reaps it, as an init would.
            Some(('Z', 1)) => {
                let _ = nix::sys::wait::waitpid(
                    Pid::from_raw(pid),
                    Some(nix::sys::wait::WaitPidFlag::WNOHANG),
                );
            }
            Some(('Z', _)) => {
                zombies.insert(pid);
            }
            Some(_) if pid != 1 => {
                procs.insert(pid);
            }
            _ => {}
        }
    }
    let state = std::fs::read_dir("/run/sbx")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    Snapshot {
        procs,
        zombies,
        mounts: std::fs::read_to_string("/proc/self/mountinfo").map_or(0, |m| m.lines().count()),
        cgroups: sbx_cgroups(),
        state,
    }
}

/// Wait (up to 5 s) until nothing is left that `before` did not have; else say what is left.
pub fn nothing_left(before: &Snapshot, what: &str) -> Result<(), String> {
    let mut now = snapshot();
    let clean = |n: &Snapshot| {
        n.procs.is_subset(&before.procs)
            && n.zombies.is_subset(&before.zombies)
            && n.mounts <= before.mounts
            && n.cgroups.is_subset(&before.cgroups)
            && n.state.is_subset(&before.state)
    };
    let end = Instant::now() + Duration::from_secs(5);
    while !clean(&now) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(25));
        now = snapshot();
    }
    let describe = |pids: &BTreeSet<i32>| -> Vec<String> {
        pids.iter()
            .map(|p| {
                let c = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                format!("{p}:{}", String::from_utf8_lossy(&c).replace('\0', " "))
            })
            .collect()
    };
    check(clean(&now), || {
        format!(
            "{what}: left behind: processes {:?}, zombies {:?}, mounts {} -> {}, cgroups {:?}, state {:?}",
            describe(&now.procs.difference(&before.procs).copied().collect()),
            describe(&now.zombies.difference(&before.zombies).copied().collect()),
            before.mounts,
            now.mounts,
            now.cgroups.difference(&before.cgroups).collect::<Vec<_>>(),
            now.state.difference(&before.state).collect::<Vec<_>>(),
        )
    })
}

/// A small random number generator for kill delays (seeded from the clock; the seed is printed).
pub struct Rng(u64);

impl Rng {
    pub fn new() -> Rng {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1;
        println!("    fault delays seeded with {seed}");
        Rng(seed)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// A policy: persistent contexts `persist` (pids_max = 64, so they have cgroups), a one-shot
/// `once`, and a one-shot `sec` taking secret `A` (`extra_sec` lines go into its table).
pub fn policy(dir: &TempDir, persist: &[&str], extra_sec: &str) -> String {
    let mut p = Policy::new();
    for n in persist {
        p = p.persistent(n).limits(n, "pids_max = 64");
    }
    p.confined("once")
        .confined("sec")
        .lines(&format!("secrets.allow = [\"A\"]\n{extra_sec}"))
        .write(dir.path())
        .display()
        .to_string()
}

/// The keeper pid recorded in /run/sbx/NAME.state, if any.
pub fn recorded_keeper(name: &str) -> Option<i32> {
    let text = std::fs::read_to_string(format!("/run/sbx/{name}.state")).ok()?;
    let state: serde_json::Value = serde_json::from_str(&text).ok()?;
    state["pid"]
        .as_i64()
        .and_then(|p| i32::try_from(p).ok())
        .filter(|p| *p > 0)
}

/// Start `sbx-exec ARGS` and SIGKILL it after `delay`; returns once it is reaped.
fn kill_after(args: &[&str], delay: Duration) {
    let mut child = Cmd::sbx(args).spawn();
    std::thread::sleep(delay);
    // The launcher alone: what it started must end with it.
    let _ = child.kill();
    let _ = child.wait();
    // The killed call's command dies with it and is re-parented to the suite, pid 1 here: reap
    // it as a container's init would (a keeper waits for every process of its context).
    let end = Instant::now() + Duration::from_millis(100);
    while Instant::now() < end {
        snapshot();
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Regression (#19, "orphaned keeper"): the first caller SIGKILLed while it starts a persistent
/// context, 50 times at 0–20 ms. Afterwards a keeper either is recorded (and `ctx stop` ends it)
/// or is gone with its cgroups; never one running with no state.
pub fn killed_first_caller_leaves_no_orphan_keeper() -> Result<(), String> {
    needs_isolation()?;
    crate::persist::runtime()?;
    let dir = TempDir::new("faults-first");
    let pol = policy(&dir, &["fkfirst"], "");
    let before = snapshot();
    let known = keepers();
    let mut rng = Rng::new();
    let mut orphans = Vec::new();
    for i in 0..50 {
        let ms = rng.below(21);
        kill_after(
            &["--policy", &pol, "--ctx", "fkfirst", "--", "true"],
            Duration::from_millis(ms),
        );
        // Whatever the kill left, `ctx stop` (and the next call) must be able to find and end.
        let r = stop(&pol, "fkfirst");
        let gone = wait_until(Duration::from_secs(2), || {
            keepers().is_subset(&known) && sbx_cgroups().is_subset(&before.cgroups)
        });
        if !gone {
            let left: Vec<i32> = keepers().difference(&known).copied().collect();
            orphans.push(format!(
                "run {i} (killed at {ms} ms): keepers {left:?} cgroups {:?}; ctx stop said: {}",
                sbx_cgroups()
                    .difference(&before.cgroups)
                    .collect::<Vec<_>>(),
                r.stderr.trim()
            ));
            for k in left {
                let _ = kill(Pid::from_raw(k), Signal::SIGKILL);
            }
            let _ = std::fs::remove_file("/run/sbx/fkfirst.state");
            if orphans.len() >= 3 {
                break;
            }
        }
    }
    check(orphans.is_empty(), || {
        format!("orphaned keepers:\n{}", orphans.join("\n"))
    })?;
    nothing_left(&before, "after 50 killed first calls")
}

/// Regression (#19, "forgotten keeper"): a join with too few fds fails with 125 and its cause;
/// it never takes the live keeper for dead, so its state and its processes stay.
pub fn transient_errors_never_forget_a_live_keeper() -> Result<(), String> {
    needs_isolation()?;
    crate::persist::runtime()?;
    let dir = TempDir::new("faults-fds");
    let pol = policy(&dir, &["fkfds"], "");
    let before = snapshot();
    let mark = marker("fdbg");
    run_in(
        &pol,
        "fkfds",
        &[
            "bash",
            "-c",
            &format!("exec -a {mark} sleep 300 >/dev/null 2>&1 &"),
        ],
    )
    .expect_code(0, "first call")?;
    let keeper = recorded_keeper("fkfds").ok_or("no keeper recorded")?;
    let mut seen = Vec::new();
    for n in 4..=14 {
        let script = format!("ulimit -n {n}; exec \"$0\" --policy {pol} --ctx fkfds -- true");
        let mut c = Cmd::new("/bin/sh");
        c.command().args(["-c", &script, bin()]);
        let r = c.limit(Duration::from_secs(20)).run();
        check(r.code == Some(0) || r.code == Some(125), || {
            format!("ulimit -n {n}: {}", r.show())
        })?;
        if r.code == Some(125) {
            check(r.stderr.contains("sbx-exec:"), || {
                format!("ulimit -n {n}: 125 without a message: {}", r.show())
            })?;
            seen.push(format!("{n}: {}", r.stderr.trim()));
        }
        check(recorded_keeper("fkfds") == Some(keeper), || {
            format!(
                "ulimit -n {n}: the live keeper {keeper} was forgotten (state now {:?}): {}",
                recorded_keeper("fkfds"),
                r.show()
            )
        })?;
        check(process_argv0(&mark).is_some(), || {
            format!("ulimit -n {n}: the context's process is gone")
        })?;
    }
    println!("    refusals under a small fd limit: {seen:?}");
    let ps = run_in(&pol, "fkfds", &["ps", "-eo", "args"]);
    check(ps.ok() && ps.stdout.contains(&mark), || {
        format!(
            "a later call does not see the context's process: {}",
            ps.show()
        )
    })?;
    stop(&pol, "fkfds").expect_code(0, "ctx stop")?;
    nothing_left(&before, "after joins with few fds")
}

/// Kills at random points (0–20 ms) of one-shot and join calls leave nothing; the context stays
/// usable.
pub fn killed_one_shot_and_join_calls_leave_nothing() -> Result<(), String> {
    needs_isolation()?;
    crate::persist::runtime()?;
    let dir = TempDir::new("faults-kill");
    let pol = policy(&dir, &["fkjoin"], "");
    let before = snapshot();
    let mut rng = Rng::new();
    for _ in 0..20 {
        let ms = Duration::from_millis(rng.below(21));
        kill_after(&["--policy", &pol, "--ctx", "once", "--", "sleep", "5"], ms);
    }
    nothing_left(&before, "after killed one-shot calls")?;
    run_in(&pol, "fkjoin", &["true"]).expect_code(0, "first call")?;
    let keeper = recorded_keeper("fkjoin");
    for _ in 0..20 {
        let ms = Duration::from_millis(rng.below(21));
        kill_after(
            &["--policy", &pol, "--ctx", "fkjoin", "--", "sleep", "5"],
            ms,
        );
    }
    let r = run_in(&pol, "fkjoin", &["ps", "-eo", "args"]);
    r.expect_code(0, "a call after the killed joins")?;
    check(recorded_keeper("fkjoin") == keeper, || {
        "the keeper changed".into()
    })?;
    check(!r.stdout.contains("sleep 5"), || {
        format!(
            "a killed join's command outlived its launcher: {}",
            r.show()
        )
    })?;
    stop(&pol, "fkjoin").expect_code(0, "ctx stop")?;
    nothing_left(&before, "after killed joins")
}

/// The command dies with its caller in joins that change ids (#26): a persistent context with
/// `identity`, and one with `security.run_as`, each joined 50 times by a launcher SIGKILLed at a
/// random instant 0–20 ms into the call (the identity handshake included). Afterwards no `sleep`
/// of those calls is left in either context. Control: a call that is not killed leaves its
/// command running while it runs (the check sees it).
pub fn killed_joins_that_change_ids_leave_no_command() -> Result<(), String> {
    needs_isolation()?;
    crate::persist::runtime()?;
    let dir = TempDir::new("faults-ids");
    let (ident, runas) = (unique_name("fkid"), unique_name("fkrun"));
    let ctx = |name: &str, extra: &str| {
        format!(
            "[context.{name}]\nnamespaces = [\"pid\", \"mount\", \"ipc\", \"uts\"]\npersist = true\n\
             env.allow = [\"PATH\"]\nfs.hide = [\"/run/sbx\"]\nsecurity.seccomp = \"default\"\n{extra}\n"
        )
    };
    let text = format!(
        "version = 1\n{}{}",
        ctx(
            &ident,
            "identity = { uid = 100000, gid = 100000, count = 65536 }"
        ),
        ctx(&runas, "security.run_as = { uid = 1000, gid = 1000 }")
    );
    let pol = dir.file("policy.toml", &text).display().to_string();
    let mut rng = Rng::new();
    for name in [&ident, &runas] {
        run_in(&pol, name, &["true"]).expect_code(0, "first call")?;
        // Control: while a call runs, its command is seen.
        let mut held = Cmd::sbx(["--policy", &pol, "--ctx", name, "--", "sleep", "7"]).spawn();
        let seen = wait_until(Duration::from_secs(5), || {
            run_in(&pol, name, &["ps", "-eo", "args"])
                .stdout
                .contains("sleep 7")
        });
        let _ = held.kill();
        let _ = held.wait();
        check(seen, || {
            format!("{name}: control: the running call's command is not seen")
        })?;
        for _ in 0..50 {
            let ms = Duration::from_millis(rng.below(21));
            kill_after(&["--policy", &pol, "--ctx", name, "--", "sleep", "7"], ms);
        }
        let left = wait_until(Duration::from_secs(5), || {
            !run_in(&pol, name, &["ps", "-eo", "args"])
                .stdout
                .contains("sleep 7")
        });
        let r = run_in(&pol, name, &["ps", "-eo", "args"]);
        let n = r.stdout.lines().filter(|l| l.contains("sleep 7")).count();
        stop(&pol, name).expect_code(0, "ctx stop")?;
        check(left, || {
            format!(
                "{name}: {n} killed calls' commands outlived their launcher: {}",
                r.show()
            )
        })?;
    }
    Ok(())
}
