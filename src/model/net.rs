//! `net` of a context: `"host"`, `"none"`, `"private"`, or a table
//! `{ mode = "private", allow = [...], publish = [...] }`. Each `allow` entry is parsed by the
//! egress rules ([`crate::model::egress`]) while the policy is read, so a bad one is reported with
//! its file, line and column like any other value.

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::model::egress::Allow;

/// The port of the egress proxy on the sandbox's own loopback (`127.0.0.1:3128`), named in the
/// target's `HTTP_PROXY`, `HTTPS_PROXY` and `ALL_PROXY`.
pub const PROXY_PORT: u16 = 3128;

/// The most ports `net.publish` may list in one context (each is a listener and a thread).
pub const MAX_PUBLISHED: usize = 64;

/// Which network namespace a context gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetMode {
    /// The container's network, shared.
    #[default]
    Host,
    /// A new network namespace with only `lo`, and nothing else.
    None,
    /// A new network namespace with only `lo`; egress through sbx-exec's proxy when `allow`
    /// names destinations, published ports forwarded from the container's loopback.
    Private,
}

impl NetMode {
    pub fn name(self) -> &'static str {
        match self {
            NetMode::Host => "host",
            NetMode::None => "none",
            NetMode::Private => "private",
        }
    }
}

/// The network of a context: `net = "MODE"` or the table `[context.NAME.net]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "Spelling")]
pub struct Net {
    pub mode: NetMode,
    /// Destinations the egress proxy may connect to (empty: no egress and no proxy at all).
    pub allow: Vec<NetRule>,
    /// Sandbox ports reachable on the container's `127.0.0.1`.
    pub publish: Vec<PortRange>,
    /// What the egress gate holds for this context (`net.limits`).
    pub limits: GateLimits,
}

/// `net.limits`: bounds on the egress gate, so that one call cannot take it all and a client that
/// sends nothing does not hold it for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GateLimits {
    /// Connections through the gate at once, for the whole context (over it: 503).
    pub connections: u32,
    /// Connections at once for one call (a persistent context's calls each reach the gate on an
    /// address of their own; over it: 503 naming this key).
    pub per_call: u32,
    /// Seconds a client has to send a whole request head (a trickled head is dropped: 408).
    pub head_timeout: u64,
    /// Seconds a tunnel, a request body or a response may move nothing before it is ended.
    pub idle_timeout: u64,
}

impl Default for GateLimits {
    fn default() -> GateLimits {
        GateLimits {
            connections: 256,
            per_call: 64,
            head_timeout: 30,
            idle_timeout: 300,
        }
    }
}

impl Net {
    /// Does the context get a network namespace of its own?
    pub fn own_namespace(&self) -> bool {
        self.mode != NetMode::Host
    }

    /// Does a launch start the egress proxy?
    pub fn proxied(&self) -> bool {
        self.mode == NetMode::Private && !self.allow.is_empty()
    }

    /// Every published port, in order.
    pub fn published_ports(&self) -> Vec<u16> {
        let mut out: Vec<u16> = self.publish.iter().flat_map(|r| r.first..=r.last).collect();
        out.sort_unstable();
        out
    }
}

/// One `net.allow` entry: the text as written (shown by `policy show`) and the parsed rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetRule {
    pub text: String,
    pub rule: Allow,
}

impl<'de> Deserialize<'de> for NetRule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let rule = text.parse::<Allow>().map_err(de::Error::custom)?;
        Ok(NetRule { text, rule })
    }
}

impl Serialize for NetRule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// A published port (`3000`) or an inclusive range (`"5173-5180"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    fn parse(s: &str) -> Result<PortRange, String> {
        let port = |p: &str| -> Result<u16, String> {
            match p.trim().parse::<u16>() {
                Ok(0) | Err(_) => Err(format!(
                    "invalid net.publish entry {s:?}: use a port 1-65535 (3000) or a range (\"5173-5180\")"
                )),
                Ok(n) => Ok(n),
            }
        };
        let (first, last) = match s.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => (port(s)?, port(s)?),
        };
        if first > last {
            return Err(format!(
                "invalid net.publish range {s:?}: the first port is above the last"
            ));
        }
        Ok(PortRange { first, last })
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = PortRange;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a port (3000) or a range of ports (\"5173-5180\")")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<PortRange, E> {
                PortRange::parse(&n.to_string()).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<PortRange, E> {
                PortRange::parse(&n.to_string()).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<PortRange, E> {
                PortRange::parse(s).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for PortRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.first == self.last {
            s.serialize_u16(self.first)
        } else {
            s.serialize_str(&format!("{}-{}", self.first, self.last))
        }
    }
}

/// The table form of `net`.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct NetTable {
    /// Default: "private" (what `allow` and `publish` are for).
    #[serde(default = "private")]
    mode: NetMode,
    #[serde(default)]
    allow: Vec<NetRule>,
    #[serde(default)]
    publish: Vec<PortRange>,
    #[serde(default, skip_serializing_if = "is_default")]
    limits: GateLimits,
}

