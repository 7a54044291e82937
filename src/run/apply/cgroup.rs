//! Creating, joining and removing the cgroups a [`crate::plan::cgroup::Plan`] describes.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::plan::cgroup::Plan;

/// each, so that a process can move itself in (write "0") without opening a path later.
/// On failure, whatever was created is removed again.
pub fn create(plan: &Plan) -> Result<Vec<OwnedFd>> {
    let mut made: Vec<PathBuf> = Vec::new();
    let r = (|| {
        if let Some(parent) = plan.dirs.first().and_then(|d| d.path.parent()) {
            for c in &plan.enable {
                write_file(&parent.join("cgroup.subtree_control"), &format!("+{c}"))?;
            }
        }
        let mut procs = Vec::new();
        for d in &plan.dirs {
            std::fs::create_dir(&d.path)
                .with_context(|| format!("cannot create cgroup {}", d.path.display()))?;
            made.push(d.path.clone());
            for (file, value) in &d.files {
                write_file(&d.path.join(file), value)?;
            }
            let f = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(d.path.join("cgroup.procs"))
                .with_context(|| format!("cannot open {}/cgroup.procs", d.path.display()))?;
            procs.push(OwnedFd::from(f));
        }
        Ok(procs)
    })();
    if r.is_err() {
        remove(&made);
    }
    r
}

/// Open the `cgroup.procs` files of existing cgroups (a context's, recorded in its state).
pub fn open_procs(paths: &[PathBuf]) -> Result<Vec<OwnedFd>> {
    paths
        .iter()
        .map(|p| {
            OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(p.join("cgroup.procs"))
                .map(OwnedFd::from)
                .with_context(|| format!("cannot open {}/cgroup.procs", p.display()))
        })
        .collect()
}

fn write_file(path: &Path, value: &str) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    f.write_all(value.as_bytes())
        .with_context(|| format!("cannot write {value:?} to {}", path.display()))
}

/// Move the calling process into each cgroup (write "0" to its `cgroup.procs`). Allocation-free:
/// safe between fork and exec.
pub fn join(procs: &[OwnedFd]) -> std::io::Result<()> {
    for fd in procs {
        let mut f = File::from(fd.try_clone()?);
        f.write_all(b"0")?;
    }
    Ok(())
}

/// Remove cgroup directories (empty ones only; the kernel refuses others). Errors are ignored:
/// this is cleanup.
pub fn remove(paths: &[PathBuf]) {
    for p in paths {
        let _ = std::fs::remove_dir(p);
    }
}
