//! The sandbox's DNS, answered by the gate: a name a domain rule of `net.allow` names is looked
//! up outside (the container's resolver) and answered with the addresses it may reach; any other
//! name is answered NXDOMAIN **without a lookup**, so no query for it leaves the machine (a
//! subdomain label is no channel out). An answer keeps only the addresses the policy would let
//! the sandbox connect to (never loopback, link-local, private or the container's own: a name
//! that resolves only to such is NXDOMAIN too).
//!
//! What was answered is remembered ([`Resolver::names_for`]): a captured connection to an
//! address is admitted by a domain rule only if this sandbox got that address in an answer for a
//! name the rule names (microsandbox's model); an address it never asked for is judged by the
//! CIDR rules alone.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::dns::{self, Query, Rcode, TYPE_A, TYPE_AAAA};
use crate::model::egress::EgressPolicy;

/// The TTL the sandbox is told: short, so that its view follows the outside's.
pub const ANSWER_TTL: u32 = 30;
/// How long an answered address is remembered after its last answer (clients cache past TTLs).
const REMEMBER: Duration = Duration::from_secs(600);
/// At most this many (address, name) pairs are remembered; the oldest go first.
const MAX_REMEMBERED: usize = 4096;
/// At most this many addresses in one answer.
const MAX_ADDRS: usize = 8;

/// How a name is looked up outside: the system resolver, replaced in tests.
pub type Lookup = dyn Fn(&str) -> io::Result<Vec<IpAddr>> + Send + Sync;
/// How the container's own addresses are listed (each time: they change).
pub type OwnAddrs = dyn Fn() -> io::Result<Vec<IpAddr>> + Send + Sync;

/// What was decided for one query, for the audit log (names only, never a value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub name: String,
    pub qtype: u16,
    pub rcode: Rcode,
    /// How many addresses were answered.
    pub answered: usize,
    /// Why it was refused (NXDOMAIN by policy, every address internal, the lookup failed).
    pub reason: Option<String>,
}

pub struct Resolver {
    policy: Arc<EgressPolicy>,
    lookup: Box<Lookup>,
    own: Box<OwnAddrs>,
    remembered: Mutex<HashMap<(IpAddr, String), Instant>>,
}

impl Resolver {
    pub fn new(policy: Arc<EgressPolicy>, lookup: Box<Lookup>, own: Box<OwnAddrs>) -> Resolver {
        Resolver {
            policy,
            lookup,
            own,
            remembered: Mutex::new(HashMap::new()),
        }
    }

    /// The answer to one message from the sandbox, and what was decided (`None`: dropped, e.g.
    /// a response or a message too short to answer).
    pub fn respond(&self, msg: &[u8]) -> Option<(Vec<u8>, Option<Decision>)> {
        let q = match dns::parse_query(msg) {
            Ok(q) => q,
            Err(e) => return e.answer_to.map(|id| (dns::error(id, Rcode::FormErr), None)),
        };
        let d = self.decide(&q);
        let answer = dns::answer(&q, d.0.rcode, &d.1, ANSWER_TTL);
        Some((answer, Some(d.0)))
    }