fn is_default(l: &GateLimits) -> bool {
    *l == GateLimits::default()
}

fn private() -> NetMode {
    NetMode::Private
}

/// `net` as written: a mode string or a table (read by hand rather than `untagged`, so that an
/// error inside the table keeps its own message and position).
struct Spelling(Net);

impl From<Spelling> for Net {
    fn from(s: Spelling) -> Net {
        s.0
    }
}

impl<'de> Deserialize<'de> for Spelling {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Net;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("\"host\", \"none\", \"private\" or a table { mode = \"private\", allow = [...], publish = [...] }")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Net, E> {
                let mode = match s {
                    "host" => NetMode::Host,
                    "none" => NetMode::None,
                    "private" => NetMode::Private,
                    _ => return Err(E::custom(format!(
                        "invalid net {s:?}: use \"host\" (the container's network), \"none\" (only loopback) or \"private\" (loopback, egress through sbx-exec's proxy as [context.NAME.net] allow says)"
                    ))),
                };
                Ok(Net {
                    mode,
                    ..Net::default()
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Net, A::Error> {
                let t = NetTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Net {
                    mode: t.mode,
                    allow: t.allow,
                    publish: t.publish,
                    limits: t.limits,
                })
            }
        }
        d.deserialize_any(V).map(Spelling)
    }
}

impl Serialize for Net {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.allow.is_empty() && self.publish.is_empty() && is_default(&self.limits) {
            return s.serialize_str(self.mode.name());
        }
        NetTable {
            mode: self.mode,
            allow: self.allow.clone(),
            publish: self.publish.clone(),
            limits: self.limits,
        }
        .serialize(s)
    }
}

/// A rule of one context's `net` (or, for [`NetViolation::ReservedPublished`], of the policy's
/// contexts together) that a policy breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetViolation {
    /// `allow` or `publish` without `mode = "private"`.
    NeedsPrivate {
        mode: NetMode,
    },
    LimitZero,
    PerCallAboveConnections {
        per_call: u32,
        connections: u32,
    },
    LimitTooHigh,
    TooManyPublished {
        count: usize,
    },
    PublishedTwice,
    PublishedProxyPort,
    /// A port published by `context` that context `owner` reserves (`supervise.ports`).
    ReservedPublished {
        context: String,
        port: u16,
        owner: String,
    },
}

impl fmt::Display for NetViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetViolation::NeedsPrivate { mode } => write!(
                f,
                "net.allow and net.publish need mode = \"private\" (this context has \"{}\"); set [context.NAME.net] mode = \"private\"",
                mode.name()
            ),
            NetViolation::LimitZero => f.write_str("net.limits: every limit must be at least 1"),
            NetViolation::PerCallAboveConnections { per_call, connections } => write!(
                f,
                "net.limits: per_call ({}) is above connections ({}); a call cannot hold more than the whole context",
                per_call, connections
            ),
            NetViolation::LimitTooHigh => f.write_str(
                "net.limits: at most 4096 connections, head_timeout 3600 s, idle_timeout 86400 s",
            ),
            NetViolation::TooManyPublished { count } => write!(
                f,
                "net.publish lists {} ports; at most {MAX_PUBLISHED} (each is a listener on the container's loopback)",
                count
            ),
            NetViolation::PublishedTwice => f.write_str("net.publish lists a port twice"),
            NetViolation::PublishedProxyPort => write!(
                f,
                "net.publish cannot list {PROXY_PORT}: it is the egress proxy's port inside the sandbox"
            ),
            NetViolation::ReservedPublished { context, port, owner } => write!(
                f,
                "context \"{}\": net.publish lists {port}, a port reserved for the control plane (context \"{owner}\" supervise.ports); publish another port",
                context
            ),
        }
    }
}

