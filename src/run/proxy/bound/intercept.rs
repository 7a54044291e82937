//! One intercepted `CONNECT` to a bound host: TLS from the client (per-call CA; the name it asks
//! for in SNI must be the host it connected to), one HTTP/1.1 request read and parsed strictly
//! (its `Host` the same host and port), its placeholders swapped for the real values in their
//! slots only, TLS to the real host (verified), the request forwarded with `Accept-Encoding:
//! identity`, the response relayed with every form of every real value replaced by its
//! placeholder's ([`super::scrub`]), the connection closed. One request per connection: nothing
//! the client sends after its body reaches the host. The TLS handshake and the request head
//! together get `limits.head_timeout` (a deadline, however the client trickles them; 408 once
//! TLS is up), the body and the response `limits.idle_timeout` per read.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Instant;

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, ServerConnection, StreamOwned};
use zeroize::Zeroizing;

use super::rewrite::{self, Scanner};
use super::{exfiltration, normalize, Interceptor};
use crate::run::proxy::http::{self, Bad, Framing, Head};
use crate::run::proxy::{Event, Protocol, Shared, Verdict};

/// Most bytes of a body buffered to hash it or read its operation for SigV4.
const MAX_HASHED_BODY: u64 = 16 << 20;

use super::relay::{relay, Client, Clocked, Upstream};

/// Serve one intercepted connection. `leftover`: bytes the client sent after the CONNECT head.
pub(in crate::run::proxy) fn connect(
    shared: &Shared,
    ic: &Interceptor,
    client: &TcpStream,
    upstream: TcpStream,
    authority: (&str, u16),
    leftover: &[u8],
) {
    if (&*client)
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .is_err()
    {
        return;
    }
    intercepted(shared, ic, client, upstream, authority, leftover)
}

/// Serve one captured connection to a bound host (its server name, checked to lead to the
/// address it was made to): as after a `CONNECT`, with nothing answered before TLS, `hello`
/// being the ClientHello already read. Its audit lines say `connect`, as an intercepted
/// `CONNECT`'s do.
pub(in crate::run::proxy) fn captured(
    shared: &Shared,
    ic: &Interceptor,
    client: &TcpStream,
    upstream: TcpStream,
    authority: (&str, u16),
    hello: &[u8],
) {
    intercepted(shared, ic, client, upstream, authority, hello)
}

fn intercepted(
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
        status: None,
        op: None,
    };
    // The handshake and the head, however trickled, within head_timeout from here.
    let sock = Clocked {
        sock: client,
        deadline: Some(Instant::now() + shared.limits.head_timeout),
    };
    let conn = match ic.ca.server_config(&host).map(ServerConnection::new) {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return shared.emit(failed(format!("TLS: {e}"))),
        Err(e) => return shared.emit(failed(e)),
    };
    let mut tls = StreamOwned::new(conn, sock);
    if !leftover.is_empty() {
        let _ = tls.conn.read_tls(&mut &leftover[..]);
        if tls.conn.process_new_packets().is_err() {
            return;
        }
    }
    let head = read_head(&mut tls, shared.limits.max_head);
    // The name the client's TLS asked for must be the host it connected to: one connection,
    // one host.
    let result = match (head, tls.conn.server_name()) {
        // TLS is up: the client is told, as a plain request's would be.
        (Err(e), _) if e.kind() == io::ErrorKind::TimedOut && !tls.conn.is_handshaking() => Err((
            408,
            "request head not received in time (limits.head_timeout)".to_string(),
        )),
        (Err(e), _) if e.kind() == io::ErrorKind::OutOfMemory => Err((
            431,
            format!(
                "request head too large (limit {} KiB)",
                shared.limits.max_head / 1024
            ),
        )),
        (Err(e), _) if e.kind() == io::ErrorKind::TimedOut => {
            let why = "the client's TLS handshake was not done within limits.head_timeout";
            return shared.emit(failed(why.to_string()));
        }
        (Err(e), _) => {
            let why = format!("the client's TLS or request head failed ({e}); does it trust the per-call CA (SSL_CERT_FILE)?");
            return shared.emit(failed(why));
        }
        (Ok(_), sni) if sni.map(normalize).as_deref() != Some(host.as_str()) => Err((
            421,
            format!("the TLS name (SNI) is not {host}, the host this connection was opened to"),
        )),
        (Ok((head, rest)), _) => {
            forward(shared, ic, &mut tls, upstream, (&host, port), &head, rest)
        }
    };
    if let Err((status, reason)) = result {
        let ev = failed(reason.clone());
        answer_error(shared, &mut tls, ev, status, &reason);
    }
    tls.conn.send_close_notify();
    let _ = tls.flush();
    let _ = client.shutdown(Shutdown::Both);
}

