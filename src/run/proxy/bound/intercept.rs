//! One intercepted `CONNECT` to a bound host: TLS from the client (per-call CA), one HTTP/1.1
//! request read, its placeholders swapped for the real values, TLS to the real host (verified),
//! the request forwarded, the response relayed, the connection closed.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, ServerConnection, StreamOwned};

use super::rewrite::{self, Head, Scanner};
use super::{exfiltration, normalize, Interceptor};
use crate::run::proxy::{Event, Protocol, Shared, Verdict};

/// Most bytes of a body buffered to hash it for SigV4 (only when the client sent no hash).
const MAX_HASHED_BODY: u64 = 16 << 20;

type Client<'a> = StreamOwned<ServerConnection, &'a TcpStream>;
type Upstream = StreamOwned<ClientConnection, TcpStream>;

/// A failure to answer the client with: status and reason.
type Refusal = (u16, String);

/// Serve one intercepted connection. `leftover`: bytes the client sent after the CONNECT head.
pub(in crate::run::proxy) fn connect(
    shared: &Shared,
    ic: &Interceptor,
    client: &TcpStream,
    upstream: TcpStream,
    authority: (&str, u16),
    leftover: &[u8],
) {
    let (host, port) = (normalize(authority.0), authority.1);
    let failed = |reason: String| Event {
        verdict: Verdict::Failed,
        protocol: Protocol::Connect,
        host: host.clone(),
        port,
        addr: None,
        reason,
        secret: None,
    };
    let _ = client.set_read_timeout(Some(shared.limits.head_timeout));
    if (&*client)
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .is_err()
    {
        return;
    }
    let conn = match ic.ca.server_config(&host).map(ServerConnection::new) {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return shared.emit(failed(format!("TLS: {e}"))),
        Err(e) => return shared.emit(failed(e)),
    };
    let mut tls = StreamOwned::new(conn, client);
    if !leftover.is_empty() {
        let _ = tls.conn.read_tls(&mut &leftover[..]);
        if tls.conn.process_new_packets().is_err() {
            return;
        }
    }
    let (head, rest) = match read_head(&mut tls, shared.limits.max_head) {
        Ok(x) => x,
        Err(e) => {
            let why = format!("the client's TLS or request head failed ({e}); does it trust the per-call CA (SSL_CERT_FILE)?");
            return shared.emit(failed(why));
        }
    };
    if let Err((status, reason)) =
        forward(shared, ic, &mut tls, upstream, (&host, port), &head, rest)
    {
        shared.emit(failed(reason.clone()));
        let body = format!("sbx-exec egress proxy: {reason}\n");
        let msg = format!(
            "HTTP/1.1 {status} Error\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = tls.write_all(msg.as_bytes());
    }
    tls.conn.send_close_notify();
    let _ = tls.flush();
    let _ = client.shutdown(Shutdown::Both);
}

/// The request head (through the blank line) and the bytes read after it.
fn read_head(r: &mut impl Read, max: usize) -> io::Result<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(p + 4);
            return Ok((buf, rest));
        }
        if buf.len() > max {
            return Err(io::ErrorKind::OutOfMemory.into());
        }
        match r.read(&mut chunk)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// How the request body is framed.
enum Body {
    None,
    Length(u64),
    Chunked,
}

fn framing(head: &Head) -> Result<Body, Refusal> {
    let te = head.get("transfer-encoding");
    let cl = head.get("content-length");
    match (te, cl) {
        (Some(_), Some(_)) => Err((400, "both Transfer-Encoding and Content-Length".into())),
        (Some(t), None) if t.eq_ignore_ascii_case("chunked") => Ok(Body::Chunked),
        (Some(t), None) => Err((501, format!("Transfer-Encoding {t:?} is not supported"))),
        (None, Some(n)) => n
            .parse()
            .map(Body::Length)
            .map_err(|_| (400, "bad Content-Length".to_string())),
        (None, None) => Ok(Body::None),
    }
}

