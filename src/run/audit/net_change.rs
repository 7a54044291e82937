//! The audit line of a live change of a persistent context's egress rules (`sbx-exec ctx net`):
//! who (the uid), the context, the rules added and removed, and when; nothing else (no rule that
//! stayed, no address, no process).

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::rfc3339;
use crate::model::AuditTarget;

/// Its one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetEvent {
    NetChange,
}

/// `{"event":"net-change","time":..,"uid":0,"context":"user","added":[..],"removed":[..]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetChangeRecord {
    pub event: NetEvent,
    pub time: String,
    pub uid: u32,
    pub context: String,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

impl NetChangeRecord {
    /// The record of a change made now by this process's caller.
    pub fn now(context: &str, added: &[String], removed: &[String]) -> NetChangeRecord {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        NetChangeRecord {
            event: NetEvent::NetChange,
            time: rfc3339(since),
            uid: nix::unistd::getuid().as_raw(),
            context: context.to_string(),
            added: added.to_vec(),
            removed: removed.to_vec(),
        }
    }

    /// One JSON line, newline-terminated.
    pub fn line(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).expect("a record always serializes");
        v.push(b'\n');
        v
    }

    /// Write it to `target`.
    pub fn write(&self, target: &AuditTarget) -> Result<()> {
        super::write::write_line(target, &self.line())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_one_line_of_its_fields_only() {
        let r = NetChangeRecord {
            time: "2024-02-29T23:59:59.000Z".into(),
            ..NetChangeRecord::now("user", &["192.0.2.10/32".into()], &["pypi.org".into()])
        };
        let line = String::from_utf8(r.line()).unwrap();
        assert_eq!(
            line,
            format!(
                "{{\"event\":\"net-change\",\"time\":\"2024-02-29T23:59:59.000Z\",\"uid\":{},\
                 \"context\":\"user\",\"added\":[\"192.0.2.10/32\"],\"removed\":[\"pypi.org\"]}}\n",
                nix::unistd::getuid().as_raw()
            )
        );
        assert_eq!(serde_json::from_str::<NetChangeRecord>(&line).unwrap(), r);
        for bad in [
            r#"{"event":"net-changed","time":"t","uid":0,"context":"c","added":[],"removed":[]}"#,
            r#"{"event":"net-change","time":"t","uid":0,"context":"c","added":[],"removed":[],"rules":[]}"#,
            r#"{"event":"net-change","time":"t","uid":0,"context":"c","added":[]}"#,
        ] {
            assert!(
                serde_json::from_str::<NetChangeRecord>(bad).is_err(),
                "{bad}"
            );
        }
    }
}
