//! Egress policy of a confined context: which destinations its proxy may connect to. Pure: no
//! sockets, no resolution (except `local_addrs`, which only reads the interface list).
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
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

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

/// Why a destination is refused; `reason` is meant for people (an HTTP 403 body, an audit line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub reason: String,
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
    fn new(kind: RefusalKind, reason: String) -> Refusal {
        Refusal { kind, reason }
    }
}

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
        let dest = match (&name, canon) {
            (Some(n), _) => format!("{n}:{port} ({ip})"),
            (None, IpAddr::V6(_)) => format!("[{ip}]:{port}"),
            (None, IpAddr::V4(_)) => format!("{ip}:{port}"),
        };
        Err(self.not_allowed(&dest))
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
        Refusal::new(
            RefusalKind::ForbiddenAddress,
            format!(
                "{subject} is {}{via}; not allowed from a sandbox{fix}",
                class.what
            ),
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

impl Allow {
    fn matches_name(&self, name: &str, port: u16) -> bool {
        match self {
            Allow::Domain { pattern, port: p } => port_ok(*p, port) && pattern.matches(name),
            Allow::Net { .. } => false,
        }
    }
}

impl DomainPattern {
    fn matches(&self, name: &str) -> bool {
        match self {
            DomainPattern::Exact(d) => name == d,
            DomainPattern::Subdomains(d) => name
                .strip_suffix(d.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
        }
    }
}

impl Cidr {
    /// A network; None if the prefix is too long for the family or host bits are set.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Cidr> {
        let c = Cidr { addr, prefix };
        (prefix <= c.width() && c.masked(addr) == Some(c.bits())).then_some(c)
    }

    fn host(addr: IpAddr) -> Cidr {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        Cidr { addr, prefix }
    }

    fn v4(base: u32, prefix: u8) -> Cidr {
        Cidr {
            addr: IpAddr::V4(base.into()),
            prefix,
        }
    }

    fn v6(base: u128, prefix: u8) -> Cidr {
        Cidr {
            addr: IpAddr::V6(base.into()),
            prefix,
        }
    }

    fn width(&self) -> u8 {
        if self.addr.is_ipv4() {
            32
        } else {
            128
        }
    }

    fn bits(&self) -> u128 {
        addr_bits(self.addr)
    }

    /// `ip` with the host bits of this network cleared, if it is of the same family.
    fn masked(&self, ip: IpAddr) -> Option<u128> {
        if ip.is_ipv4() != self.addr.is_ipv4() {
            return None;
        }
        let host_bits = u32::from(self.width() - self.prefix);
        let mask = u128::MAX.checked_shl(host_bits).unwrap_or(0);
        Some(addr_bits(ip) & mask)
    }

    /// Whether `ip` (IPv4-mapped IPv6 counts as IPv4) is in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.masked(ip.to_canonical()) == Some(self.bits())
    }

    /// Whether `other` lies entirely inside this network.
    fn contains_net(&self, other: &Cidr) -> bool {
        other.prefix >= self.prefix && self.masked(other.addr) == Some(self.bits())
    }
}

