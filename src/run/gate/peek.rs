//! What a captured connection's first bytes say about where it is going, read strictly before a
//! byte is passed on: a TLS ClientHello's server name (SNI, RFC 6066 §3), or that it is not TLS.
//! The bytes are kept and sent on unchanged once the destination is judged.
//!
//! A ClientHello is read from TLS records of type handshake (a hello may span records; at most
//! [`MAX_HELLO`] bytes in all), its fields walked by their lengths, each of which must fit in what
//! holds it. The server_name extension must appear at most once and name one `host_name` of
//! letters, digits, `-`, `_` and `.` (an IP address is not a server name: RFC 6066). An
//! encrypted ClientHello (ECH, extension 0xfe0d) is refused: its outer SNI is not where the
//! connection goes.

/// The most a ClientHello may take, records and all.
pub const MAX_HELLO: usize = 16 * 1024;

/// What the first bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peeked {
    /// More bytes are needed to say.
    Incomplete,
    /// A TLS ClientHello, with the server name it asks for (lowercase, no trailing dot), if any.
    Tls { sni: Option<String> },
    /// Not TLS (the first byte is not a handshake record).
    NotTls,
    /// TLS, but not a ClientHello this gate reads (malformed, too large, ECH): refused.
    BadTls(&'static str),
}

const HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const EXT_ECH: u16 = 0xfe0d;

/// Read what `data` (the connection's first bytes so far) holds.
pub fn peek(data: &[u8]) -> Peeked {
    let Some(&first) = data.first() else {
        return Peeked::Incomplete;
    };
    if first != HANDSHAKE {
        return Peeked::NotTls;
    }
    // The handshake bytes, records unwrapped.
    let mut hs = Vec::new();
    let mut at = 0;
    loop {
        let Some(head) = data.get(at..at + 5) else {
            return Peeked::Incomplete;
        };
        if head[0] != HANDSHAKE || head[1] != 3 {
            return Peeked::BadTls("a record that is not a TLS handshake");
        }
        let len = usize::from(u16::from_be_bytes([head[3], head[4]]));
        if len == 0 || at + 5 + len > MAX_HELLO {
            return Peeked::BadTls("a ClientHello record too large or empty");
        }
        let Some(body) = data.get(at + 5..at + 5 + len) else {
            return Peeked::Incomplete;
        };
        hs.extend_from_slice(body);
        at += 5 + len;
        if hs.len() >= 4 {
            let need =
                4 + (usize::from(hs[1]) << 16 | usize::from(hs[2]) << 8 | usize::from(hs[3]));
            if hs[0] != CLIENT_HELLO {
                return Peeked::BadTls("a first handshake message that is not a ClientHello");
            }
            if need > MAX_HELLO {
                return Peeked::BadTls("a ClientHello too large");
            }
            if hs.len() >= need {
                if hs.len() > need || at != data.len() {
                    // Nothing may follow the hello before the server answers.
                    return Peeked::BadTls("bytes after the ClientHello");
                }
                return match client_hello(&hs[4..need]) {
                    Ok(sni) => Peeked::Tls { sni },
                    Err(why) => Peeked::BadTls(why),
                };
            }
        }
    }
}

/// A cursor over length-prefixed fields: every length must fit in what is left.
struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if n > self.b.len() {
            return Err("a field longer than what holds it");
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<usize, &'static str> {
        Ok(usize::from(self.take(1)?[0]))
    }
    fn u16(&mut self) -> Result<usize, &'static str> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
    fn vec8(&mut self) -> Result<Reader<'a>, &'static str> {
        let n = self.u8()?;
        Ok(Reader { b: self.take(n)? })
    }
    fn vec16(&mut self) -> Result<Reader<'a>, &'static str> {
        let n = self.u16()?;
        Ok(Reader { b: self.take(n)? })
    }
    fn done(&self) -> Result<(), &'static str> {
        match self.b.is_empty() {
            true => Ok(()),
            false => Err("bytes after the last field"),
        }
    }
}

/// The ClientHello body (after its 4-byte header): its server name.
fn client_hello(body: &[u8]) -> Result<Option<String>, &'static str> {
    let mut r = Reader { b: body };
    let version = r.take(2)?;
    if version[0] != 3 {
        return Err("not a TLS ClientHello version");
    }
    r.take(32)?; // random
    let session = r.vec8()?;
    if session.b.len() > 32 {
        return Err("a session id over 32 bytes");
    }
    let suites = r.vec16()?;
    if suites.b.is_empty() || suites.b.len() % 2 != 0 {
        return Err("a malformed cipher suite list");
    }
    if r.vec8()?.b.is_empty() {
        return Err("no compression method");
    }
    if r.b.is_empty() {
        return Ok(None); // no extensions at all (TLS 1.2 may omit them)
    }
    let mut exts = r.vec16()?;
    r.done()?;
    let mut sni = None;
    let mut seen = Vec::new();
    while !exts.b.is_empty() {
        let kind = exts.u16()? as u16;
        let data = exts.vec16()?;
        if seen.contains(&kind) {
            return Err("an extension listed twice");
        }
        seen.push(kind);
        match kind {
            EXT_ECH => return Err("an encrypted ClientHello (ECH)"),
            EXT_SERVER_NAME => sni = Some(server_name(data)?),
            _ => {}
        }
    }
    Ok(sni)
}

