//! The HTTP side of the proxy: one forward request (parsed strictly by [`super::http`]),
//! absolute-form targets and `host:port` authorities, the origin-form head sent upstream, the
//! request's body copied exactly as framed, then the response relayed. One request per client
//! connection: nothing the client sends after its body reaches the origin.

use super::http::{self, Framing, Head};
use super::*;

/// `http://authority/path?query` → (authority, "/path?query"); the fragment is dropped.
pub(super) fn absolute_form(target: &str) -> Result<(&str, String), Denial> {
    let lower = target.get(..8).unwrap_or(target).to_ascii_lowercase();
    let rest = if lower.starts_with("http://") {
        &target[7..]
    } else if lower.starts_with("https://") {
        return Err(Denial::bad_request(
            "https:// needs CONNECT through this proxy (set HTTPS_PROXY, not a https:// URL to the proxy)",
        ));
    } else if target.starts_with('/') {
        return Err(Denial::bad_request(
            "this is a forward proxy: send absolute-form requests (http://host/path), e.g. by setting HTTP_PROXY",
        ));
    } else {
        return Err(Denial::bad_request(format!(
            "unsupported request target {target:?}: only http:// URLs and CONNECT"
        )));
    };
    let rest = rest.split('#').next().unwrap_or("");
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    if authority.contains('@') {
        return Err(Denial::bad_request(
            "credentials in the URL (user@host) are not supported",
        ));
    }
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    Ok((authority, path))
}

/// `host:port`, `[v6]:port`, or (with a default port) `host`, `[v6]`.
pub(super) fn split_host_port(
    authority: &str,
    default: Option<u16>,
) -> Result<(&str, u16), Denial> {
    let bad = || {
        Denial::bad_request(format!(
            "bad host:port {authority:?}; write host:port or [IPv6]:port"
        ))
    };
    let (host, port) = if authority.starts_with('[') {
        match authority.split_once("]:") {
            Some((h, p)) => (h, Some(p)),
            None if authority.ends_with(']') => (authority, None),
            None => return Err(bad()),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => return Err(bad()),
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let host = if host.starts_with('[') && !host.ends_with(']') {
        &authority[..host.len() + 1] // keep the closing bracket
    } else {
        host
    };
    let port = match port {
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            p.parse::<u16>().ok().filter(|&n| n > 0).ok_or_else(bad)?
        }
        Some(_) => return Err(bad()),
        None => default.ok_or_else(bad)?,
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host, port))
}

/// The request as the origin gets it: origin-form target, `Host` from the URL, no `Proxy-*` or
/// hop-by-hop headers, `Connection: close`.
pub(super) fn origin_head(req: &Head, authority: &str, path: &str) -> Vec<u8> {
    let hop = http::hop_by_hop(&req.headers);
    let mut out = format!(
        "{} {path} {}\r\nHost: {authority}\r\n",
        req.method,
        req.version()
    );
    for (name, value) in &req.headers {
        if !name.eq_ignore_ascii_case("host") && !hop(name) {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    out.into_bytes()
}

/// The bytes a client sent after its head, then its socket (each read within the idle timeout).
pub(super) struct Body<'a> {
    pub(super) rest: &'a [u8],
    pub(super) stream: &'a TcpStream,
}

impl Read for Body<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if !self.rest.is_empty() {
            let n = out.len().min(self.rest.len());
            out[..n].copy_from_slice(&self.rest[..n]);
            self.rest = &self.rest[n..];
            return Ok(n);
        }
        (&*self.stream).read(out)
    }
}

pub(super) fn http(shared: &Shared, id: u64, mut inb: Inbound<'_>) {
    let client = inb.stream;
    // A refusal before any destination is checked: answered, and audited with its status (the
    // audit's reason names no data of the request).
    let refuse = |to: Option<(&str, u16)>, status: u16, why: &str, audited: &str| {
        shared.refused(Protocol::Http, to, status, audited);
        respond(client, status, why);
    };
    let end = match inb.head_len(shared.limits.max_head) {
        Ok(end) => end,
        Err(e) => match head_refusal(&e, shared.limits.max_head) {
            Some((status, why)) => return refuse(None, status, &why, &why),
            None => return,
        },
    };
    let request = match http::parse_request(&inb.buf[..end]) {
        Ok(r) => r,
        Err((status, why)) => return refuse(None, status, &why, &why),
    };
    let leftover = &inb.buf[end..];
    if request.method == "CONNECT" {
        return connect(shared, id, client, &request, leftover);
    }
    let (authority, path) = match absolute_form(&request.target) {
        Ok(x) => x,
        Err(d) => {
            let audited = "the request target is not an http:// URL (absolute-form)";
            return refuse(None, d.status, &d.reason, audited);
        }
    };
    let (host, port) = match split_host_port(authority, Some(80)) {
        Ok(hp) => hp,
        Err(d) => {
            return refuse(
                None,
                d.status,
                &d.reason,
                "a bad host:port in the request target",
            )
        }
    };
    if super::ops::addressed(host, port) {
        // A platform operation: answered by the gate, nothing opened upstream.
        let mut body = Body {
            rest: leftover,
            stream: client,
        };
        return super::ops::call(shared, client, (&request, &path), &mut body, respond);
    }
    let framing = match http::request_framing(&request) {
        Ok(f) => f,
        Err((status, why)) => return refuse(Some((host, port)), status, &why, &why),
    };
    if let Some(b) = &shared.bound {
        b.check_host(shared, Protocol::Http, host, port);
    }
    let upstream = match open_upstream(shared, id, Protocol::Http, host, port) {
        Ok(u) => u,
        Err(d) => return respond(client, d.status, &d.reason),
    };
    let head = origin_head(&request, authority, &path);
    if (&upstream).write_all(&head).is_err() {
        return;
    }
    body_then_response(
        shared,
        client,
        &upstream,
        (host, port),
        &inb.buf[..end],
        framing,
        leftover,
    );
    let _ = client.shutdown(Shutdown::Both);
    let _ = upstream.shutdown(Shutdown::Both);
}

