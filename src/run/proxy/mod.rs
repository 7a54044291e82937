//! The egress proxy of a `net = "private"` context: HTTP/1.1 forward proxy (absolute-form
//! requests and `CONNECT`) and SOCKS5 (no auth, CONNECT), on one listening socket.
//!
//! Where it runs: the sandbox's pid 1 binds port 3128 *inside* the new network namespace (whose
//! only interface is `lo`) and passes the socket out; the launcher hands it to the egress gate
//! ([`crate::run::gate`]), a process of its own exec'd unprivileged (uid 65534, no capability,
//! no_new_privs, Landlock, its own seccomp filter) that calls [`serve_gate`] with it: it accepts
//! from inside the sandbox and connects out from the container's namespace. The launcher never
//! parses a byte of it. Every destination is judged by [`EgressPolicy`]: the name before it is
//! resolved (a refused name is never looked up), then every address it resolves to, against the
//! container's own addresses listed again for each destination; the proxy connects only to an
//! address it checked (to the `SocketAddr`, never re-resolving). A refusal is `403 Forbidden`
//! naming the rule, never the address (SOCKS: reply 0x02), an unresolvable name `502`; every
//! answer but a success goes to the audit hook ([`Event`], with its status).
//!
//! Bound secrets ([`bound`]): a `CONNECT` to a host a binding names is intercepted, the one TLS
//! inspection there is: TLS from the client with a per-call CA (its SNI and `Host` must name that
//! host), one request parsed strictly, placeholders swapped for the real values in their slots
//! only, TLS to the real host (verified), the response scrubbed of every encoding of the real
//! values. Every request head from the sandbox goes through one strict parser ([`http`]).
//!
//! Shape: one accept thread, one thread per connection (256 KiB stack; at most
//! `limits.connections` in all and `limits.per_call` per address it was reached on, beyond which
//! a connection is answered 503 at once, before a byte is read), a 64 KiB request head within
//! `limits.head_timeout` (a deadline for the whole head, inside an intercepted TLS connection
//! too; 408), 10 s to connect; a tunnel, a body or a response then lives until nothing moves for
//! `limits.idle_timeout` (one thread, `poll` on both sockets). One request per client connection:
//! HTTP requests are sent to the origin with `Connection: close`.
//!
//! Cost (release build, x86-64, the ignored test `measure_cost`): an idle proxy is one thread
//! (256 KiB of stack reserved) and about 0.15 MiB of RSS; 100 open tunnels, together with the
//! 100 threads of the test's origin server, added 4.3 MiB, so at most ~40 KiB per tunnel (its
//! 16 KiB buffer and touched stack). **A context with `net.allow = []` must not start the proxy
//! at all**: it gets a network namespace with only `lo`, no proxy and no proxy variables.
//!
//! Limits: no TLS inspection but for bound hosts, so over any other `CONNECT` the name in the TLS
//! handshake (SNI, and the HTTP `Host` inside) is not checked against the name asked for: a CDN
//! that serves many names on one address can be reached for any of them (domain fronting). Plain
//! HTTP gets `Host` set from the request target, as RFC 9112 §3.2.2 says a proxy must.
//! Resolution uses the system resolver (`getaddrinfo`), which has no timeout of its own.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::model::egress::{EgressPolicy, Host};
use crate::run::gate::resolver::Resolver;

/// Bounds on what one proxy holds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    /// Connections at once to one of the listener's addresses (one call's: a persistent
    /// context's calls each reach the proxy on an address of their own).
    pub per_call: usize,
    pub max_head: usize,
    pub head_timeout: Duration,
    pub connect_timeout: Duration,
    /// A tunnel, a request body or a response in which nothing moves this long is ended.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 256,
            per_call: 64,
            max_head: 64 * 1024,
            head_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Connect,
    Socks5,
    /// A connection made straight to an address, captured ([`captured`]).
    Captured,
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
    /// A bound secret's real value was put into a request to a host it is bound to (`secret`
    /// names it; see [`bound`]).
    SecretAdded,
    /// A bound secret's placeholder was seen on its way to a host it is not bound to; it was
    /// passed on unchanged (`secret` names it).
    Exfiltration,
    /// A request to a bound host carried a secret's placeholder in its slot but is outside the
    /// binding's `methods`/`paths`: the placeholder was sent as is (`secret` names it).
    SecretWithheld,
    /// A platform operation was asked for (`op` names it; `status` says how it was answered:
    /// 200 when the control plane performed it, [`ops`]).
    Op,
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
    /// The bound secret concerned (`SecretAdded`, `Exfiltration`): its name, never its value.
    pub secret: Option<String>,
    /// The HTTP status the client was answered with (`Refused`, `Failed`); for SOCKS5, the
    /// status of the same answer over HTTP (the reply code says the same). `None`: not answered
    /// (allowed, or a client that went away or failed its TLS handshake).
    pub status: Option<u16>,
    /// The platform operation asked for (`Op`): its name, never its params.
    pub op: Option<String>,
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
    /// The captured ports' listeners ([`captured`]), beside the proxy's.
    capture: Vec<TcpListener>,
    /// The sandbox's DNS, for the names it was answered for each address ([`captured`]).
    resolver: Option<Arc<Resolver>>,
    policy: Arc<EgressPolicy>,
    on_event: EventSink,
    outbound: Outbound,
    limits: Limits,
    stopping: AtomicBool,
    /// Bound secrets: the interceptor of `CONNECT`s to bound hosts ([`bound::serve`]).
    bound: Option<Arc<bound::Interceptor>>,
    /// The context's platform operations ([`ops`]).
    ops: Option<Arc<ops::Ops>>,
    /// Every open connection's sockets (client, then upstream), to count and to shut down, with
    /// the address of the listener it came in on (its call).
    open: Mutex<HashMap<u64, (std::net::IpAddr, Vec<TcpStream>)>>,
    next_id: AtomicU64,
    /// The container's own addresses, listed again for each destination checked (they change:
    /// an address added after the gate started is refused like the others); `None`: only those
    /// in the policy (tests).
    own_addrs: Option<OwnAddrs>,
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
    serve_resolving(listener, policy, on_event, None)
}

