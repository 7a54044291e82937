//! Tests of the proxy with fake name lookup and connector: nothing leaves this machine.

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
    proxy_on(rules, limits, Ipv4Addr::LOCALHOST)
}

/// [`proxy`] listening on `at` (an unspecified address: every loopback address).
fn proxy_on(rules: &[&str], limits: Limits, at: std::net::Ipv4Addr) -> Proxy {
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
    let listener = TcpListener::bind((at, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let sink: EventSink = Arc::new(move |ev: &Event| e.lock().unwrap().push(ev.clone()));
    let handle = serve_with(listener, policy, sink, outbound, limits, None).unwrap();
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

/// Wait until the proxy holds exactly `n` connections (accepted and not yet ended); a test that
/// needs the proxy in a known state waits for it instead of sleeping. Panics after 10 s.
fn wait_open(p: &Proxy, n: usize) {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let open = p.handle.shared.open().len();
        if open == n {
            return;
        }
        assert!(
            Instant::now() < until,
            "the proxy holds {open} connections, not {n}, after 10 s"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// Read a reply to its end, which the proxy must give: `Err` if the proxy left the connection open
/// until the read timeout (a limit that let the connection in, where it waits for a head).
fn reply(s: &mut TcpStream) -> Result<String, String> {
    let mut out = String::new();
    match s.read_to_string(&mut out) {
        Ok(_) => Ok(out),
        Err(e) => Err(format!(
            "no reply ended by the proxy ({e}); read so far: {out:?}"
        )),
    }
}

mod forward;
mod limits;
mod refusals;
