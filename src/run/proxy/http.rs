//! The one HTTP/1 parser at the gate's boundary: every request head from the sandbox and every
//! response head from a bound host goes through [`httparse`], after the checks it leaves out.
//! Refused (400, before a byte goes upstream): a bare CR or LF (httparse takes a lone LF as a line
//! end; an origin may too, which is how a second request is smuggled inside a header value), NUL
//! or any other control byte but HT, a byte outside ASCII in the request line or a header, an
//! obs-folded line, more than [`MAX_HEADERS`] headers, a repeated or signed `Content-Length`,
//! `Content-Length` together with `Transfer-Encoding`, a `Transfer-Encoding` other than a single
//! `chunked`. Chunk sizes are hex digits only (httparse's `parse_chunk_size`, CRLF-terminated).

use std::io::{self, Read, Write};

use zeroize::{Zeroize, Zeroizing};

/// Most headers in one head.
pub const MAX_HEADERS: usize = 100;
/// Most bytes in one chunk-size line or trailer line.
pub const MAX_LINE: usize = 8 * 1024;

/// A parsed request head (owned: an intercepted one may hold a real value once swapped, so it is
/// wiped when dropped).
#[derive(Debug)]
pub struct Head {
    pub method: String,
    pub target: String,
    /// The minor version: HTTP/1.0 or HTTP/1.1.
    pub minor: u8,
    pub headers: Vec<(String, String)>,
}

impl Drop for Head {
    fn drop(&mut self) {
        self.target.zeroize();
        for (_, v) in &mut self.headers {
            v.zeroize();
        }
    }
}

/// How a message's body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    Length(u64),
    Chunked,
    /// Until the connection closes (responses only).
    Close,
}

/// A refusal: the HTTP status and why (never holding a value from the message).
pub type Bad = (u16, String);

fn bad(why: impl Into<String>) -> Bad {
    (400, why.into())
}

/// The length of the head at the start of `buf` (through its blank line), if it is complete.
pub fn head_len(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// The bytes httparse leaves to the caller: every CR followed by LF and every LF preceded by CR,
/// nothing but HT, SP and visible ASCII between them.
fn check_bytes(head: &[u8]) -> Result<(), Bad> {
    for (i, &b) in head.iter().enumerate() {
        match b {
            b'\r' if head.get(i + 1) != Some(&b'\n') => return Err(bad("a bare CR in the head")),
            b'\n' if i == 0 || head[i - 1] != b'\r' => return Err(bad("a bare LF in the head")),
            b'\r' | b'\n' | b'\t' | 0x20..=0x7e => {}
            0 => return Err(bad("a NUL byte in the head")),
            0x80.. => return Err(bad("a byte outside ASCII in the head")),
            _ => return Err(bad("a control byte in the head")),
        }
    }
    Ok(())
}

/// Parse a request head (`head` ends with its blank line), strictly.
pub fn parse_request(head: &[u8]) -> Result<Head, Bad> {
    check_bytes(head)?;
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    match req.parse(head) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => {}
        Ok(_) => return Err(bad("the request head is incomplete or has bytes after it")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err((431, format!("more than {MAX_HEADERS} headers")))
        }
        Err(e) => return Err(bad(format!("malformed request head ({e})"))),
    }
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(bad("malformed request line"));
    };
    let headers = owned_headers(req.headers)?;
    let head = Head {
        method: method.to_string(),
        target: target.to_string(),
        minor,
        headers,
    };
    request_framing(&head)?;
    Ok(head)
}

