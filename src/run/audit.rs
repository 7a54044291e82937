//! The audit log (top-level policy key `audit`): JSON lines written by the outer process, never
//! from inside a sandbox, in two steps so a caller cannot cut the trail:
//! - `"event":"start"`, write-ahead, once every policy check has passed and before the command
//!   runs (a launcher killed by its caller afterwards still leaves it);
//! - `"event":"end"` when the command has ended, with its exit status and duration;
//! - a call refused before it started gets one `"event":"refused"` line with the message.
//!
//! The lines of one call share `call`, 64 random bits from `getrandom(2)` in hex. A line records
//! the time (RFC 3339, UTC), the caller's uid and pid, the context, `argv[0]` and the number of
//! arguments (never the arguments themselves: they may hold data), the secret *names*, and for
//! `end`/`refused` the exit status, the duration and for refusals the message (which never
//! contains a value). Files are opened `O_APPEND|O_CREAT|O_NOFOLLOW|O_CLOEXEC`, mode 0600, and each
//! line is one `write(2)`, so concurrent invocations never interleave within a line. A caller's
//! RLIMIT_FSIZE is lifted for that write (to infinity where root may, else to the hard limit) and
//! SIGXFSZ ignored, both restored right after (the target inherits the caller's); a line that
//! would still not fit whole is not written at all, so the log never holds a partial line.

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
    pub event: &'static str,
    pub call: String,
    pub time: String,
    pub uid: u32,
    pub pid: i32,
    pub context: &'a str,
    pub argv0: String,
    pub argc: usize,
    pub secrets: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u128>,
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

/// Time, caller and call id of the invocation, taken when it starts.
pub struct Start {
    wall: SystemTime,
    uid: u32,
    pid: i32,
    call: u64,
}

impl Start {
    pub fn now() -> Start {
        let wall = SystemTime::now();
        let pid = nix::unistd::getppid().as_raw();
        // Without getrandom (very early boot), pid and start time still tell calls apart.
        let call = crate::sys::random_u64().unwrap_or_else(|| {
            let t = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
            (u64::from(std::process::id()) << 40) ^ t.as_nanos() as u64
        });
        Start {
            wall,
            uid: nix::unistd::getuid().as_raw(),
            pid,
            call,
        }
    }

    /// The record of `event` for an invocation that started at `self`; `status` (with the
    /// duration until now) for `end` and `refused`.
    pub fn record<'a>(
        &self,
        event: &'static str,
        context: &'a str,
        cmd: &[std::ffi::OsString],
        secrets: Vec<&'a str>,
        status: Option<i32>,
        error: Option<String>,
    ) -> Record<'a> {
        let since = self.wall.duration_since(UNIX_EPOCH).unwrap_or_default();
        Record {
            event,
            call: format!("{:016x}", self.call),
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
            duration_ms: status.map(|_| self.wall.elapsed().unwrap_or(Duration::ZERO).as_millis()),
            status,
            error,
        }
    }
}

/// The audit trail of one launch: [`Audit::begin`] writes the start record, [`Audit::finish`]
/// the end record (or the one record of a refusal).
pub struct Audit<'a> {
    to: Option<&'a AuditTarget>,
    start: Start,
    context: &'a str,
    cmd: &'a [std::ffi::OsString],
    /// The names of the secrets handed in, once read.
    pub secrets: Vec<String>,
    begun: bool,
}

impl<'a> Audit<'a> {
    /// Where the egress proxy of this call logs its refusals (`None` without `audit`).
    pub fn egress_log(&self) -> Option<EgressLog> {
        Some(EgressLog {
            to: Sink::Target(self.to?.clone()),
            call: format!("{:016x}", self.start.call),
            uid: self.start.uid,
            context: self.context.to_string(),
        })
    }

    pub fn new(
        to: Option<&'a AuditTarget>,
        context: &'a str,
        cmd: &'a [std::ffi::OsString],
    ) -> Audit<'a> {
        Audit {
            to,
            start: Start::now(),
            context,
            cmd,
            secrets: Vec::new(),
            begun: false,
        }
    }

    /// Write-ahead: the start record, after every check and before the command runs. A failure is
    /// returned: the launch is refused rather than run without its record.
    pub fn begin(&mut self) -> Result<()> {
        let Some(to) = self.to else { return Ok(()) };
        let names = self.secrets.iter().map(String::as_str).collect();
        let record = self
            .start
            .record("start", self.context, self.cmd, names, None, None);
        write(to, &record)?;
        self.begun = true;
        Ok(())
    }

    /// The end record (or the refusal) with the exit status; a failure is only warned about (the
    /// command's own exit status is not changed by a full disk).
    pub fn finish(&self, code: i32, error: Option<String>, hide_path: bool) {
        let Some(to) = self.to else { return };
        let event = if self.begun { "end" } else { "refused" };
        let names = self.secrets.iter().map(String::as_str).collect();
        let record = self
            .start
            .record(event, self.context, self.cmd, names, Some(code), error);
        if let Err(e) = write(to, &record) {
            warn(&e, hide_path);
        }
    }
}

/// The egress gate's log of one call: an `"event":"egress-refused"` line per request it refused
/// and an `"egress-failed"` line per one it could not serve, with the call id, context, protocol,
/// the HTTP status answered, host, port (when they were read) and the reason (a destination and a
/// policy key, never data of the request), and the bound secrets' `secret-added` and
/// `secret-exfiltration` lines.
#[derive(Clone)]
pub struct EgressLog {
    to: Sink,
    call: String,
    uid: u32,
    context: String,
}

