//! The proxy's limits (head size and time, connections at once, per call) and its stop. Each test
//! waits for the proxy's state (the connections it holds) instead of sleeping, and tells a refusal
//! the proxy wrote from a connection merely left open: a reply must end before the read timeout,
//! and the head timeout is far longer wherever a limit is checked.

use super::*;
use std::sync::mpsc;

#[test]
fn head_limits_hold() {
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
    // Head too slow: answered 408 after head_timeout (200 ms), well before the read timeout.
    wait_open(&p, 0);
    let mut slow = connect(&p);
    slow.write_all(b"GET http://127.0.0.1/ HTTP/1.1\r\n")
        .unwrap();
    let out = reply(&mut slow).unwrap();
    assert_eq!(status(&out), "408", "{out}");
}

/// `limits.connections`: while one connection is open (its head not yet whole, with 30 s to send
/// it), a second is answered 503 naming the key, at once; the first is still served after, and
/// once it has ended a new connection is served too (the limit counts open connections).
#[test]
fn connections_beyond_the_limit_are_refused_at_once() {
    let o = origin();
    let limits = Limits {
        max_connections: 1,
        per_call: 8,
        head_timeout: Duration::from_secs(30),
        ..Limits::default()
    };
    let p = proxy(LOOPBACK_RULE, limits);
    let mut first = connect(&p);
    first.write_all(b"G").unwrap();
    wait_open(&p, 1);
    let mut second = connect(&p);
    let out = reply(&mut second).unwrap();
    assert_eq!(status(&out), "503", "{out}");
    assert!(out.contains("limits.connections"), "{out}");
    assert!(
        p.events
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.verdict == Verdict::Refused && e.status == Some(503)),
        "the refusal is not in the audit events"
    );
    // Control: the connection held is served, and so is the next one once it has ended.
    let rest = format!("ET http://127.0.0.1:{}/first HTTP/1.1\r\n\r\n", o.port);
    first.write_all(rest.as_bytes()).unwrap();
    let out = reply(&mut first).unwrap();
    assert!(
        out.starts_with("HTTP/1.1 200 OK") && out.ends_with("ok"),
        "{out}"
    );
    wait_open(&p, 0);
    let out = get(&p, &format!("http://127.0.0.1:{}/next", o.port));
    assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
}

/// Each call of a persistent context reaches the proxy on an address of its own: one call at its
/// `per_call` limit is told so (503), while another call's connection on another address is
/// served; the whole context's limit still holds.
#[test]
fn one_call_cannot_take_the_whole_gate() {
    let limits = Limits {
        max_connections: 3,
        per_call: 2,
        head_timeout: Duration::from_secs(30),
        ..Limits::default()
    };
    let o = origin();
    let p = proxy_on(LOOPBACK_RULE, limits, std::net::Ipv4Addr::UNSPECIFIED);
    let port = p.addr.port();
    let on = |a: [u8; 4]| {
        let s = TcpStream::connect((std::net::Ipv4Addr::from(a), port)).unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        s
    };
    // Call A holds two idle connections; its third is refused, naming per_call.
    let held: Vec<TcpStream> = (0..2).map(|_| on([127, 0, 1, 1])).collect();
    wait_open(&p, 2);
    let out = reply(&mut on([127, 0, 1, 1])).unwrap();
    assert_eq!(status(&out), "503", "{out}");
    assert!(out.contains("limits.per_call"), "{out}");
    // Call B, on its own address, is served.
    let mut b = on([127, 0, 2, 2]);
    b.write_all(format!("GET http://127.0.0.1:{}/ok HTTP/1.1\r\n\r\n", o.port).as_bytes())
        .unwrap();
    let out = reply(&mut b).unwrap();
    assert_eq!(status(&out), "200", "{out}");
    // With B holding one again (A's two and B's one: the context's three), C is refused,
    // naming connections.
    wait_open(&p, 2);
    let _b2 = on([127, 0, 2, 2]);
    wait_open(&p, 3);
    let out = reply(&mut on([127, 0, 3, 3])).unwrap();
    assert!(
        status(&out) == "503" && out.contains("limits.connections"),
        "{out}"
    );
    drop(held);
}

/// `stop` returns at once, ends an open tunnel on both sides (the client and the origin see the
/// end of the stream, which nothing else would give: the origin holds its side open and no
/// timeout is near), and nothing listens after.
#[test]
fn stop_closes_the_listener_and_open_tunnels() {
    // An origin that holds every connection open, reading nothing.
    let origin = TcpListener::bind((LOCAL, 0)).unwrap();
    let port = origin.local_addr().unwrap().port();
    let (held_tx, held) = mpsc::channel();
    thread::spawn(move || {
        for s in origin.incoming().flatten() {
            let _ = held_tx.send(s);
        }
    });
    let p = proxy(LOOPBACK_RULE, Limits::default());
    let mut tunnel = connect(&p);
    tunnel
        .write_all(format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n").as_bytes())
        .unwrap();
    let mut established = [0u8; 39];
    tunnel.read_exact(&mut established).unwrap();
    let mut upstream: TcpStream = held.recv_timeout(T).expect("the origin was connected");
    upstream.set_read_timeout(Some(T)).unwrap();
    let addr = p.addr;
    let (stopped_tx, stopped) = mpsc::channel();
    let handle = p.handle;
    thread::spawn(move || {
        handle.stop();
        let _ = stopped_tx.send(());
    });
    stopped
        .recv_timeout(Duration::from_secs(1))
        .expect("stop did not return within a second");
    let ended = |s: &mut TcpStream| {
        let mut b = [0u8; 1];
        match s.read(&mut b) {
            Ok(0) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(()),
            other => Err(format!("{other:?}")),
        }
    };
    if let Err(e) = ended(&mut tunnel) {
        panic!("the tunnel is still open on the client's side after stop: {e}");
    }
    if let Err(e) = ended(&mut upstream) {
        panic!("the tunnel is still open on the origin's side after stop: {e}");
    }
    match TcpStream::connect_timeout(&addr, T) {
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}"),
        Ok(mut s) => {
            s.set_read_timeout(Some(T)).unwrap();
            if let Err(e) = ended(&mut s) {
                panic!("the listener still takes connections after stop: {e}");
            }
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
