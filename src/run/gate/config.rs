//! What the launcher tells the gate process, on its fd 3, before the gate reads a byte from the
//! sandbox: the egress rules, the published ports, where its events go, and the call's bound
//! secrets (their policy entries, names, real values and placeholders, and the per-call CA's key
//! and certificate). JSON, written once by the launcher and read once by the gate, which wipes
//! the bytes; the launcher never reads anything back. Read strictly: an unknown field, or a
//! binding's value the policy would refuse (a host, a method, a path), is an error. The gate's other fds follow in this order:
//! the proxy's listener (with egress), one listener per published port, the dialer's socket (with
//! published ports), the control plane's dialer (with `ops`: one end of a SOCK_SEQPACKET pair,
//! see [`crate::run::proxy::ops`]), the audit sink (with an audit log).

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::model::bind::Bind;

/// The config's own fd in the gate.
pub const CONFIG_FD: i32 = 3;
/// The most bytes of config the gate reads.
pub const MAX_CONFIG: usize = 1 << 20;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The launcher's pid: the gate's parent, whose death ends it.
    pub launcher: i32,
    pub egress: Option<Egress>,
    /// The published ports, in the order of their listeners.
    pub publish: Vec<u16>,
    /// `net.limits.idle_timeout`: a tunnel, a request body or response, or a published port's
    /// connection in which nothing moves this long is ended.
    pub idle_timeout_ms: u64,
    pub log: Option<Log>,
    pub bound: Option<BoundWire>,
}

/// The egress rules (`net.allow` as written, parsed again by the gate) and the proxy's limits.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Egress {
    pub context: String,
    pub allow: Vec<String>,
    /// The captured ports, in the order of their listeners (after the proxy's); the DNS
    /// socket follows them.
    pub capture: Vec<u16>,
    pub max_connections: usize,
    pub per_call: usize,
    pub head_timeout_ms: u64,
    /// The platform operations the sandbox may call (`ops`); their dialer's fd follows the
    /// published ports' dialer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ops: Vec<String>,
}

/// The audit log's identity for the gate's records (the sink is an fd).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    pub syslog: bool,
    pub call: String,
    pub uid: u32,
    pub context: String,
}

/// The call's bound secrets.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoundWire {
    pub binds: Vec<Bind>,
    pub values: Vec<Value>,
    pub ca_key: Zeroizing<Vec<u8>>,
    pub ca_cert: Vec<u8>,
}

/// One bound value.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Value {
    pub name: String,
    pub real: Zeroizing<String>,
    pub placeholder: String,
}

impl Config {
    /// The bytes written to the gate (wiped when dropped).
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(serde_json::to_vec(self).expect("a gate config always serializes"))
    }

    pub fn decode(bytes: &[u8]) -> Result<Config, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("the gate's config: {e}"))
    }

    /// How many fds follow the config, and where each kind starts.
    pub fn layout(&self) -> Layout {
        let mut next = CONFIG_FD + 1;
        let mut take = |n: usize| {
            let at = next;
            next += n as i32;
            at
        };
        let listener = self.egress.as_ref().map(|_| take(1));
        let capture = take(self.egress.as_ref().map_or(0, |e| e.capture.len()));
        let dns = self.egress.as_ref().map(|_| take(1));
        let published = take(self.publish.len());
        let dialer = (!self.publish.is_empty()).then(|| take(1));
        let ops = self
            .egress
            .as_ref()
            .filter(|e| !e.ops.is_empty())
            .map(|_| take(1));
        let log = self.log.as_ref().map(|_| take(1));
        Layout {
            listener,
            capture,
            dns,
            published,
            dialer,
            ops,
            log,
            end: next,
        }
    }
}

