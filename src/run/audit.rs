//! The audit log (top-level policy key `audit`): one JSON line per invocation, written by the
//! outer process after the command ends (or is refused), never from inside a sandbox.
//!
//! A line records the time (RFC 3339, UTC), the caller's uid and pid, the context, `argv[0]` and
//! the number of arguments (never the arguments themselves: they may hold data), the secret
//! *names*, the exit status, the duration, and for refusals the message (which never contains a
//! value). Files are opened `O_APPEND|O_CREAT|O_NOFOLLOW|O_CLOEXEC`, mode 0600, and each line is
//! one `write(2)`, so concurrent invocations never interleave within a line.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};
use serde::Serialize;

use crate::model::AuditTarget;

/// What one invocation did, as logged.
#[derive(Debug, Serialize)]
pub struct Record<'a> {
    pub time: String,
    pub uid: u32,
    pub pid: i32,
    pub context: &'a str,
    pub argv0: String,
    pub argc: usize,
    pub secrets: Vec<&'a str>,
    pub status: i32,
    pub duration_ms: u128,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Record<'_> {
    /// One JSON line, newline-terminated.
    pub fn line(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).expect("a record always serializes");
        v.push(b'\n');
        v
    }
}

/// Time and caller of the invocation, taken when it starts.
pub struct Start {
    wall: SystemTime,
    uid: u32,
    pid: i32,
}

impl Start {
    pub fn now() -> Start {
        Start {
            wall: SystemTime::now(),
            uid: nix::unistd::getuid().as_raw(),
            pid: nix::unistd::getppid().as_raw(),
        }
    }

    /// The record for an invocation that started at `self` and ended now.
    pub fn record<'a>(
        &self,
        context: &'a str,
        cmd: &[std::ffi::OsString],
        secrets: Vec<&'a str>,
        status: i32,
        error: Option<String>,
    ) -> Record<'a> {
        let since = self.wall.duration_since(UNIX_EPOCH).unwrap_or_default();
        Record {
            time: rfc3339(since),
            uid: self.uid,
            pid: self.pid,
            context,
            argv0: cmd
                .first()
                .map(|a| a.to_string_lossy().into_owned())
                .unwrap_or_default(),
            argc: cmd.len().saturating_sub(1),
            secrets,
            status,
            duration_ms: self.wall.elapsed().unwrap_or(Duration::ZERO).as_millis(),
            error,
        }
    }
}

/// Write one record to `target`. Failures are returned (the caller warns; the command's own exit
/// status is not changed by a full disk).
pub fn write(target: &AuditTarget, record: &Record) -> Result<()> {
    let line = record.line();
    match target {
        AuditTarget::Stderr => {
            let _ = std::io::stderr().lock().write_all(&line);
            Ok(())
        }
        AuditTarget::File(path) => append(path, &line),
        AuditTarget::Syslog => syslog(&line),
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

/// RFC 3339 UTC timestamp with milliseconds, from a duration since the Unix epoch.
pub fn rfc3339(since_epoch: Duration) -> String {
    let secs = since_epoch.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since_epoch.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339(Duration::ZERO), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(Duration::from_millis(951_782_400_123)),
            "2000-02-29T00:00:00.123Z"
        );
        assert_eq!(
            rfc3339(Duration::from_secs(1_709_251_199)),
            "2024-02-29T23:59:59.000Z"
        );
        assert_eq!(
            rfc3339(Duration::from_secs(4_102_444_800)),
            "2100-01-01T00:00:00.000Z"
        );
        assert_eq!(
            rfc3339(Duration::from_secs(1_798_761_599)),
            "2026-12-31T23:59:59.000Z"
        );
    }

    #[test]
    fn record_has_names_and_counts_only() {
        let start = Start::now();
        let cmd: Vec<std::ffi::OsString> = vec!["psql".into(), "-c".into(), "password=x".into()];
        let r = start.record("platform", &cmd, vec!["PGPASSWORD"], 0, None);
        let line = String::from_utf8(r.line()).unwrap();
        assert!(line.ends_with("}\n") && line.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["argv0"], "psql");
        assert_eq!(v["argc"], 2);
        assert_eq!(v["secrets"][0], "PGPASSWORD");
        assert_eq!(v["context"], "platform");
        assert!(v.get("error").is_none());
        assert!(!line.contains("password=x"), "{line}");
    }

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
