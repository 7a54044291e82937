//! The runtime state of persistent contexts: a root-only directory (`/run/sbx`, mode 0700, never a
//! symlink), one lock file and one state file per context. State files are written whole and
//! renamed into place only once the keeper is ready, so a reader never sees half of one; they are
//! opened with `O_NOFOLLOW`. Confined contexts never see this directory (`fs.hide`).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use nix::fcntl::{Flock, FlockArg};

/// Where persistent contexts keep their state.
pub const RUNTIME_DIR: &str = "/run/sbx";

/// Where a context's keeper is in its life. A first call records `Starting` (with its cgroups,
/// then the keeper's identity) before it creates anything, under the context's lock, so a caller
/// killed at any instant leaves a record the next one finds; `ctx stop` records `Stopping` before
/// it signals, so calls arriving meanwhile are refused instead of starting a new keeper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    Starting,
    #[default]
    Running,
    Stopping,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Running => "running",
            Phase::Stopping => "stopping",
        }
    }
}

/// What is recorded about a keeper. While `Starting`, `pid`, `start` and `pidns` may be 0 (no
/// keeper yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub phase: Phase,
    /// The keeper's pid, in sbx-exec's own pid namespace.
    pub pid: i32,
    /// Its start time (field 22 of /proc/PID/stat), against pid reuse.
    pub start: u64,
    /// The inode of its pid namespace.
    pub pidns: u64,
    /// When it was started (seconds since the epoch).
    pub created: u64,
    /// Fingerprint of the context's policy it was started with.
    pub policy: u64,
    /// Its cgroup directories (none without limits).
    pub cgroups: Vec<PathBuf>,
    /// The net helper (`net = "private"` with `allow` or `publish`): its pid in sbx-exec's pid
    /// namespace and start time; 0 and 0 without one (or before it is started).
    pub net_pid: i32,
    pub net_start: u64,
}

impl State {
    pub fn render(&self) -> String {
        let mut s = format!(
            "phase={}\npid={}\nstart={}\npidns={}\ncreated={}\npolicy={:016x}\n",
            self.phase.name(),
            self.pid,
            self.start,
            self.pidns,
            self.created,
            self.policy
        );
        for c in &self.cgroups {
            s.push_str(&format!("cgroup={}\n", c.display()));
        }
        if self.net_pid != 0 {
            s.push_str(&format!(
                "net_pid={}\nnet_start={}\n",
                self.net_pid, self.net_start
            ));
        }
        s
    }

    /// Parse a state file; every key is required once (cgroup: any number; net_pid and net_start:
    /// both or neither), unknown keys refused.
    pub fn parse(text: &str) -> std::result::Result<State, String> {
        let (mut pid, mut start, mut pidns, mut created, mut policy) =
            (None, None, None, None, None);
        let (mut net_pid, mut net_start) = (None, None);
        let mut cgroups = Vec::new();
        let mut phase = None;
        for line in text.lines() {
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| format!("bad line {line:?}"))?;
            let num = |v: &str| {
                v.parse::<u64>()
                    .map_err(|_| format!("bad value for {k}: {v:?}"))
            };
            let slot = match k {
                "phase" => {
                    let p = [Phase::Starting, Phase::Running, Phase::Stopping]
                        .into_iter()
                        .find(|p| p.name() == v)
                        .ok_or_else(|| format!("bad phase {v:?}"))?;
                    if phase.replace(p).is_some() {
                        return Err("phase given twice".into());
                    }
                    continue;
                }
                "pid" => &mut pid,
                "start" => &mut start,
                "pidns" => &mut pidns,
                "created" => &mut created,
                "net_pid" => &mut net_pid,
                "net_start" => &mut net_start,
                "policy" => {
                    let n = u64::from_str_radix(v, 16).map_err(|_| format!("bad policy {v:?}"))?;
                    if policy.replace(n).is_some() {
                        return Err("policy given twice".into());
                    }
                    continue;
                }
                "cgroup"
                    if v.starts_with("/sys/fs/cgroup/")
                        && !v.split('/').any(|c| c == ".." || c == ".") =>
                {
                    cgroups.push(PathBuf::from(v));
                    continue;
                }
                _ => return Err(format!("unknown or bad key {k:?}")),
            };
            if slot.replace(num(v)?).is_some() {
                return Err(format!("{k} given twice"));
            }
        }
        let need = |v: Option<u64>, k: &str| v.ok_or_else(|| format!("missing {k}"));
        let pid = need(pid, "pid")?;
        let (net_pid, net_start) = match (net_pid, net_start) {
            (None, None) => (0, 0),
            (Some(p), Some(s)) if p > 1 => (i32::try_from(p).map_err(|_| "bad net_pid")?, s),
            _ => return Err("net_pid and net_start go together (net_pid above 1)".into()),
        };
        // Files written before phases existed are running keepers.
        let phase = phase.unwrap_or_default();
        Ok(State {
            phase,
            pid: i32::try_from(pid)
                .ok()
                .filter(|p| *p > 1 || (*p == 0 && phase == Phase::Starting))
                .ok_or("bad pid")?,
            start: need(start, "start")?,
            pidns: need(pidns, "pidns")?,
            created: need(created, "created")?,
            policy: need(policy, "policy")?,
            cgroups,
            net_pid,
            net_start,
        })
    }
}