/// Where the gate finds its fds.
#[derive(Debug, PartialEq, Eq)]
pub struct Layout {
    pub listener: Option<i32>,
    /// The first captured port's listener (the others follow).
    pub capture: i32,
    pub dns: Option<i32>,
    /// The first published port's listener (the others follow).
    pub published: i32,
    pub dialer: Option<i32>,
    /// The control plane's dialer (with `ops`).
    pub ops: Option<i32>,
    pub log: Option<i32>,
    /// One past the last.
    pub end: i32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_layout() {
        let c = Config {
            launcher: 42,
            egress: Some(Egress {
                context: "user".into(),
                allow: vec!["0.0.0.0/0".into()],
                capture: vec![80, 443],
                max_connections: 256,
                per_call: 64,
                head_timeout_ms: 30_000,
                ops: vec!["deploy".into()],
            }),
            publish: vec![3000, 5173],
            idle_timeout_ms: 300_000,
            log: Some(Log {
                syslog: false,
                call: "c".into(),
                uid: 0,
                context: "user".into(),
            }),
            bound: Some(BoundWire {
                binds: vec![bind(LIMITED)],
                values: vec![Value {
                    name: "K".into(),
                    real: Zeroizing::new("real".into()),
                    placeholder: "fake".into(),
                }],
                ca_key: Zeroizing::new(vec![1, 2]),
                ca_cert: vec![3],
            }),
        };
        let back = Config::decode(&c.encode()).unwrap();
        assert_eq!(back.launcher, 42);
        let bound = back.bound.unwrap();
        assert_eq!(bound.values[0].real.as_str(), "real");
        // A binding's limits reach the gate as written, and rebuild the same requests rule.
        assert_eq!(bound.binds, c.bound.as_ref().unwrap().binds);
        let requests = bound.binds[0].requests();
        assert!(requests.admits("POST", "/v1/messages?beta=1", &[]).is_ok());
        assert!(requests.admits("GET", "/v1/messages", &[]).is_err());
        assert!(requests
            .admits("POST", "/v1/messages/../models", &[])
            .is_err());
        assert_eq!(
            c.layout(),
            Layout {
                listener: Some(4),
                capture: 5,
                dns: Some(7),
                published: 8,
                dialer: Some(10),
                ops: Some(11),
                log: Some(12),
                end: 13
            }
        );
        let bare = Config {
            launcher: 1,
            egress: None,
            publish: vec![],
            idle_timeout_ms: 1000,
            log: None,
            bound: None,
        };
        assert_eq!(bare.layout().end, 4);
        assert!(Config::decode(b"{").is_err());
    }

    const LIMITED: &str = "name = \"K\"\nhosts = [\"api.example.com\"]\nheader = \"x-api-key\"\nmethods = [\"POST\"]\npaths = [\"/v1/messages\"]";

    fn bind(toml_text: &str) -> Bind {
        toml::from_str(toml_text).unwrap()
    }

    /// The config is read strictly: an unknown field anywhere, or a binding's method or path the
    /// policy would refuse, is an error (the control: the same text with the field as written
    /// is read).
    #[test]
    fn decode_is_strict() {
        let c = Config {
            launcher: 1,
            egress: None,
            publish: vec![],
            idle_timeout_ms: 1000,
            log: None,
            bound: Some(BoundWire {
                binds: vec![bind(LIMITED)],
                values: vec![],
                ca_key: Zeroizing::new(vec![1]),
                ca_cert: vec![2],
            }),
        };
        let text = String::from_utf8(c.encode().to_vec()).unwrap();
        assert!(
            text.contains("\"methods\":[\"POST\"],\"paths\":[\"/v1/messages\"]"),
            "{text}"
        );
        assert!(Config::decode(text.as_bytes()).is_ok());
        for (from, to) in [
            ("\"launcher\":1", "\"launcher\":1,\"extra\":1"),
            ("\"ca_cert\":[2]", "\"ca_cert\":[2],\"extra\":1"),
            ("\"methods\":", "\"verbs\":"),
            ("\"POST\"", "\"post\""),
            ("\"/v1/messages\"", "\"/v1/../messages\""),
            ("\"/v1/messages\"", "\"v1/messages\""),
        ] {
            let bad = text.replacen(from, to, 1);
            assert_ne!(bad, text);
            assert!(Config::decode(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
