//! What the proxy lets through, and how: forward requests in origin form, tunnels, SOCKS5, and
//! every spelling of an allowed address.

use super::*;

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