    fn decide(&self, q: &Query) -> (Decision, Vec<IpAddr>) {
        let refuse = |rcode, reason: String| {
            let d = Decision {
                name: q.name.clone(),
                qtype: q.qtype,
                rcode,
                answered: 0,
                reason: Some(reason),
            };
            (d, Vec::new())
        };
        if q.name == "localhost" || q.name.ends_with(".localhost") {
            return refuse(Rcode::NxDomain, "localhost is never answered".into());
        }
        let Some(port) = self.policy.names_domain(&q.name) else {
            return refuse(
                Rcode::NxDomain,
                "no domain rule of net.allow names it".into(),
            );
        };
        if q.qtype != TYPE_A && q.qtype != TYPE_AAAA {
            // An allowed name, another type (HTTPS, MX...): no records, not an error.
            let d = Decision {
                name: q.name.clone(),
                qtype: q.qtype,
                rcode: Rcode::NoError,
                answered: 0,
                reason: None,
            };
            return (d, Vec::new());
        }
        let found = match (self.lookup)(&q.name) {
            Ok(a) => a,
            Err(e) => return refuse(Rcode::ServFail, format!("the lookup failed: {e}")),
        };
        let own = (self.own)().unwrap_or_default();
        let mut policy = (*self.policy).clone();
        policy.self_addrs.extend(own);
        let wanted = |a: &IpAddr| match a {
            IpAddr::V4(_) => q.qtype == TYPE_A,
            IpAddr::V6(_) => q.qtype == TYPE_AAAA,
        };
        let of_type: Vec<IpAddr> = found.into_iter().filter(wanted).collect();
        let mut addrs: Vec<IpAddr> = Vec::new();
        for a in &of_type {
            if !addrs.contains(a) && policy.check_addr(Some(&q.name), *a, port).is_ok() {
                addrs.push(*a);
            }
        }
        addrs.truncate(MAX_ADDRS);
        if addrs.is_empty() && !of_type.is_empty() {
            return refuse(
                Rcode::NxDomain,
                "it resolves only to addresses no sandbox may reach".into(),
            );
        }
        self.remember(&q.name, &addrs);
        let d = Decision {
            name: q.name.clone(),
            qtype: q.qtype,
            rcode: Rcode::NoError,
            answered: addrs.len(),
            reason: None,
        };
        (d, addrs)
    }

