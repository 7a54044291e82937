//! The DNS wire format the gate answers a sandbox with: one strict reader of queries and the
//! answers it builds (RFC 1035 §4; EDNS's OPT record, RFC 6891, tolerated and not echoed). What
//! to answer is decided elsewhere ([`super::resolver`]); this module only reads and writes bytes.
//!
//! A query is read strictly: exactly one question, no answer or authority records, at most one
//! additional record (EDNS), no compression pointer in the question (a query never needs one),
//! labels of 1 to 63 bytes of letters, digits, `-` and `_`, a name of at most 253 characters,
//! class IN, and nothing after the last record. Anything else is `FORMERR` (when the header can
//! be read) or dropped. Names are returned lowercased, without the trailing dot.

use std::net::IpAddr;

/// The most a query may be: a UDP message without EDNS is at most 512 bytes; with EDNS a client
/// may send more, but a question never needs it.
pub const MAX_QUERY: usize = 512;

pub const TYPE_A: u16 = 1;
pub const TYPE_AAAA: u16 = 28;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;

/// Response codes (RFC 1035 §4.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    NoError = 0,
    FormErr = 1,
    ServFail = 2,
    NxDomain = 3,
    NotImp = 4,
    Refused = 5,
}

/// A query as read: its id, the name asked for (lowercase, no trailing dot), the type, and
/// whether the client asked for recursion (echoed back as RD).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub id: u16,
    pub name: String,
    pub qtype: u16,
    rd: bool,
    /// The question as it was sent (name, type, class), echoed in the answer.
    question: Vec<u8>,
}

/// Why a message was not read as a query: `Some(id)` when a FORMERR can be sent back to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unread {
    pub answer_to: Option<u16>,
    pub why: &'static str,
}

