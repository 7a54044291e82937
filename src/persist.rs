//! Persistent contexts (`persist = true`): the first call starts a keeper, pid 1 of the context's
//! namespaces, that stays; every later call joins those namespaces through a pidfd, so processes
//! started by one call are seen and signalled by the next (`startProcess`, then `ps`, `kill`).
//!
//! ```text
//! first call:  sbx-exec ─fork─> helper ─clone(NEW*)─> keeper (pid 1: mounts, /proc, reaps)
//!                 │               └ exits at once, so the keeper is nobody's zombie
//!                 └ waits for "ready", records the keeper in /run/sbx/NAME.state
//! every call:  sbx-exec ─setns(pidfd, NEWPID)─fork─> target ─setns(pidfd, NS|IPC|UTS[|NET])─> exec
//! ```
//! The outer sbx-exec never enters the sandbox's mount namespace; only the target does, just
//! before it drops its privileges exactly as a fresh launch does ([`Target`]). The keeper is
//! identified by pid, start time and pid-namespace inode, re-checked after `pidfd_open`, so a
//! recycled pid or a dead keeper is never joined.

use std::ffi::CString;
use std::hash::{Hash, Hasher};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use crate::cgroup;
use crate::error::{EXIT_SBX, EXIT_TIMEOUT};
use crate::exec::Target;
use crate::launch::Sandbox;
use crate::namespaces;
use crate::policy::{Context, Namespace};
use crate::reaper::{self, Outcome};
use crate::runstate::{self, State};
use crate::sys;

/// `ctx stop` of a context that is not running exits with this status.
pub const EXIT_NOT_RUNNING: i32 = 1;
/// The helper that creates the keeper exits with this when the kernel refuses the namespaces.
const HELPER_NO_NAMESPACES: i32 = 3;
/// How long a first call waits for a new keeper to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Policy rules for `persist` and `limits` (called from `Policy::validate`).
pub fn check_policy(ctx: &Context) -> std::result::Result<(), String> {
    if ctx.persist {
        if ctx.supervise.is_some() {
            return Err("persist = true cannot be combined with [supervise] (control mode runs in the container's own namespaces); remove one of them".into());
        }
        if !(ctx.has(Namespace::Pid) && ctx.has(Namespace::Mount)) {
            return Err("persist = true needs the \"pid\" and \"mount\" namespaces (the keeper is pid 1 of them); add both to namespaces".into());
        }
        let hidden = ctx.fs.hide.iter().any(|h| {
            std::path::Path::new(runstate::RUNTIME_DIR).starts_with(h.as_path()) && h.0 != "/"
        });
        if !hidden {
            return Err(format!(
                "persist = true needs fs.hide to include {} (the keepers' state must be invisible to the context's code, which outlives each call); add it to [fs] hide",
                runstate::RUNTIME_DIR
            ));
        }
        if !ctx.secrets.allow.is_empty() {
            return Err("persist = true cannot be combined with secrets.allow: processes of a persistent context outlive the call, \
                        so a secret handed to one call would stay reachable by every later call's code; use a one-shot context for secrets".into());
        }
        if ctx.security.scope {
            return Err("persist = true cannot be combined with security.scope = true: Landlock scopes signals and abstract sockets to one call's own domain, \
                        so a later call could not signal (kill) what an earlier call started; the context's pid namespace already keeps its signals inside it; set scope = false".into());
        }
    }
    if let Some(l) = &ctx.limits {
        if !ctx.persist {
            return Err("[limits] apply to persistent contexts only (one-shot contexts have no cgroup yet); set persist = true or remove [limits]".into());
        }
        if l.pids_max == Some(0) {
            return Err("limits.pids_max must be at least 1".into());
        }
    }
    Ok(())
}

