//! The egress proxy of a `net = "private"` context: HTTP/1.1 forward proxy (absolute-form
//! requests and `CONNECT`) and SOCKS5 (no auth, CONNECT), on one listening socket.
//!
//! Where it runs: the sandbox's init binds `127.0.0.1:<port>` *inside* the new network namespace
//! and passes the socket out; the outer sbx-exec calls [`serve`] with it, so it accepts from
//! inside the sandbox and connects out from the container's namespace. Every destination is
//! judged by [`EgressPolicy`]: the name before it is resolved (a refused name is never looked
//! up), then every address it resolves to; the proxy connects only to an address it checked
//! (to the `SocketAddr`, never re-resolving). A refusal is `403 Forbidden` with the reason as
//! text (SOCKS: reply 0x02), an unresolvable name `502`.
//!
//! Shape: one accept thread, one thread per connection (256 KiB stack; at most
//! `Limits::max_connections`, default 256, beyond which connections are closed at once), a
//! 64 KiB request head read within 30 s, 10 s to connect; a tunnel then lives as long as both
//! sides keep it open (one thread, `poll` on both sockets). HTTP requests are sent to the origin
//! with `Connection: close`, so each client connection carries one request.
//!
//! Cost (release build, x86-64, the ignored test `measure_cost`): an idle proxy is one thread
//! (256 KiB of stack reserved) and about 0.15 MiB of RSS; 100 open tunnels, together with the
//! 100 threads of the test's origin server, added 4.3 MiB, so at most ~40 KiB per tunnel (its
//! 16 KiB buffer and touched stack). **A context with `net.allow = []` must not start the proxy
//! at all**: it gets a network namespace with only `lo`, no proxy and no proxy variables.
//!
//! Limits: no TLS inspection, so over `CONNECT` the name in the TLS handshake (SNI, and the
//! HTTP `Host` inside) is not checked against the name asked for: a CDN that serves many names
//! on one address can be reached for any of them (domain fronting). Plain HTTP gets `Host` set
//! from the request target, as RFC 9112 §3.2.2 says a proxy must. Resolution uses the system
//! resolver (`getaddrinfo`), which has no timeout of its own.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::egress::{EgressPolicy, Host};

/// Bounds on what one proxy holds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub max_head: usize,
    pub head_timeout: Duration,
    pub connect_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 256,
            max_head: 64 * 1024,
            head_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Connect,
    Socks5,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Checked and connected.
    Allowed,
    /// The policy said no (or the request was malformed); nothing was resolved or connected
    /// after that point.
    Refused,
    /// Allowed, but resolution or the connection failed.
    Failed,
}

/// One decision of the proxy, for the audit hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub verdict: Verdict,
    pub protocol: Protocol,
    pub host: String,
    pub port: u16,
    /// The address connected to (Allowed) or refused (Refused after resolution).
    pub addr: Option<SocketAddr>,
    pub reason: String,
}

/// The audit hook: called once per destination decision, from the connection's thread (so it
/// must not block for long).
pub type EventSink = Arc<dyn Fn(&Event) + Send + Sync>;

/// A running proxy. `stop` (or dropping it) closes the listener and every open connection.
pub struct ProxyHandle {
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

/// How the proxy reaches out: the system resolver and `connect`, replaced in tests so that no
/// test can send a packet anywhere but 127.0.0.1.
type Resolve = dyn Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync;
type Connect = dyn Fn(&SocketAddr, Duration) -> io::Result<TcpStream> + Send + Sync;

struct Outbound {
    resolve: Box<Resolve>,
    connect: Box<Connect>,
}

struct Shared {
    listener: TcpListener,
    policy: Arc<EgressPolicy>,
    on_event: EventSink,
    outbound: Outbound,
    limits: Limits,
    stopping: AtomicBool,
    /// Every open connection's sockets (client, then upstream), to count and to shut down.
    open: Mutex<HashMap<u64, Vec<TcpStream>>>,
    next_id: AtomicU64,
}

const THREAD_STACK: usize = 256 * 1024;
const SPLICE_BUF: usize = 16 * 1024;

/// Serve proxy clients on `listener` (already bound and listening) until the handle is
/// stopped.
pub fn serve(
    listener: TcpListener,
    policy: Arc<EgressPolicy>,
    on_event: EventSink,
) -> io::Result<ProxyHandle> {
    let outbound = Outbound {
        resolve: Box::new(|host, port| Ok((host, port).to_socket_addrs()?.collect())),
        connect: Box::new(TcpStream::connect_timeout),
    };
    serve_with(listener, policy, on_event, outbound, Limits::default())
}

fn serve_with(
    listener: TcpListener,
    policy: Arc<EgressPolicy>,
    on_event: EventSink,
    outbound: Outbound,
    limits: Limits,
) -> io::Result<ProxyHandle> {
    listener.set_nonblocking(false)?;
    let shared = Arc::new(Shared {
        listener,
        policy,
        on_event,
        outbound,
        limits,
        stopping: AtomicBool::new(false),
        open: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(0),
    });
    let s = shared.clone();
    let accept = thread::Builder::new()
        .name("sbx-proxy".into())
        .stack_size(THREAD_STACK)
        .spawn(move || accept_loop(&s))?;
    Ok(ProxyHandle {
        shared,
        accept: Some(accept),
    })
}

impl ProxyHandle {
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.shared.listener.local_addr()
    }