/// The server_name extension's data: exactly one host_name.
fn server_name(mut data: Reader) -> Result<String, &'static str> {
    let mut list = data.vec16()?;
    data.done()?;
    if list.u8()? != 0 {
        return Err("a server name that is not a host name");
    }
    let name = list.vec16()?;
    list.done()?;
    let name = name.b;
    let ok = |c: &u8| c.is_ascii_alphanumeric() || b"-_.".contains(c);
    if name.is_empty() || name.len() > 253 || !name.iter().all(ok) {
        return Err("a malformed server name");
    }
    let s = String::from_utf8_lossy(name).to_ascii_lowercase();
    let s = s.strip_suffix('.').unwrap_or(&s).to_string();
    if s.is_empty() || s.split('.').any(|l| l.is_empty() || l.len() > 63) {
        return Err("a malformed server name");
    }
    if s.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err("an address as server name");
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello record: TLS 1.2 record version, one suite, null compression, `exts`.
    fn hello_with(exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.push(0); // no session id
        body.extend_from_slice(&[0, 2, 0x13, 0x01]);
        body.extend_from_slice(&[1, 0]);
        let mut e = Vec::new();
        for (kind, data) in exts {
            e.extend_from_slice(&kind.to_be_bytes());
            e.extend_from_slice(&(data.len() as u16).to_be_bytes());
            e.extend_from_slice(data);
        }
        body.extend_from_slice(&(e.len() as u16).to_be_bytes());
        body.extend_from_slice(&e);
        let mut hs = vec![CLIENT_HELLO, 0, (body.len() >> 8) as u8, body.len() as u8];
        hs.extend_from_slice(&body);
        let mut rec = vec![HANDSHAKE, 3, 1, (hs.len() >> 8) as u8, hs.len() as u8];
        rec.extend_from_slice(&hs);
        rec
    }

    fn sni_ext(name: &str) -> (u16, Vec<u8>) {
        let mut list = vec![0, (name.len() >> 8) as u8, name.len() as u8];
        list.extend_from_slice(name.as_bytes());
        let mut data = (list.len() as u16).to_be_bytes().to_vec();
        data.extend_from_slice(&list);
        (EXT_SERVER_NAME, data)
    }

    fn hello(name: &str) -> Vec<u8> {
        hello_with(&[(10, vec![0, 2, 0, 29]), sni_ext(name), (43, vec![2, 3, 4])])
    }

    #[test]
    fn the_server_name_is_read_whole_and_in_pieces() {
        let h = hello("API.Example.com.");
        let want = Peeked::Tls {
            sni: Some("api.example.com".into()),
        };
        assert_eq!(peek(&h), want);
        for cut in 0..h.len() {
            assert_eq!(peek(&h[..cut]), Peeked::Incomplete, "cut at {cut}");
        }
        // The same hello split over two records.
        let hs = &h[5..];
        let mut two = vec![HANDSHAKE, 3, 1, 0, 10];
        two.extend_from_slice(&hs[..10]);
        two.extend_from_slice(&[HANDSHAKE, 3, 1, 0, (hs.len() - 10) as u8]);
        two.extend_from_slice(&hs[10..]);
        assert_eq!(peek(&two), want);
        // No server name: TLS without one.
        assert_eq!(
            peek(&hello_with(&[(10, vec![0, 2, 0, 29])])),
            Peeked::Tls { sni: None }
        );
    }

    #[test]
    fn what_is_not_tls_is_said_at_once() {
        assert_eq!(peek(b"GET / HTTP/1.1\r\n"), Peeked::NotTls);
        assert_eq!(peek(b"SSH-2.0-OpenSSH_9.6\r\n"), Peeked::NotTls);
        assert_eq!(peek(&[0, 0, 0, 8, 4, 210, 22, 47]), Peeked::NotTls); // a PostgreSQL SSLRequest
    }

    #[test]
    fn malformed_or_evasive_hellos_are_refused() {
        let bad = |p: Peeked| matches!(p, Peeked::BadTls(_));
        // Two server names; a duplicated extension; ECH; an address; a name with a NUL.
        assert!(bad(peek(&hello_with(&[
            sni_ext("a.com"),
            sni_ext("b.com")
        ]))));
        assert!(bad(peek(&hello_with(&[
            (EXT_ECH, vec![0; 8]),
            sni_ext("a.com")
        ]))));
        assert!(bad(peek(&hello("192.0.2.1"))));
        assert!(bad(peek(&hello("a\0.evil.com"))));
        assert!(bad(peek(&hello("a..com"))));
        // Bytes after the hello; an alert record; a length past the end of its field.
        let mut after = hello("a.com");
        after.extend_from_slice(&[23, 3, 3, 0, 1, 0]);
        assert!(bad(peek(&after)));
        assert_eq!(peek(&[21, 3, 3, 0, 2, 2, 40]), Peeked::NotTls);
        let h = hello("a.com");
        let mut alert_between = vec![HANDSHAKE, 3, 1, 0, 10];
        alert_between.extend_from_slice(&h[5..15]);
        alert_between.extend_from_slice(&[21, 3, 3, 0, 2, 2, 40]);
        assert!(bad(peek(&alert_between)));
        let mut long = hello("a.com");
        long[5 + 4 + 2 + 32] = 200; // the session id's length
        assert!(bad(peek(&long)));
        // Too large.
        let huge = hello_with(&[(21, vec![0; MAX_HELLO])]);
        assert!(bad(peek(&huge)));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { failure_persistence: None, ..Default::default() })]

        /// Any bytes, and any change to a valid hello: never a panic; a name read is well formed.
        #[test]
        fn fuzz_peek_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
                                  at in proptest::prelude::any::<proptest::sample::Index>(),
                                  byte in proptest::prelude::any::<u8>()) {
            let _ = peek(&data);
            let mut h = hello("files.pypi.org");
            let i = at.index(h.len());
            h[i] = byte;
            if let Peeked::Tls { sni: Some(n) } = peek(&h) {
                proptest::prop_assert!(n.split('.').all(|l| !l.is_empty() && l.len() <= 63));
                proptest::prop_assert!(n.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"-_.".contains(&c)));
            }
        }
    }
}
