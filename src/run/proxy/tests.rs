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

#[test]
fn http_forward_sends_origin_form_without_proxy_headers() {
    let o = origin();
    let p = proxy(LOOPBACK_RULE, Limits::default());
    let resp = exchange(
        &p,
        format!(
            "GET http://127.0.0.1:{}/path?q=1#frag HTTP/1.1\r\nHost: elsewhere.example\r\nProxy-Authorization: Basic c2VjcmV0\r\nProxy-Connection: keep-alive\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nTE: trailers\r\nUpgrade: h2c\r\nUser-Agent: t\r\nContent-Length: 4\r\n\r\nbody",
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
    for gone in [
        "proxy-",
        "keep-alive",
        "x-hop",
        "\r\nte:",
        "upgrade",
        "elsewhere",
    ] {
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
        resp.contains("127.0.0.1 is an address no sandbox may reach"),
        "{resp}"
    );
    // The audit event says which class; the sandbox is not told.
    assert!(p.events.lock().unwrap().iter().any(|e| e
        .reason
        .contains("127.0.0.1 is loopback; not allowed from a sandbox")));
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
        // The whole story in the audit event; the sandbox gets the rule.
        let events = p.events.lock().unwrap();
        assert!(
            events.iter().any(|e| e.reason.contains(why)),
            "{url}: {events:?}"
        );
        assert!(
            resp.contains(why) || resp.contains("no sandbox may reach"),
            "{url}: {resp}"
        );
    }
    let resp = exchange(&p, b"CONNECT 169.254.169.254:80 HTTP/1.1\r\n\r\n");
    assert!(
        resp.contains("no sandbox may reach") && !resp.contains("metadata address"),
        "{resp}"
    );
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
    // Not an oracle: the sandbox is not told what the name resolved to...
    assert!(
        resp.contains("rebind.test resolves to an address no sandbox may reach")
            && !resp.contains("127.0.0.1")
            && !resp.contains("which is loopback"),
        "{resp}"
    );
    // ...the audit log is.
    assert!(p.events.lock().unwrap().iter().any(|e| e
        .reason
        .contains("rebind.test resolves to 127.0.0.1, which is loopback")));
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
            "malformed request head",
        ),
        ("GARBAGE\r\n\r\n", "malformed request head"),
        (
            "GET http://127.0.0.1/ HTTP/1.1\r\nX: a\nGET /x HTTP/1.1\r\n\r\n",
            "bare LF",
        ),
        (
            "POST http://127.0.0.1/ HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello",
            "plain number",
        ),
        (
            "POST http://127.0.0.1/ HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
            "more than once",
        ),
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
        per_call: 1,
        max_head: 1024,
        head_timeout: Duration::from_millis(200),
        connect_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(5),
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
    // One connection at a time: a second one is told why, at once (503 naming the key), while
    // the first is still waiting for its head.
    wait_idle(&p);
    let mut first = connect(&p);
    first.write_all(b"G").unwrap();
    thread::sleep(Duration::from_millis(50));
    let mut second = connect(&p);
    let mut out = String::new();
    let _ = second.read_to_string(&mut out);
    assert_eq!(status(&out), "503", "{out}");
    assert!(out.contains("limits.connections"), "{out}");
    let mut b = [0u8; 1];
    let _ = first.read(&mut b);
}

/// Each call of a persistent context reaches the proxy on an address of its own: one call at its
/// `per_call` limit is told so (503), while another call's connection on another address is
/// served; the whole context's limit still holds.
#[test]
fn one_call_cannot_take_the_whole_gate() {
    let limits = Limits {
        max_connections: 3,
        per_call: 2,
        head_timeout: Duration::from_secs(5),
        ..Limits::default()
    };
    let o = origin();
    let p = proxy_on(LOOPBACK_RULE, limits, std::net::Ipv4Addr::UNSPECIFIED);
    let port = p.addr.port();
    let on = |a: [u8; 4]| TcpStream::connect((std::net::Ipv4Addr::from(a), port)).unwrap();
    // Call A holds two idle connections; its third is refused, naming per_call.
    let held: Vec<TcpStream> = (0..2).map(|_| on([127, 0, 1, 1])).collect();
    thread::sleep(Duration::from_millis(100));
    let mut third = on([127, 0, 1, 1]);
    let mut out = String::new();
    let _ = third.read_to_string(&mut out);
    assert_eq!(status(&out), "503", "{out}");
    assert!(out.contains("limits.per_call"), "{out}");
    // Call B, on its own address, is served.
    let mut b = on([127, 0, 2, 2]);
    b.write_all(format!("GET http://127.0.0.1:{}/ok HTTP/1.1\r\n\r\n", o.port).as_bytes())
        .unwrap();
    let mut out = String::new();
    let _ = b.read_to_string(&mut out);
    assert_eq!(status(&out), "200", "{out}");
    // With B still holding one, the context is full: C is refused, naming connections.
    let _b2 = on([127, 0, 2, 2]);
    thread::sleep(Duration::from_millis(100));
    let mut c = on([127, 0, 3, 3]);
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    assert!(
        status(&out) == "503" && out.contains("limits.connections"),
        "{out}"
    );
    drop(held);
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
