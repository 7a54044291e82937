//! Creating, joining, reading and removing the cgroups a [`crate::plan::cgroup::Plan`] describes.
//!
//! Every file operation goes through [`CgroupFs`], so the order of the steps (v2: leaf for
//! sbx-exec itself → move into it → enable controllers → `sbx` parent → leaf) is unit-tested
//! against a fake hierarchy in a temporary directory; [`Host`] is the real one.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::plan::cgroup::{leaf_creator, Plan, Version};

/// Limits that cannot be applied (`why`): refused, or the call runs without them (saying so with
/// `degrade = true`).
pub fn go_without(
    ctx_name: &str,
    limits: &crate::model::limits::Limits,
    degrade: bool,
    why: &str,
) -> Result<()> {
    if let Some(warning) = crate::plan::cgroup::unavailable(ctx_name, limits, degrade, why)? {
        eprintln!("sbx-exec: warning: {warning}");
    }
    Ok(())
}

/// The cgroup file operations sbx-exec does, by absolute path below /sys/fs/cgroup.
pub trait CgroupFs {
    /// Create a directory; an existing one is an error of kind `AlreadyExists`.
    fn mkdir(&self, path: &Path) -> std::io::Result<()>;
    fn rmdir(&self, path: &Path) -> std::io::Result<()>;
    /// Write `value` to a control file (no create, no symlinks).
    fn write(&self, path: &Path, value: &str) -> std::io::Result<()>;
    /// Read a small control file (at most 64 KiB are read).
    fn read(&self, path: &Path) -> std::io::Result<String>;
    /// Names of the entries of a directory.
    fn list(&self, path: &Path) -> std::io::Result<Vec<String>>;
    /// The open, write-only file a single-threaded process joins a cgroup by writing "0" to:
    /// `tasks` on cgroup v1, `cgroup.procs` on v2 (see [`join`]).
    fn open_procs(&self, cgroup: &Path) -> std::io::Result<OwnedFd>;
    /// How long ago a directory was made (its modification time); `None` if unknown.
    fn age(&self, path: &Path) -> Option<Duration>;
}

/// A leaf is swept only when older than this: its creator pid may belong to another pid
/// namespace (an sbx-exec in a container below or above this one), and a leaf that is seconds
/// old may be between its creation and its pid 1 joining it.
pub const SWEEP_MIN_AGE: Duration = Duration::from_secs(2);

/// The real cgroup filesystem.
pub struct Host;

fn open_write(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

impl CgroupFs for Host {
    fn mkdir(&self, path: &Path) -> std::io::Result<()> {
        std::fs::create_dir(path)
    }
    fn rmdir(&self, path: &Path) -> std::io::Result<()> {
        std::fs::remove_dir(path)
    }
    fn write(&self, path: &Path, value: &str) -> std::io::Result<()> {
        open_write(path)?.write_all(value.as_bytes())
    }
    fn read(&self, path: &Path) -> std::io::Result<String> {
        use std::io::Read;
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)?;
        let mut s = String::new();
        f.take(64 << 10).read_to_string(&mut s)?;
        Ok(s)
    }
    fn list(&self, path: &Path) -> std::io::Result<Vec<String>> {
        Ok(std::fs::read_dir(path)?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect())
    }
    fn open_procs(&self, cgroup: &Path) -> std::io::Result<OwnedFd> {
        // Only a v1 hierarchy has `tasks`.
        match open_write(&cgroup.join("tasks")) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                open_write(&cgroup.join("cgroup.procs")).map(OwnedFd::from)
            }
            r => r.map(OwnedFd::from),
        }
    }
    fn age(&self, path: &Path) -> Option<Duration> {
        std::fs::symlink_metadata(path)
            .ok()?
            .modified()
            .ok()?
            .elapsed()
            .ok()
    }
}

fn mkdir_existing_ok(fs: &dyn CgroupFs, path: &Path) -> Result<()> {
    match fs.mkdir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot create cgroup {}", path.display())),
    }
}

fn write(fs: &dyn CgroupFs, path: &Path, value: &str) -> Result<()> {
    fs.write(path, value)
        .with_context(|| format!("cannot write {value:?} to {}", path.display()))
}

