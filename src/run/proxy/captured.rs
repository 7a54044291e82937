//! A captured connection: one the sandbox made straight to an address, without the proxy
//! variables. Every address is local in the sandbox's network namespace
//! ([`crate::sys::route::all_addresses_local`]), so the connection lands on the gate's listener
//! for its port, and the accepted socket's own address is where it was going.
//!
//! It is judged like a proxy request, by the same [`EgressPolicy`]:
//! - by address alone: a CIDR rule admits it, or a domain rule names a name this sandbox was
//!   given that address for by the gate's own DNS ([`Resolver::names_for`]: an address it never
//!   asked the gate for is not admitted by a domain rule);
//! - by its first bytes, when the client speaks first: unless a CIDR rule admits the address, a
//!   TLS ClientHello's server name must be one a domain rule admits for that port and must lead
//!   to that address (the sandbox was answered it for that name, or the name resolves to it
//!   outside; a name no domain rule names is never looked up), or the connection is refused —
//!   no fronting of another name on an allowed address. A bound host's name is intercepted as a
//!   `CONNECT` to it would be ([`bound`]), and only where its name leads.
//!
//! A connection the address alone admits is connected upstream at once, so that a protocol whose
//! server speaks first (SMTP, MySQL, SSH's banner) works; nothing the client sends is passed on
//! before its first bytes are judged. The upstream is the original address, never a name
//! resolved again.

use std::net::IpAddr;

use super::*;
use crate::run::gate::peek::{peek, Peeked, MAX_HELLO};

/// What the address alone admits, and under which name (for the audit log).
struct ByAddress {
    admitted: bool,
    name: Option<String>,
}

pub(super) fn captured(shared: &Shared, id: u64, client: TcpStream) {
    let _ = client.set_nodelay(true);
    let Ok(orig) = client.local_addr() else {
        return;
    };
    let (ip, port) = (orig.ip().to_canonical(), orig.port());
    let dest = SocketAddr::new(ip, port);
    let live = match live_policy(shared) {
        Ok(p) => p,
        Err(why) => {
            return shared.refused(Protocol::Captured, Some((&ip.to_string(), port)), 502, &why)
        }
    };
    let policy: &EgressPolicy = live.as_ref().unwrap_or(&shared.policy);
    let names = shared
        .resolver
        .as_ref()
        .map_or_else(Vec::new, |r| r.names_for(ip));
    let by = by_address(policy, &names, ip, port);
    let mut upstream = None;
    if by.admitted {
        match connect(shared, id, dest, by.name.as_deref()) {
            Some(u) => upstream = Some(u),
            None => return,
        }
    }
    let deadline = Instant::now() + shared.limits.head_timeout;
    let mut first = Vec::new();
    match first_bytes(&client, upstream.as_ref(), deadline, &mut first) {
        First::Upstream => {
            // The server speaks first: not TLS, nothing of the client's to judge.
            if let Some(u) = &upstream {
                splice(&client, u, false, shared.limits.idle_timeout);
            }
            return;
        }
        First::Nothing => return,
        First::Client => {}
    }
    let host = by.name.clone().unwrap_or_else(|| ip.to_string());
    match peeked(&client, &mut first, deadline) {
        Peeked::Tls { sni: Some(sni) } => {
            let judged = Judged {
                dest,
                policy,
                names: &names,
                by: &by,
            };
            return with_server_name(shared, id, &client, &judged, upstream, &sni, &first);
        }
        Peeked::Tls { sni: None } | Peeked::NotTls => match upstream {
            Some(u) => forward(shared, &client, &u, &first),
            None => {
                let why = not_admitted(policy, &host, port);
                shared.refused(Protocol::Captured, Some((&host, port)), 403, &why);
            }
        },
        Peeked::BadTls(why) => {
            let why = format!("a TLS ClientHello this gate does not read: {why}");
            shared.refused(Protocol::Captured, Some((&host, port)), 400, &why);
        }
        Peeked::Incomplete => {
            let why = "the ClientHello did not arrive within limits.head_timeout".to_string();
            shared.refused(Protocol::Captured, Some((&host, port)), 408, &why);
        }
    }
    let _ = client.shutdown(Shutdown::Both);
}

