//! How a line reaches the audit log: appended to a file (one `write(2)`, O_APPEND, with the
//! caller's RLIMIT_FSIZE lifted), to stderr, or as a datagram to /dev/log; from the gate, through
//! the fd the launcher opened for it.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context as _, Result};

use crate::model::AuditTarget;

/// One record to a sink fd: a single write (with O_APPEND the kernel places it at the end).
pub(super) fn write_fd(fd: &std::os::fd::OwnedFd, syslog: bool, line: &[u8]) -> Result<()> {
    let _one_at_a_time = WRITING.lock().unwrap_or_else(|e| e.into_inner());
    let msg;
    let data = match syslog {
        true => {
            let mut m = format!("<86>sbx-exec[{}]: ", std::process::id()).into_bytes();
            m.extend_from_slice(line.strip_suffix(b"\n").unwrap_or(line));
            msg = m;
            &msg[..]
        }
        false => line,
    };
    let n = crate::sys::write_raw(std::os::fd::AsRawFd::as_raw_fd(fd), data)
        .context("cannot write the audit log")?;
    if n != data.len() {
        bail!("the audit record was cut short");
    }
    Ok(())
}

/// Warn about an audit failure on stderr; `hide_path` (setuid mode) leaves out the message, which
/// names the root-only log path.
pub fn warn(e: &anyhow::Error, hide_path: bool) {
    if hide_path {
        eprintln!("sbx-exec: warning: the audit log cannot be written; tell root");
    } else {
        eprintln!("sbx-exec: warning: {e:#}");
    }
}

/// Serializes this process's writes: the egress proxy's threads log too, and the file size limit
/// and SIGXFSZ disposition lifted around a write are process-wide.
static WRITING: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub(super) fn write_line(target: &AuditTarget, line: &[u8]) -> Result<()> {
    let _one_at_a_time = WRITING.lock().unwrap_or_else(|e| e.into_inner());
    match target {
        AuditTarget::Stderr => {
            let _ = std::io::stderr().lock().write_all(line);
            Ok(())
        }
        AuditTarget::File(path) => append(path, line),
        AuditTarget::Syslog => syslog(line),
    }
}

/// The caller's RLIMIT_FSIZE and SIGXFSZ disposition, lifted while sbx-exec writes its own log and
/// restored when dropped.
struct OwnWrites {
    fsize: Option<(u64, u64)>,
    xfsz: Option<nix::sys::signal::SigHandler>,
}

impl OwnWrites {
    fn lift() -> OwnWrites {
        use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};
        use nix::sys::signal::{SigHandler, Signal};
        let xfsz = crate::sys::set_signal_handler(Signal::SIGXFSZ, SigHandler::SigIgn).ok();
        let fsize = getrlimit(Resource::RLIMIT_FSIZE).ok();
        if let Some((soft, hard)) = fsize {
            if soft != RLIM_INFINITY
                && setrlimit(Resource::RLIMIT_FSIZE, RLIM_INFINITY, RLIM_INFINITY).is_err()
            {
                let _ = setrlimit(Resource::RLIMIT_FSIZE, hard, hard);
            }
        }
        OwnWrites { fsize, xfsz }
    }

    /// The file size limit in force now.
    fn limit() -> u64 {
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_FSIZE)
            .map_or(nix::sys::resource::RLIM_INFINITY, |(soft, _)| soft)
    }
}

impl Drop for OwnWrites {
    fn drop(&mut self) {
        if let Some((soft, hard)) = self.fsize {
            let _ = nix::sys::resource::setrlimit(
                nix::sys::resource::Resource::RLIMIT_FSIZE,
                soft,
                hard,
            );
        }
        if let Some(h) = self.xfsz {
            let _ = crate::sys::set_signal_handler(nix::sys::signal::Signal::SIGXFSZ, h);
        }
    }
}

fn append(path: &Path, line: &[u8]) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .with_context(|| {
            format!(
                "cannot open the audit log {} (policy key audit; it must not be a symlink and its directory must exist)",
                path.display()
            )
        })?;
    let _lifted = OwnWrites::lift();
    // A line that would cross the file size limit would be cut short: write none of it.
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    if size.saturating_add(line.len() as u64) > OwnWrites::limit() {
        bail!(
            "the audit log {} has reached the file size limit (RLIMIT_FSIZE); the record was not written",
            path.display()
        );
    }
    // One write(2): with O_APPEND the kernel places it atomically at the end of the file.
    let n = f
        .write(line)
        .with_context(|| format!("cannot write the audit log {}", path.display()))?;
    if n != line.len() {
        bail!("short write to the audit log {}", path.display());
    }
    Ok(())
}

static SYSLOG_WARNED: AtomicBool = AtomicBool::new(false);

/// A datagram to `/dev/log`: `<PRI>sbx-exec[PID]: JSON` (facility authpriv, severity info).
fn syslog(line: &[u8]) -> Result<()> {
    let sock = std::os::unix::net::UnixDatagram::unbound().context("socket")?;
    let mut msg = format!("<86>sbx-exec[{}]: ", std::process::id()).into_bytes();
    msg.extend_from_slice(line.strip_suffix(b"\n").unwrap_or(line));
    if let Err(e) = sock.send_to(&msg, "/dev/log") {
        if !SYSLOG_WARNED.swap(true, Ordering::Relaxed) {
            bail!("audit = \"syslog\" but /dev/log cannot be reached ({e}); run a syslog daemon or set audit to a file path");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_is_appended_0600_and_symlinks_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("sbx-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("audit.jsonl");
        append(&log, b"one\n").unwrap();
        append(&log, b"two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "one\ntwo\n");
        let mode = std::fs::metadata(&log).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let link = dir.join("link.jsonl");
        std::os::unix::fs::symlink(&log, &link).unwrap();
        assert!(append(&link, b"three\n").is_err());
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "one\ntwo\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
