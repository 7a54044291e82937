//! The proxy's way out: a destination checked by name, then by every address it resolves to, and
//! connected to exactly the addresses checked, within the connect timeout.

use super::*;

/// Check `host:port`, resolve a name, check every address, connect to a checked one. Reports
/// the outcome to the audit hook.
pub(super) fn open_upstream(
    shared: &Shared,
    id: u64,
    protocol: Protocol,
    host: &str,
    port: u16,
) -> Result<TcpStream, Denial> {
    let to = Destination {
        shared,
        protocol,
        host,
        port,
    };
    let addrs = to.checked_addrs()?;
    let deadline = Instant::now() + shared.limits.connect_timeout;
    let mut last = None;
    for addr in &addrs {
        let Some(left) = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
        else {
            break;
        };
        match (shared.outbound.connect)(addr, left) {
            Ok(s) => {
                shared.track(id, &s);
                let _ = s.set_nodelay(true);
                shared.emit(to.event(Verdict::Allowed, Some(*addr), None, ""));
                return Ok(s);
            }
            Err(e) => last = Some((*addr, e)),
        }
    }
    // The address tried goes to the audit log; the sandbox is told the name it asked for.
    Err(match last {
        Some((addr, e)) if e.kind() == io::ErrorKind::TimedOut => to.fail(
            (504, 0x04),
            format!("connecting to {host}:{port} ({addr}) timed out"),
            format!("connecting to {host}:{port} timed out"),
        ),
        Some((addr, e)) if e.kind() == io::ErrorKind::ConnectionRefused => to.fail(
            (502, 0x05),
            format!("{host}:{port} ({addr}) refused the connection"),
            format!("{host}:{port} refused the connection"),
        ),
        Some((addr, e)) => to.fail(
            (502, 0x01),
            format!("cannot connect to {host}:{port} ({addr}): {e}"),
            format!("cannot connect to {host}:{port}: {e}"),
        ),
        None => {
            let why = format!("connecting to {host}:{port} timed out");
            to.fail((504, 0x04), why.clone(), why)
        }
    })
}

/// One destination a client asked for, and the events and denials about it.
struct Destination<'a> {
    shared: &'a Shared,
    protocol: Protocol,
    host: &'a str,
    port: u16,
}

impl Destination<'_> {
    fn event(
        &self,
        verdict: Verdict,
        addr: Option<SocketAddr>,
        status: Option<u16>,
        reason: &str,
    ) -> Event {
        Event {
            verdict,
            protocol: self.protocol,
            host: self.host.to_string(),
            port: self.port,
            addr,
            reason: reason.to_string(),
            secret: None,
            status,
            op: None,
        }
    }

    /// A refusal: the whole story to the audit hook, the public one to the client.
    fn refuse(&self, addr: Option<SocketAddr>, r: crate::model::egress::Refusal) -> Denial {
        self.shared
            .emit(self.event(Verdict::Refused, addr, Some(403), &r.reason));
        Denial {
            status: 403,
            socks: 0x02,
            reason: r.public,
        }
    }

    fn fail(&self, (status, socks): (u16, u8), detail: String, public: String) -> Denial {
        self.shared
            .emit(self.event(Verdict::Failed, None, Some(status), &detail));
        Denial {
            status,
            socks,
            reason: public,
        }
    }

    /// The addresses to try: the name checked first, then every address it resolves to (one
    /// internal address among public ones is a rebinding: all refused). Connect to exactly what
    /// was checked; an IPv4-mapped address as the IPv4 address.
    fn checked_addrs(&self) -> Result<Vec<SocketAddr>, Denial> {
        let live;
        let policy: &crate::model::egress::EgressPolicy = match self.shared.own_addrs {
            Some(list) => {
                let mut p = (*self.shared.policy).clone();
                p.self_addrs = list().map_err(|e| {
                    let why =
                        format!("cannot list the container's own addresses to check against ({e})");
                    self.fail((502, 0x01), why.clone(), why)
                })?;
                live = p;
                &live
            }
            None => &self.shared.policy,
        };
        let port = self.port;
        match policy.check_name(self.host, port) {
            Err(r) => Err(self.refuse(None, r)),
            Ok(Host::Ip(ip)) => Ok(vec![SocketAddr::new(ip.to_canonical(), port)]),
            Ok(Host::Name(name)) => {
                let addrs = match (self.shared.outbound.resolve)(&name, port) {
                    Ok(a) if !a.is_empty() => a,
                    Ok(_) => {
                        let why = format!("{name}: no address");
                        return Err(self.fail((502, 0x04), why.clone(), why));
                    }
                    Err(e) => {
                        let why = format!("cannot resolve {name}: {e}");
                        return Err(self.fail((502, 0x04), why.clone(), why));
                    }
                };
                for a in &addrs {
                    if let Err(r) = policy.check_addr(Some(&name), a.ip(), port) {
                        return Err(self.refuse(Some(*a), r));
                    }
                }
                Ok(addrs
                    .into_iter()
                    .map(|a| SocketAddr::new(a.ip().to_canonical(), port))
                    .collect())
            }
        }
    }
}
