//! What the proxy refuses, before any connection: no rule, forbidden addresses in every spelling,
//! a name that rebinds to loopback, an unresolvable name, malformed requests.

use super::*;

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
