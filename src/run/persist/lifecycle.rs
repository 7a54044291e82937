//! Is a recorded keeper alive, and ending one: what a call, `ctx list` and `ctx stop` share.
//!
//! Only a definite answer counts as "dead": no such process (ESRCH / ENOENT), a different start
//! time (the pid was reused), a zombie, or a different pid namespace. Anything else that stops the
//! check (EMFILE, ENFILE, ENOMEM, EACCES...) is an error naming its cause; a live keeper is never
//! forgotten because its check failed.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::state::{self, State};
use crate::run::apply::cgroup;
use crate::sys;

/// How long the cgroups of an ended keeper may take to empty (its processes being reaped).
const CGROUP_GRACE: Duration = Duration::from_secs(3);

/// The pidfd of the recorded keeper if, after opening it, the process is still that keeper:
/// alive (not a zombie), same start time, same pid namespace. `Ok(None)`: definitely not (gone,
/// or another process). `Err`: the check itself failed, with its cause.
pub fn verify(state: &State) -> Result<Option<OwnedFd>> {
    let pid = state.pid;
    let Some(pidfd) = open_same(pid, state.start, "keeper")? else {
        return Ok(None);
    };
    // It is still pid 1 of a pid namespace of its own (its status, readable by anyone).
    match read_proc(pid, "status", std::fs::read_to_string) {
        Ok(Some(text)) if is_pidns_root(&text) => {}
        Ok(_) => return Ok(None),
        Err(e) => return Err(unknown("keeper", pid, &format!("/proc/{pid}/status"), &e)),
    }
    // A keeper on its way out has already let go of its mount namespace. The namespace links
    // of a non-dumpable process need CAP_SYS_PTRACE, which a container may not give
    // (`--cap-add SYS_ADMIN` alone): without it (EACCES) the pidfd, the start time and the pid
    // namespace's root say it is the keeper.
    match read_proc(pid, "ns/mnt", std::fs::metadata) {
        Ok(Some(_)) => {}
        Ok(None) => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => {}
        Err(e) => return Err(unknown("keeper", pid, &format!("/proc/{pid}/ns/mnt"), &e)),
    }
    match read_proc(pid, "ns/pid", std::fs::metadata) {
        Ok(Some(m)) if state.pidns == 0 || m.ino() == state.pidns => Ok(Some(pidfd)),
        Ok(_) => Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => Ok(Some(pidfd)),
        Err(e) => Err(unknown("keeper", pid, &format!("/proc/{pid}/ns/pid"), &e)),
    }
}

/// Is the process whose /proc/PID/status is `status` pid 1 of a pid namespace below this one?
pub fn is_pidns_root(status: &str) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .map(|v| v.split_whitespace().collect::<Vec<_>>())
        .is_some_and(|ids| ids.len() >= 2 && ids.last() == Some(&"1"))
}

/// The pidfd of the recorded net helper if, after opening it, the process is still that helper
/// (alive, same start time). `Ok(None)`: none recorded, or definitely gone. `Err`: the check
/// itself failed, with its cause.
pub fn verify_net(state: &State) -> Result<Option<OwnedFd>> {
    open_same(state.net_pid, state.net_start, "net helper")
}

/// The pidfd of `pid` if, after opening it, it is still the process (`who`) that started at
/// `start` and is not a zombie. `Ok(None)`: none recorded (pid 0 or 1), or definitely not that
/// process. `Err`: the check itself failed, with its cause.
fn open_same(pid: i32, start: u64, who: &str) -> Result<Option<OwnedFd>> {
    if pid <= 1 {
        return Ok(None);
    }
    let pidfd = match sys::pidfd_open(Pid::from_raw(pid)) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(None),
        Err(e) => return Err(unknown(who, pid, "pidfd_open", &e)),
    };
    match read_proc(pid, "stat", std::fs::read_to_string) {
        Ok(Some(text)) => match parse_stat(&text) {
            Some((run, s)) if !matches!(run, 'Z' | 'X' | 'x') && s == start => Ok(Some(pidfd)),
            Some(_) => Ok(None),
            None => bail!("cannot parse /proc/{pid}/stat"),
        },
        Ok(None) => Ok(None),
        Err(e) => Err(unknown(who, pid, &format!("/proc/{pid}/stat"), &e)),
    }
}

/// Why it is not known whether `who` (pid `pid`) still runs: `step` failed with `e`.
fn unknown(who: &str, pid: i32, step: &str, e: &std::io::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot tell whether the {who} (pid {pid}) is alive: {step}: {}; nothing was changed",
        crate::error::cause(e)
    )
}