fn owned_headers(h: &[httparse::Header<'_>]) -> Result<Vec<(String, String)>, Bad> {
    h.iter()
        .map(|h| {
            let v = std::str::from_utf8(h.value).map_err(|_| bad("a header value is not text"))?;
            Ok((h.name.to_string(), v.to_string()))
        })
        .collect()
}

/// The values of every header named `name`.
fn all<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The body framing the headers say, refusing every ambiguous form; `None` without either header.
fn declared(headers: &[(String, String)]) -> Result<Option<Framing>, Bad> {
    let te = all(headers, "transfer-encoding");
    let cl = all(headers, "content-length");
    match (te.as_slice(), cl.as_slice()) {
        ([], []) => Ok(None),
        ([_, ..], [_, ..]) => Err(bad("both Transfer-Encoding and Content-Length")),
        ([t], []) if t.eq_ignore_ascii_case("chunked") => Ok(Some(Framing::Chunked)),
        ([_], []) | ([_, _, ..], []) => Err((
            501,
            "Transfer-Encoding other than a single \"chunked\" is not supported".into(),
        )),
        ([], [n]) => content_length(n).map(|n| Some(Framing::Length(n))),
        ([], _) => Err(bad("Content-Length given more than once")),
    }
}

/// A Content-Length value: 1 to 18 ASCII digits, nothing else (no sign, no list, no space).
pub fn content_length(v: &str) -> Result<u64, Bad> {
    if v.is_empty() || v.len() > 18 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("Content-Length is not a plain number"));
    }
    v.parse()
        .map_err(|_| bad("Content-Length is not a plain number"))
}

/// A request's body framing: no body unless a header says so.
pub fn request_framing(head: &Head) -> Result<Framing, Bad> {
    match declared(&head.headers)? {
        Some(Framing::Chunked) if head.minor == 0 => {
            Err(bad("Transfer-Encoding in an HTTP/1.0 request"))
        }
        Some(f) => Ok(f),
        None => Ok(Framing::None),
    }
}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl ResponseHead {
    pub fn get(&self, name: &str) -> Option<&str> {
        all(&self.headers, name).first().copied()
    }
}

/// Parse a response head (`head` ends with its blank line). Responses are held to the same byte
/// rules as requests (a bound host's answer is relayed to the sandbox after scrubbing).
pub fn parse_response(head: &[u8]) -> Result<ResponseHead, Bad> {
    check_bytes(head).map_err(|(_, why)| (502, format!("the response: {why}")))?;
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut slots);
    match resp.parse(head) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => {}
        _ => return Err((502, "malformed response head".into())),
    }
    let status = resp.code.ok_or((502, "no response status".to_string()))?;
    let headers = owned_headers(resp.headers).map_err(|(_, w)| (502, w))?;
    Ok(ResponseHead { status, headers })
}

/// A response's body framing (RFC 9112 §6.3): none for HEAD, 1xx, 204 and 304; else the headers',
/// else until the connection closes.
pub fn response_framing(method: &str, r: &ResponseHead) -> Result<Framing, Bad> {
    if method.eq_ignore_ascii_case("HEAD") || r.status < 200 || r.status == 204 || r.status == 304 {
        return Ok(Framing::None);
    }
    declared(&r.headers)
        .map(|f| f.unwrap_or(Framing::Close))
        .map_err(|(_, why)| (502, format!("the response: {why}")))
}

/// One line through its CRLF (at most [`MAX_LINE`] bytes), read a byte at a time from a buffered
/// reader.
pub fn read_line(from: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        if line.len() > MAX_LINE {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
        }
        match from.read(&mut b)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            _ => line.push(b[0]),
        }
    }
    Ok(line)
}

/// The size on a chunk-size line (hex digits, an optional extension, CRLF; nothing lenient).
pub fn chunk_size(line: &[u8]) -> io::Result<u64> {
    let invalid = || io::Error::new(io::ErrorKind::InvalidData, "bad chunk size");
    check_bytes(line).map_err(|_| invalid())?;
    if !line.first().is_some_and(u8::is_ascii_hexdigit) {
        return Err(invalid());
    }
    match httparse::parse_chunk_size(line) {
        Ok(httparse::Status::Complete((n, size))) if n == line.len() => Ok(size),
        _ => Err(invalid()),
    }
}