fn unread(answer_to: Option<u16>, why: &'static str) -> Unread {
    Unread { answer_to, why }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Read one query.
pub fn parse_query(msg: &[u8]) -> Result<Query, Unread> {
    if msg.len() < 12 {
        return Err(unread(None, "shorter than a header"));
    }
    if msg.len() > MAX_QUERY {
        return Err(unread(None, "longer than a query"));
    }
    let id = u16::from_be_bytes([msg[0], msg[1]]);
    let flags = u16::from_be_bytes([msg[2], msg[3]]);
    if flags & 0x8000 != 0 {
        // A response sent to the resolver: never answered (no reflection).
        return Err(unread(None, "a response, not a query"));
    }
    let formerr = |why| Err(unread(Some(id), why));
    if (flags >> 11) & 0xf != 0 {
        return Err(Unread {
            answer_to: Some(id),
            why: "not a standard query (opcode)",
        });
    }
    let counts = [4, 6, 8, 10].map(|at| u16::from_be_bytes([msg[at], msg[at + 1]]));
    if counts[0] != 1 || counts[1] != 0 || counts[2] != 0 || counts[3] > 1 {
        return formerr("not exactly one question and no records");
    }
    let (name, mut at) = match read_name(msg, 12) {
        Some(n) => n,
        None => return formerr("a malformed name"),
    };
    let (Some(qtype), Some(qclass)) = (u16_at(msg, at), u16_at(msg, at + 2)) else {
        return formerr("a cut question");
    };
    if qclass != CLASS_IN {
        return formerr("a class other than IN");
    }
    let question = msg[12..at + 4].to_vec();
    at += 4;
    if counts[3] == 1 {
        at = match read_opt(msg, at) {
            Some(end) => end,
            None => return formerr("a malformed additional record"),
        };
    }
    if at != msg.len() {
        return formerr("bytes after the last record");
    }
    Ok(Query {
        id,
        name,
        qtype,
        rd: flags & 0x0100 != 0,
        question,
    })
}

/// A name of uncompressed labels at `at`: (the name, the offset after it).
fn read_name(msg: &[u8], mut at: usize) -> Option<(String, usize)> {
    let mut name = String::new();
    loop {
        let len = usize::from(*msg.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        // 0xC0: a compression pointer; 0x40, 0x80: reserved label types.
        if len > 63 {
            return None;
        }
        let label = msg.get(at..at + len)?;
        if !label
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
        {
            return None;
        }
        if !name.is_empty() {
            name.push('.');
        }
        name.extend(label.iter().map(|c| char::from(c.to_ascii_lowercase())));
        if name.len() > 253 {
            return None;
        }
        at += len;
    }
    (!name.is_empty()).then_some((name, at))
}

/// EDNS's OPT record at `at` (root name, type OPT, its RDATA within the message): the offset
/// after it.
fn read_opt(msg: &[u8], at: usize) -> Option<usize> {
    if *msg.get(at)? != 0 || u16_at(msg, at + 1)? != TYPE_OPT {
        return None;
    }
    let rdlen = usize::from(u16_at(msg, at + 9)?);
    let end = at + 11 + rdlen;
    (end <= msg.len()).then_some(end)
}

/// The answer to `q`: `rcode`, and for `NoError` one record per address of the type asked for
/// (A for IPv4, AAAA for IPv6; others are left out), each with `ttl` seconds.
pub fn answer(q: &Query, rcode: Rcode, addrs: &[IpAddr], ttl: u32) -> Vec<u8> {
    let records: Vec<&IpAddr> = match rcode {
        Rcode::NoError => addrs
            .iter()
            .filter(|a| match a {
                IpAddr::V4(_) => q.qtype == TYPE_A,
                IpAddr::V6(_) => q.qtype == TYPE_AAAA,
            })
            .collect(),
        _ => Vec::new(),
    };
    let mut out = header(q.id, q.rd, rcode, 1, records.len() as u16);
    out.extend_from_slice(&q.question);
    for a in records {
        // The name: a pointer to the question's (offset 12).
        out.extend_from_slice(&[0xc0, 12]);
        let (rtype, data): (u16, Vec<u8>) = match a {
            IpAddr::V4(v4) => (TYPE_A, v4.octets().to_vec()),
            IpAddr::V6(v6) => (TYPE_AAAA, v6.octets().to_vec()),
        };
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(&data);
    }
    out
}

/// A bare error answer (no question: it could not be read) to the query with `id`.
pub fn error(id: u16, rcode: Rcode) -> Vec<u8> {
    header(id, false, rcode, 0, 0)
}

/// A response header: QR, RA, RD as asked, `rcode`.
fn header(id: u16, rd: bool, rcode: Rcode, qd: u16, an: u16) -> Vec<u8> {
    let flags: u16 = 0x8000 | 0x0080 | if rd { 0x0100 } else { 0 } | rcode as u16;
    let mut out = Vec::with_capacity(64);
    for v in [id, flags, qd, an, 0, 0] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// A query as a stub resolver sends it: id, RD, one question, optionally EDNS.
    fn query(id: u16, name: &str, qtype: u16, edns: bool) -> Vec<u8> {
        let mut m = Vec::new();
        for v in [id, 0x0100, 1, 0, 0, u16::from(edns)] {
            m.extend_from_slice(&v.to_be_bytes());
        }
        for label in name.split('.') {
            m.push(label.len() as u8);
            m.extend_from_slice(label.as_bytes());
        }
        m.push(0);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&CLASS_IN.to_be_bytes());
        if edns {
            // OPT: root, type 41, UDP size 1232, ext rcode/flags 0, no options.
            m.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
        }
        m
    }

    #[test]
    fn a_stub_resolvers_query_is_read() {
        let q = parse_query(&query(0x1234, "PyPI.org", TYPE_A, true)).unwrap();
        assert_eq!(
            (q.id, q.name.as_str(), q.qtype),
            (0x1234, "pypi.org", TYPE_A)
        );
        let q = parse_query(&query(7, "_sip._tcp.example.com", TYPE_AAAA, false)).unwrap();
        assert_eq!(q.name, "_sip._tcp.example.com");
    }

    #[test]
    fn anything_but_one_plain_question_is_refused() {
        let ok = query(1, "example.com", TYPE_A, false);
        assert!(parse_query(&ok).is_ok());
        // A response (no reflection): not even a FORMERR.
        let mut r = ok.clone();
        r[2] |= 0x80;
        assert_eq!(parse_query(&r).unwrap_err().answer_to, None);
        // Two questions; an answer record; trailing bytes; a compression pointer; a cut message.
        let mut two = ok.clone();
        two[5] = 2;
        let mut an = ok.clone();
        an[7] = 1;
        let mut trailing = ok.clone();
        trailing.push(0);
        let mut pointer = ok[..12].to_vec();
        pointer.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        let cut = ok[..ok.len() - 1].to_vec();
        for (m, what) in [
            (two, "two questions"),
            (an, "an answer"),
            (trailing, "trailing"),
            (pointer, "pointer"),
            (cut, "cut"),
        ] {
            assert_eq!(parse_query(&m).unwrap_err().answer_to, Some(1), "{what}");
        }
        // A label with a dot or a NUL in it, an empty name, class CH.
        for bad in [
            query(1, "a\0b.example.com", TYPE_A, false),
            query(1, "x.y", TYPE_A, false)
                .iter()
                .map(|&c| if c == b'y' { b'.' } else { c })
                .collect(),
        ] {
            assert!(parse_query(&bad).is_err());
        }
        let mut root = ok[..12].to_vec();
        root.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert!(parse_query(&root).is_err());
        let mut ch = ok.clone();
        let n = ch.len();
        ch[n - 1] = 3;
        assert!(parse_query(&ch).is_err());
        // Too long a name: 5 labels of 63 is over 253.
        let long = vec!["a".repeat(63); 5].join(".");
        assert!(parse_query(&query(1, &long, TYPE_A, false)).is_err());
        let fits = vec!["a".repeat(63); 4].join(".")[..253].to_string();
        assert!(parse_query(&query(1, &fits, TYPE_A, false)).is_ok());
    }

    #[test]
    fn answers_carry_the_question_and_only_the_type_asked_for() {
        let q = parse_query(&query(9, "db.example.com", TYPE_A, true)).unwrap();
        let addrs = [
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ];
        let a = answer(&q, Rcode::NoError, &addrs, 30);
        // Header: id 9, QR RD RA, NOERROR, 1 question, 1 answer (the AAAA left out).
        assert_eq!(&a[..12], &[0, 9, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
        let qlen = q.question.len();
        assert_eq!(&a[12..12 + qlen], &q.question[..]);
        assert_eq!(
            &a[12 + qlen..],
            &[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 192, 0, 2, 10]
        );
        let nx = answer(&q, Rcode::NxDomain, &addrs, 30);
        assert_eq!(&nx[..12], &[0, 9, 0x81, 0x83, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(nx.len(), 12 + qlen);
        assert_eq!(
            error(5, Rcode::FormErr),
            vec![0, 5, 0x80, 0x81, 0, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { failure_persistence: None, ..Default::default() })]

        /// Whatever the bytes, reading never panics, and a query that is read is answered with
        /// a message that starts with its id and carries its question.
        #[test]
        fn fuzz_any_bytes_are_read_or_refused(msg in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            if let Ok(q) = parse_query(&msg) {
                let a = answer(&q, Rcode::NoError, &[IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))], 1);
                proptest::prop_assert_eq!(&a[..2], &msg[..2]);
                proptest::prop_assert!(q.name.len() <= 253);
            }
        }

        #[test]
        fn fuzz_every_valid_name_is_read_back(labels in proptest::collection::vec("[a-zA-Z0-9_-]{1,20}", 1..6), qtype in proptest::prelude::any::<u16>(), id in proptest::prelude::any::<u16>()) {
            let name = labels.join(".");
            let q = parse_query(&query(id, &name, qtype, false)).unwrap();
            proptest::prop_assert_eq!(q.name, name.to_ascii_lowercase());
            proptest::prop_assert_eq!((q.id, q.qtype), (id, qtype));
        }
    }
}