/// v2: enable `controllers` in `dir`'s `cgroup.subtree_control` (those not enabled yet).
fn enable(fs: &dyn CgroupFs, dir: &Path, controllers: &[&str]) -> Result<()> {
    let file = dir.join("cgroup.subtree_control");
    let on = fs.read(&file).unwrap_or_default();
    let todo: Vec<String> = controllers
        .iter()
        .filter(|c| !on.split_whitespace().any(|o| o == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if todo.is_empty() {
        return Ok(());
    }
    write(fs, &file, &todo.join(" ")).context(
        "cgroup v2 allows no processes in a cgroup that enables controllers for its children; \
         sbx-exec moved itself to its sbx-init leaf, but another process may have joined the parent",
    )
}

/// v2: move this process, then every other process of `base`, into `leaf` (like a container
/// runtime's init leaf), so `base` may enable controllers. Processes that exit meanwhile are
/// skipped.
fn move_into_self_leaf(fs: &dyn CgroupFs, base: &Path, leaf: &Path) -> Result<()> {
    // The real root cgroup (the only one without `cgroup.type`) may hold processes and still
    // enable controllers: the host's processes stay where they are.
    if fs.read(&base.join("cgroup.type")).is_err() {
        return Ok(());
    }
    let procs = base.join("cgroup.procs");
    let others = fs.read(&procs).unwrap_or_default();
    if others.trim().is_empty() {
        return Ok(());
    }
    mkdir_existing_ok(fs, leaf)?;
    let leaf_procs = leaf.join("cgroup.procs");
    write(fs, &leaf_procs, "0")?;
    for pid in fs.read(&procs).unwrap_or_default().split_whitespace() {
        let _ = fs.write(&leaf_procs, pid);
    }
    Ok(())
}

/// Remove the empty leaves in `parent` whose creator is dead (a launcher killed with SIGKILL
/// cannot remove its own). A leaf that still holds processes is refused by the kernel and stays.
pub fn sweep(fs: &dyn CgroupFs, parent: &Path) {
    let Ok(names) = fs.list(parent) else {
        return;
    };
    let me = std::process::id() as i32;
    for name in names {
        // This process's own leaves (the pool's server makes many) are not stale.
        let Some(pid) = leaf_creator(&name).filter(|p| *p != me) else {
            continue;
        };
        let path = parent.join(&name);
        let dead = matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH)
        );
        if dead && fs.age(&path).is_some_and(|a| a >= SWEEP_MIN_AGE) {
            let _ = fs.rmdir(&path);
        }
    }
}

/// Create the planned cgroups and write their limits. Returns an open `cgroup.procs` handle for
/// each, so that a process can move itself in (write "0") without opening a path later. On
/// failure, whatever leaf was created is removed again.
pub fn create(fs: &dyn CgroupFs, plan: &Plan) -> Result<Vec<OwnedFd>> {
    let mut made: Vec<PathBuf> = Vec::new();
    let r = (|| {
        if plan.version == Version::V2 {
            if let Some(parent) = plan.dirs.first().map(|d| d.parent.clone()) {
                let base = parent.parent().unwrap_or(&parent).to_path_buf();
                if let Some(leaf) = &plan.self_leaf {
                    move_into_self_leaf(fs, &base, leaf)?;
                }
                enable(fs, &base, &plan.enable)?;
                mkdir_existing_ok(fs, &parent)?;
                enable(fs, &parent, &plan.enable)?;
            }
        }
        let mut procs = Vec::new();
        for d in &plan.dirs {
            mkdir_existing_ok(fs, &d.parent)?;
            sweep(fs, &d.parent);
            fs.mkdir(&d.path)
                .with_context(|| format!("cannot create cgroup {}", d.path.display()))?;
            made.push(d.path.clone());
            for (file, value) in &d.files {
                write(fs, &d.path.join(file), value)?;
            }
            let f = fs
                .open_procs(&d.path)
                .with_context(|| format!("cannot open {}/cgroup.procs", d.path.display()))?;
            procs.push(f);
        }
        Ok(procs)
    })();
    if r.is_err() {
        remove(fs, &made);
    }
    r
}

/// Open the join files ([`CgroupFs::open_procs`]) of existing cgroups (a context's, recorded in
/// its state).
pub fn open_procs(paths: &[PathBuf]) -> Result<Vec<OwnedFd>> {
    paths
        .iter()
        .map(|p| {
            Host.open_procs(p)
                .with_context(|| format!("cannot open {}/tasks or cgroup.procs", p.display()))
        })
        .collect()
}