fn addr_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u32::from(v4).into(),
        IpAddr::V6(v6) => v6.into(),
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Allow {
    type Err = AllowError;

    fn from_str(entry: &str) -> Result<Allow, AllowError> {
        let err = |problem: &str, fix: &str| AllowError {
            entry: entry.to_string(),
            problem: problem.to_string(),
            fix: fix.to_string(),
        };
        let s = entry.trim();
        if s.is_empty() {
            return Err(err("empty entry", "remove it"));
        }
        // [v6], [v6]:port, [v6/len], [v6/len]:port
        if let Some(rest) = s.strip_prefix('[') {
            let (inner, after) = rest
                .split_once(']')
                .ok_or_else(|| err("unclosed '['", "write an IPv6 address as [2001:db8::1]:443"))?;
            let port = match after {
                "" => None,
                p => Some(parse_rule_port(p.strip_prefix(':').unwrap_or(p), &err)?),
            };
            let net = parse_rule_net(inner, &err)?;
            if net.addr.is_ipv4() {
                return Err(err(
                    "brackets are for IPv6",
                    "write an IPv4 address as 10.0.0.1:5432",
                ));
            }
            return Ok(Allow::Net { net, port });
        }
        // a.b.c.d/len[:port], v6/len[:port]
        if let Some((addr, rest)) = s.split_once('/') {
            let (len, port) = match rest.split_once(':') {
                Some((len, p)) => (len, Some(parse_rule_port(p, &err)?)),
                None => (rest, None),
            };
            let net = parse_rule_net(&format!("{addr}/{len}"), &err)?;
            return Ok(Allow::Net { net, port });
        }
        if s.parse::<Ipv6Addr>().is_ok() {
            return Ok(Allow::Net {
                net: parse_rule_net(s, &err)?,
                port: None,
            });
        }
        let (host, port) = match s.rsplit_once(':') {
            Some((_, _)) if s.matches(':').count() > 1 => {
                return Err(err(
                    "not an IPv6 address, and IPv6 with a port needs brackets",
                    "write [2001:db8::1]:443",
                ))
            }
            Some((h, p)) => (h, Some(parse_rule_port(p, &err)?)),
            None => (s, None),
        };
        if let Some(ip) = parse_ipv4_any(host.strip_suffix('.').unwrap_or(host)) {
            if host.parse::<Ipv4Addr>().is_err() {
                return Err(err(
                    "a non-standard spelling of an IPv4 address",
                    &format!("write it as {ip}"),
                ));
            }
            return Ok(Allow::Net {
                net: Cidr::host(IpAddr::V4(ip)),
                port,
            });
        }
        if is_numeric_label(
            host.strip_suffix('.')
                .unwrap_or(host)
                .rsplit('.')
                .next()
                .unwrap_or(""),
        ) {
            return Err(err(
                "not a valid IPv4 address",
                "write an address as 203.0.113.7",
            ));
        }
        let (wild, domain) = match host.strip_prefix("*.") {
            Some(d) => (true, d),
            None => (false, host),
        };
        if domain.contains('*') {
            return Err(err(
                "'*' is allowed only as a whole first label",
                "write *.example.com (its subdomains) or example.com (that name)",
            ));
        }
        let name = normalize_name(domain).map_err(|problem| {
            err(
                &problem,
                "write a DNS name (pypi.org, *.pypi.org), an address or a CIDR (203.0.113.0/24)",
            )
        })?;
        if name == "localhost" || name.ends_with(".localhost") {
            return Err(err(
                "localhost is never resolved by the egress proxy",
                "to reach the container's loopback, write the address: 127.0.0.1/32",
            ));
        }
        let pattern = if wild {
            DomainPattern::Subdomains(name)
        } else {
            DomainPattern::Exact(name)
        };
        Ok(Allow::Domain { pattern, port })
    }
}

fn parse_rule_port(p: &str, err: &dyn Fn(&str, &str) -> AllowError) -> Result<u16, AllowError> {
    match p.parse::<u16>() {
        Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(err(
            &format!("bad port {p:?}"),
            "a port is 1-65535, after the host: pypi.org:443",
        )),
    }
}

fn parse_rule_net(s: &str, err: &dyn Fn(&str, &str) -> AllowError) -> Result<Cidr, AllowError> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| {
        err(
            &format!("{addr:?} is not an IP address"),
            "write 203.0.113.0/24 or 2001:db8::/32",
        )
    })?;
    if let IpAddr::V6(v6) = addr {
        if v6.to_ipv4_mapped().is_some() {
            return Err(err(
                "an IPv4-mapped IPv6 address",
                "write the IPv4 address itself (it covers the mapped spelling too)",
            ));
        }
    }
    let full = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match len {
        None => full,
        Some(l) => match l.parse::<u8>() {
            Ok(n) if n <= full && l.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => {
                return Err(err(
                    &format!("bad prefix length {l:?}"),
                    &format!("a prefix length is 0-{full}"),
                ))
            }
        },
    };
    Cidr::new(addr, prefix).ok_or_else(|| {
        let bits = Cidr { addr, prefix }.masked(addr).unwrap_or(0);
        let network = match addr {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(bits as u32)),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(bits)),
        };
        err(
            "host bits are set after the prefix",
            &format!("write the network: {network}/{prefix}"),
        )
    })
}