/// End the recorded net helper, if it still runs: SIGKILL (it holds nothing of the context's
/// own; it would exit by itself once the keeper has) and wait until its ports are closed.
pub fn end_net(ctx_name: &str, state: &State) -> Result<()> {
    if let Some(pidfd) = verify_net(state)? {
        let _ = sys::pidfd_send_signal(&pidfd, Signal::SIGKILL);
        if !wait_exit(&pidfd, Duration::from_secs(10)) {
            bail!(
                "the net helper of context {ctx_name:?} (pid {}) did not end within 10 s of SIGKILL",
                state.net_pid
            );
        }
    }
    Ok(())
}

/// Read /proc/PID/WHAT; `Ok(None)` when the process (or that file of an exiting one) is gone.
fn read_proc<T>(
    pid: i32,
    what: &str,
    f: impl FnOnce(String) -> std::io::Result<T>,
) -> std::io::Result<Option<T>> {
    match f(format!("/proc/{pid}/{what}")) {
        Ok(v) => Ok(Some(v)),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESRCH)) => {
            // An empty /proc (not mounted) is not a dead keeper.
            if std::fs::metadata("/proc/self/stat").is_err() {
                return Err(std::io::Error::other(
                    "/proc is not mounted (or empty) in sbx-exec's mount namespace",
                ));
            }
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// State letter and start time (field 22) from /proc/PID/stat.
pub fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

pub fn parse_stat(text: &str) -> Option<(char, u64)> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

/// The inode of `pid`'s pid namespace; `None` if it cannot be read (gone, or a non-dumpable
/// process without CAP_SYS_PTRACE).
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

/// End what a state records, under the context's lock: SIGKILL its keeper if that still runs,
/// wait for it, end its net helper, remove its cgroups (once empty), then the state file. For a keeper whose first
/// call died before recording it, the keeper ends itself (it never got its "commit") and its
/// cgroups empty within `CGROUP_GRACE`.
pub fn end(dir: &Path, ctx_name: &str, state: &State) -> Result<()> {
    if let Some(pidfd) = verify(state)? {
        kill_keeper(&pidfd, ctx_name, state.pid)?;
    }
    end_net(ctx_name, state)?;
    remove_cgroups(ctx_name, &state.cgroups)?;
    state::remove(dir, ctx_name);
    Ok(())
}

/// Remove `paths` once they are empty (a killed keeper's processes take a moment to leave).
pub fn remove_cgroups(ctx_name: &str, paths: &[PathBuf]) -> Result<()> {
    let end = Instant::now() + CGROUP_GRACE;
    loop {
        cgroup::remove(&cgroup::Host, paths);
        let left: Vec<&PathBuf> = paths.iter().filter(|p| p.exists()).collect();
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() >= end {
            bail!(
                "the cgroups of context {ctx_name:?} still hold processes after {} s: {left:?}; retry once they have ended",
                CGROUP_GRACE.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGKILL a keeper and wait (30 s at most) until it is gone; an error that says why it may not be.
pub fn kill_keeper(pidfd: &OwnedFd, ctx_name: &str, pid: i32) -> Result<()> {
    let _ = sys::pidfd_send_signal(pidfd, Signal::SIGKILL);
    if !wait_exit(pidfd, Duration::from_secs(30)) {
        bail!(
            "the keeper of context {ctx_name:?} (pid {pid}) did not finish within 30 s of SIGKILL: the kernel ends a context only once \
             every process of it has been reaped, and a command whose sbx-exec was killed is reaped by the container's init; \
             run under an init that reaps orphans (sbx-exec control mode, tini, docker run --init)"
        );
    }
    Ok(())
}

/// Wait until the process behind `pidfd` has exited (for a keeper: after the kernel has killed
/// and released everything else in its pid namespace).
pub fn wait_exit(pidfd: &OwnedFd, timeout: Duration) -> bool {
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

/// Has the keeper behind `pidfd` (pid `pid`) exited or begun to exit?
pub fn exiting(pidfd: &OwnedFd, pid: i32) -> bool {
    // (Without CAP_SYS_PTRACE the link cannot be read: then only the pidfd says so.)
    wait_exit(pidfd, Duration::ZERO)
        || matches!(read_proc(pid, "ns/mnt", std::fs::metadata), Ok(None))
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

/// A keeper the kernel shows, whatever the records in /run/sbx say (a second record, for a state
/// file that was removed or damaged): a process named `sbx-keeper` that is pid 1 of a pid
/// namespace below this one (only sbx-exec makes those: code in a context cannot create a pid
/// namespace, nor be its pid 1), its context named by the first call's command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub pid: i32,
    pub start: u64,
    pub name: String,
}

/// Every keeper the kernel shows.
pub fn find_keepers() -> Vec<Found> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(keeper_at)
        .collect()
}

/// The keeper at `pid`, if that is one.
fn keeper_at(pid: i32) -> Option<Found> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    if comm.trim_end() != "sbx-keeper" {
        return None;
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    if !is_pidns_root(&status) {
        return None;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let name = context_in(&cmdline)?;
    let (state, start) = proc_stat(pid)?;
    (!matches!(state, 'Z' | 'X' | 'x')).then_some(Found { pid, start, name })
}

/// The context a launcher's command line names (`--ctx NAME` or `--ctx=NAME`, before `--`).
pub fn context_in(cmdline: &[u8]) -> Option<String> {
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        match *a {
            b"--" => return None,
            b"--ctx" => {
                return it
                    .next()
                    .and_then(|n| std::str::from_utf8(n).ok())
                    .map(str::to_string)
            }
            _ => {
                if let Some(n) = a.strip_prefix(b"--ctx=") {
                    return std::str::from_utf8(n).ok().map(str::to_string);
                }
            }
        }
    }
    None
}

/// The cgroup directories a process is in that sbx-exec made (their last component starts with
/// `sbx-`), from /proc/PID/cgroup: the kernel's own record of a keeper's cgroups.
pub fn own_cgroups(pid: i32) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let base = match controllers {
            // v2's hierarchy: /sys/fs/cgroup itself, or /sys/fs/cgroup/unified beside v1's.
            "" if !Path::new("/sys/fs/cgroup/cgroup.controllers").exists() => {
                PathBuf::from("/sys/fs/cgroup/unified")
            }
            "" => PathBuf::from("/sys/fs/cgroup"),
            c => PathBuf::from("/sys/fs/cgroup").join(c.trim_start_matches("name=")),
        };
        let dir = base.join(path.trim_start_matches('/'));
        let ours = dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("sbx-") && n != "sbx-init");
        if ours && dir.is_dir() && !out.contains(&dir) {
            out.push(dir);
        }
    }
    out
}

/// The net helpers (processes named `sbx-net`) in cgroups `paths`, as pidfds: the ones of a
/// keeper found without its record (its helper's pid was in that record).
pub fn net_helpers_in(paths: &[PathBuf]) -> Vec<OwnedFd> {
    let mut out = Vec::new();
    for p in paths {
        let Ok(procs) = std::fs::read_to_string(p.join("cgroup.procs")) else {
            continue;
        };
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            let Ok(fd) = sys::pidfd_open(Pid::from_raw(pid)) else {
                continue;
            };
            // Named so after the pidfd was opened: the pidfd is that process, not a reused pid.
            let named = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim_end() == "sbx-net");
            if named && !out.iter().any(|(q, _)| *q == pid) {
                out.push((pid, fd));
            }
        }
    }
    out.into_iter().map(|(_, fd)| fd).collect()
}

