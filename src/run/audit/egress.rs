//! The egress gate's lines in the audit log: [`EgressRecord`], written by an [`EgressLog`] to the
//! policy's target (from the launcher) or to an fd the launcher opened for the gate.

use std::os::unix::fs::OpenOptionsExt;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

use super::rfc3339;
use super::write::{warn, write_fd, write_line};
use crate::model::AuditTarget;

/// The egress gate's log of one call: an `"event":"egress-refused"` line per request it refused
/// and an `"egress-failed"` line per one it could not serve, with the call id, context, protocol,
/// the HTTP status answered, host, port (when they were read) and the reason (a destination and a
/// policy key, never data of the request), the bound secrets' `secret-added`,
/// `secret-exfiltration` and `secret-withheld` lines, and a `dns-refused` line per name the
/// sandbox's DNS refused.
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

/// What the gate logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EgressEvent {
    /// A request refused (the policy, or a malformed request).
    EgressRefused,
    /// An allowed request that could not be served (resolution or the connection failed).
    EgressFailed,
    /// A bound secret's value put into a request to its host (`reason` names the secret).
    SecretAdded,
    /// A bound secret's placeholder on its way to a host it is not bound to.
    SecretExfiltration,
    /// A bound secret's placeholder sent as is to its own host: the request is outside the
    /// binding's `methods` or `paths` (`reason` names the secret and the key).
    SecretWithheld,
    /// A name the sandbox's DNS answered NXDOMAIN for: no domain rule names it (it was not
    /// looked up), or it resolves only to addresses no sandbox may reach.
    DnsRefused,
    /// A platform operation asked for (`op` names it, `status` says how it was answered: 200
    /// when the control plane performed it); never its params.
    Op,
}

/// How the request reached the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// A plain HTTP request to the proxy.
    Http,
    /// HTTP `CONNECT`.
    Connect,
    /// SOCKS5.
    Socks5,
    /// A connection made straight to an address, captured (no proxy variables used).
    Captured,
    /// A query to the sandbox's DNS.
    Dns,
}

/// One line of the gate: fields in this order; `status` only when the client was answered,
/// `host` and `port` only once they were read. Names only, never values or request data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressRecord {
    pub event: EgressEvent,
    pub call: String,
    pub time: String,
    pub uid: u32,
    pub context: String,
    pub protocol: Protocol,
    /// The HTTP status the client was answered with, if it was answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The destination, when the refusal came after it was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The platform operation (`op` events): its name, empty when the request named none a
    /// policy could list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<String>,
    pub reason: String,
}

impl EgressRecord {
    /// One JSON line, newline-terminated.
    pub fn line(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).expect("a record always serializes");
        v.push(b'\n');
        v
    }
}

impl EgressLog {
    /// The log of a call whose launcher writes to `to` itself.
    pub(super) fn to_target(to: AuditTarget, call: String, uid: u32, context: String) -> EgressLog {
        EgressLog {
            to: Sink::Target(to),
            call,
            uid,
            context,
        }
    }

    /// The record of one event of the proxy, stamped now: `host` empty and `port` 0 (not read
    /// yet) are left out.
    pub fn record(
        &self,
        event: EgressEvent,
        protocol: Protocol,
        (host, port): (&str, u16),
        status: Option<u16>,
        reason: &str,
    ) -> EgressRecord {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        EgressRecord {
            event,
            call: self.call.clone(),
            time: rfc3339(since),
            uid: self.uid,
            context: self.context.clone(),
            protocol,
            status,
            host: (!host.is_empty()).then(|| host.to_string()),
            port: (port != 0).then_some(port),
            op: None,
            reason: reason.to_string(),
        }
    }

    /// Log one event of the proxy ([`EgressLog::record`]); a failure is only warned about.
    pub fn log(
        &self,
        event: EgressEvent,
        protocol: Protocol,
        to: (&str, u16),
        status: Option<u16>,
        reason: &str,
    ) {
        self.write(&self.record(event, protocol, to, status, reason));
    }

    /// Log a platform operation asked for (`op`), answered with `status`.
    pub fn log_op(&self, op: &str, status: u16, reason: &str) {
        let mut r = self.record(
            EgressEvent::Op,
            Protocol::Http,
            ("sbx-ops", 80),
            Some(status),
            reason,
        );
        r.op = Some(op.to_string());
        self.write(&r);
    }

    fn write(&self, record: &EgressRecord) {
        let line = record.line();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn log() -> EgressLog {
        EgressLog::to_target(
            AuditTarget::Stderr,
            "00000000deadbeef".into(),
            1000,
            "user".into(),
        )
    }

    #[test]
    fn egress_lines_keep_their_documented_fields_in_order() {
        let mut r = log().record(
            EgressEvent::EgressRefused,
            Protocol::Connect,
            ("metadata.internal", 80),
            Some(403),
            "169.254.169.254 is link-local; refused by [context.user.net] allow",
        );
        assert!(r.time.ends_with('Z') && r.time.len() == 24, "{}", r.time);
        r.time = "2026-01-01T00:00:00.000Z".into();
        assert_eq!(
            String::from_utf8(r.line()).unwrap(),
            "{\"event\":\"egress-refused\",\"call\":\"00000000deadbeef\",\"time\":\"2026-01-01T00:00:00.000Z\",\
             \"uid\":1000,\"context\":\"user\",\"protocol\":\"connect\",\"status\":403,\"host\":\"metadata.internal\",\
             \"port\":80,\"reason\":\"169.254.169.254 is link-local; refused by [context.user.net] allow\"}\n"
        );
        // Refused before the destination was read, and never answered: those fields are left out.
        let early = log().record(
            EgressEvent::EgressFailed,
            Protocol::Socks5,
            ("", 0),
            None,
            "x",
        );
        let line = String::from_utf8(early.line()).unwrap();
        assert!(line.contains("\"event\":\"egress-failed\""), "{line}");
        assert!(
            line.contains("\"protocol\":\"socks5\",\"reason\":\"x\"}"),
            "{line}"
        );
        for (event, name) in [
            (EgressEvent::SecretAdded, "secret-added"),
            (EgressEvent::SecretExfiltration, "secret-exfiltration"),
            (EgressEvent::SecretWithheld, "secret-withheld"),
        ] {
            let r = log().record(
                event,
                Protocol::Http,
                ("a.com", 443),
                None,
                "bound secret K added",
            );
            let line = String::from_utf8(r.line()).unwrap();
            assert!(
                line.starts_with(&format!("{{\"event\":\"{name}\",")),
                "{line}"
            );
            assert!(line.contains("\"protocol\":\"http\""), "{line}");
        }
        for r in [r, early] {
            let back: EgressRecord = serde_json::from_slice(&r.line()).unwrap();
            assert_eq!(back, r);
        }
    }
}