/// Parse a host as the proxy received it: `[v6]`, a bare IPv6 address, an IPv4 address in any
/// `inet_aton` spelling (a trailing dot allowed), or a DNS name. A name whose last label is
/// numeric but which is no valid address is refused (resolvers disagree on those), and so are
/// `localhost` and its subdomains.
pub fn parse_host(host: &str) -> Result<Host, Refusal> {
    let bad = |why: &str| {
        Refusal::new(
            RefusalKind::BadHost,
            format!("bad host {host:?}: {why}; use a DNS name or an IP address"),
        )
    };
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or_else(|| bad("unclosed '['"))?;
        return inner
            .parse::<Ipv6Addr>()
            .map(|v6| Host::Ip(IpAddr::V6(v6)))
            .map_err(|_| bad("not an IPv6 address (zone ids are not supported)"));
    }
    if let Ok(v6) = host.parse::<Ipv6Addr>() {
        return Ok(Host::Ip(IpAddr::V6(v6)));
    }
    let trimmed = host.strip_suffix('.').unwrap_or(host);
    if let Some(v4) = parse_ipv4_any(trimmed) {
        return Ok(Host::Ip(IpAddr::V4(v4)));
    }
    let last = trimmed.rsplit('.').next().unwrap_or("");
    if is_numeric_label(last) {
        return Err(bad("it looks like an IPv4 address but is not a valid one"));
    }
    let name = normalize_name(host).map_err(|why| bad(&why))?;
    if name == "localhost" || name.ends_with(".localhost") {
        return Err(Refusal::new(
            RefusalKind::LocalName,
            format!("{name} is a loopback name; not allowed from a sandbox"),
        ));
    }
    Ok(Host::Name(name))
}

/// Lowercase, without a trailing dot, and checked: labels of 1-63 letters, digits, '-' or '_',
/// at most 253 characters.
fn normalize_name(s: &str) -> Result<String, String> {
    let s = s.strip_suffix('.').unwrap_or(s);
    if s.is_empty() || s.len() > 253 {
        return Err("a DNS name is 1-253 characters".into());
    }
    for label in s.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("a DNS name is labels of 1-63 characters between dots".into());
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(
                "a DNS name has only letters, digits, '-' and '_' (write IDN names in punycode)"
                    .into(),
            );
        }
    }
    Ok(s.to_ascii_lowercase())
}