/// The cross-key rules of one context's `net` (run by [`crate::model::validate`]).
pub fn check_context(ctx: &crate::model::Context) -> Result<(), NetViolation> {
    let net = &ctx.net;
    if net.mode != NetMode::Private && !(net.allow.is_empty() && net.publish.is_empty()) {
        return Err(NetViolation::NeedsPrivate { mode: net.mode });
    }
    let l = &net.limits;
    if l.connections == 0 || l.per_call == 0 || l.head_timeout == 0 || l.idle_timeout == 0 {
        return Err(NetViolation::LimitZero);
    }
    if l.per_call > l.connections {
        return Err(NetViolation::PerCallAboveConnections {
            per_call: l.per_call,
            connections: l.connections,
        });
    }
    if l.connections > 4096 || l.head_timeout > 3600 || l.idle_timeout > 86_400 {
        return Err(NetViolation::LimitTooHigh);
    }
    let ports = net.published_ports();
    if ports.len() > MAX_PUBLISHED {
        return Err(NetViolation::TooManyPublished { count: ports.len() });
    }
    if ports.windows(2).any(|w| w[0] == w[1]) {
        return Err(NetViolation::PublishedTwice);
    }
    if net.proxied() && ports.contains(&PROXY_PORT) {
        return Err(NetViolation::PublishedProxyPort);
    }
    Ok(())
}

/// A port published by one context and reserved by another's `supervise.ports` (the control
/// plane's): the first such pair.
pub fn check_reserved(policy: &crate::model::Policy) -> Result<(), NetViolation> {
    let reserved: Vec<(u16, &str)> = policy
        .context
        .iter()
        .filter_map(|(n, c)| c.supervise.as_ref().map(|s| (n, s)))
        .flat_map(|(n, s)| s.ports.iter().map(move |p| (*p, n.0.as_str())))
        .collect();
    for (name, ctx) in &policy.context {
        for port in ctx.net.published_ports() {
            if let Some((_, owner)) = reserved.iter().find(|(p, _)| *p == port) {
                return Err(NetViolation::ReservedPublished {
                    context: name.0.clone(),
                    port,
                    owner: owner.to_string(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::model::{NetMode, Policy};

    fn parse(net: &str) -> Result<Policy, crate::model::PolicyError> {
        Policy::parse(&format!("version = 1\n[context.c]\n{net}\n"), "t.toml")
    }

    #[test]
    fn string_and_table_forms() {
        for (text, mode) in [
            ("net = \"host\"", NetMode::Host),
            ("net = \"none\"", NetMode::None),
            ("net = \"private\"", NetMode::Private),
            ("net = { allow = [\"pypi.org\"] }", NetMode::Private),
            (
                "[context.c.net]\nmode = \"private\"\npublish = [3000, \"5173-5175\"]",
                NetMode::Private,
            ),
        ] {
            let p = parse(text).unwrap();
            assert_eq!(p.context("c").unwrap().net.mode, mode, "{text}");
        }
        let p = parse("net = { publish = [3000, \"5173-5175\"] }").unwrap();
        assert_eq!(
            p.context("c").unwrap().net.published_ports(),
            vec![3000, 5173, 5174, 5175]
        );
    }

    #[test]
    fn bad_values_name_line_and_column() {
        for (text, want) in [
            ("net = \"bridge\"", "t.toml:3:7"),
            (
                "[context.c.net]\nallow = [\"ok.org\", \"10.0.0.0/33\"]",
                "t.toml:4:9",
            ),
            ("[context.c.net]\npublish = [0]", "t.toml:4:"),
            ("[context.c.net]\npublish = [\"9-3\"]", "t.toml:4:"),
            ("[context.c.net]\nproxy = 1", "unknown field"),
        ] {
            let e = format!("{:#}", parse(text).unwrap_err());
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn cross_key_rules() {
        let e = parse("net = { mode = \"host\", allow = [\"a.org\"] }").unwrap_err();
        assert!(e.to_string().contains("mode = \"private\""), "{e}");
        let e = parse("net = { allow = [\"a.org\"], publish = [3128] }").unwrap_err();
        assert!(e.to_string().contains("3128"), "{e}");
        let e = parse("net = { publish = [3000, \"2999-3001\"] }").unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        let text = "version = 1\n[context.a.supervise]\nports = [8080]\n[context.b]\nnet = { publish = [8080] }\n";
        let e = Policy::parse(text, "t.toml").unwrap_err();
        assert!(
            e.to_string().contains("reserved for the control plane"),
            "{e}"
        );
    }

    #[test]
    fn serialized_back_the_same_way() {
        let p = parse("net = { allow = [\"*.pypi.org:443\"], publish = [\"5173-5180\"] }").unwrap();
        let back = toml::to_string(&p).unwrap();
        assert!(
            back.contains("*.pypi.org:443") && back.contains("5173-5180"),
            "{back}"
        );
        let again = Policy::parse(&back, "back.toml").unwrap();
        assert_eq!(again.context("c").unwrap().net, p.context("c").unwrap().net);
    }
}