fn forward(
    shared: &Shared,
    ic: &Interceptor,
    tls: &mut Client<'_>,
    upstream: TcpStream,
    (host, port): (&str, u16),
    head_bytes: &[u8],
    rest: Vec<u8>,
) -> Result<(), Refusal> {
    let mut head = checked_head(head_bytes, host)?;
    let mut scan = Scanner::new(rewrite::foreign(&ic.bound, host));
    let on_found = |names: Vec<&str>, how: &str| {
        for name in names {
            shared.emit(exfiltration(Protocol::Connect, host, port, name, how));
        }
    };
    on_found(scan.feed(head_bytes), "in the request head");
    if head
        .get("expect")
        .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
    {
        head.remove("expect");
        tls.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .map_err(|e| (400, e.to_string()))?;
    }
    let body = framing(&head)?;
    let mut input = Prefixed {
        rest,
        pos: 0,
        inner: tls,
    };
    let buffered = match rewrite::needs_body_hash(&head, host, &ic.bound) {
        true => Some(body_to_hash(&body, &mut input)?),
        false => None,
    };
    let hash = buffered.as_deref().map(super::sigv4::sha256_hex);
    let used = rewrite::apply(&mut head, host, &ic.bound, hash.as_deref()).map_err(|e| (501, e))?;
    let mut up = open_tls(ic, host, upstream)?;
    let sent = up.write_all(&head.to_bytes());
    drop(head);
    sent.map_err(|e| (502, format!("sending to {host}: {e}")))?;
    for name in used {
        shared.emit(Event {
            verdict: Verdict::SecretAdded,
            protocol: Protocol::Connect,
            host: host.to_string(),
            port,
            addr: None,
            reason: format!("the bound secret {name} was added for {host}"),
            secret: Some(name),
        });
    }
    let mut found = |names: Vec<&str>| on_found(names, "in the request body");
    match (buffered, body) {
        (Some(b), _) => {
            found(scan.feed(&b));
            up.write_all(&b).map_err(|e| (502, e.to_string()))?;
        }
        (None, Body::None) => {}
        (None, Body::Length(n)) => copy_n(&mut input, &mut up, n, &mut scan, &mut found)?,
        (None, Body::Chunked) => copy_chunked(&mut input, &mut up, &mut scan, &mut found)?,
    }
    up.flush().map_err(|e| (502, e.to_string()))?;
    relay(&mut up, input.inner);
    Ok(())
}

/// The request head, parsed: origin-form, and its `Host` naming the host connected to.
fn checked_head(head_bytes: &[u8], host: &str) -> Result<Head, Refusal> {
    let head = Head::parse(head_bytes).map_err(|e| (400, e))?;
    if !head.target.starts_with('/') {
        return Err((400, "expected an origin-form request (GET /path)".into()));
    }
    let named = head
        .get("host")
        .map(|h| h.rsplit_once(':').map_or(h, |(n, _)| n));
    if named.map(normalize).as_deref() != Some(host) {
        return Err((421, format!("the Host header does not name {host}")));
    }
    Ok(head)
}

/// The whole body, read to hash it for SigV4 (only a Content-Length body, up to 16 MiB).
fn body_to_hash(body: &Body, input: &mut impl Read) -> Result<Vec<u8>, Refusal> {
    let Body::Length(n) = *body else {
        let why = "re-signing needs x-amz-content-sha256 or a Content-Length body";
        return Err((411, why.into()));
    };
    if n > MAX_HASHED_BODY {
        let why = "body too large to hash for re-signing; send x-amz-content-sha256";
        return Err((413, why.into()));
    }
    let mut b = vec![0u8; n as usize];
    input
        .read_exact(&mut b)
        .map_err(|e| (400, format!("reading the body: {e}")))?;
    Ok(b)
}