/// The status and answer for a request head that could not be read: too large (431) or not
/// received in time (408); `None`: the client is gone, nothing to answer.
fn head_refusal(e: &io::Error, max_head: usize) -> Option<(u16, String)> {
    match e.kind() {
        io::ErrorKind::OutOfMemory => Some((
            431,
            format!("request head too large (limit {} KiB)", max_head / 1024),
        )),
        io::ErrorKind::TimedOut => Some((408, "request head not received in time".to_string())),
        _ => None,
    }
}

/// The request's body as framed (the origin-form head sent already), seen with the client's own
/// `head` by the bound secrets' watch (placeholders in plain text are reported, never replaced);
/// then only the response flows.
fn body_then_response(
    shared: &Shared,
    client: &TcpStream,
    upstream: &TcpStream,
    (host, port): (&str, u16),
    head: &[u8],
    framing: Framing,
    leftover: &[u8],
) {
    let _ = client.set_read_timeout(Some(shared.limits.idle_timeout));
    let mut body = Body {
        rest: leftover,
        stream: client,
    };
    let sent = match &shared.bound {
        Some(b) => b.forward_plain(shared, (host, port), head, framing, &mut body, upstream),
        None => http::copy_body(framing, &mut body, &mut &*upstream, &mut |_| {}).is_ok(),
    };
    if sent {
        relay_response(upstream, client, shared.limits.idle_timeout);
    }
}

/// `CONNECT host:port`: checked, connected, then a tunnel (or, to a bound host, interception).
fn connect(shared: &Shared, id: u64, client: &TcpStream, request: &Head, leftover: &[u8]) {
    let refuse = |status: u16, why: &str, audited: &str| {
        shared.refused(Protocol::Connect, None, status, audited);
        respond(client, status, why);
    };
    if http::request_framing(request) != Ok(Framing::None) {
        return refuse(400, "CONNECT takes no body", "CONNECT takes no body");
    }
    let (host, port) = match split_host_port(&request.target, None) {
        Ok(hp) => hp,
        Err(d) => return refuse(d.status, &d.reason, "a bad host:port in CONNECT"),
    };
    if let Some(b) = &shared.bound {
        b.check_host(shared, Protocol::Connect, host, port);
    }
    let upstream = match open_upstream(shared, id, Protocol::Connect, host, port) {
        Ok(u) => u,
        Err(d) => return respond(client, d.status, &d.reason),
    };
    if let Some(b) = shared.bound.as_ref().filter(|b| b.intercepts(host, port)) {
        return bound::intercept::connect(shared, b, client, upstream, (host, port), leftover);
    }
    let _ = client.set_read_timeout(None);
    if (&*client)
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .is_ok()
        && (&upstream).write_all(leftover).is_ok()
    {
        splice(client, &upstream, false, shared.limits.idle_timeout);
    }
}

/// The origin's response to the client until the origin closes (it was asked to), each read
/// within `idle`.
fn relay_response(upstream: &TcpStream, client: &TcpStream, idle: Duration) {
    let _ = upstream.set_read_timeout(Some(idle));
    let mut buf = vec![0u8; SPLICE_BUF];
    loop {
        match (&*upstream).read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if (&*client).write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

pub(super) fn respond(client: &TcpStream, status: u16, reason: &str) {
    let phrase = match status {
        400 => "Bad Request",
        403 => "Forbidden",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    };
    let body = format!("sbx-exec egress proxy: {reason}\n");
    let msg = format!(
        "HTTP/1.1 {status} {phrase}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = (&*client).write_all(msg.as_bytes());
    let _ = client.shutdown(Shutdown::Write);
}