/// Move the calling process into each cgroup: write "0" to the files of [`open_procs`]. The
/// caller must be single-threaded (every caller is a process just forked or cloned, before it
/// starts a thread): on cgroup v1 the file is `tasks`, which moves the calling thread. That is on
/// purpose: a thread moving itself is the one migration the kernel does without its global
/// threadgroup lock, whose RCU grace period (`cgroup.procs`) made one launch in ten wait 5 to 25
/// ms on a v1 host. Allocation-free: safe between fork and exec.
pub fn join(procs: &[OwnedFd]) -> std::io::Result<()> {
    for fd in procs {
        let mut f = File::from(fd.try_clone()?);
        f.write_all(b"0")?;
    }
    Ok(())
}

/// Remove cgroup directories (empty ones only; the kernel refuses others). Errors are ignored:
/// this is cleanup.
pub fn remove(fs: &dyn CgroupFs, paths: &[PathBuf]) {
    for p in paths {
        let _ = fs.rmdir(p);
    }
}

/// Remove a call's cgroups once its processes are gone: the last ones may still be exiting
/// when the outer process sees pid 1 end (usually for well under a millisecond), so try again
/// after 0.1 ms, doubling the wait up to 10 ms, for about a second in all.
pub fn remove_when_empty(paths: &[PathBuf]) {
    let (mut wait, end) = (
        Duration::from_micros(100),
        std::time::Instant::now() + Duration::from_secs(1),
    );
    loop {
        remove(&Host, paths);
        if paths.iter().all(|p| !p.exists()) || std::time::Instant::now() > end {
            return;
        }
        std::thread::sleep(wait);
        wait = (wait * 2).min(Duration::from_millis(10));
    }
}

/// `oom_score_adj` of every confined sandbox (its pid 1 sets it for itself before the target
/// exists; children inherit it): under memory pressure the kernel kills user code first.
pub const CONFINED_OOM_SCORE_ADJ: &[u8] = b"500";
/// `oom_score_adj` of control mode (sbx-exec as the container's pid 1 and the control plane it
/// supervises, which inherits it): killed last. Lowering it needs root (CAP_SYS_RESOURCE).
pub const CONTROL_OOM_SCORE_ADJ: &[u8] = b"-900";

/// Set this process's `oom_score_adj`. Allocation-free: safe between fork and exec.
pub fn set_oom_score_adj(value: &[u8]) -> std::io::Result<()> {
    crate::sys::write_path(c"/proc/self/oom_score_adj", value)
}

/// What the kernel counted in a call's cgroups.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Processes the OOM killer killed (v1 `memory.oom_control`, v2 `memory.events` oom_kill).
    pub oom_kills: u64,
    /// Forks refused at `pids_max` (`pids.events` max).
    pub pids_refused: u64,
    /// Highest memory use in bytes (v1 `memory.max_usage_in_bytes`, v2 `memory.peak`).
    pub peak_memory: Option<u64>,
    /// CPU time in nanoseconds (v1 `cpuacct.usage` is in another hierarchy; v2 `cpu.stat`).
    pub cpu_ns: Option<u64>,
}

/// The value after `key` on a "key value" line of a flat-keyed cgroup file.
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Read the counters of the planned cgroups (missing files count as nothing).
pub fn stats(fs: &dyn CgroupFs, plan: &Plan) -> Stats {
    let paths: Vec<PathBuf> = plan.dirs.iter().map(|d| d.path.clone()).collect();
    stats_of(fs, plan.version, &paths)
}

/// Read the counters of existing cgroups (a persistent context's, from its state).
pub fn stats_of(fs: &dyn CgroupFs, version: Version, paths: &[PathBuf]) -> Stats {
    let mut s = Stats::default();
    let read = |d: &Path, f: &str| fs.read(&d.join(f)).ok();
    for p in paths {
        let p = p.as_path();
        if let Some(t) = read(p, "pids.events") {
            s.pids_refused += keyed(&t, "max").unwrap_or(0);
        }
        if version == Version::V2 {
            if let Some(t) = read(p, "memory.events") {
                s.oom_kills += keyed(&t, "oom_kill").unwrap_or(0);
            }
            if let Some(t) = read(p, "memory.peak") {
                s.peak_memory = t.trim().parse().ok();
            }
            if let Some(t) = read(p, "cpu.stat") {
                s.cpu_ns = keyed(&t, "usage_usec").map(|u| u.saturating_mul(1000));
            }
        } else {
            if let Some(t) = read(p, "memory.oom_control") {
                s.oom_kills += keyed(&t, "oom_kill").unwrap_or(0);
            }
            if let Some(t) = read(p, "memory.max_usage_in_bytes") {
                s.peak_memory = t.trim().parse().ok();
            }
        }
    }
    s
}

#[cfg(test)]
#[path = "cgroup_tests.rs"]
mod tests;
