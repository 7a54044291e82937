//! Hosts as the proxy receives them: every spelling of an address recognised (`inet_aton`
//! forms, bracketed and bare IPv6), names normalised, local names refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Host, Refusal, RefusalKind};

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
pub(crate) fn normalize_name(s: &str) -> Result<String, String> {
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

pub(crate) fn is_numeric_label(l: &str) -> bool {
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