/// What is known of a captured connection when its client has spoken: where it was going, the
/// policy it is judged by, the names this sandbox was given its address for, and what the address
/// alone admits.
struct Judged<'a> {
    dest: SocketAddr,
    policy: &'a EgressPolicy,
    names: &'a [String],
    by: &'a ByAddress,
}

/// A TLS connection whose ClientHello names `sni`: the name judged where it must be, the upstream
/// connected if the address alone did not, then intercepted (a bound host's) or passed on, with
/// the client's `first` bytes.
fn with_server_name(
    shared: &Shared,
    id: u64,
    client: &TcpStream,
    judged: &Judged,
    upstream: Option<TcpStream>,
    sni: &str,
    first: &[u8],
) {
    let (ip, port) = (judged.dest.ip(), judged.dest.port());
    let refuse = |why: String| {
        shared.refused(Protocol::Captured, Some((sni, port)), 403, &why);
    };
    // A CIDR rule names the address, whatever name the client gives it; a name is judged (and
    // only then looked up) when it is what admits the connection, or when it is a bound host's
    // (its secret goes only where its name leads).
    let bound = shared.bound.as_ref().filter(|b| b.intercepts(sni, port));
    let by_cidr = judged.by.admitted && judged.by.name.is_none();
    if !by_cidr || bound.is_some() {
        if let Err(why) = sni_admitted(shared, judged.policy, judged.names, sni, ip, port) {
            return refuse(why);
        }
    }
    let upstream = match upstream {
        Some(u) => u,
        None => match connect(shared, id, judged.dest, Some(sni)) {
            Some(u) => u,
            None => return,
        },
    };
    if let Some(b) = bound {
        return bound::intercept::captured(shared, b, client, upstream, (sni, port), first);
    }
    forward(shared, client, &upstream, first);
    drop(upstream);
    let _ = client.shutdown(Shutdown::Both);
}

/// The policy with the container's own addresses listed now (`None`: the shared one, in tests).
fn live_policy(shared: &Shared) -> Result<Option<EgressPolicy>, String> {
    match shared.own_addrs {
        Some(list) => {
            let mut p = (*shared.policy).clone();
            p.self_addrs = list().map_err(|e| {
                format!("cannot list the container's own addresses to check against ({e})")
            })?;
            Ok(Some(p))
        }
        None => Ok(None),
    }
}

fn by_address(policy: &EgressPolicy, names: &[String], ip: IpAddr, port: u16) -> ByAddress {
    if policy.check_addr(None, ip, port).is_ok() {
        return ByAddress {
            admitted: true,
            name: None,
        };
    }
    let name = names
        .iter()
        .find(|n| policy.check_addr(Some(n), ip, port).is_ok())
        .cloned();
    ByAddress {
        admitted: name.is_some(),
        name,
    }
}

/// Why an address is not admitted, as the audit log says it (the policy's own words).
fn not_admitted(policy: &EgressPolicy, host: &str, port: u16) -> String {
    match host.parse::<IpAddr>() {
        Ok(ip) => match policy.check_addr(None, ip, port) {
            Err(r) => format!("{} (a captured connection: no name this sandbox resolved through the gate leads there)", r.reason),
            Ok(()) => "admitted".into(),
        },
        Err(_) => format!("not in net.allow: {host}:{port}"),
    }
}

