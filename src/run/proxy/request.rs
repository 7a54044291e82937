//! The HTTP side of the proxy: one forward request, parsing a request head, absolute-form targets and `host:port`
//! authorities, and the origin-form head sent upstream.

use super::*;

pub(super) struct Request<'a> {
    pub(super) method: &'a str,
    pub(super) target: &'a str,
    pub(super) version: &'a str,
    pub(super) headers: Vec<(&'a str, &'a str)>,
}

pub(super) fn parse_request(head: &[u8]) -> Result<Request<'_>, Denial> {
    let head =
        std::str::from_utf8(head).map_err(|_| Denial::bad_request("request head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Denial::bad_request(format!("bad request line {line:?}")));
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || target.is_empty() {
        return Err(Denial::bad_request(format!("bad request line {line:?}")));
    }
    let mut headers = Vec::new();
    for l in lines.filter(|l| !l.is_empty()) {
        let (name, value) = l
            .split_once(':')
            .filter(|(n, _)| !n.is_empty() && n.bytes().all(is_token_byte))
            .ok_or_else(|| Denial::bad_request(format!("bad header line {l:?}")))?;
        headers.push((name, value.trim()));
    }
    Ok(Request {
        method,
        target,
        version,
        headers,
    })
}

pub(super) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

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

/// Whether a header of this request is hop-by-hop (RFC 9110 7.6.1), so a proxy does not forward
/// it: `Connection`, the headers it names, `Keep-Alive`, `TE`, `Upgrade`, and every `Proxy-*`.
pub(super) fn hop_by_hop<N: AsRef<str>, V: AsRef<str>>(
    headers: &[(N, V)],
) -> impl Fn(&str) -> bool {
    let named: Vec<String> = headers
        .iter()
        .filter(|(n, _)| n.as_ref().eq_ignore_ascii_case("connection"))
        .flat_map(|(_, v)| v.as_ref().split(','))
        .map(|t| t.trim().to_ascii_lowercase())
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

/// The request as the origin gets it: origin-form target, `Host` from the URL, no `Proxy-*` or
/// hop-by-hop headers, `Connection: close`.
pub(super) fn origin_head(req: &Request<'_>, authority: &str, path: &str) -> String {
    let hop = hop_by_hop(&req.headers);
    let mut out = format!(
        "{} {path} {}\r\nHost: {authority}\r\n",
        req.method, req.version
    );
    for (name, value) in &req.headers {
        if !name.eq_ignore_ascii_case("host") && !hop(name) {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    out
}

pub(super) fn http(shared: &Shared, id: u64, mut inb: Inbound<'_>) {
    let client = inb.stream;
    let end = match inb.head_len(shared.limits.max_head) {
        Ok(end) => end,
        Err(e) => {
            let (status, why) = match e.kind() {
                io::ErrorKind::OutOfMemory => (431, "request head too large (limit 64 KiB)"),
                io::ErrorKind::TimedOut => (408, "request head not received in time"),
                _ => return,
            };
            respond(client, status, why);
            return;
        }
    };
    let request = match parse_request(&inb.buf[..end]) {
        Ok(r) => r,
        Err(d) => return respond(client, d.status, &d.reason),
    };
    let leftover = &inb.buf[end..];
    if request.method == "CONNECT" {
        let (host, port) = match split_host_port(request.target, None) {
            Ok(hp) => hp,
            Err(d) => return respond(client, d.status, &d.reason),
        };
        if let Some(b) = &shared.bound {
            b.check_host(shared, Protocol::Connect, host, port);
        }
        let upstream = match open_upstream(shared, id, Protocol::Connect, host, port) {
            Ok(u) => u,
            Err(d) => return respond(client, d.status, &d.reason),
        };
        if let Some(b) = shared.bound.as_ref().filter(|b| b.intercepts(host)) {
            return bound::intercept::connect(shared, b, client, upstream, (host, port), leftover);
        }
        let _ = client.set_read_timeout(None);
        if (&*client)
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .is_ok()
            && (&upstream).write_all(leftover).is_ok()
        {
            splice(client, &upstream, false);
        }
        return;
    }
    let (authority, path) = match absolute_form(request.target) {
        Ok(x) => x,
        Err(d) => return respond(client, d.status, &d.reason),
    };
    let (host, port) = match split_host_port(authority, Some(80)) {
        Ok(hp) => hp,
        Err(d) => return respond(client, d.status, &d.reason),
    };
    if let Some(b) = &shared.bound {
        b.check_host(shared, Protocol::Http, host, port);
    }
    let upstream = match open_upstream(shared, id, Protocol::Http, host, port) {
        Ok(u) => u,
        Err(d) => return respond(client, d.status, &d.reason),
    };
    let head = origin_head(&request, authority, &path);
    let _ = client.set_read_timeout(None);
    if (&upstream).write_all(head.as_bytes()).is_err() {
        return;
    }
    match &shared.bound {
        Some(b) => b.forward_plain(shared, client, &upstream, (host, port), &inb.buf),
        None => {
            if (&upstream).write_all(leftover).is_ok() {
                splice(client, &upstream, true);
            }
        }
    }
}

fn respond(client: &TcpStream, status: u16, reason: &str) {
    let phrase = match status {
        400 => "Bad Request",
        403 => "Forbidden",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
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
