//! Egress policy of a confined context: which destinations its proxy may connect to. Pure: no
//! sockets, no resolution (the container's own addresses are given to it: `self_addrs`).
//!
//! A destination passes when all three hold:
//! 1. it is *named* by a rule: its name matches a domain rule, or its address matches a CIDR
//!    rule, and the rule's port (if any) is the destination's port;
//! 2. its address is in no forbidden class (loopback, link-local and the cloud metadata
//!    addresses, private, CGNAT, multicast, unspecified, broadcast, `0.0.0.0/8`, `240.0.0.0/4`,
//!    the container's own addresses, and IPv6 spellings that embed such an IPv4 address), unless
//!    a CIDR rule *inside* that class covers it: `127.0.0.1/32` opens 127.0.0.1, but
//!    `0.0.0.0/0` does not open loopback and the metadata address opens only by its own `/32`;
//! 3. a domain rule never opens a forbidden class, so a name that resolves (or is rebound) to an
//!    internal address is refused.
//!
//! An empty `allow` means no egress at all. Rule spellings:
//! - `pypi.org` (that name only), `*.pypi.org` (its subdomains, *not* `pypi.org` itself; list
//!   both for both), with an optional port: `*.github.com:443`;
//! - an address or network: `203.0.113.7`, `203.0.113.0/24`, `2001:db8::/32`, with an optional
//!   port: `10.0.0.0/8:5432`, `[2001:db8::1]:8443`, `[2001:db8::/32]:443`.
//!
//! Hosts the proxy receives are parsed as `inet_aton` and browsers do (`2130706433`,
//! `0177.0.0.1`, `0x7f.1`, `127.1` are all 127.0.0.1), so no spelling of an address is sent to
//! the resolver as a name; `localhost` and `*.localhost` are refused outright.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

/// One entry of `net.allow`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allow {
    Domain {
        pattern: DomainPattern,
        port: Option<u16>,
    },
    Net {
        net: Cidr,
        port: Option<u16>,
    },
}

/// A domain rule: `Exact("pypi.org")` matches that name; `Subdomains("pypi.org")` (written
/// `*.pypi.org`) matches `files.pypi.org`, `a.b.pypi.org`, but not `pypi.org`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainPattern {
    Exact(String),
    Subdomains(String),
}

/// An IPv4 or IPv6 network, host bits zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// A `net.allow` entry that does not parse: the entry, what is wrong, and how to write it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("net.allow entry {entry:?}: {problem}; {fix}")]
pub struct AllowError {
    pub entry: String,
    pub problem: String,
    pub fix: String,
}

/// A host as the proxy received it, once parsed: an address (in any spelling) or a DNS name
/// (lowercase, no trailing dot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

/// Why a destination is refused. `reason` is the whole story, for the audit log: it may name the
/// address a name resolved to and the container's own addresses. `public` is what the sandbox is
/// told (the 403 body): the rule, never an address it did not give itself, never which address is
/// the container's own (a refusal must not be an oracle for internal names or the container).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub reason: String,
    pub public: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// `net.allow` is empty.
    NoEgress,
    /// No rule names this destination.
    NotAllowed,
    /// The address is in a forbidden class no CIDR rule opens.
    ForbiddenAddress,
    /// `localhost` or a name under it.
    LocalName,
    /// Not a valid host spelling.
    BadHost,
}

/// The egress rules of one context, plus the container's own addresses (refused like loopback).
#[derive(Debug, Clone)]
pub struct EgressPolicy {
    /// The context's name, used in refusal messages (`[context.NAME.net]`).
    pub context: String,
    pub allow: Vec<Allow>,
    pub self_addrs: Vec<IpAddr>,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for Refusal {}

impl Refusal {
    /// A refusal whose whole story may be told to the sandbox.
    fn new(kind: RefusalKind, reason: String) -> Refusal {
        Refusal {
            kind,
            public: reason.clone(),
            reason,
        }
    }

    /// A refusal told to the sandbox as `public`.
    fn told(kind: RefusalKind, reason: String, public: String) -> Refusal {
        Refusal {
            kind,
            reason,
            public,
        }
    }
}

/// The forbidden classes, as the sandbox is told of them (never which one applies).
const FORBIDDEN_CLASSES: &str =
    "loopback, link-local, private, CGNAT, multicast, reserved, or the container's own";

impl EgressPolicy {
    /// Parse the `net.allow` entries of context `context`.
    pub fn parse(
        context: &str,
        allow: &[&str],
        self_addrs: Vec<IpAddr>,
    ) -> Result<EgressPolicy, AllowError> {
        let allow = allow.iter().map(|s| s.parse()).collect::<Result<_, _>>()?;
        Ok(EgressPolicy {
            context: context.to_string(),
            allow,
            self_addrs,
        })
    }