    fn remember(&self, name: &str, addrs: &[IpAddr]) {
        let now = Instant::now();
        let mut m = self.remembered.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|_, at| now.duration_since(*at) < REMEMBER);
        for a in addrs {
            m.insert((a.to_canonical(), name.to_string()), now);
        }
        while m.len() > MAX_REMEMBERED {
            let Some(oldest) = m.iter().min_by_key(|(_, at)| **at).map(|(k, _)| k.clone()) else {
                break;
            };
            m.remove(&oldest);
        }
    }

    /// The names this sandbox was given `ip` for (recently), sorted.
    pub fn names_for(&self, ip: IpAddr) -> Vec<String> {
        let now = Instant::now();
        let ip = ip.to_canonical();
        let m = self.remembered.lock().unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<String> = m
            .iter()
            .filter(|((a, _), at)| *a == ip && now.duration_since(**at) < REMEMBER)
            .map(|((_, n), _)| n.clone())
            .collect();
        names.sort();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut m = vec![0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            m.push(l.len() as u8);
            m.extend_from_slice(l.as_bytes());
        }
        m.extend_from_slice(&[0, (qtype >> 8) as u8, qtype as u8, 0, 1]);
        m
    }

    /// A resolver over `allow` whose lookups answer from `zone` and are counted.
    fn resolver(allow: &[&str], zone: &'static [(&str, &str)]) -> (Resolver, Arc<AtomicUsize>) {
        let policy = Arc::new(EgressPolicy::parse("user", allow, vec![]).unwrap());
        let asked = Arc::new(AtomicUsize::new(0));
        let counter = asked.clone();
        let lookup = Box::new(move |name: &str| {
            counter.fetch_add(1, Ordering::SeqCst);
            let found: Vec<IpAddr> = zone
                .iter()
                .filter(|(n, _)| *n == name)
                .map(|(_, a)| a.parse().unwrap())
                .collect();
            match found.is_empty() {
                true => Err(io::Error::other("no such name")),
                false => Ok(found),
            }
        });
        let own = Box::new(|| Ok(vec![IpAddr::V4(Ipv4Addr::new(172, 17, 0, 2))]));
        (Resolver::new(policy, lookup, own), asked)
    }

    const ZONE: &[(&str, &str)] = &[
        ("pypi.org", "151.101.0.223"),
        ("pypi.org", "2a04:4e42::223"),
        ("files.pypi.org", "151.101.64.223"),
        ("rebind.pypi.org", "10.0.0.1"),
        ("loop.pypi.org", "127.0.0.1"),
        ("mixed.pypi.org", "169.254.169.254"),
        ("mixed.pypi.org", "151.101.1.1"),
        ("self.pypi.org", "172.17.0.2"),
    ];

    fn rcode(a: &[u8]) -> u8 {
        a[3] & 0xf
    }

    #[test]
    fn allowed_names_are_answered_with_their_addresses_of_the_type_asked() {
        let (r, _) = resolver(&["pypi.org", "*.pypi.org"], ZONE);
        let (a, d) = r.respond(&query("pypi.org", TYPE_A)).unwrap();
        assert_eq!(rcode(&a), 0);
        assert_eq!(d.unwrap().answered, 1);
        assert!(a.ends_with(&[151, 101, 0, 223]));
        let (a6, d6) = r.respond(&query("PyPI.org", TYPE_AAAA)).unwrap();
        assert_eq!((rcode(&a6), d6.unwrap().answered), (0, 1));
        let ip6: Ipv6Addr = "2a04:4e42::223".parse().unwrap();
        assert!(a6.ends_with(&ip6.octets()));
        assert_eq!(
            r.names_for("151.101.0.223".parse().unwrap()),
            vec!["pypi.org"]
        );
        assert!(r.names_for("151.101.64.223".parse().unwrap()).is_empty());
    }

    #[test]
    fn other_names_are_nxdomain_without_a_lookup() {
        let (r, asked) = resolver(&["pypi.org", "203.0.113.0/24"], ZONE);
        for name in [
            "files.pypi.org",
            "secret-data.evil.example",
            "localhost",
            "a.localhost",
        ] {
            let (a, d) = r.respond(&query(name, TYPE_A)).unwrap();
            assert_eq!(rcode(&a), 3, "{name}");
            assert!(d.unwrap().reason.is_some());
        }
        assert_eq!(
            asked.load(Ordering::SeqCst),
            0,
            "a refused name was looked up"
        );
        // Control: the allowed one is looked up.
        r.respond(&query("pypi.org", TYPE_A)).unwrap();
        assert_eq!(asked.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn internal_answers_become_nxdomain_and_are_never_remembered() {
        let (r, _) = resolver(&["*.pypi.org"], ZONE);
        for name in ["rebind.pypi.org", "loop.pypi.org", "self.pypi.org"] {
            let (a, _) = r.respond(&query(name, TYPE_A)).unwrap();
            assert_eq!(rcode(&a), 3, "{name}");
        }
        assert!(r.names_for("10.0.0.1".parse().unwrap()).is_empty());
        assert!(r.names_for("172.17.0.2".parse().unwrap()).is_empty());
        // A name with one internal and one public address: only the public one is answered.
        let (a, d) = r.respond(&query("mixed.pypi.org", TYPE_A)).unwrap();
        assert_eq!((rcode(&a), d.unwrap().answered), (0, 1));
        assert!(a.ends_with(&[151, 101, 1, 1]));
        assert!(r.names_for("169.254.169.254".parse().unwrap()).is_empty());
    }

    #[test]
    fn an_allowed_name_of_another_type_has_no_records_and_a_failed_lookup_is_servfail() {
        let (r, asked) = resolver(&["pypi.org", "nowhere.example"], ZONE);
        let (a, _) = r.respond(&query("pypi.org", 65)).unwrap();
        assert_eq!((rcode(&a), a[7]), (0, 0));
        assert_eq!(asked.load(Ordering::SeqCst), 0);
        let (a, _) = r.respond(&query("nowhere.example", TYPE_A)).unwrap();
        assert_eq!(rcode(&a), 2);
    }

    #[test]
    fn malformed_messages_get_formerr_or_nothing() {
        let (r, _) = resolver(&["pypi.org"], ZONE);
        let mut bad = query("pypi.org", TYPE_A);
        bad.push(0);
        let (a, d) = r.respond(&bad).unwrap();
        assert_eq!((rcode(&a), d), (1, None));
        let mut response = query("pypi.org", TYPE_A);
        response[2] |= 0x80;
        assert!(r.respond(&response).is_none());
        assert!(r.respond(&[1, 2, 3]).is_none());
    }
}
