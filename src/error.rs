//! Error types that decide sbx-exec's exit status.
//!
//! Callers branch on [`Refusal`] (what went wrong, and which exit code it maps to); everything else
//! is an `anyhow` error with context and exits 125. No variant ever carries a secret value.

use thiserror::Error;

/// Exit status for sbx-exec's own failures (bad policy, refused isolation, malformed secrets).
pub const EXIT_SBX: i32 = 125;
/// The command was found but could not be executed.
pub const EXIT_NOT_EXECUTABLE: i32 = 126;
/// The command was not found.
pub const EXIT_NOT_FOUND: i32 = 127;
/// The context's `timeout` ran out (as `timeout(1)`).
pub const EXIT_TIMEOUT: i32 = 124;

/// A refusal that maps to a specific exit status. Messages say what, why and how to change it.
#[derive(Debug, Error)]
pub enum Refusal {
    #[error("command not found: {name} (searched PATH={path})")]
    NotFound { name: String, path: String },
    #[error("cannot execute {path}: {why}")]
    NotExecutable { path: String, why: String },
}

impl Refusal {
    pub fn exit_code(&self) -> i32 {
        match self {
            Refusal::NotFound { .. } => EXIT_NOT_FOUND,
            Refusal::NotExecutable { .. } => EXIT_NOT_EXECUTABLE,
        }
    }
}

/// Exit status for an error that reached `main`.
pub fn exit_code_of(err: &anyhow::Error) -> i32 {
    err.chain()
        .find_map(|e| e.downcast_ref::<Refusal>())
        .map_or(EXIT_SBX, Refusal::exit_code)
}

/// The errno of `e`, named (`EMFILE`), with its text and, for a limit or a full or read-only file
/// system, which limit it is and its value: what a message says so that it names the real cause.
pub fn cause(e: &std::io::Error) -> String {
    let Some(n) = e.raw_os_error() else {
        return e.to_string();
    };
    let errno = nix::errno::Errno::from_raw(n);
    let mut s = format!("{errno:?}: {}", errno.desc());
    if let Some(hint) = limit_hint(n) {
        s.push_str(&format!(" ({hint})"));
    }
    s
}

/// Which limit an errno means, when it means one.
pub fn limit_hint(errno: i32) -> Option<String> {
    use nix::sys::resource::{getrlimit, Resource};
    let show = |r: Resource| match getrlimit(r) {
        Ok((soft, _)) if soft == libc::RLIM_INFINITY => "unlimited".to_string(),
        Ok((soft, _)) => soft.to_string(),
        Err(_) => "?".to_string(),
    };
    Some(match errno {
        libc::EMFILE => format!(
            "sbx-exec's open-file limit is reached: RLIMIT_NOFILE = {}; raise it (ulimit -n) in the caller",
            show(Resource::RLIMIT_NOFILE)
        ),
        libc::ENFILE => "the system-wide open-file table is full (sysctl fs.file-max)".into(),
        libc::EAGAIN => format!(
            "a process limit is reached: pids.max of sbx-exec's cgroup, RLIMIT_NPROC = {} (ulimit -u), or kernel.pid_max / kernel.threads-max",
            show(Resource::RLIMIT_NPROC)
        ),
        libc::ENOMEM => "out of memory, or a memory cgroup limit of sbx-exec's cgroup".into(),
        libc::ENOSPC => "the file system is full (no space or no inodes left)".into(),
        libc::EROFS => "the file system is read-only".into(),
        _ => return None,
    })
}

/// [`cause`] for a nix errno.
pub fn errno_cause(e: nix::errno::Errno) -> String {
    cause(&std::io::Error::from_raw_os_error(e as i32))
}