    /// First check, before any resolution (so a refused name is never even looked up): parse
    /// `host`; an address is checked in full (`check_addr`); a name passes if a domain rule
    /// matches it, or if a CIDR rule on this port might match what it resolves to. The caller
    /// must then `check_addr` every address the name resolves to.
    pub fn check_name(&self, host: &str, port: u16) -> Result<Host, Refusal> {
        let parsed = parse_host(host)?;
        match &parsed {
            Host::Ip(ip) => self.check_addr(None, *ip, port)?,
            Host::Name(name) => {
                self.check_not_empty()?;
                let by_name = self.allow.iter().any(|r| r.matches_name(name, port));
                let by_addr_later = self
                    .allow
                    .iter()
                    .any(|r| matches!(r, Allow::Net { port: p, .. } if port_ok(*p, port)));
                if !by_name && !by_addr_later {
                    return Err(self.not_allowed(&format!("{name}:{port}")));
                }
            }
        }
        Ok(parsed)
    }

    /// A port on which a domain rule names `name` (lowercase, no trailing dot): the rule's own,
    /// or 443 for a rule on every port; `None` when no domain rule names it. The gate's resolver
    /// answers only such names (a CIDR rule names addresses, never a name to look up).
    pub fn names_domain(&self, name: &str) -> Option<u16> {
        self.allow.iter().find_map(|r| match r {
            Allow::Domain { pattern, port } if pattern.matches(name) => Some(port.unwrap_or(443)),
            _ => None,
        })
    }

    /// Final check of one address the proxy is about to connect to; `name` is the name it was
    /// resolved from (None for an address literal).
    pub fn check_addr(&self, name: Option<&str>, ip: IpAddr, port: u16) -> Result<(), Refusal> {
        self.check_not_empty()?;
        let canon = ip.to_canonical();
        for class in self.forbidden_classes(ip) {
            let opened = self.allow.iter().any(|r| match r {
                Allow::Net { net, port: p } => {
                    port_ok(*p, port) && net.contains(canon) && class.block.contains_net(net)
                }
                Allow::Domain { .. } => false,
            });
            if !opened {
                return Err(self.forbidden(name, ip, &class));
            }
        }
        let name = name.and_then(|n| normalize_name(n).ok());
        let by_name = name
            .as_deref()
            .is_some_and(|n| self.allow.iter().any(|r| r.matches_name(n, port)));
        let by_addr = self.allow.iter().any(|r| match r {
            Allow::Net { net, port: p } => port_ok(*p, port) && net.contains(canon),
            Allow::Domain { .. } => false,
        });
        if by_name || by_addr {
            return Ok(());
        }
        let (dest, public) = match (&name, canon) {
            (Some(n), _) => (format!("{n}:{port} ({ip})"), format!("{n}:{port}")),
            (None, IpAddr::V6(_)) => (format!("[{ip}]:{port}"), format!("[{ip}]:{port}")),
            (None, IpAddr::V4(_)) => (format!("{ip}:{port}"), format!("{ip}:{port}")),
        };
        let mut r = self.not_allowed(&dest);
        r.public = self.not_allowed(&public).reason;
        Err(r)
    }

    fn check_not_empty(&self) -> Result<(), Refusal> {
        if self.allow.is_empty() {
            return Err(Refusal::new(
                RefusalKind::NoEgress,
                format!(
                    "context {} has no network egress (net.allow is empty) — add destinations to [context.{}.net] allow",
                    self.context, self.context
                ),
            ));
        }
        Ok(())
    }

    fn not_allowed(&self, dest: &str) -> Refusal {
        Refusal::new(
            RefusalKind::NotAllowed,
            format!(
                "not in net.allow: {dest} — add it to [context.{}.net] allow",
                self.context
            ),
        )
    }

    fn forbidden(&self, name: Option<&str>, ip: IpAddr, class: &Class) -> Refusal {
        let subject = match name {
            Some(n) => format!("{n} resolves to {ip}, which"),
            None => ip.to_string(),
        };
        let via = match class.via {
            Some(v) => format!(" ({v})"),
            None => String::new(),
        };
        let fix = if class.what.contains("metadata") {
            String::new()
        } else {
            format!(
                " (only a CIDR rule inside {} opens it, e.g. \"{}\" in [context.{}.net] allow)",
                class.block,
                Cidr::host(ip.to_canonical()),
                self.context
            )
        };
        let public = match name {
            Some(n) => format!(
                "{n} resolves to an address no sandbox may reach ({FORBIDDEN_CLASSES}); refused by [context.{}.net] allow (the audit log names the address)",
                self.context
            ),
            None => format!(
                "{ip} is an address no sandbox may reach ({FORBIDDEN_CLASSES}); only a CIDR rule in [context.{}.net] allow naming it opens it",
                self.context
            ),
        };
        Refusal::told(
            RefusalKind::ForbiddenAddress,
            format!(
                "{subject} is {}{via}; not allowed from a sandbox{fix}",
                class.what
            ),
            public,
        )
    }