/// Every answer but a success reaches the audit hook (`ev`, a failure) with its status: a refusal
/// (a request the gate will not pass: malformed, smuggled, a placeholder out of its slot, another
/// host, a credential issuer, a streaming payload) as one, a host's failure (502) as a failure;
/// then the client is answered. 499: the client is gone, nothing is answered.
fn answer_error(shared: &Shared, tls: &mut Client<'_>, mut ev: Event, status: u16, reason: &str) {
    if status != 499 {
        ev.status = Some(status);
    }
    if (400..500).contains(&status) && status != 499 || status == 501 {
        ev.verdict = Verdict::Refused;
    }
    shared.emit(ev);
    let body = format!("sbx-exec egress proxy: {reason}\n");
    let msg = format!(
        "HTTP/1.1 {status} Error\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tls.write_all(msg.as_bytes());
}

/// The request head (through the blank line) and the bytes read after it.
fn read_head(r: &mut impl Read, max: usize) -> io::Result<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = http::head_len(&buf) {
            let rest = buf.split_off(end);
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

fn forward(
    shared: &Shared,
    ic: &Interceptor,
    tls: &mut Client<'_>,
    upstream: TcpStream,
    (host, port): (&str, u16),
    head_bytes: &[u8],
    rest: Vec<u8>,
) -> Result<(), Bad> {
    let mut head = checked_head(head_bytes, host, port)?;
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
    let framing = http::request_framing(&head)?;
    tls.sock.idle(shared.limits.idle_timeout);
    let mut input = Prefixed {
        rest,
        pos: 0,
        inner: tls,
    };
    let buffered = match rewrite::needs_body(&head, host, port, &ic.bound) {
        true => Some(whole_body(framing, &mut input)?),
        false => None,
    };
    let applied = rewrite::apply(
        &mut head,
        host,
        port,
        &ic.bound,
        buffered.as_deref().map(|b| &b[..]),
    )?;
    // Nothing compressed may come back: a compressed echo would hide the value from scrubbing.
    head.set("Accept-Encoding", "identity");
    let mut up = open_tls(ic, host, upstream)?;
    let _ = up.sock.set_read_timeout(Some(shared.limits.idle_timeout));
    let sent = up.write_all(&head.to_bytes());
    sent.map_err(|e| (502, format!("sending to {host}: {e}")))?;
    report_applied(shared, (host, port), applied);
    let mut found = |data: &[u8]| on_found(scan.feed(data), "in the request body");
    match buffered {
        Some(b) => {
            found(&b);
            up.write_all(&b).map_err(|e| (502, e.to_string()))?;
        }
        None => http::copy_body(framing, &mut input, &mut up, &mut found)
            .map_err(|e| (400, format!("the request body: {e}")))?,
    }
    up.flush().map_err(|e| (502, e.to_string()))?;
    let needles = ic.needles();
    relay(&mut up, input.inner, needles, &head.method)
}

/// An audit line for each bound secret added to the request for `host:port`, and for each
/// withheld (its placeholder sent as is), with why.
fn report_applied(shared: &Shared, (host, port): (&str, u16), applied: rewrite::Applied) {
    let secret = |verdict, name: String, reason| Event {
        verdict,
        protocol: Protocol::Connect,
        host: host.to_string(),
        port,
        addr: None,
        reason,
        secret: Some(name),
        status: None,
        op: None,
    };
    for name in applied.added {
        let reason = format!("the bound secret {name} was added for {host}");
        shared.emit(secret(Verdict::SecretAdded, name, reason));
    }
    for (name, why) in applied.withheld {
        let reason =
            format!("bound secret {name} not added: {why}; its placeholder was sent as is");
        shared.emit(secret(Verdict::SecretWithheld, name, reason));
    }
}

/// The request head, parsed strictly: origin-form, and exactly one `Host` naming the host (and,
/// when it names one, the port) connected to. HTTP/1.0 without `Host` is refused too.
fn checked_head(head_bytes: &[u8], host: &str, port: u16) -> Result<Head, Bad> {
    let head = http::parse_request(head_bytes)?;
    if !head.target.starts_with('/') {
        return Err((400, "expected an origin-form request (GET /path)".into()));
    }
    let hosts = head.get_all("host");
    let [named] = hosts.as_slice() else {
        return Err((
            400,
            format!("a request to {host} needs exactly one Host header"),
        ));
    };
    let (name, named_port) = match named.rsplit_once(':') {
        Some((n, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !p.is_empty() => {
            (n, p.parse::<u16>().ok())
        }
        _ => (*named, Some(443)),
    };
    if normalize(name) != host || named_port.is_some_and(|p| p != port && p != 443) {
        return Err((421, format!("the Host header does not name {host}")));
    }
    Ok(head)
}

/// The whole body, read to hash it or to find its operation (only a Content-Length body, up to
/// 16 MiB).
fn whole_body(framing: Framing, input: &mut impl Read) -> Result<Zeroizing<Vec<u8>>, Bad> {
    let n = match framing {
        Framing::None => 0,
        Framing::Length(n) => n,
        _ => {
            let why = "re-signing needs x-amz-content-sha256 or a Content-Length body";
            return Err((411, why.into()));
        }
    };
    if n > MAX_HASHED_BODY {
        let why = "body too large to hash for re-signing; send x-amz-content-sha256";
        return Err((413, why.into()));
    }
    let mut b = Zeroizing::new(vec![0u8; n as usize]);
    input
        .read_exact(&mut b)
        .map_err(|e| (400, format!("reading the body: {e}")))?;
    Ok(b)
}

/// TLS to the real host, its certificate verified for `host` against the proxy's roots.
fn open_tls(ic: &Interceptor, host: &str, sock: TcpStream) -> Result<Upstream, Bad> {
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