/// A persistent launch: find or start the keeper, join it, run the command, report its status.
pub fn run(
    ctx_name: &str,
    ctx: &Context,
    sandbox: &Sandbox,
    target: &Target,
    report: &dyn Fn(&str),
) -> Result<i32> {
    let keeper = ensure_keeper(ctx_name, ctx, sandbox)?;
    let cwd = sandbox
        .cwd
        .as_ref()
        .map(|p| CString::new(p.as_os_str().as_bytes()))
        .transpose()
        .context("the working directory contains a NUL byte")?;
    let join_flags =
        CloneFlags::from_bits_truncate(namespaces::flags(&sandbox.kinds) & !libc::CLONE_NEWPID);
    // Only this process's future children land in the context's pid namespace.
    nix::sched::setns(keeper.pidfd.as_fd(), CloneFlags::CLONE_NEWPID).with_context(|| {
        format!(
            "cannot join the pid namespace of context {ctx_name:?} (keeper pid {})",
            keeper.state.pid
        )
    })?;
    let (alive_r, alive_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("pipe")?;
    let child = match sys::fork().context("cannot fork the command")? {
        ForkResult::Child => {
            drop(alive_w);
            in_target(
                ctx_name,
                &keeper,
                join_flags,
                cwd.as_deref(),
                alive_r,
                target,
            )
        }
        ForkResult::Parent { child } => child,
    };
    drop(alive_r);
    report(&format!("{{\"child-pid\":{}}}", child.as_raw()));
    let timeout = ctx.timeout.filter(|t| *t > 0).map(Duration::from_secs);
    let code = match reaper::supervise(child, timeout) {
        Outcome::Exited(code) => code,
        Outcome::TimedOut => {
            eprintln!(
                "sbx-exec: context {ctx_name:?} timed out after {}s; the command was stopped (timeout in the policy; processes it started in the background keep running)",
                ctx.timeout.unwrap_or(0)
            );
            EXIT_TIMEOUT
        }
    };
    drop(alive_w);
    report(&format!("{{\"exit-code\":{code}}}"));
    Ok(code)
}

/// The forked target: die with sbx-exec, enter the context's cgroups and namespaces, then drop
/// privileges and exec like any launch. Never returns.
fn in_target(
    ctx_name: &str,
    keeper: &Keeper,
    flags: CloneFlags,
    cwd: Option<&std::ffi::CStr>,
    alive: OwnedFd,
    target: &Target,
) -> ! {
    let fail = |what: &str, e: &dyn std::fmt::Display| -> ! {
        eprintln!("sbx-exec: {what}: {e}");
        sys::exit_now(EXIT_SBX)
    };
    if let Err(e) = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL) {
        fail("cannot set the parent-death signal", &e);
    }
    let mut fds = [PollFd::new(alive.as_fd(), PollFlags::POLLIN)];
    if poll(&mut fds, PollTimeout::ZERO).unwrap_or(0) > 0 {
        sys::exit_now(EXIT_SBX);
    }
    drop(alive);
    if let Err(e) = cgroup::join(&keeper.cgroup_procs) {
        fail("cannot enter the context's cgroup", &e);
    }
    if let Err(e) = nix::sched::setns(keeper.pidfd.as_fd(), flags) {
        fail(
            &format!("cannot join the namespaces of context {ctx_name:?}"),
            &e,
        );
    }
    if let Some(cwd) = cwd {
        if let Err(e) = nix::unistd::chdir(cwd) {
            fail(
                &format!(
                    "the working directory {} does not exist inside context {ctx_name:?} (a private tmpfs or hidden path covers it); \
                     run sbx-exec from a directory the context shares, such as /workspace",
                    cwd.to_string_lossy()
                ),
                &e,
            );
        }
    }
    target.exec()
}

/// A verified, running keeper, and what a target needs to join it.
struct Keeper {
    state: State,
    pidfd: OwnedFd,
    cgroup_procs: Vec<OwnedFd>,
}

/// What in the context decides the keeper's namespaces and mounts: a call made with a different
/// one must not silently join a keeper built from the old one.
fn fingerprint(sandbox: &Sandbox) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    format!(
        "{:?}|{:?}|{}",
        sandbox.kinds, sandbox.mounts, sandbox.loopback
    )
    .hash(&mut h);
    h.finish()
}

