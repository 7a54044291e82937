//! The records of the status stream, as serde writes them.

use serde::{Deserialize, Serialize};

/// One line of the status stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Record {
    /// The command runs: `{"child-pid":N}`.
    Started(Started),
    /// The command ended: `{"exit-code":N,"reason":R,...}`.
    Ended(Ended),
    /// sbx-exec did not start the command: `{"exit-code":N,"reason":"refused","message":M}`.
    Refused(Refused),
}

impl Record {
    /// The line, without its newline.
    pub fn line(&self) -> String {
        serde_json::to_string(self).expect("a status record always serializes")
    }

    /// A line read back (what a client of the status fd does).
    pub fn parse(line: &str) -> serde_json::Result<Record> {
        serde_json::from_str(line)
    }
}

/// `{"child-pid":N}`: the command's pid, as seen from outside the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Started {
    #[serde(rename = "child-pid")]
    pub child_pid: i32,
}

/// The end record of a command that ran. `exit-code` stays the first key, for parsers that only
/// read it; `signal` only for a signal death, `peak_memory` only when it was measured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ended {
    #[serde(rename = "exit-code")]
    pub exit_code: i32,
    pub reason: Reason,
    /// The signal's name (`SIGKILL`; `SIG34` for one without a name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    pub wall_ms: u64,
    pub cpu_ms: u64,
    /// Bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_memory: Option<u64>,
}

/// The end record of a launch sbx-exec refused (or could not start): its exit code (125, or 127
/// and 126 for a command not found or not executable) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refused {
    #[serde(rename = "exit-code")]
    pub exit_code: i32,
    pub reason: RefusedReason,
    pub message: String,
}

/// The `reason` of a [`Refused`] record: always `"refused"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefusedReason {
    #[serde(rename = "refused")]
    Refused,
}

/// Why a call ended, as the end record's `reason` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Exited,
    Signaled,
    Timeout,
    Oom,
    PidsLimit,
    /// A persistent context was stopped (`ctx stop`) while the command ran.
    Stopped,
    /// A persistent context's keeper died (was killed) while the command ran.
    KeeperDied,
}

/// The end of a call: what `{"exit-code":..}` records say after the command ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct End {
    pub code: i32,
    pub timed_out: bool,
    /// Processes the OOM killer killed in the call's cgroup.
    pub oom_kills: u64,
    /// Forks refused at `pids_max`.
    pub pids_refused: u64,
    pub wall_ms: u64,
    pub cpu_ms: u64,
    pub peak_memory: Option<u64>,
    /// Set when the call's context ended under it ([`Reason::Stopped`], [`Reason::KeeperDied`]).
    pub context_ended: Option<Reason>,
}

impl End {
    /// The reason, and the signal for a signal death (128+N, as a shell reports it). Order: the
    /// policy's timeout, then an OOM kill, then a fork refused at pids_max (when the command
    /// failed), then the signal, else a plain exit.
    pub fn reason(&self) -> (Reason, Option<i32>) {
        let signal = (self.code > 128 && self.code < 128 + 65).then_some(self.code - 128);
        let reason = if let Some(r) = self.context_ended {
            r
        } else if self.timed_out {
            Reason::Timeout
        } else if self.oom_kills > 0 {
            Reason::Oom
        } else if self.pids_refused > 0 && self.code != 0 {
            Reason::PidsLimit
        } else if signal.is_some() {
            Reason::Signaled
        } else {
            Reason::Exited
        };
        (reason, signal.filter(|_| reason != Reason::Exited))
    }

    /// The end record.
    pub fn record(&self) -> Ended {
        let (reason, signal) = self.reason();
        Ended {
            exit_code: self.code,
            reason,
            signal: signal.map(|n| match nix::sys::signal::Signal::try_from(n) {
                Ok(s) => s.as_str().to_string(),
                Err(_) => format!("SIG{n}"),
            }),
            wall_ms: self.wall_ms,
            cpu_ms: self.cpu_ms,
            peak_memory: self.peak_memory,
        }
    }

    /// One JSON line; `exit-code` stays the first key for parsers that only read it.
    pub fn json(&self) -> String {
        Record::Ended(self.record()).line()
    }
}

/// The record of a launch sbx-exec refused (or could not start): its exit code and message.
pub fn refused_json(code: i32, message: &str) -> String {
    Record::Refused(Refused {
        exit_code: code,
        reason: RefusedReason::Refused,
        message: message.to_string(),
    })
    .line()
}