/// Copy one chunked body from `from` to `to` as it came (sizes, extensions, trailers), checking
/// every line; `each` sees the payload bytes.
pub fn copy_chunked(
    from: &mut impl Read,
    to: &mut impl Write,
    each: &mut dyn FnMut(&[u8]),
) -> io::Result<()> {
    loop {
        let line = read_line(from)?;
        let size = chunk_size(&line)?;
        to.write_all(&line)?;
        if size == 0 {
            return copy_trailers(from, to);
        }
        copy_exact(from, to, size, each)?;
        let end = read_line(from)?;
        if end != b"\r\n" {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "chunk not followed by CRLF",
            ));
        }
        to.write_all(&end)?;
    }
}

/// Trailer lines through the empty one, each checked like a head's.
pub fn copy_trailers(from: &mut impl Read, to: &mut impl Write) -> io::Result<()> {
    for _ in 0..=MAX_HEADERS {
        let t = read_line(from)?;
        check_bytes(&t).map_err(|(_, w)| io::Error::new(io::ErrorKind::InvalidData, w))?;
        to.write_all(&t)?;
        if t == b"\r\n" {
            return Ok(());
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "too many trailers",
    ))
}

/// Copy exactly `n` bytes; `each` sees them.
pub fn copy_exact(
    from: &mut impl Read,
    to: &mut impl Write,
    mut n: u64,
    each: &mut dyn FnMut(&[u8]),
) -> io::Result<()> {
    let mut buf = Zeroizing::new(vec![0u8; 16 * 1024]);
    while n > 0 {
        let want = buf.len().min(n as usize);
        let got = from.read(&mut buf[..want])?;
        if got == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        each(&buf[..got]);
        to.write_all(&buf[..got])?;
        n -= got as u64;
    }
    Ok(())
}

/// Copy a request body of `framing` (nothing for `None`).
pub fn copy_body(
    framing: Framing,
    from: &mut impl Read,
    to: &mut impl Write,
    each: &mut dyn FnMut(&[u8]),
) -> io::Result<()> {
    match framing {
        Framing::None => Ok(()),
        Framing::Length(n) => copy_exact(from, to, n, each),
        Framing::Chunked => copy_chunked(from, to, each),
        Framing::Close => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a request body cannot end with the connection",
        )),
    }
}