/// SIGKILL net helpers found by [`net_helpers_in`] and wait (10 s at most) until they are gone,
/// so their published ports are closed on return.
pub fn end_net_helpers(ctx_name: &str, helpers: &[OwnedFd]) -> Result<()> {
    for fd in helpers {
        let _ = sys::pidfd_send_signal(fd, Signal::SIGKILL);
        if !wait_exit(fd, Duration::from_secs(10)) {
            bail!("a net helper of context {ctx_name:?} did not end within 10 s of SIGKILL");
        }
    }
    Ok(())
}

#[cfg(test)]
mod found_tests {
    use super::*;

    #[test]
    fn the_context_is_read_from_the_first_calls_command_line() {
        let cl = |args: &[&str]| args.join("\0").into_bytes();
        assert_eq!(
            context_in(&cl(&[
                "sbx-exec", "--policy", "p.toml", "--ctx", "user", "--", "sh"
            ])),
            Some("user".into())
        );
        assert_eq!(
            context_in(&cl(&["sbx-exec", "--ctx=web", "true"])),
            Some("web".into())
        );
        // After `--` it is the command's, not the launcher's.
        assert_eq!(
            context_in(&cl(&["sbx-exec", "--", "x", "--ctx", "user"])),
            None
        );
        assert_eq!(context_in(&cl(&["sbx-exec"])), None);
    }
}