/// The runtime directory, created (0700, root) if missing, and refused unless it is a root-owned
/// directory (not a symlink) with mode 0700.
pub fn dir(create: bool) -> Result<Option<PathBuf>> {
    let p = Path::new(RUNTIME_DIR);
    if create {
        match std::fs::DirBuilder::new().mode(0o700).create(p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => bail!(
                "cannot create the runtime directory {RUNTIME_DIR}: {} (persistent contexts need it, writable by root)",
                crate::error::cause(&e)
            ),
        }
    }
    let meta = match std::fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !create => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot inspect {RUNTIME_DIR}")),
    };
    if !meta.file_type().is_dir() || meta.uid() != 0 || meta.mode() & 0o7777 != 0o700 {
        bail!(
            "refusing to use the runtime directory {RUNTIME_DIR}: it must be a directory (not a symlink) owned by root \
             with mode 0700, but it is {} owned by uid {} with mode {:o}; remove it and let sbx-exec recreate it",
            if meta.file_type().is_symlink() { "a symlink" } else if meta.is_dir() { "a directory" } else { "not a directory" },
            meta.uid(),
            meta.mode() & 0o7777
        );
    }
    Ok(Some(p.to_path_buf()))
}

/// An exclusive lock on one context's state, held while it is checked, created or removed.
pub struct Lock(#[allow(dead_code)] Flock<File>);

pub fn lock(dir: &Path, ctx: &str) -> Result<Lock> {
    lock_with(dir, ctx, FlockArg::LockExclusive)?.context("the lock was not taken")
}

/// The lock if nobody holds it now; `None` if someone does (a first call starting the keeper, or
/// `ctx stop`).
pub fn try_lock(dir: &Path, ctx: &str) -> Result<Option<Lock>> {
    lock_with(dir, ctx, FlockArg::LockExclusiveNonblock)
}

fn lock_with(dir: &Path, ctx: &str, how: FlockArg) -> Result<Option<Lock>> {
    let path = dir.join(format!("{ctx}.lock"));
    let f = open_lock(&path)?;
    match Flock::lock(f, how) {
        Ok(locked) => Ok(Some(Lock(locked))),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) if how == FlockArg::LockExclusiveNonblock => {
            Ok(None)
        }
        Err((_, e)) => bail!(
            "cannot lock {}: {}",
            path.display(),
            crate::error::errno_cause(e)
        ),
    }
}

/// The lock file, created if missing. On a read-only runtime directory (`EROFS`) an existing one
/// is opened read-only: `flock` needs no write access, so joins of a running context still work;
/// a missing one cannot be made, and the call (a first call, which must write state) is refused
/// naming the read-only directory.
fn open_lock(path: &Path) -> Result<File> {
    let open = |write: bool| {
        OpenOptions::new()
            .read(true)
            .write(write)
            .create(write)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
    };
    let cannot = |e: &std::io::Error| {
        anyhow::anyhow!("cannot open {}: {}", path.display(), crate::error::cause(e))
    };
    match open(true) {
        Ok(f) => Ok(f),
        Err(e) if e.raw_os_error() == Some(libc::EROFS) => match open(false) {
            Ok(f) => Ok(f),
            Err(n) if n.kind() == std::io::ErrorKind::NotFound => bail!(
                "cannot open {}: {}: the runtime directory {RUNTIME_DIR} is read-only, so this context's state cannot be \
                 recorded; a running persistent context can still be joined there, but starting one needs {RUNTIME_DIR} \
                 writable by root (remount it read-write); nothing was run",
                path.display(),
                crate::error::cause(&e)
            ),
            Err(n) => Err(cannot(&n)),
        },
        Err(e) => Err(cannot(&e)),
    }
}