    /// Stop accepting, shut down every open connection, and wait for the accept thread.
    pub fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // shutdown(2) on a listening socket makes a blocked accept(2) return EINVAL.
        let _ = nix::sys::socket::shutdown(
            self.shared.listener.as_raw_fd(),
            nix::sys::socket::Shutdown::Both,
        );
        for socks in self.shared.open().values() {
            for s in socks {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        self.stop_now();
    }
}

impl Shared {
    fn open(&self) -> MutexGuard<'_, HashMap<u64, Vec<TcpStream>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn track(&self, id: u64, s: &TcpStream) {
        if let Ok(clone) = s.try_clone() {
            if let Some(v) = self.open().get_mut(&id) {
                v.push(clone);
            }
        }
        if self.stopping.load(Ordering::SeqCst) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn emit(&self, event: Event) {
        (self.on_event)(&event);
    }
}

fn accept_loop(shared: &Arc<Shared>) {
    loop {
        let accepted = shared.listener.accept();
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let client = match accepted {
            Ok((client, _)) => client,
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => return, // not listening
            Err(_) => {
                // ECONNABORTED, EMFILE, ENOBUFS...: do not spin.
                thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut open = shared.open();
            if open.len() >= shared.limits.max_connections {
                drop(open);
                shared.emit(Event {
                    verdict: Verdict::Refused,
                    protocol: Protocol::Http,
                    host: String::new(),
                    port: 0,
                    addr: None,
                    reason: format!(
                        "too many proxy connections (limit {})",
                        shared.limits.max_connections
                    ),
                });
                continue; // `client` is dropped: closed
            }
            let Ok(clone) = client.try_clone() else {
                continue;
            };
            open.insert(id, vec![clone]);
        }
        let s = shared.clone();
        let spawned = thread::Builder::new()
            .name("sbx-proxy-conn".into())
            .stack_size(THREAD_STACK)
            .spawn(move || {
                handle(&s, id, client);
                s.open().remove(&id);
            });
        if spawned.is_err() {
            shared.open().remove(&id);
        }
    }
}

/// A refusal or failure to report to the client: HTTP status, SOCKS reply code, reason.
struct Denial {
    status: u16,
    socks: u8,
    reason: String,
}

impl Denial {
    fn bad_request(reason: impl Into<String>) -> Denial {
        Denial {
            status: 400,
            socks: 0x01,
            reason: reason.into(),
        }
    }
}

/// The client's bytes read so far, and the deadline for the request head.
struct Inbound<'a> {
    stream: &'a TcpStream,
    buf: Vec<u8>,
    deadline: Instant,
}

impl Inbound<'_> {
    fn read_more(&mut self) -> io::Result<()> {
        let left = self
            .deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or(io::ErrorKind::TimedOut)?;
        self.stream.set_read_timeout(Some(left))?;
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(io::ErrorKind::TimedOut.into()),
            Err(e) => Err(e),
        }
    }

    fn fill(&mut self, n: usize) -> io::Result<()> {
        while self.buf.len() < n {
            self.read_more()?;
        }
        Ok(())
    }

    /// The length of the request head (through the blank line), reading until it is complete.
    fn head_len(&mut self, max: usize) -> io::Result<usize> {
        let mut from = 0;
        loop {
            if let Some(p) = find(&self.buf[from..], b"\r\n\r\n") {
                let end = from + p + 4;
                if end > max {
                    return Err(io::ErrorKind::OutOfMemory.into());
                }
                return Ok(end);
            }
            if self.buf.len() > max {
                return Err(io::ErrorKind::OutOfMemory.into());
            }
            from = self.buf.len().saturating_sub(3);
            self.read_more()?;
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn handle(shared: &Shared, id: u64, client: TcpStream) {
    let _ = client.set_nodelay(true);
    let mut inb = Inbound {
        stream: &client,
        buf: Vec::new(),
        deadline: Instant::now() + shared.limits.head_timeout,
    };
    if inb.fill(1).is_err() {
        return;
    }
    if inb.buf[0] == 0x05 {
        socks5(shared, id, inb);
    } else {
        http(shared, id, inb);
    }
}

fn http(shared: &Shared, id: u64, mut inb: Inbound<'_>) {
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
        let upstream = match open_upstream(shared, id, Protocol::Connect, host, port) {
            Ok(u) => u,
            Err(d) => return respond(client, d.status, &d.reason),
        };
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
    let upstream = match open_upstream(shared, id, Protocol::Http, host, port) {
        Ok(u) => u,
        Err(d) => return respond(client, d.status, &d.reason),
    };
    let head = origin_head(&request, authority, &path);
    let _ = client.set_read_timeout(None);
    if (&upstream).write_all(head.as_bytes()).is_ok() && (&upstream).write_all(leftover).is_ok() {
        splice(client, &upstream, true);
    }
}

struct Request<'a> {
    method: &'a str,
    target: &'a str,
    version: &'a str,
    headers: Vec<(&'a str, &'a str)>,
}

fn parse_request(head: &[u8]) -> Result<Request<'_>, Denial> {
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

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `http://authority/path?query` → (authority, "/path?query"); the fragment is dropped.
fn absolute_form(target: &str) -> Result<(&str, String), Denial> {
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
fn split_host_port(authority: &str, default: Option<u16>) -> Result<(&str, u16), Denial> {
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
fn origin_head(req: &Request<'_>, authority: &str, path: &str) -> String {
    let hop: Vec<String> = req
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, v)| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    let mut out = format!(
        "{} {path} {}\r\nHost: {authority}\r\n",
        req.method, req.version
    );
    for (name, value) in &req.headers {
        let lower = name.to_ascii_lowercase();
        let drop = lower.starts_with("proxy-")
            || matches!(lower.as_str(), "host" | "connection" | "keep-alive")
            || hop.contains(&lower);
        if !drop {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    out
}

/// Check `host:port`, resolve a name, check every address, connect to a checked one. Reports
/// the outcome to the audit hook.
fn open_upstream(
    shared: &Shared,
    id: u64,
    protocol: Protocol,
    host: &str,
    port: u16,
) -> Result<TcpStream, Denial> {
    let event = |verdict, addr, reason: &str| Event {
        verdict,
        protocol,
        host: host.to_string(),
        port,
        addr,
        reason: reason.to_string(),
    };
    let refuse = |addr, reason: String| {
        shared.emit(event(Verdict::Refused, addr, &reason));
        Denial {
            status: 403,
            socks: 0x02,
            reason,
        }
    };
    let fail = |status, socks, reason: String| {
        shared.emit(event(Verdict::Failed, None, &reason));
        Denial {
            status,
            socks,
            reason,
        }
    };
    let policy = &shared.policy;
    let addrs = match policy.check_name(host, port) {
        Err(r) => return Err(refuse(None, r.reason)),
        // Connect to exactly what was checked; an IPv4-mapped address as the IPv4 address.
        Ok(Host::Ip(ip)) => vec![SocketAddr::new(ip.to_canonical(), port)],
        Ok(Host::Name(name)) => {
            let addrs = match (shared.outbound.resolve)(&name, port) {
                Ok(a) if !a.is_empty() => a,
                Ok(_) => return Err(fail(502, 0x04, format!("{name}: no address"))),
                Err(e) => return Err(fail(502, 0x04, format!("cannot resolve {name}: {e}"))),
            };
            // Every address must pass: one internal address among public ones is a rebinding.
            for a in &addrs {
                if let Err(r) = policy.check_addr(Some(&name), a.ip(), port) {
                    return Err(refuse(Some(*a), r.reason));
                }
            }
            addrs
                .into_iter()
                .map(|a| SocketAddr::new(a.ip().to_canonical(), port))
                .collect()
        }
    };
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
                shared.emit(event(Verdict::Allowed, Some(*addr), ""));
                return Ok(s);
            }
            Err(e) => last = Some((*addr, e)),
        }
    }
    Err(match last {
        Some((addr, e)) if e.kind() == io::ErrorKind::TimedOut => fail(
            504,
            0x04,
            format!("connecting to {host} ({addr}) timed out"),
        ),
        Some((addr, e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
            fail(502, 0x05, format!("{host} ({addr}) refused the connection"))
        }
        Some((addr, e)) => fail(502, 0x01, format!("cannot connect to {host} ({addr}): {e}")),
        None => fail(504, 0x04, format!("connecting to {host} timed out")),
    })
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

/// SOCKS5 (RFC 1928), no authentication, CONNECT only.
fn socks5(shared: &Shared, id: u64, mut inb: Inbound<'_>) {
    let client = inb.stream;
    let reply = |code: u8| {
        let _ = (&*client).write_all(&[5, code, 0, 1, 0, 0, 0, 0, 0, 0]);
    };
    if inb.fill(2).is_err() {
        return;
    }
    let n = usize::from(inb.buf[1]);
    if inb.fill(2 + n).is_err() {
        return;
    }
    if !inb.buf[2..2 + n].contains(&0) {
        let _ = (&*client).write_all(&[5, 0xff]);
        return;
    }
    if (&*client).write_all(&[5, 0]).is_err() {
        return;
    }
    let at = 2 + n;
    if inb.fill(at + 5).is_err() {
        return;
    }
    let (ver, cmd, atyp) = (inb.buf[at], inb.buf[at + 1], inb.buf[at + 3]);
    let addr_len = match atyp {
        1 => 4,
        4 => 16,
        3 => 1 + usize::from(inb.buf[at + 4]),
        _ => return reply(0x08),
    };
    let end = at + 4 + addr_len + 2;
    if ver != 5 || inb.fill(end).is_err() {
        return;
    }
    let a = &inb.buf[at + 4..end - 2];
    let port = u16::from_be_bytes([inb.buf[end - 2], inb.buf[end - 1]]);
    let host = match atyp {
        1 => std::net::Ipv4Addr::new(a[0], a[1], a[2], a[3]).to_string(),
        4 => {
            let b: [u8; 16] = a.try_into().unwrap_or([0; 16]);
            format!("[{}]", std::net::Ipv6Addr::from(b))
        }
        _ => match std::str::from_utf8(&a[1..]) {
            Ok(s) => s.to_string(),
            Err(_) => return reply(0x01),
        },
    };
    if cmd != 1 {
        return reply(0x07);
    }
    if port == 0 {
        return reply(0x01);
    }
    let upstream = match open_upstream(shared, id, Protocol::Socks5, &host, port) {
        Ok(u) => u,
        Err(d) => return reply(d.socks),
    };
    let _ = client.set_read_timeout(None);
    // The bound address is not disclosed (it would be the container's own address).
    reply(0);
    if (&upstream).write_all(&inb.buf[end..]).is_ok() {
        splice(client, &upstream, false);
    }
}

/// Copy both ways until both directions end. A direction that ends (EOF) is passed on as a
/// half-close; an error ends both. With `end_with_upstream` (plain HTTP: one request per
/// connection) the end of the response ends the connection.
fn splice(client: &TcpStream, upstream: &TcpStream, end_with_upstream: bool) {
    let mut buf = vec![0u8; SPLICE_BUF];
    let mut up_open = true; // client → upstream still flowing
    let mut down_open = true; // upstream → client still flowing
    while up_open || down_open {
        let (mut ready_up, mut ready_down) = (false, false);
        {
            let mut fds = Vec::with_capacity(2);
            if up_open {
                fds.push(PollFd::new(client.as_fd(), PollFlags::POLLIN));
            }
            if down_open {
                fds.push(PollFd::new(upstream.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            }
            let ready = |fd: &PollFd| fd.any().unwrap_or(true);
            let mut it = fds.iter();
            if up_open {
                ready_up = it.next().is_some_and(ready);
            }
            if down_open {
                ready_down = it.next().is_some_and(ready);
            }
        }
        if ready_up && !pump(client, upstream, &mut buf, &mut up_open) {
            break;
        }
        if ready_down && !pump(upstream, client, &mut buf, &mut down_open) {
            break;
        }
        if end_with_upstream && !down_open {
            break;
        }
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = upstream.shutdown(Shutdown::Both);
}

/// One read from `from`, written to `to`. False on an error (end everything); on EOF, the
/// direction is marked closed and `to` is half-closed.
fn pump(mut from: &TcpStream, mut to: &TcpStream, buf: &mut [u8], open: &mut bool) -> bool {
    match from.read(buf) {
        Ok(0) => {
            *open = false;
            let _ = to.shutdown(Shutdown::Write);
            true
        }
        Ok(n) => to.write_all(&buf[..n]).is_ok(),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => true,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::atomic::AtomicUsize;

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const T: Duration = Duration::from_secs(2);

    /// A tiny origin on 127.0.0.1: records each request head, answers "ok", counts accepts.
    struct Origin {
        port: u16,
        accepts: Arc<AtomicUsize>,
        heads: Arc<Mutex<Vec<String>>>,
    }

    fn origin() -> Origin {
        let l = TcpListener::bind((LOCAL, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        let accepts = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (a, h) = (accepts.clone(), heads.clone());
        thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                a.fetch_add(1, Ordering::SeqCst);
                let h = h.clone();
                thread::spawn(move || {
                    s.set_read_timeout(Some(T)).unwrap();
                    let mut inb = Inbound {
                        stream: &s,
                        buf: Vec::new(),
                        deadline: Instant::now() + T,
                    };
                    let Ok(end) = inb.head_len(1 << 16) else {
                        return;
                    };
                    let head = String::from_utf8_lossy(&inb.buf[..end]).into_owned();
                    h.lock().unwrap().push(head);
                    let _ = s.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    );
                });
            }
        });
        Origin {
            port,
            accepts,
            heads,
        }
    }

    struct Proxy {
        handle: ProxyHandle,
        addr: SocketAddr,
        events: Arc<Mutex<Vec<Event>>>,
        /// Every address the proxy tried to connect to.
        dialed: Arc<Mutex<Vec<SocketAddr>>>,
        /// Every name the proxy looked up.
        resolved: Arc<Mutex<Vec<String>>>,
    }

    /// A proxy whose resolver knows only `*.test` names (all 127.0.0.1) and whose connector
    /// refuses, without a socket, anything but 127.0.0.1: no test can reach off this machine.
    fn proxy(rules: &[&str], limits: Limits) -> Proxy {
        let policy = Arc::new(EgressPolicy::parse("user", rules, vec![]).unwrap());
        let events = Arc::new(Mutex::new(Vec::new()));
        let dialed = Arc::new(Mutex::new(Vec::new()));
        let resolved = Arc::new(Mutex::new(Vec::new()));
        let (e, d, r) = (events.clone(), dialed.clone(), resolved.clone());
        let outbound = Outbound {
            resolve: Box::new(move |name, port| {
                r.lock().unwrap().push(name.to_string());
                match name {
                    "origin.test" | "rebind.test" => Ok(vec![SocketAddr::new(LOCAL, port)]),
                    _ => Err(io::Error::new(io::ErrorKind::NotFound, "unknown test name")),
                }
            }),
            connect: Box::new(move |addr, timeout| {
                d.lock().unwrap().push(*addr);
                if addr.ip() != LOCAL {
                    return Err(io::ErrorKind::ConnectionRefused.into());
                }
                TcpStream::connect_timeout(addr, timeout)
            }),
        };
        let listener = TcpListener::bind((LOCAL, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let sink: EventSink = Arc::new(move |ev: &Event| e.lock().unwrap().push(ev.clone()));
        let handle = serve_with(listener, policy, sink, outbound, limits).unwrap();
        Proxy {
            handle,
            addr,
            events,
            dialed,
            resolved,
        }
    }

    fn connect(p: &Proxy) -> TcpStream {
        let s = TcpStream::connect(p.addr).unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        s
    }

    fn exchange(p: &Proxy, request: &[u8]) -> String {
        let mut s = connect(p);
        s.write_all(request).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    fn get(p: &Proxy, url: &str) -> String {
        exchange(
            p,
            format!("GET {url} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        )
    }

    fn status(resp: &str) -> &str {
        resp.split(' ').nth(1).unwrap_or("")
    }

    /// SOCKS5 greeting and CONNECT request; returns the reply code and the stream.
    fn socks(p: &Proxy, atyp_addr: &[u8], port: u16) -> (u8, TcpStream) {
        let mut s = connect(p);
        s.write_all(&[5, 1, 0]).unwrap();
        let mut hello = [0u8; 2];
        s.read_exact(&mut hello).unwrap();
        assert_eq!(hello, [5, 0]);
        let mut req = vec![5, 1, 0];
        req.extend_from_slice(atyp_addr);
        req.extend_from_slice(&port.to_be_bytes());
        s.write_all(&req).unwrap();
        let mut reply = [0u8; 10];
        s.read_exact(&mut reply).unwrap();
        (reply[1], s)
    }

    fn through(mut s: TcpStream, path: &str) -> String {
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    const LOOPBACK_RULE: &[&str] = &["127.0.0.1/32"];

    #[test]
    fn http_forward_sends_origin_form_without_proxy_headers() {
        let o = origin();
        let p = proxy(LOOPBACK_RULE, Limits::default());
        let resp = exchange(
            &p,
            format!(
                "GET http://127.0.0.1:{}/path?q=1#frag HTTP/1.1\r\nHost: elsewhere.example\r\nProxy-Authorization: Basic c2VjcmV0\r\nProxy-Connection: keep-alive\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nUser-Agent: t\r\nContent-Length: 4\r\n\r\nbody",
                o.port
            )
            .as_bytes(),
        );
        assert!(resp.starts_with("HTTP/1.1 200 OK"), "{resp}");
        assert!(resp.ends_with("ok"), "{resp}");
        let head = o.heads.lock().unwrap()[0].clone();
        assert!(head.starts_with("GET /path?q=1 HTTP/1.1\r\n"), "{head}");
        assert!(
            head.contains(&format!("\r\nHost: 127.0.0.1:{}\r\n", o.port)),
            "{head}"
        );
        assert!(head.contains("\r\nUser-Agent: t\r\n"), "{head}");
        assert!(head.contains("\r\nConnection: close\r\n"), "{head}");
        let lower = head.to_ascii_lowercase();
        for gone in ["proxy-", "keep-alive", "x-hop", "elsewhere"] {
            assert!(!lower.contains(gone), "{gone} in {head}");
        }
        let ev = p.events.lock().unwrap().clone();
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].verdict, Verdict::Allowed);
        assert_eq!(ev[0].protocol, Protocol::Http);
        assert_eq!(ev[0].addr, Some(SocketAddr::new(LOCAL, o.port)));
    }

    #[test]
    fn connect_tunnels_both_ways() {
        let o = origin();
        let p = proxy(LOOPBACK_RULE, Limits::default());
        let mut s = connect(&p);
        s.write_all(format!("CONNECT 127.0.0.1:{} HTTP/1.1\r\n\r\n", o.port).as_bytes())
            .unwrap();
        let mut established = [0u8; 39];
        s.read_exact(&mut established).unwrap();
        assert_eq!(
            &established[..],
            b"HTTP/1.1 200 Connection established\r\n\r\n"
        );
        let resp = through(s, "/tunnel");
        assert!(resp.ends_with("ok"), "{resp}");
        assert!(o.heads.lock().unwrap()[0].starts_with("GET /tunnel HTTP/1.1"));
    }

    #[test]
    fn socks5_connects_by_address_and_by_name() {
        let o = origin();
        let p = proxy(&["origin.test", "127.0.0.1/32"], Limits::default());
        let (code, s) = socks(&p, &[1, 127, 0, 0, 1], o.port);
        assert_eq!(code, 0);
        assert!(through(s, "/by-addr").ends_with("ok"));
        let mut name = vec![3, 11];
        name.extend_from_slice(b"origin.test");
        let (code, s) = socks(&p, &name, o.port);
        assert_eq!(code, 0);
        assert!(through(s, "/by-name").ends_with("ok"));
        assert_eq!(o.accepts.load(Ordering::SeqCst), 2);
        let ev = p.events.lock().unwrap().clone();
        assert!(ev
            .iter()
            .all(|e| e.protocol == Protocol::Socks5 && e.verdict == Verdict::Allowed));
    }

    #[test]
    fn without_a_rule_nothing_reaches_the_origin() {
        let o = origin();
        let p = proxy(&["pypi.org"], Limits::default());
        let resp = get(&p, &format!("http://127.0.0.1:{}/", o.port));
        assert_eq!(status(&resp), "403", "{resp}");
        assert!(
            resp.contains("127.0.0.1 is loopback; not allowed from a sandbox"),
            "{resp}"
        );
        let resp = exchange(
            &p,
            format!("CONNECT 127.0.0.1:{} HTTP/1.1\r\n\r\n", o.port).as_bytes(),
        );
        assert_eq!(status(&resp), "403", "{resp}");
        let (code, _) = socks(&p, &[1, 127, 0, 0, 1], o.port);
        assert_eq!(code, 0x02);
        assert_eq!(o.accepts.load(Ordering::SeqCst), 0);
        assert!(p.dialed.lock().unwrap().is_empty());
        let ev = p.events.lock().unwrap().clone();
        assert_eq!(ev.len(), 3);
        assert!(ev
            .iter()
            .all(|e| e.verdict == Verdict::Refused && e.addr.is_none()));
    }

    #[test]
    fn refused_spellings_are_refused_before_any_connection() {
        let p = proxy(&["pypi.org", "203.0.113.0/24:443"], Limits::default());
        let cases: &[(&str, &str)] = &[
            ("http://2130706433/", "127.0.0.1 is loopback"),
            ("http://0x7f.1/", "127.0.0.1 is loopback"),
            ("http://0177.0.0.1:8080/", "127.0.0.1 is loopback"),
            (
                "http://[::ffff:127.0.0.1]/",
                "::ffff:127.0.0.1 is loopback (an IPv4-mapped IPv6 address)",
            ),
            ("http://[::]/", ":: is the unspecified address"),
            ("http://0.0.0.0/", "0.0.0.0 is the unspecified address"),
            (
                "http://169.254.169.254/latest/meta-data/",
                "169.254.169.254 is the cloud metadata address (link-local); not allowed from a sandbox",
            ),
            ("http://[fd00:ec2::254]/", "fd00:ec2::254 is the cloud metadata address"),
            ("http://localhost/", "localhost is a loopback name"),
            ("http://localhost.:8888/", "localhost is a loopback name"),
            ("http://api.localhost/", "api.localhost is a loopback name"),
            ("http://example.com/", "not in net.allow: example.com:80"),
        ];
        for (url, why) in cases {
            let resp = get(&p, url);
            assert_eq!(status(&resp), "403", "{url}: {resp}");
            assert!(resp.contains(why), "{url}: {resp}");
        }
        let resp = exchange(&p, b"CONNECT 169.254.169.254:80 HTTP/1.1\r\n\r\n");
        assert!(resp.contains("cloud metadata address"), "{resp}");
        let (code, _) = socks(&p, &[1, 169, 254, 169, 254], 80);
        assert_eq!(code, 0x02);
        let mut name = vec![3, 9];
        name.extend_from_slice(b"localhost");
        assert_eq!(socks(&p, &name, 80).0, 0x02);
        assert!(
            p.dialed.lock().unwrap().is_empty(),
            "a refused host was dialed"
        );
    }

    #[test]
    fn every_spelling_reaches_the_same_allowed_address() {
        let o = origin();
        let p = proxy(LOOPBACK_RULE, Limits::default());
        for host in ["2130706433", "0x7f.1", "127.1", "[::ffff:127.0.0.1]"] {
            let resp = get(&p, &format!("http://{host}:{}/", o.port));
            assert!(resp.ends_with("ok"), "{host}: {resp}");
        }
        assert_eq!(o.accepts.load(Ordering::SeqCst), 4);
        // Other loopback addresses stay closed: the rule names 127.0.0.1 only.
        assert_eq!(
            status(&get(&p, &format!("http://127.0.0.2:{}/", o.port))),
            "403"
        );
    }

    #[test]
    fn a_name_rule_does_not_follow_a_rebinding_to_loopback() {
        let o = origin();
        let p = proxy(&["rebind.test"], Limits::default());
        let resp = get(&p, &format!("http://rebind.test:{}/", o.port));
        assert_eq!(status(&resp), "403", "{resp}");
        assert!(
            resp.contains("rebind.test resolves to 127.0.0.1, which is loopback"),
            "{resp}"
        );
        assert_eq!(o.accepts.load(Ordering::SeqCst), 0);
        assert!(p.dialed.lock().unwrap().is_empty());
        let ev = p.events.lock().unwrap().clone();
        assert_eq!(ev[0].addr, Some(SocketAddr::new(LOCAL, o.port)));
    }

    #[test]
    fn unresolvable_is_502_and_refused_names_are_not_resolved() {
        let p = proxy(&["nowhere.test"], Limits::default());
        let resp = get(&p, "http://nowhere.test/");
        assert_eq!(status(&resp), "502", "{resp}");
        assert!(resp.contains("cannot resolve nowhere.test"), "{resp}");
        assert_eq!(p.events.lock().unwrap()[0].verdict, Verdict::Failed);
        assert_eq!(status(&get(&p, "http://other.test/")), "403");
        assert_eq!(*p.resolved.lock().unwrap(), ["nowhere.test"]);
    }

    #[test]
    fn malformed_requests_are_400() {
        let p = proxy(LOOPBACK_RULE, Limits::default());
        for (req, why) in [
            ("GET / HTTP/1.1\r\n\r\n", "absolute-form"),
            ("GET https://127.0.0.1/ HTTP/1.1\r\n\r\n", "CONNECT"),
            ("GET http://u:p@127.0.0.1/ HTTP/1.1\r\n\r\n", "credentials"),
            ("CONNECT 127.0.0.1 HTTP/1.1\r\n\r\n", "host:port"),
            ("CONNECT 127.0.0.1:0 HTTP/1.1\r\n\r\n", "host:port"),
            ("CONNECT ::1:80 HTTP/1.1\r\n\r\n", "[IPv6]:port"),
            (
                "GET http://127.0.0.1/ HTTP/1.1\r\n folded\r\n\r\n",
                "bad header",
            ),
            ("GARBAGE\r\n\r\n", "bad request line"),
        ] {
            let resp = exchange(&p, req.as_bytes());
            assert_eq!(status(&resp), "400", "{req:?}: {resp}");
            assert!(resp.contains(why), "{req:?}: {resp}");
        }
        assert!(p.dialed.lock().unwrap().is_empty());
    }

    /// Wait (bounded) until the proxy holds no connection.
    fn wait_idle(p: &Proxy) {
        let until = Instant::now() + T;
        while !p.handle.shared.open().is_empty() && Instant::now() < until {
            thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn limits_hold() {
        let limits = Limits {
            max_connections: 1,
            max_head: 1024,
            head_timeout: Duration::from_millis(200),
            connect_timeout: Duration::from_secs(1),
        };
        let p = proxy(LOOPBACK_RULE, limits);
        // Head too large.
        let big = format!(
            "GET http://127.0.0.1/ HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(2048)
        );
        assert_eq!(status(&exchange(&p, big.as_bytes())), "431");
        // Head too slow.
        wait_idle(&p);
        let mut slow = connect(&p);
        slow.write_all(b"GET http://127.0.0.1/ HTTP/1.1\r\n")
            .unwrap();
        let mut out = String::new();
        let _ = slow.read_to_string(&mut out);
        assert_eq!(status(&out), "408", "{out}");
        // One connection at a time: a second one is closed at once.
        wait_idle(&p);
        let mut first = connect(&p);
        first.write_all(b"G").unwrap();
        thread::sleep(Duration::from_millis(50));
        let mut second = connect(&p);
        let mut b = [0u8; 1];
        assert!(matches!(second.read(&mut b), Ok(0) | Err(_)));
        let _ = first.read(&mut b);
    }

    #[test]
    fn stop_closes_the_listener_and_open_tunnels() {
        let o = origin();
        let p = proxy(LOOPBACK_RULE, Limits::default());
        let mut tunnel = connect(&p);
        tunnel
            .write_all(format!("CONNECT 127.0.0.1:{} HTTP/1.1\r\n\r\n", o.port).as_bytes())
            .unwrap();
        let mut established = [0u8; 39];
        tunnel.read_exact(&mut established).unwrap();
        let addr = p.addr;
        let started = Instant::now();
        p.handle.stop();
        assert!(started.elapsed() < Duration::from_secs(1));
        let mut b = [0u8; 1];
        assert!(matches!(tunnel.read(&mut b), Ok(0) | Err(_)));
        match TcpStream::connect_timeout(&addr, T) {
            Err(_) => {}
            Ok(mut s) => {
                s.set_read_timeout(Some(T)).unwrap();
                assert!(matches!(s.read(&mut b), Ok(0) | Err(_)));
            }
        }
    }

    /// Not a check: prints the RSS and thread cost of an idle proxy and of 100 open tunnels.
    /// `cargo test --bin sbx-exec measure_cost -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn measure_cost() {
        fn status_field(name: &str) -> String {
            let s = std::fs::read_to_string("/proc/self/status").unwrap();
            s.lines()
                .find(|l| l.starts_with(name))
                .unwrap_or("")
                .to_string()
        }
        let o = origin();
        thread::sleep(Duration::from_millis(100));
        println!(
            "before: {} {}",
            status_field("VmRSS"),
            status_field("Threads")
        );
        let p = proxy(LOOPBACK_RULE, Limits::default());
        thread::sleep(Duration::from_millis(100));
        println!(
            "idle:   {} {}",
            status_field("VmRSS"),
            status_field("Threads")
        );
        let mut tunnels = Vec::new();
        for _ in 0..100 {
            let mut s = connect(&p);
            s.write_all(
                format!(
                    "CONNECT 127.0.0.1:{} HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n",
                    o.port
                )
                .as_bytes(),
            )
            .unwrap();
            let mut established = [0u8; 39];
            s.read_exact(&mut established).unwrap();
            tunnels.push(s);
        }
        thread::sleep(Duration::from_millis(200));
        println!(
            "100 tunnels (+100 origin threads): {} {}",
            status_field("VmRSS"),
            status_field("Threads")
        );
        drop(p);
    }
}
