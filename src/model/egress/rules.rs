//! `net.allow` rules: parsing every spelling (domains, subdomain patterns, addresses, networks,
//! ports) with errors that name the entry and the fix, and matching them.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use super::*;

impl Allow {
    pub(crate) fn matches_name(&self, name: &str, port: u16) -> bool {
        match self {
            Allow::Domain { pattern, port: p } => port_ok(*p, port) && pattern.matches(name),
            Allow::Net { .. } => false,
        }
    }
}

impl DomainPattern {
    pub(crate) fn matches(&self, name: &str) -> bool {
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

    pub(crate) fn host(addr: IpAddr) -> Cidr {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        Cidr { addr, prefix }
    }

    pub(crate) fn v4(base: u32, prefix: u8) -> Cidr {
        Cidr {
            addr: IpAddr::V4(base.into()),
            prefix,
        }
    }

    pub(crate) fn v6(base: u128, prefix: u8) -> Cidr {
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
    pub(crate) fn contains_net(&self, other: &Cidr) -> bool {
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

    /// An address or network first (bracketed IPv6, CIDR, bare IPv6, IPv4), else a domain rule.
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
        if let Some(rest) = s.strip_prefix('[') {
            return bracketed(rest, &err);
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
        domain_rule(host, port, &err)
    }
}

/// `[v6]`, `[v6]:port`, `[v6/len]`, `[v6/len]:port` (the text after `[`).
fn bracketed(rest: &str, err: &dyn Fn(&str, &str) -> AllowError) -> Result<Allow, AllowError> {
    let (inner, after) = rest
        .split_once(']')
        .ok_or_else(|| err("unclosed '['", "write an IPv6 address as [2001:db8::1]:443"))?;
    let port = match after {
        "" => None,
        p => Some(parse_rule_port(p.strip_prefix(':').unwrap_or(p), err)?),
    };
    let net = parse_rule_net(inner, err)?;
    if net.addr.is_ipv4() {
        return Err(err(
            "brackets are for IPv6",
            "write an IPv4 address as 10.0.0.1:5432",
        ));
    }
    Ok(Allow::Net { net, port })
}

/// `name` or `*.name` (its subdomains), never a numeric last label or localhost.
fn domain_rule(
    host: &str,
    port: Option<u16>,
    err: &dyn Fn(&str, &str) -> AllowError,
) -> Result<Allow, AllowError> {
    let last_label = host.strip_suffix('.').unwrap_or(host).rsplit('.').next();
    if is_numeric_label(last_label.unwrap_or("")) {
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