fn state_path(dir: &Path, ctx: &str) -> PathBuf {
    dir.join(format!("{ctx}.state"))
}

/// Read a context's state; `Ok(None)` if there is none. A malformed file is an error.
pub fn read(dir: &Path, ctx: &str) -> Result<Option<State>> {
    let path = state_path(dir, ctx);
    let mut f = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => bail!(
            "cannot open {}: {}",
            path.display(),
            crate::error::cause(&e)
        ),
    };
    let mut text = String::new();
    Read::by_ref(&mut f)
        .take(64 * 1024)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read {}", path.display()))?;
    State::parse(&text)
        .map(Some)
        .map_err(|why| anyhow::anyhow!("corrupt state file {}: {why}", path.display()))
}

/// Write a context's state atomically (a temporary file renamed over the old one). On any error
/// the temporary file is removed: a failed write leaves the old state, or none, and nothing else.
pub fn write(dir: &Path, ctx: &str, state: &State) -> Result<()> {
    let tmp = dir.join(format!(".{ctx}.state.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let io = |what: &str, e: std::io::Error| {
        anyhow::anyhow!(
            "cannot {what} {}: {}",
            tmp.display(),
            crate::error::cause(&e)
        )
    };
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .map_err(|e| io("create", e))?;
    let written = f
        .write_all(state.render().as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| io("write", e))
        .and_then(|()| {
            std::fs::rename(&tmp, state_path(dir, ctx)).map_err(|e| io("rename into place", e))
        });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

pub fn remove(dir: &Path, ctx: &str) {
    let _ = std::fs::remove_file(state_path(dir, ctx));
}

/// Names of the contexts that have a state file.
pub fn names(dir: &Path) -> Result<Vec<String>> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".state")
                .filter(|n| !n.starts_with('.'))
                .map(String::from)
        })
        .collect();
    v.sort();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips() {
        let s = State {
            phase: Phase::Running,
            pid: 4242,
            start: 123456,
            pidns: 4026532000,
            created: 1_700_000_000,
            policy: 0xdead_beef,
            cgroups: vec![PathBuf::from("/sys/fs/cgroup/pids/sbx-user-1")],
            net_pid: 4250,
            net_start: 123460,
        };
        assert_eq!(State::parse(&s.render()), Ok(s.clone()));
        let none = State {
            cgroups: vec![],
            net_pid: 0,
            net_start: 0,
            ..s
        };
        assert_eq!(State::parse(&none.render()), Ok(none.clone()));
        let starting = State {
            phase: Phase::Starting,
            pid: 0,
            ..none
        };
        assert_eq!(State::parse(&starting.render()), Ok(starting));
    }

    #[test]
    fn bad_state_is_refused() {
        let ok = "pid=10\nstart=1\npidns=2\ncreated=3\npolicy=ff\n";
        assert!(State::parse(ok).is_ok());
        for bad in [
            "pid=10\nstart=1\npidns=2\ncreated=3\n", // missing policy
            "pid=1\nstart=1\npidns=2\ncreated=3\npolicy=ff\n", // pid 1 is never a keeper here
            "pid=10\npid=11\nstart=1\npidns=2\ncreated=3\npolicy=ff\n",
            "pid=x\nstart=1\npidns=2\ncreated=3\npolicy=ff\n",
            "pid=10\nstart=1\npidns=2\ncreated=3\npolicy=ff\nextra=1\n",
            "pid=10\nstart=1\npidns=2\ncreated=3\npolicy=ff\ncgroup=relative\n",
            "pid=10\nstart=1\npidns=2\ncreated=3\npolicy=ff\ncgroup=/etc\n",
            "pid=10\nstart=1\npidns=2\ncreated=3\npolicy=ff\ncgroup=/sys/fs/cgroup/../../etc\n",
            "pid=10\nstart=1\npidns=2\ncreated=3\npolicy=ff\nnet_pid=12\n", // no net_start
            "pid=10\nstart=1\npidns=2\ncreated=3\npolicy=ff\nnet_pid=1\nnet_start=5\n",
            "garbage\n",
        ] {
            assert!(State::parse(bad).is_err(), "{bad:?}");
        }
    }
}