/// Whether a header of this request is hop-by-hop (RFC 9110 7.6.1), so a proxy does not forward
/// it: `Connection`, the headers it names (but the body's `Content-Length` or
/// `Transfer-Encoding`), `Keep-Alive`, `TE`, `Upgrade`, and every `Proxy-*`.
pub fn hop_by_hop<N: AsRef<str>, V: AsRef<str>>(headers: &[(N, V)]) -> impl Fn(&str) -> bool {
    let named: Vec<String> = headers
        .iter()
        .filter(|(n, _)| n.as_ref().eq_ignore_ascii_case("connection"))
        .flat_map(|(_, v)| v.as_ref().split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        // The body goes on as it came, so the headers that frame it go with it: dropped, the
        // next hop would read the body as another request.
        .filter(|t| t != "content-length" && t != "transfer-encoding")
        .collect();
    move |name: &str| {
        let lower = name.to_ascii_lowercase();
        lower.starts_with("proxy-")
            || matches!(
                lower.as_str(),
                "connection" | "keep-alive" | "te" | "upgrade"
            )
            || named.contains(&lower)
    }
}

impl Head {
    pub fn get(&self, name: &str) -> Option<&str> {
        all(&self.headers, name).first().copied()
    }

    /// Every value of `name`.
    pub fn get_all(&self, name: &str) -> Vec<&str> {
        all(&self.headers, name)
    }

    pub fn remove(&mut self, name: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// Set `name` to `value`, replacing every header of that name.
    pub fn set(&mut self, name: &str, value: &str) {
        self.remove(name);
        self.headers.push((name.to_string(), value.to_string()));
    }

    pub fn version(&self) -> &'static str {
        match self.minor {
            0 => "HTTP/1.0",
            _ => "HTTP/1.1",
        }
    }

    /// The head as sent on: hop-by-hop and `Proxy-*` headers dropped, `Connection: close` (one
    /// request per connection). Wiped when dropped.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let hop = hop_by_hop(&self.headers);
        let mut out = Zeroizing::new(Vec::with_capacity(1024));
        let mut put = |s: &str| crate::secrets::extend_zeroizing(&mut out, s.as_bytes());
        put(&self.method);
        put(" ");
        put(&self.target);
        put(" ");
        put(self.version());
        put("\r\n");
        for (name, value) in &self.headers {
            if hop(name) {
                continue;
            }
            put(name);
            put(": ");
            put(value);
            put("\r\n");
        }
        put("Connection: close\r\n\r\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &str) -> Result<Head, Bad> {
        parse_request(s.as_bytes())
    }

    #[test]
    fn smuggling_shapes_are_refused_with_400() {
        for bad in [
            "GET / HTTP/1.1\r\nHost: a\r\nX-Api-Key: k\nGET /?key=k HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\nHost: a\n\n",
            "GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\0\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\x01\r\n\r\n",
            "GET /\u{e9} HTTP/1.1\r\nHost: a\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        ] {
            let e = req(bad).map(|_| ()).unwrap_err();
            assert!(e.0 == 400 || e.0 == 501, "{bad:?}: {e:?}");
            // No value from the message in the reason.
            assert!(!e.1.contains("key=k") && !e.1.contains("folded"), "{e:?}");
        }
        assert_eq!(
            req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
                .unwrap_err()
                .0,
            501
        );
    }

    #[test]
    fn well_formed_heads_parse_and_frame() {
        let h = req(
            "POST /v1/x?a=b HTTP/1.1\r\nHost: a.example\r\nContent-Length: 12\r\nX: a\tb\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            (h.method.as_str(), h.target.as_str(), h.minor),
            ("POST", "/v1/x?a=b", 1)
        );
        assert_eq!(request_framing(&h).unwrap(), Framing::Length(12));
        assert_eq!(h.get("x"), Some("a\tb"));
        let c = req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n").unwrap();
        assert_eq!(request_framing(&c).unwrap(), Framing::Chunked);
        let g = req("GET / HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!((g.minor, request_framing(&g).unwrap()), (0, Framing::None));
        let many = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            "X: y\r\n".repeat(MAX_HEADERS + 1)
        );
        assert_eq!(req(&many).unwrap_err().0, 431);
    }

    #[test]
    fn responses_and_chunks() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        assert_eq!(response_framing("GET", &r).unwrap(), Framing::Chunked);
        assert_eq!(response_framing("HEAD", &r).unwrap(), Framing::None);
        let close = parse_response(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
        assert_eq!(response_framing("GET", &close).unwrap(), Framing::Close);
        let nc = parse_response(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n").unwrap();
        assert_eq!(response_framing("GET", &nc).unwrap(), Framing::None);
        assert!(parse_response(b"HTTP/1.1 200 OK\nX: y\r\n\r\n").is_err());
        assert_eq!(chunk_size(b"1a\r\n").unwrap(), 26);
        assert_eq!(chunk_size(b"5;ext=1\r\n").unwrap(), 5);
        for bad in [&b"+5\r\n"[..], b"0x5\r\n", b"5\n", b"\r\n", b"5 5\r\n"] {
            assert!(chunk_size(bad).is_err(), "{bad:?}");
        }
        let mut out = Vec::new();
        let mut seen = Vec::new();
        copy_chunked(
            &mut &b"3\r\nabc\r\n2;x\r\nde\r\n0\r\nT: 1\r\n\r\nEXTRA"[..],
            &mut out,
            &mut |b| seen.extend_from_slice(b),
        )
        .unwrap();
        assert_eq!(seen, b"abcde");
        assert_eq!(out, b"3\r\nabc\r\n2;x\r\nde\r\n0\r\nT: 1\r\n\r\n");
        assert!(copy_chunked(
            &mut &b"3\r\nabcX\r\n0\r\n\r\n"[..],
            &mut Vec::new(),
            &mut |_| {}
        )
        .is_err());
    }
}