/// [`serve`] with the system resolver and real connects, and the bound secrets' interceptor if
/// the call has one ([`bound::serve`]).
fn serve_resolving(
    listener: TcpListener,
    policy: Arc<EgressPolicy>,
    on_event: EventSink,
    bound: Option<Arc<bound::Interceptor>>,
) -> io::Result<ProxyHandle> {
    serve_gate(
        listener,
        policy,
        on_event,
        (bound, Capture::default()),
        Limits::default(),
    )
}

/// What the gate captures besides the proxy: the captured ports' listeners, and the sandbox's
/// DNS (whose answers admit captured connections by name).
#[derive(Default)]
pub struct Capture {
    pub listeners: Vec<TcpListener>,
    pub resolver: Option<Arc<Resolver>>,
    /// Not captured but answered by the gate itself: the platform operations ([`ops`]).
    pub ops: Option<Arc<ops::Ops>>,
}

/// The gate's proxy: the system resolver, real connects, the container's own addresses listed
/// for each destination, and `limits`; connections captured on `capture`'s listeners too.
pub fn serve_gate(
    listener: TcpListener,
    policy: Arc<EgressPolicy>,
    on_event: EventSink,
    (bound, capture): (Option<Arc<bound::Interceptor>>, Capture),
    limits: Limits,
) -> io::Result<ProxyHandle> {
    let outbound = Outbound {
        resolve: Box::new(|host, port| Ok((host, port).to_socket_addrs()?.collect())),
        connect: Box::new(TcpStream::connect_timeout),
    };
    let own: OwnAddrs = || crate::plan::host::local_addrs().map_err(std::io::Error::from);
    start(share(
        listener,
        policy,
        on_event,
        outbound,
        (limits, Some(own)),
        (bound, capture),
    )?)
}

#[cfg(test)]
fn serve_with(
    listener: TcpListener,
    policy: Arc<EgressPolicy>,
    on_event: EventSink,
    outbound: Outbound,
    limits: Limits,
    bound: Option<Arc<bound::Interceptor>>,
) -> io::Result<ProxyHandle> {
    start(share(
        listener,
        policy,
        on_event,
        outbound,
        (limits, None),
        (bound, Capture::default()),
    )?)
}

/// How the container's own addresses are listed.
type OwnAddrs = fn() -> std::io::Result<Vec<std::net::IpAddr>>;

fn share(
    listener: TcpListener,
    policy: Arc<EgressPolicy>,
    on_event: EventSink,
    outbound: Outbound,
    (limits, own_addrs): (Limits, Option<OwnAddrs>),
    (bound, capture): (Option<Arc<bound::Interceptor>>, Capture),
) -> io::Result<Arc<Shared>> {
    // Accepted when poll says so ([`accept::accept_loop`]): never a blocking accept.
    listener.set_nonblocking(true)?;
    for l in &capture.listeners {
        l.set_nonblocking(true)?;
    }
    Ok(Arc::new(Shared {
        listener,
        capture: capture.listeners,
        resolver: capture.resolver,
        policy,
        on_event,
        outbound,
        limits,
        stopping: AtomicBool::new(false),
        bound,
        ops: capture.ops,
        open: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(0),
        own_addrs,
    }))
}

fn start(shared: Arc<Shared>) -> io::Result<ProxyHandle> {
    let s = shared.clone();
    let accept = thread::Builder::new()
        .name("sbx-proxy".into())
        .stack_size(THREAD_STACK)
        .spawn(move || accept::accept_loop(&s))?;
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
        // shutdown(2) on a listening socket wakes the poll on it (and accept(2) says EINVAL).
        for l in std::iter::once(&self.shared.listener).chain(&self.shared.capture) {
            let _ = nix::sys::socket::shutdown(l.as_raw_fd(), nix::sys::socket::Shutdown::Both);
        }
        for (_, socks) in self.shared.open().values() {
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
    fn open(&self) -> MutexGuard<'_, HashMap<u64, (std::net::IpAddr, Vec<TcpStream>)>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn track(&self, id: u64, s: &TcpStream) {
        if let Ok(clone) = s.try_clone() {
            if let Some((_, v)) = self.open().get_mut(&id) {
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

    /// A refusal answered before any destination was checked (a malformed request, a limit), to
    /// the audit hook with its `status`; `to`: the destination, if it was read.
    fn refused(&self, protocol: Protocol, to: Option<(&str, u16)>, status: u16, reason: &str) {
        let (host, port) = to.unwrap_or_default();
        self.emit(Event {
            verdict: Verdict::Refused,
            protocol,
            host: host.to_string(),
            port,
            addr: None,
            reason: reason.to_string(),
            secret: None,
            status: Some(status),
            op: None,
        });
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

mod accept;
pub mod bound;
mod captured;
pub mod http;
pub mod ops;
pub mod request;
pub mod socks;
pub mod upstream;

use request::http;
use socks::socks5;
pub use socks::splice;
use upstream::open_upstream;

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod tests;