/// The record of a command that runs, with its pid as seen from outside.
pub fn started_json(pid: i32) -> String {
    Record::Started(Started { child_pid: pid }).line()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_records_keep_exit_code_first_and_name_the_reason() {
        let e = End {
            code: 0,
            wall_ms: 5,
            ..End::default()
        };
        assert_eq!(
            e.json(),
            "{\"exit-code\":0,\"reason\":\"exited\",\"wall_ms\":5,\"cpu_ms\":0}"
        );
        let k = End {
            code: 137,
            peak_memory: Some(10),
            ..End::default()
        };
        assert!(k
            .json()
            .starts_with("{\"exit-code\":137,\"reason\":\"signaled\",\"signal\":\"SIGKILL\""));
        assert!(k.json().ends_with(",\"peak_memory\":10}"));
        let oom = End {
            code: 137,
            oom_kills: 1,
            ..End::default()
        };
        assert_eq!(oom.reason(), (Reason::Oom, Some(9)));
        let pids = End {
            code: 1,
            pids_refused: 4,
            ..End::default()
        };
        assert_eq!(pids.reason(), (Reason::PidsLimit, None));
        let t = End {
            code: 124,
            timed_out: true,
            ..End::default()
        };
        assert_eq!(t.reason().0, Reason::Timeout);
        let r = refused_json(125, "no \"such\" context");
        let v: serde_json::Value = serde_json::from_str(&r).unwrap();
        assert_eq!(v["reason"], "refused");
        assert!(r.starts_with("{\"exit-code\":125,"));
    }

    #[test]
    fn each_record_has_its_exact_wire_format() {
        assert_eq!(started_json(4242), r#"{"child-pid":4242}"#);
        let all = End {
            code: 137,
            oom_kills: 1,
            wall_ms: 470,
            cpu_ms: 115,
            peak_memory: Some(67108864),
            ..End::default()
        };
        assert_eq!(
            all.json(),
            r#"{"exit-code":137,"reason":"oom","signal":"SIGKILL","wall_ms":470,"cpu_ms":115,"peak_memory":67108864}"#
        );
        let pids = End {
            code: 2,
            pids_refused: 1,
            wall_ms: 87,
            cpu_ms: 4,
            ..End::default()
        };
        assert_eq!(
            pids.json(),
            r#"{"exit-code":2,"reason":"pids_limit","wall_ms":87,"cpu_ms":4}"#
        );
        let stopped = End {
            code: 143,
            context_ended: Some(Reason::Stopped),
            ..End::default()
        };
        assert_eq!(
            stopped.json(),
            r#"{"exit-code":143,"reason":"stopped","signal":"SIGTERM","wall_ms":0,"cpu_ms":0}"#
        );
        let died = End {
            code: 137,
            context_ended: Some(Reason::KeeperDied),
            ..End::default()
        };
        assert!(died
            .json()
            .contains(r#""reason":"keeper_died","signal":"SIGKILL""#));
        // A real-time signal has no name of its own.
        let rt = End {
            code: 128 + 34,
            ..End::default()
        };
        assert!(rt
            .json()
            .contains(r#""reason":"signaled","signal":"SIG34""#));
        // Escaped as JSON strings are: quotes, backslashes, newlines, control characters.
        assert_eq!(
            refused_json(127, "no \"such\" \\ command\n\u{1}"),
            r#"{"exit-code":127,"reason":"refused","message":"no \"such\" \\ command\n\u0001"}"#
        );
    }

    #[test]
    fn records_read_back_as_they_were_written() {
        let records = [
            Record::Started(Started { child_pid: 7 }),
            Record::Ended(
                End {
                    code: 137,
                    oom_kills: 2,
                    peak_memory: Some(1 << 20),
                    ..End::default()
                }
                .record(),
            ),
            Record::Ended(
                End {
                    code: 3,
                    wall_ms: 12,
                    ..End::default()
                }
                .record(),
            ),
            Record::Refused(Refused {
                exit_code: 125,
                reason: RefusedReason::Refused,
                message: "unknown context \"nope\"".into(),
            }),
        ];
        for r in records {
            assert_eq!(Record::parse(&r.line()).unwrap(), r, "{}", r.line());
        }
        // Each kind is told apart by its fields, and a line of none is no record.
        assert!(matches!(
            Record::parse(r#"{"exit-code":125,"reason":"refused","message":"m"}"#),
            Ok(Record::Refused(_))
        ));
        for bad in [
            r#"{"child-pid":"7"}"#,
            r#"{"exit-code":1,"reason":"exited"}"#,
            r#"{"exit-code":1,"reason":"nope","wall_ms":1,"cpu_ms":1}"#,
            r#"{"exit-code":1,"reason":"exited","wall_ms":1,"cpu_ms":1,"extra":1}"#,
            "garbage",
        ] {
            assert!(Record::parse(bad).is_err(), "{bad}");
        }
    }
}