/// A server name is admitted for `ip:port` when the policy admits the name there and the name
/// leads to that address: the sandbox was answered `ip` for it, or it resolves to `ip` outside.
fn sni_admitted(
    shared: &Shared,
    policy: &EgressPolicy,
    names: &[String],
    sni: &str,
    ip: IpAddr,
    port: u16,
) -> Result<(), String> {
    // No lookup of a name no domain rule names: a server name is no channel out either.
    if policy.names_domain(sni).is_none() {
        return Err(format!(
            "not in net.allow: {sni}:{port} (a captured connection's server name)"
        ));
    }
    match policy.check_name(sni, port) {
        Ok(Host::Name(_)) => {}
        Ok(Host::Ip(_)) => return Err(format!("an address as server name: {sni}")),
        Err(r) => return Err(r.reason),
    }
    policy
        .check_addr(Some(sni), ip, port)
        .map_err(|r| r.reason)?;
    if names.iter().any(|n| n == sni) {
        return Ok(());
    }
    let found = (shared.outbound.resolve)(sni, port)
        .map_err(|e| format!("cannot resolve the server name {sni}: {e}"))?;
    if found.iter().any(|a| a.ip().to_canonical() == ip) {
        return Ok(());
    }
    Err(format!(
        "the server name {sni} does not lead to {ip} (the address the connection was made to): refused, no name is fronted on another's address"
    ))
}

/// Connect to the original destination (the audit hook hears of it); `None` when it failed
/// (reported, and the client's connection is closed).
fn connect(shared: &Shared, id: u64, dest: SocketAddr, name: Option<&str>) -> Option<TcpStream> {
    let host = name.map_or_else(|| dest.ip().to_string(), str::to_string);
    let event = |verdict, status, reason: String| Event {
        verdict,
        protocol: Protocol::Captured,
        host: host.clone(),
        port: dest.port(),
        addr: Some(dest),
        reason,
        secret: None,
        status,
        op: None,
    };
    match (shared.outbound.connect)(&dest, shared.limits.connect_timeout) {
        Ok(s) => {
            shared.track(id, &s);
            let _ = s.set_nodelay(true);
            shared.emit(event(Verdict::Allowed, None, String::new()));
            Some(s)
        }
        Err(e) => {
            shared.emit(event(
                Verdict::Failed,
                None,
                format!("cannot connect to {dest}: {e}"),
            ));
            None
        }
    }
}

/// Who spoke first.
enum First {
    Client,
    Upstream,
    Nothing,
}

/// Wait (until `deadline`) for the client's first bytes (read into `buf`) or the upstream's.
fn first_bytes(
    client: &TcpStream,
    upstream: Option<&TcpStream>,
    deadline: Instant,
    buf: &mut Vec<u8>,
) -> First {
    loop {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return First::Nothing;
        };
        let mut fds = vec![PollFd::new(client.as_fd(), PollFlags::POLLIN)];
        if let Some(u) = upstream {
            fds.push(PollFd::new(u.as_fd(), PollFlags::POLLIN));
        }
        let wait = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, wait) {
            Ok(0) => return First::Nothing,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return First::Nothing,
        }
        let ready = |i: usize| {
            fds.get(i)
                .and_then(|f| f.revents())
                .is_some_and(|r| !r.is_empty())
        };
        if ready(0) {
            let mut chunk = [0u8; 4096];
            return match (&*client).read(&mut chunk) {
                Ok(n) if n > 0 => {
                    buf.extend_from_slice(&chunk[..n]);
                    First::Client
                }
                _ => First::Nothing,
            };
        }
        if ready(1) {
            return First::Upstream;
        }
    }
}

/// Read until the first bytes say what they are (a whole ClientHello, or not TLS).
fn peeked(client: &TcpStream, buf: &mut Vec<u8>, deadline: Instant) -> Peeked {
    loop {
        match peek(buf) {
            Peeked::Incomplete if buf.len() <= MAX_HELLO => {}
            Peeked::Incomplete => return Peeked::BadTls("a ClientHello too large"),
            other => return other,
        }
        let Some(left) = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
        else {
            return Peeked::Incomplete;
        };
        let _ = client.set_read_timeout(Some(left));
        let mut chunk = [0u8; 4096];
        match (&*client).read(&mut chunk) {
            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return Peeked::Incomplete,
        }
    }
}

/// Pass the client's first bytes on, then splice until both ends are done.
fn forward(shared: &Shared, client: &TcpStream, upstream: &TcpStream, first: &[u8]) {
    let _ = client.set_read_timeout(None);
    if (&*upstream).write_all(first).is_ok() {
        splice(client, upstream, false, shared.limits.idle_timeout);
    }
    let _ = upstream.shutdown(Shutdown::Both);
}