/// TLS to the real host, its certificate verified for `host` against the proxy's roots.
fn open_tls(ic: &Interceptor, host: &str, sock: TcpStream) -> Result<Upstream, Refusal> {
    let name = ServerName::try_from(host.to_string()).map_err(|e| (400, format!("{host}: {e}")))?;
    let config = ic.upstream().map_err(|e| (502, e))?;
    let conn = ClientConnection::new(config, name).map_err(|e| (502, e.to_string()))?;
    let mut up = StreamOwned::new(conn, sock);
    while up.conn.is_handshaking() {
        up.conn
            .complete_io(&mut up.sock)
            .map_err(|e| (502, format!("TLS to {host} failed, request not sent: {e}")))?;
    }
    Ok(up)
}

/// The response, byte for byte, until the upstream closes (`Connection: close` was asked).
fn relay(up: &mut Upstream, client: &mut Client<'_>) {
    let _ = up.sock.set_read_timeout(None);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match up.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if client.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = up.sock.shutdown(Shutdown::Both);
}

/// The bytes read past the head, then the stream.
struct Prefixed<'a, 'b> {
    rest: Vec<u8>,
    pos: usize,
    inner: &'a mut Client<'b>,
}

impl Read for Prefixed<'_, '_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos < self.rest.len() {
            let n = out.len().min(self.rest.len() - self.pos);
            out[..n].copy_from_slice(&self.rest[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        self.inner.read(out)
    }
}

fn copy_n<'s>(
    from: &mut impl Read,
    to: &mut impl Write,
    mut n: u64,
    scan: &mut Scanner<'s>,
    found: &mut impl FnMut(Vec<&'s str>),
) -> Result<(), Refusal> {
    let mut buf = vec![0u8; 16 * 1024];
    while n > 0 {
        let want = buf.len().min(n as usize);
        let got = from
            .read(&mut buf[..want])
            .map_err(|e| (400, e.to_string()))?;
        if got == 0 {
            return Err((400, "the request body ended early".into()));
        }
        found(scan.feed(&buf[..got]));
        to.write_all(&buf[..got])
            .map_err(|e| (502, e.to_string()))?;
        n -= got as u64;
    }
    Ok(())
}

/// A chunked body, forwarded as it came (sizes, extensions, trailers), parsed only to find its end.
fn copy_chunked<'s>(
    from: &mut impl Read,
    to: &mut impl Write,
    scan: &mut Scanner<'s>,
    found: &mut impl FnMut(Vec<&'s str>),
) -> Result<(), Refusal> {
    loop {
        let line = read_line(from)?;
        to.write_all(&line).map_err(|e| (502, e.to_string()))?;
        let text = String::from_utf8_lossy(&line);
        let size = text.trim_end().split(';').next().unwrap_or("").trim();
        let size =
            u64::from_str_radix(size, 16).map_err(|_| (400, "bad chunk size".to_string()))?;
        if size == 0 {
            // Trailers, then the empty line.
            loop {
                let t = read_line(from)?;
                to.write_all(&t).map_err(|e| (502, e.to_string()))?;
                if t == b"\r\n" || t == b"\n" {
                    return Ok(());
                }
            }
        }
        copy_n(from, to, size, scan, found)?;
        let end = read_line(from)?;
        to.write_all(&end).map_err(|e| (502, e.to_string()))?;
    }
}

/// One line, through its `\n` (at most 8 KiB), read a byte at a time (the reader is buffered).
fn read_line(from: &mut impl Read) -> Result<Vec<u8>, Refusal> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while line.last() != Some(&b'\n') {
        if line.len() > 8192 {
            return Err((400, "chunk line too long".into()));
        }
        match from.read(&mut b) {
            Ok(1) => line.push(b[0]),
            Ok(_) => return Err((400, "the request body ended early".into())),
            Err(e) => return Err((400, e.to_string())),
        }
    }
    Ok(line)
}