/// Where egress records go: the policy's target (the launcher), or an fd the launcher opened for
/// the gate process, which cannot open a root-only log itself.
#[derive(Clone)]
enum Sink {
    Target(AuditTarget),
    /// The audit file (opened for appending) or stderr; with `syslog`, a datagram socket
    /// connected to /dev/log.
    Fd {
        fd: std::sync::Arc<std::os::fd::OwnedFd>,
        syslog: bool,
    },
}

#[derive(Serialize)]
struct EgressRecord<'a> {
    event: &'static str,
    call: &'a str,
    time: String,
    uid: u32,
    context: &'a str,
    protocol: &'a str,
    /// The HTTP status the client was answered with, if it was answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    /// The destination, when the refusal came after it was read.
    #[serde(skip_serializing_if = "str::is_empty")]
    host: &'a str,
    #[serde(skip_serializing_if = "is_zero")]
    port: u16,
    reason: &'a str,
}

fn is_zero(port: &u16) -> bool {
    *port == 0
}

impl EgressLog {
    /// A destination the proxy refused.
    pub fn refused(&self, protocol: &str, host: &str, port: u16, reason: &str) {
        self.event("egress-refused", protocol, (host, port), None, reason);
    }

    /// One event of the proxy: `egress-refused`, `egress-failed`, `secret-added` (a bound
    /// secret's value put into a request to its host; `reason` names the secret) or
    /// `secret-exfiltration` (its placeholder on its way elsewhere), with the HTTP `status` the
    /// client was answered with. Names only, never values; an empty host and port 0 (not read
    /// yet) are left out.
    pub fn event(
        &self,
        event: &'static str,
        protocol: &str,
        (host, port): (&str, u16),
        status: Option<u16>,
        reason: &str,
    ) {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let record = EgressRecord {
            event,
            call: &self.call,
            time: rfc3339(since),
            uid: self.uid,
            context: &self.context,
            protocol,
            status,
            host,
            port,
            reason,
        };
        let mut line = serde_json::to_vec(&record).expect("a record always serializes");
        line.push(b'\n');
        let written = match &self.to {
            Sink::Target(t) => write_line(t, &line),
            Sink::Fd { fd, syslog } => write_fd(fd, *syslog, &line),
        };
        if let Err(e) = written {
            warn(&e, true);
        }
    }

    /// For the gate process: an fd to write this log's records to (the file opened for
    /// appending, stderr, or a datagram socket connected to /dev/log), and whether it is syslog.
    pub fn sink_for_gate(&self) -> Result<(std::os::fd::OwnedFd, bool)> {
        let Sink::Target(t) = &self.to else {
            bail!("this egress log already writes to an fd");
        };
        Ok(match t {
            AuditTarget::File(path) => {
                let f = std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                    .open(path)
                    .with_context(|| format!("cannot open the audit log {}", path.display()))?;
                (f.into(), false)
            }
            AuditTarget::Stderr => (
                crate::sys::dup_cloexec(2).context("cannot pass stderr to the gate")?,
                false,
            ),
            AuditTarget::Syslog => {
                let sock = std::os::unix::net::UnixDatagram::unbound().context("socket")?;
                sock.connect("/dev/log")
                    .context("audit = \"syslog\" but /dev/log cannot be reached")?;
                (sock.into(), true)
            }
        })
    }

    /// The gate's side of [`EgressLog::sink_for_gate`].
    pub fn on_fd(
        fd: std::os::fd::OwnedFd,
        syslog: bool,
        call: String,
        uid: u32,
        context: String,
    ) -> EgressLog {
        EgressLog {
            to: Sink::Fd {
                fd: std::sync::Arc::new(fd),
                syslog,
            },
            call,
            uid,
            context,
        }
    }

    /// What the gate needs to write records as this log does: (syslog?, call id, uid, context).
    pub fn identity(&self) -> (String, u32, String) {
        (self.call.clone(), self.uid, self.context.clone())
    }
}

/// One record to a sink fd: a single write (with O_APPEND the kernel places it at the end).
fn write_fd(fd: &std::os::fd::OwnedFd, syslog: bool, line: &[u8]) -> Result<()> {
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

/// Write one record to `target`.
pub fn write(target: &AuditTarget, record: &Record) -> Result<()> {
    write_line(target, &record.line())
}

/// Serializes this process's writes: the egress proxy's threads log too, and the file size limit
/// and SIGXFSZ disposition lifted around a write are process-wide.
static WRITING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn write_line(target: &AuditTarget, line: &[u8]) -> Result<()> {
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
        let r = start.record("end", "platform", &cmd, vec!["PGPASSWORD"], Some(0), None);
        let line = String::from_utf8(r.line()).unwrap();
        assert!(line.ends_with("}\n") && line.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["argv0"], "psql");
        assert_eq!(v["argc"], 2);
        assert_eq!(v["secrets"][0], "PGPASSWORD");
        assert_eq!(v["context"], "platform");
        assert!(v.get("error").is_none());
        assert_eq!(v["event"], "end");
        assert_eq!(v["call"].as_str().unwrap().len(), 16);
        assert!(v["duration_ms"].is_u64());
        let begun = start.record("start", "platform", &cmd, vec![], None, None);
        let b: serde_json::Value = serde_json::from_slice(&begun.line()).unwrap();
        assert_eq!(b["call"], v["call"]);
        assert!(b.get("status").is_none() && b.get("duration_ms").is_none());
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