fn is_numeric_label(l: &str) -> bool {
    let hex = l.strip_prefix("0x").or_else(|| l.strip_prefix("0X"));
    match hex {
        Some(h) => h.bytes().all(|b| b.is_ascii_hexdigit()),
        None => !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// IPv4 as glibc's `inet_aton` reads it: 1-4 parts, each decimal, octal (leading 0) or hex
/// (0x); the last part fills the remaining bytes (`127.1`, `2130706433`).
pub fn parse_ipv4_any(s: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() > 4 {
        return None;
    }
    let mut vals = Vec::with_capacity(4);
    for p in &parts {
        vals.push(parse_aton_part(p)?);
    }
    let (last, init) = vals.split_last()?;
    if init.iter().any(|&v| v > 0xff) {
        return None;
    }
    let last_bits = 8 * (4 - init.len() as u32);
    if last_bits < 32 && *last >= 1u64 << last_bits {
        return None;
    }
    let mut n: u32 = 0;
    for (i, v) in init.iter().enumerate() {
        n |= (*v as u32) << (24 - 8 * i);
    }
    Some(Ipv4Addr::from(n | *last as u32))
}

fn parse_aton_part(p: &str) -> Option<u64> {
    let (digits, radix) = if let Some(h) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
        (h, 16)
    } else if p.len() > 1 && p.starts_with('0') {
        (&p[1..], 8)
    } else {
        (p, 10)
    };
    if digits.is_empty() {
        // "0x" alone is 0 for inet_aton; "" (as in "1..2") is invalid.
        return (radix == 16).then_some(0);
    }
    let mut v: u64 = 0;
    for c in digits.chars() {
        v = v
            .checked_mul(radix)?
            .checked_add(c.to_digit(radix as u32)?.into())?;
        if v > u64::from(u32::MAX) {
            return None;
        }
    }
    Some(v)
}

/// The addresses of this network namespace's interfaces (the container's own addresses, when
/// called by the outer sbx-exec), to refuse as destinations.
pub fn local_addrs() -> nix::Result<Vec<IpAddr>> {
    let mut out = Vec::new();
    for ifa in nix::ifaddrs::getifaddrs()? {
        let Some(addr) = ifa.address else { continue };
        let ip = if let Some(v4) = addr.as_sockaddr_in() {
            IpAddr::V4(v4.ip())
        } else if let Some(v6) = addr.as_sockaddr_in6() {
            IpAddr::V6(v6.ip())
        } else {
            continue;
        };
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(rules: &[&str]) -> EgressPolicy {
        EgressPolicy::parse("user", rules, vec!["172.17.0.2".parse().unwrap()]).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn refused(p: &EgressPolicy, host: &str, port: u16) -> Refusal {
        p.check_name(host, port)
            .expect_err(&format!("{host}:{port} should be refused"))
    }

    #[test]
    fn rules_parse_every_spelling() {
        let d = |p: DomainPattern, port| Allow::Domain { pattern: p, port };
        let n = |s: &str, len, port| Allow::Net {
            net: Cidr::new(ip(s), len).unwrap(),
            port,
        };
        let cases: &[(&str, Allow)] = &[
            ("pypi.org", d(DomainPattern::Exact("pypi.org".into()), None)),
            (
                "PyPI.org.",
                d(DomainPattern::Exact("pypi.org".into()), None),
            ),
            (
                "host:443",
                d(DomainPattern::Exact("host".into()), Some(443)),
            ),
            (
                "*.github.com:443",
                d(DomainPattern::Subdomains("github.com".into()), Some(443)),
            ),
            ("203.0.113.0/24", n("203.0.113.0", 24, None)),
            ("203.0.113.7", n("203.0.113.7", 32, None)),
            ("203.0.113.7:80", n("203.0.113.7", 32, Some(80))),
            ("2001:db8::/32", n("2001:db8::", 32, None)),
            ("2001:db8::1", n("2001:db8::1", 128, None)),
            ("[2001:db8::1]:8443", n("2001:db8::1", 128, Some(8443))),
            ("[2001:db8::/32]:443", n("2001:db8::", 32, Some(443))),
            ("10.0.0.0/8:5432", n("10.0.0.0", 8, Some(5432))),
            ("2001:db8::/32:443", n("2001:db8::", 32, Some(443))),
        ];
        for (s, want) in cases {
            assert_eq!(&s.parse::<Allow>().unwrap(), want, "{s}");
        }
    }

    #[test]
    fn bad_rules_name_the_entry_and_the_fix() {
        let cases: &[(&str, &str)] = &[
            ("", "remove it"),
            ("pypi.org:0", "1-65535"),
            ("pypi.org:https", "1-65535"),
            ("10.0.0.1/8", "write the network: 10.0.0.0/8"),
            ("10.0.0.0/33", "0-32"),
            ("2001:db8::g:443", "needs brackets"),
            ("*", "*.example.com"),
            ("a.*.com", "*.example.com"),
            ("0x7f.1", "write it as 127.0.0.1"),
            ("localhost", "127.0.0.1/32"),
            ("exa mple.com", "DNS name"),
            ("[10.0.0.1]:5", "IPv4"),
            ("::ffff:10.0.0.0/104", "IPv4 address itself"),
            ("[2001:db8::1", "[2001:db8::1]:443"),
        ];
        for (s, fix) in cases {
            let e = s.parse::<Allow>().expect_err(s).to_string();
            assert!(e.contains(&format!("{s:?}")), "{e}");
            assert!(e.contains(fix), "{s}: {e}");
        }
    }

    #[test]
    fn wildcard_matches_subdomains_not_the_apex() {
        let p = policy(&["*.pypi.org:443"]);
        assert!(p.check_name("files.pypi.org", 443).is_ok());
        assert!(p.check_name("A.B.PYPI.ORG.", 443).is_ok());
        assert_eq!(refused(&p, "pypi.org", 443).kind, RefusalKind::NotAllowed);
        assert_eq!(
            refused(&p, "evilpypi.org", 443).kind,
            RefusalKind::NotAllowed
        );
        assert_eq!(
            refused(&p, "files.pypi.org", 80).kind,
            RefusalKind::NotAllowed
        );
        let r = refused(&p, "example.com", 443);
        assert_eq!(
            r.reason,
            "not in net.allow: example.com:443 — add it to [context.user.net] allow"
        );
    }

    #[test]
    fn empty_allow_is_no_egress() {
        let p = policy(&[]);
        for (h, port) in [("pypi.org", 443), ("203.0.113.1", 80), ("127.0.0.1", 80)] {
            let r = refused(&p, h, port);
            assert_eq!(r.kind, RefusalKind::NoEgress, "{h}");
            assert!(r.reason.contains("[context.user.net] allow"));
        }
    }

    #[test]
    fn addresses_need_a_cidr_rule_and_the_port() {
        let p = policy(&["203.0.113.0/24:443", "2001:db8::/32"]);
        assert!(p.check_name("203.0.113.9", 443).is_ok());
        assert!(p.check_name("[::ffff:203.0.113.9]", 443).is_ok());
        assert_eq!(refused(&p, "203.0.113.9", 80).kind, RefusalKind::NotAllowed);
        assert_eq!(
            refused(&p, "198.51.100.1", 443).kind,
            RefusalKind::NotAllowed
        );
        assert!(p.check_name("[2001:db8::5]", 1).is_ok());
        assert!(p.check_name("2001:db8::5", 1).is_ok());
        // A name is let through to resolution when a CIDR rule could match its address.
        assert!(p.check_name("example.com", 443).is_ok());
        assert!(p
            .check_addr(Some("example.com"), ip("203.0.113.1"), 443)
            .is_ok());
        assert!(p
            .check_addr(Some("example.com"), ip("198.51.100.1"), 443)
            .is_err());
    }

    #[test]
    fn every_spelling_of_loopback_is_loopback() {
        let p = policy(&["pypi.org"]);
        for h in [
            "127.0.0.1",
            "127.1",
            "2130706433",
            "0177.0.0.1",
            "0x7f.1",
            "0x7f000001",
            "0x7F.0.0.1",
            "127.0.0.1.",
            "017700000001",
            "127.0.1",
        ] {
            assert_eq!(parse_host(h), Ok(Host::Ip(ip("127.0.0.1"))), "{h}");
            let r = refused(&p, h, 80);
            assert_eq!(r.kind, RefusalKind::ForbiddenAddress, "{h}");
            assert!(r.reason.starts_with("127.0.0.1 is loopback"), "{h}: {r}");
        }
        for h in ["[::1]", "::1", "[0:0:0:0:0:0:0:1]"] {
            assert!(
                refused(&p, h, 80).reason.starts_with("::1 is loopback"),
                "{h}"
            );
        }
        let r = refused(&p, "[::ffff:127.0.0.1]", 80);
        assert_eq!(
            r.reason.split(';').next().unwrap(),
            "::ffff:127.0.0.1 is loopback (an IPv4-mapped IPv6 address)"
        );
        for h in ["localhost", "LOCALHOST.", "foo.localhost", "a.b.localhost."] {
            assert_eq!(refused(&p, h, 80).kind, RefusalKind::LocalName, "{h}");
        }
    }

    #[test]
    fn bad_hosts_are_refused_not_resolved() {
        for h in [
            "256.0.0.1",
            "1.2.3.4.5",
            "08.0.0.1",
            "1..1",
            "127.0.0.1..",
            "[fe80::1%25eth0]",
            "[::1",
            "exa mple.com",
            "%31%32%37.0.0.1",
            "",
            "example.0x100000000",
            "\u{456}xample.com",
        ] {
            let r = parse_host(h).expect_err(h);
            assert_eq!(r.kind, RefusalKind::BadHost, "{h}");
        }
        assert_eq!(parse_host("0x"), Ok(Host::Ip(ip("0.0.0.0"))));
        assert_eq!(
            parse_host("Ex-a_mple.COM."),
            Ok(Host::Name("ex-a_mple.com".into()))
        );
        // A numeric label elsewhere than last is a name (e.g. 1.2.example).
        assert_eq!(
            parse_host("1.2.example"),
            Ok(Host::Name("1.2.example".into()))
        );
    }

    #[test]
    fn forbidden_classes_are_named() {
        let p = policy(&["pypi.org", "0.0.0.0/0", "::/0"]);
        let cases: &[(&str, &str)] = &[
            (
                "169.254.169.254",
                "169.254.169.254 is the cloud metadata address (link-local); not allowed from a sandbox",
            ),
            ("[fd00:ec2::254]", "fd00:ec2::254 is the cloud metadata address"),
            ("169.254.1.1", "169.254.1.1 is link-local"),
            ("[fe80::1]", "fe80::1 is link-local"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("[fd12::1]", "private (unique local"),
            ("100.64.0.1", "CGNAT"),
            ("100.127.255.255", "CGNAT"),
            ("224.0.0.1", "multicast"),
            ("[ff02::1]", "multicast"),
            ("0.0.0.0", "0.0.0.0 is the unspecified address"),
            ("0", "0.0.0.0 is the unspecified address"),
            ("[::]", ":: is the unspecified address"),
            ("0.1.2.3", "this network"),
            ("255.255.255.255", "broadcast"),
            ("240.0.0.1", "reserved"),
            ("172.17.0.2", "this container's own address"),
            ("[::ffff:169.254.169.254]", "cloud metadata address"),
            ("[::ffff:10.0.0.1]", "private (RFC 1918) (an IPv4-mapped"),
            ("[64:ff9b::7f00:1]", "loopback (a NAT64 address)"),
            ("[64:ff9b::a9fe:a9fe]", "metadata address (link-local) (a NAT64"),
            ("[2002:7f00:1::]", "loopback (a 6to4 address)"),
            ("[2002:a00:1::5]", "private (RFC 1918) (a 6to4 address)"),
            ("[::127.0.0.1]", "loopback (an IPv4-compatible"),
            ("[64:ff9b:1::1]", "local-use NAT64"),
        ];
        for (h, want) in cases {
            let r = refused(&p, h, 80);
            assert_eq!(r.kind, RefusalKind::ForbiddenAddress, "{h}");
            assert!(r.reason.contains(want), "{h}: {r}");
        }
        // Public addresses pass, in every family and embedding.
        for h in [
            "203.0.113.1",
            "8.8.8.8",
            "[2001:db8::1]",
            "[::ffff:8.8.8.8]",
            "[64:ff9b::808:808]",
            "[2002:808:808::1]",
            "172.32.0.1",
            "100.128.0.1",
            "169.255.0.1",
        ] {
            assert!(p.check_name(h, 80).is_ok(), "{h}");
        }
        // The metadata reason does not suggest a rule; others do.
        assert!(!refused(&p, "169.254.169.254", 80).reason.contains("opens"));
        assert!(refused(&p, "10.0.0.1", 80)
            .reason
            .contains("\"10.0.0.1/32\" in [context.user.net] allow"));
    }

    #[test]
    fn only_a_cidr_rule_inside_the_class_opens_it() {
        let p = policy(&[
            "127.0.0.1/32",
            "10.0.0.0/8:5432",
            "169.254.0.0/16",
            "fe80::/10",
        ]);
        assert!(p.check_name("127.0.0.1", 8080).is_ok());
        assert!(p.check_name("2130706433", 8080).is_ok());
        assert!(p.check_name("[::ffff:127.0.0.1]", 8080).is_ok());
        assert!(p.check_name("127.0.0.2", 8080).is_err());
        assert!(p.check_name("10.9.8.7", 5432).is_ok());
        assert!(p.check_name("10.9.8.7", 22).is_err());
        assert!(p.check_name("169.254.1.1", 80).is_ok());
        assert!(p.check_name("[fe80::1]", 80).is_ok());
        // The metadata address is its own class: only its /32 opens it.
        assert!(refused(&p, "169.254.169.254", 80)
            .reason
            .contains("metadata"));
        let meta = policy(&["169.254.169.254/32"]);
        assert!(meta.check_name("169.254.169.254", 80).is_ok());
        // NAT64/6to4 spellings are not opened by the IPv4 rule, only by a rule in their slice.
        assert!(p.check_name("[64:ff9b::7f00:1]", 80).is_err());
        let nat64 = policy(&["64:ff9b::7f00:1"]);
        assert!(nat64.check_name("[64:ff9b::7f00:1]", 80).is_ok());
        // A wide rule does not open what it merely covers.
        let wide = policy(&["0.0.0.0/0", "::/0", "126.0.0.0/7"]);
        assert!(wide.check_name("127.0.0.1", 80).is_err());
        assert!(wide.check_name("[::1]", 80).is_err());
        // The container's own address needs a rule for itself, not only its private range.
        let own = policy(&["172.16.0.0/12"]);
        assert!(own.check_name("172.17.0.3", 80).is_ok());
        assert!(own.check_name("172.17.0.2", 80).is_err());
        assert!(policy(&["172.17.0.2/32"])
            .check_name("172.17.0.2", 80)
            .is_ok());
    }

    #[test]
    fn a_domain_rule_never_opens_an_internal_address() {
        let p = policy(&["internal.example", "*.example.org:443"]);
        let r = p
            .check_addr(Some("internal.example"), ip("127.0.0.1"), 80)
            .unwrap_err();
        assert_eq!(r.kind, RefusalKind::ForbiddenAddress);
        assert!(r
            .reason
            .starts_with("internal.example resolves to 127.0.0.1, which is loopback"));
        for bad in [
            "169.254.169.254",
            "10.0.0.1",
            "::1",
            "::ffff:127.0.0.1",
            "172.17.0.2",
        ] {
            assert!(
                p.check_addr(Some("a.example.org"), ip(bad), 443).is_err(),
                "{bad}"
            );
        }
        assert!(p
            .check_addr(Some("internal.example"), ip("203.0.113.5"), 80)
            .is_ok());
        assert!(p
            .check_addr(Some("a.example.org"), ip("203.0.113.5"), 443)
            .is_ok());
        assert!(p
            .check_addr(Some("a.example.org"), ip("203.0.113.5"), 80)
            .is_err());
        assert!(p
            .check_addr(Some("other.example"), ip("203.0.113.5"), 80)
            .is_err());
        assert!(p.check_addr(None, ip("203.0.113.5"), 80).is_err());
    }

    #[test]
    fn aton_matches_glibc() {
        let cases: &[(&str, Option<&str>)] = &[
            ("1", Some("0.0.0.1")),
            ("1.2", Some("1.0.0.2")),
            ("1.2.3", Some("1.2.0.3")),
            ("1.2.65535", Some("1.2.255.255")),
            ("1.2.65536", None),
            ("1.16777215", Some("1.255.255.255")),
            ("4294967295", Some("255.255.255.255")),
            ("4294967296", None),
            ("0xffffffff", Some("255.255.255.255")),
            ("037777777777", Some("255.255.255.255")),
            ("09", None),
            ("1.2.3.4.", None),
            ("a.b.c.d", None),
            ("-1", None),
            ("+1", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_ipv4_any(s), want.map(|w| w.parse().unwrap()), "{s}");
        }
    }

    #[test]
    fn local_addrs_include_loopback() {
        let addrs = local_addrs().unwrap();
        assert!(addrs.contains(&ip("127.0.0.1")), "{addrs:?}");
    }
}
