//! The runtime state of persistent contexts: a root-only directory (`/run/sbx`, mode 0700, never a
//! symlink), one lock file and one state file per context. State files are written whole and
//! renamed into place only once the keeper is ready, so a reader never sees half of one; they are
//! opened with `O_NOFOLLOW`. Confined contexts never see this directory (`fs.hide`).
//!
//! What a state file holds, and how it is read and checked, is in `record.rs`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use nix::fcntl::{Flock, FlockArg};

mod record;

pub use record::{Phase, State};

/// Where persistent contexts keep their state.
pub const RUNTIME_DIR: &str = "/run/sbx";

/// The most bytes of a state file read (it holds the context's egress rules).
const MAX_STATE: u64 = 1 << 20;

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
        .take(MAX_STATE)
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

/// Remove a context's record, and its net helper's control socket (the context has ended).
pub fn remove(dir: &Path, ctx: &str) {
    let _ = std::fs::remove_file(state_path(dir, ctx));
    super::netctl::remove(dir, ctx);
    super::nssock::remove(dir, ctx);
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