/// Under the context's lock: the recorded keeper if it is alive and the same one, else a new one.
fn ensure_keeper(ctx_name: &str, ctx: &Context, sandbox: &Sandbox) -> Result<Keeper> {
    let dir = runstate::dir(true)?.context("no runtime directory")?;
    let _lock = runstate::lock(&dir, ctx_name)?;
    let fp = fingerprint(sandbox);
    if let Some(state) = runstate::read(&dir, ctx_name)? {
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
                runstate::remove(&dir, ctx_name);
                cgroup::remove(&state.cgroups);
            }
        }
    }
    start_keeper(ctx_name, ctx, sandbox, &dir, fp)
}

/// The pidfd of the recorded keeper if, after opening it, the process is still that keeper:
/// alive (not a zombie), same start time, same pid namespace.
fn verify(state: &State) -> Option<OwnedFd> {
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
fn proc_stat(pid: i32) -> Option<(char, u64)> {
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

fn pidns_inode(pid: i32) -> Option<u64> {
    std::fs::metadata(format!("/proc/{pid}/ns/pid"))
        .ok()
        .map(|m| m.ino())
}

fn now_secs() -> u64 {
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
    let cg_plan = match &ctx.limits {
        Some(l) if !l.is_empty() => cgroup::plan_for(ctx_name, l, ctx.degrade)?,
        _ => None,
    };
    let cg_paths: Vec<PathBuf> = cg_plan
        .iter()
        .flat_map(|p| p.dirs.iter().map(|d| d.path.clone()))
        .collect();
    let cgroup_procs = match &cg_plan {
        Some(p) => cgroup::create(p)
            .with_context(|| format!("cannot set up [context.{ctx_name}.limits]"))?,
        None => Vec::new(),
    };
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
            runstate::write(dir, ctx_name, &state)?;
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
            cgroup::remove(&cg_paths);
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
    let flags = namespaces::flags(&sandbox.kinds);
    let helper = match sys::fork().context("cannot fork")? {
        ForkResult::Child => {
            drop(info_r);
            drop(ready_r);
            if let Err(e) = cgroup::join(cgroup_procs) {
                eprintln!("sbx-exec: cannot enter the context's cgroup: {e}");
                sys::exit_now(EXIT_SBX);
            }
            match sys::clone_fork(flags) {
                Ok(Some(pid)) => {
                    let _ = nix::unistd::write(&info_w, &pid.as_raw().to_ne_bytes());
                    sys::exit_now(0)
                }
                Ok(None) => {
                    drop(info_w);
                    keeper_main(sandbox, ready_w)
                }
                Err(_) => sys::exit_now(HELPER_NO_NAMESPACES),
            }
        }
        ForkResult::Parent { child } => child,
    };
    drop(info_w);
    drop(ready_w);
    let status = waitpid(helper, None).context("cannot wait for the keeper's helper")?;
    if status == WaitStatus::Exited(helper, HELPER_NO_NAMESPACES) {
        namespaces::available(ctx_name, &sandbox.kinds, false)?;
        bail!("cannot create the namespaces of context {ctx_name:?}");
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

/// The keeper: pid 1 of the context. Sets up the sandbox as a one-shot pid 1 does, detaches from
/// the caller (new session, stdio on /dev/null, no other fds), says "ready", then reaps forever.
fn keeper_main(sandbox: &Sandbox, ready: OwnedFd) -> ! {
    let setup = || -> Result<()> {
        nix::unistd::setsid().context("cannot start a new session")?;
        // Nobody in the context may ptrace its pid 1 or read its memory, environ or exe.
        nix::sys::prctl::set_dumpable(false).context("cannot make the keeper non-dumpable")?;
        let _ = nix::sys::prctl::set_name(c"sbx-keeper");
        let null = nix::fcntl::open(
            c"/dev/null",
            OFlag::O_RDWR | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .context("cannot open /dev/null")?;
        let mut keep = [ready.as_raw_fd(), null];
        keep.sort_unstable();
        sys::close_fds_from(3, &keep, false).context("cannot close inherited file descriptors")?;
        if let Some(plan) = &sandbox.mounts {
            crate::mounts::apply(plan, sandbox.degrade)?;
        }
        if sandbox.loopback {
            sys::loopback_up().context("cannot bring up loopback in the new network namespace")?;
        }
        nix::unistd::chdir("/").context("cannot change to /")?;
        for fd in 0..3 {
            nix::unistd::dup2(null, fd).context("cannot put stdio on /dev/null")?;
        }
        let _ = nix::unistd::close(null);
        Ok(())
    };
    if let Err(e) = setup() {
        eprintln!("sbx-exec: keeper: {e:#}");
        sys::exit_now(EXIT_SBX);
    }
    let _ = nix::unistd::write(&ready, b"R");
    drop(ready);
    keeper_loop()
}

/// Reap every orphan; on SIGTERM from outside the context (`ctx stop`; a sender inside would have
/// a pid here), SIGTERM everything in it and exit once nothing else is left.
fn keeper_loop() -> ! {
    let set = reaper::blocked_set();
    let mut stopping = false;
    loop {
        let wait = stopping.then_some(Duration::from_millis(50));
        if let Ok(Some((Signal::SIGTERM, 0))) = sys::wait_signal_from(&set, wait) {
            if !stopping {
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

fn require_root(what: &str) -> Result<()> {
    if !nix::unistd::getuid().is_root() {
        bail!("`sbx-exec ctx {what}` is for root only (persistent contexts belong to the container's administrator)");
    }
    Ok(())
}

fn checked_name(name: &str) -> Result<&str> {
    crate::policy::ContextName::try_from(name.to_string()).map_err(|e| anyhow::anyhow!(e))?;
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
        crate::policy::load(policy)?;
    }
    let mut rows = Vec::new();
    if let Some(dir) = runstate::dir(false)? {
        for name in runstate::names(&dir)? {
            let Some(state) = runstate::read(&dir, &name)? else {
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
        crate::policy::load(policy)?;
    }
    let not_running = || {
        eprintln!("sbx-exec: context {name:?} is not running (nothing to stop)");
        Ok(EXIT_NOT_RUNNING)
    };
    let Some(dir) = runstate::dir(false)? else {
        return not_running();
    };
    let _lock = runstate::lock(&dir, name)?;
    let Some(state) = runstate::read(&dir, name)? else {
        return not_running();
    };
    let Some(pidfd) = verify(&state) else {
        runstate::remove(&dir, name);
        cgroup::remove(&state.cgroups);
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
    runstate::remove(&dir, name);
    for _ in 0..50 {
        cgroup::remove(&state.cgroups);
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

    #[test]
    fn persist_rules() {
        let parse = |t: &str| crate::policy::Policy::parse(t, "t.toml");
        let base = "version = 1\n[context.x]\n";
        let e = parse(&format!(
            "{base}persist = true\nnamespaces = [\"pid\", \"mount\"]\n"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("fs.hide"), "{e}");
        let base = "version = 1\n[context.x]\nfs.hide = [\"/run/sbx\"]\n";
        let e = parse(&format!("{base}persist = true\nnamespaces = [\"mount\"]\n")).unwrap_err();
        assert!(e.to_string().contains("\"pid\" and \"mount\""), "{e}");
        let e = parse(
            "version = 1\n[context.x]\npersist = true\nnamespaces = []\n[context.x.supervise]\nports = [1]\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("[supervise]"), "{e}");
        let e = parse(&format!("{base}persist = true\nnamespaces = [\"pid\", \"mount\"]\n[context.x.security]\nscope = true\n")).unwrap_err();
        assert!(e.to_string().contains("scope"), "{e}");
        let e = parse(&format!(
            "{base}namespaces = [\"pid\", \"mount\"]\n[context.x.limits]\npids_max = 3\n"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("persistent contexts only"), "{e}");
        let ok = parse(&format!(
            "{base}persist = true\nnamespaces = [\"pid\", \"mount\"]\n[context.x.limits]\npids_max = 3\nmemory_max = \"64M\"\n"
        ))
        .unwrap();
        assert!(ok.context("x").unwrap().persist);
        let e = parse(&format!("{base}persist = true\nnamespaces = [\"pid\", \"mount\"]\n[context.x.limits]\nmemory_max = \"lots\"\n")).unwrap_err();
        assert!(e.to_string().contains("t.toml:"), "{e}");
    }
}
