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
//!
//! Each line is a serde type: [`Record`] for the launcher's events, [`EgressRecord`] for the
//! egress gate's (`egress.rs`), [`NetChangeRecord`] for a live change of a persistent context's
//! egress rules (`net_change.rs`); how a line reaches the file, stderr or syslog is in
//! `write.rs`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::model::AuditTarget;

mod egress;
mod net_change;
mod time;
mod write;

pub use egress::{EgressEvent, EgressLog, EgressRecord, Protocol};
pub use net_change::{NetChangeRecord, NetEvent};
pub use time::rfc3339;
pub use write::warn;

/// What the launcher logs of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    /// Written ahead, once every check has passed, before the command runs.
    Start,
    /// The command ended (`status`, `duration_ms`).
    End,
    /// The call was refused before it started (`status`, `duration_ms`, `error`).
    Refused,
}

/// What one invocation did, as logged: one JSON line, fields in this order; `status` and
/// `duration_ms` only on `end` and `refused`, `error` only on `refused` with a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub event: Event,
    /// The call's id: 16 hex digits, shared by its lines (and its gate's).
    pub call: String,
    /// When the call started (RFC 3339, UTC, milliseconds).
    pub time: String,
    /// The caller's uid and pid.
    pub uid: u32,
    pub pid: i32,
    pub context: String,
    /// `argv[0]` and the number of arguments after it (never the arguments).
    pub argv0: String,
    pub argc: usize,
    /// The names of the secrets handed in (never their values).
    pub secrets: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Record {
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

    /// The call id, as records write it.
    fn call_id(&self) -> String {
        format!("{:016x}", self.call)
    }

    /// The record of `event` for an invocation that started at `self`; `status` (with the
    /// duration until now) for `end` and `refused`.
    pub fn record(
        &self,
        event: Event,
        context: &str,
        cmd: &[std::ffi::OsString],
        secrets: &[String],
        status: Option<i32>,
        error: Option<String>,
    ) -> Record {
        let since = self.wall.duration_since(UNIX_EPOCH).unwrap_or_default();
        let elapsed = self.wall.elapsed().unwrap_or(Duration::ZERO).as_millis();
        Record {
            event,
            call: self.call_id(),
            time: rfc3339(since),
            uid: self.uid,
            pid: self.pid,
            context: context.to_string(),
            argv0: cmd
                .first()
                .map(|a| a.to_string_lossy().into_owned())
                .unwrap_or_default(),
            argc: cmd.len().saturating_sub(1),
            secrets: secrets.to_vec(),
            duration_ms: status.map(|_| u64::try_from(elapsed).unwrap_or(u64::MAX)),
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
    /// This call's id, as its records write it (with or without an audit log).
    pub fn call(&self) -> String {
        self.start.call_id()
    }

    /// Where the egress proxy of this call logs its refusals (`None` without `audit`).
    pub fn egress_log(&self) -> Option<EgressLog> {
        Some(EgressLog::to_target(
            self.to?.clone(),
            self.start.call_id(),
            self.start.uid,
            self.context.to_string(),
        ))
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
        let record = self.start.record(
            Event::Start,
            self.context,
            self.cmd,
            &self.secrets,
            None,
            None,
        );
        write(to, &record)?;
        self.begun = true;
        Ok(())
    }

    /// The end record (or the refusal) with the exit status; a failure is only warned about (the
    /// command's own exit status is not changed by a full disk).
    pub fn finish(&self, code: i32, error: Option<String>, hide_path: bool) {
        let Some(to) = self.to else { return };
        let event = if self.begun {
            Event::End
        } else {
            Event::Refused
        };
        let record = self.start.record(
            event,
            self.context,
            self.cmd,
            &self.secrets,
            Some(code),
            error,
        );
        if let Err(e) = write(to, &record) {
            warn(&e, hide_path);
        }
    }
}

/// Write one record to `target`.
pub fn write(target: &AuditTarget, record: &Record) -> Result<()> {
    write::write_line(target, &record.line())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_has_names_and_counts_only() {
        let start = Start::now();
        let cmd: Vec<std::ffi::OsString> = vec!["psql".into(), "-c".into(), "password=x".into()];
        let names = ["PGPASSWORD".to_string()];
        let r = start.record(Event::End, "platform", &cmd, &names, Some(0), None);
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
        let begun = start.record(Event::Start, "platform", &cmd, &[], None, None);
        let b: serde_json::Value = serde_json::from_slice(&begun.line()).unwrap();
        assert_eq!(b["call"], v["call"]);
        assert!(b.get("status").is_none() && b.get("duration_ms").is_none());
        assert!(!line.contains("password=x"), "{line}");
    }

    #[test]
    fn records_keep_their_documented_fields_in_order_and_read_back() {
        let refused = Record {
            event: Event::Refused,
            call: "00000000deadbeef".into(),
            time: "2024-02-29T23:59:59.000Z".into(),
            uid: 1000,
            pid: 42,
            context: "platform".into(),
            argv0: "psql".into(),
            argc: 2,
            secrets: vec!["PGPASSWORD".into()],
            status: Some(125),
            duration_ms: Some(3),
            error: Some("unknown context \"x\"".into()),
        };
        let line = String::from_utf8(refused.line()).unwrap();
        assert_eq!(
            line,
            "{\"event\":\"refused\",\"call\":\"00000000deadbeef\",\"time\":\"2024-02-29T23:59:59.000Z\",\
             \"uid\":1000,\"pid\":42,\"context\":\"platform\",\"argv0\":\"psql\",\"argc\":2,\
             \"secrets\":[\"PGPASSWORD\"],\"status\":125,\"duration_ms\":3,\
             \"error\":\"unknown context \\\"x\\\"\"}\n"
        );
        let start = Record {
            event: Event::Start,
            status: None,
            duration_ms: None,
            error: None,
            ..refused.clone()
        };
        let line = String::from_utf8(start.line()).unwrap();
        assert!(
            line.starts_with("{\"event\":\"start\",")
                && line.ends_with("\"secrets\":[\"PGPASSWORD\"]}\n"),
            "{line}"
        );
        for r in [refused, start] {
            let back: Record = serde_json::from_slice(&r.line()).unwrap();
            assert_eq!(back, r);
        }
        // Not a record of the launcher: an unknown event or field.
        for bad in [
            r#"{"event":"begin","call":"0","time":"t","uid":0,"pid":1,"context":"c","argv0":"a","argc":0,"secrets":[]}"#,
            r#"{"event":"start","call":"0","time":"t","uid":0,"pid":1,"context":"c","argv0":"a","argc":0,"secrets":[],"x":1}"#,
        ] {
            assert!(serde_json::from_str::<Record>(bad).is_err(), "{bad}");
        }
    }
}