    /// Every forbidden class `ip` is in, most specific first.
    fn forbidden_classes(&self, ip: IpAddr) -> Vec<Class> {
        let mut out = Vec::new();
        for own in &self.self_addrs {
            let own = own.to_canonical();
            if own == ip.to_canonical() {
                out.push(Class {
                    block: Cidr::host(own),
                    what: "this container's own address",
                    via: None,
                });
            }
        }
        match ip {
            IpAddr::V4(v4) => v4_classes(v4, &mut out, None),
            IpAddr::V6(v6) => {
                if let Some(v4) = v6.to_ipv4_mapped() {
                    v4_classes(v4, &mut out, Some("an IPv4-mapped IPv6 address"));
                    return out;
                }
                let bits = u128::from(v6);
                for &(base, prefix, what) in V6_CLASSES {
                    let block = Cidr::v6(base, prefix);
                    if block.contains(ip) {
                        out.push(Class {
                            block,
                            what,
                            via: None,
                        });
                    }
                }
                // IPv6 ranges that carry an IPv4 address: judged by the address they carry; a
                // rule opens one only inside the matching slice of the IPv6 range.
                for &(base, prefix, shift, via) in V6_EMBEDDING {
                    if !Cidr::v6(base, prefix).contains(ip) || bits <= 1 {
                        continue;
                    }
                    let v4 = Ipv4Addr::from((bits >> shift) as u32);
                    let mut inner = Vec::new();
                    v4_classes(v4, &mut inner, Some(via));
                    for c in inner {
                        let IpAddr::V4(net4) = c.block.addr else {
                            continue;
                        };
                        let net6 = base | (u128::from(u32::from(net4)) << shift);
                        out.push(Class {
                            block: Cidr::v6(net6, 128 - shift as u8 - (32 - c.block.prefix)),
                            ..c
                        });
                    }
                }
            }
        }
        out
    }
}

/// A forbidden class an address is in: its block (what a rule must lie inside to open it) and
/// how to name it.
#[derive(Debug, Clone)]
struct Class {
    block: Cidr,
    what: &'static str,
    via: Option<&'static str>,
}

const V4_CLASSES: &[(u32, u8, &str)] = &[
    (0x0000_0000, 32, "the unspecified address"),
    (0x0000_0000, 8, "in \"this network\" (0.0.0.0/8)"),
    (0x7f00_0000, 8, "loopback"),
    (0x0a00_0000, 8, "private (RFC 1918)"),
    (0xac10_0000, 12, "private (RFC 1918)"),
    (0xc0a8_0000, 16, "private (RFC 1918)"),
    (
        0x6440_0000,
        10,
        "shared address space (CGNAT, 100.64.0.0/10)",
    ),
    (0xa9fe_a9fe, 32, "the cloud metadata address (link-local)"),
    (0xa9fe_0000, 16, "link-local"),
    (0xe000_0000, 4, "multicast"),
    (0xffff_ffff, 32, "the broadcast address"),
    (0xf000_0000, 4, "reserved (240.0.0.0/4)"),
];

const V6_CLASSES: &[(u128, u8, &str)] = &[
    (0, 128, "the unspecified address"),
    (1, 128, "loopback"),
    (
        0xfd00_0ec2_0000_0000_0000_0000_0000_0254,
        128,
        "the cloud metadata address (unique local)",
    ),
    (0xfc00 << 112, 7, "private (unique local, fc00::/7)"),
    (0xfe80 << 112, 10, "link-local"),
    (0xfec0 << 112, 10, "site-local (deprecated, private)"),
    (0xff00 << 112, 8, "multicast"),
    (0x0064_ff9b_0001 << 80, 48, "local-use NAT64 (private)"),
];

/// (range, prefix, bit position of the IPv4 address inside, name).
const V6_EMBEDDING: &[(u128, u8, u32, &str)] = &[
    (0, 96, 0, "an IPv4-compatible IPv6 address"),
    (0x0064_ff9b << 96, 96, 0, "a NAT64 address"),
    (0x2002 << 112, 16, 80, "a 6to4 address"),
];

fn v4_classes(v4: Ipv4Addr, out: &mut Vec<Class>, via: Option<&'static str>) {
    for &(base, prefix, what) in V4_CLASSES {
        let block = Cidr::v4(base, prefix);
        if block.contains(IpAddr::V4(v4)) {
            out.push(Class { block, what, via });
        }
    }
}

fn port_ok(rule: Option<u16>, port: u16) -> bool {
    match rule {
        Some(p) => p == port,
        None => true,
    }
}

pub mod host;
pub mod rules;

use host::{is_numeric_label, normalize_name};
pub use host::{parse_host, parse_ipv4_any};

#[cfg(test)]
mod tests;
