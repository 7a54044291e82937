//! A binding narrowed to `POST /v1/messages` (`methods`, `paths`), through the proxy and TLS: the
//! stand-in host receives the real key for that request only; every other request reaches it
//! with the placeholder, and the proxy reports the secret withheld (names and keys, never the
//! path or a value).

use super::*;

const LIMITED: &str = "[[bind]]\nname = \"ANTHROPIC_API_KEY\"\nhosts = [\"api.anthropic.com\"]\nheader = \"x-api-key\"\nmethods = [\"POST\"]\npaths = [\"/v1/messages\"]\n";

#[test]
fn a_narrowed_binding_adds_the_key_to_its_requests_only() {
    let ca = TestCa::new();
    let anthropic = origin(Some(ca.server(&["api.anthropic.com"])));
    let p = proxy(
        &["api.anthropic.com"],
        SECRETS,
        LIMITED,
        &[("api.anthropic.com", anthropic.port)],
        ca.roots(),
    );
    let (key, real_key) = (
        placeholder_of(&p, "ANTHROPIC_API_KEY"),
        real("ANTHROPIC_API_KEY"),
    );
    let send = |method: &str, target: &str| {
        let req = format!("{method} {target} HTTP/1.1\r\nHost: api.anthropic.com\r\nx-api-key: {key}\r\nContent-Length: 2\r\n\r\n{{}}");
        let resp = https(&p, "api.anthropic.com", &p.ic.ca_pem(), &req).unwrap();
        assert!(resp.ends_with("ok"), "{method} {target}: {resp}");
    };
    let requests = [
        ("POST", "/v1/messages"),
        ("GET", "/v1/models"),
        ("POST", "/v1/messages/../models"),
        ("POST", "/v1/messages/%2e%2e/models"),
        ("POST", "/v1/messagesX"),
        ("POST", "/v1/messages/batches"),
    ];
    for (method, target) in requests {
        send(method, target);
    }
    let seen = anthropic.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), requests.len());
    for ((method, target), got) in requests.iter().zip(&seen) {
        assert!(
            got.starts_with(&format!("{method} {target} HTTP/1.1\r\n")),
            "{got}"
        );
        let covered =
            *method == "POST" && matches!(*target, "/v1/messages" | "/v1/messages/batches");
        let (want, not) = match covered {
            true => (&real_key, &key),
            false => (&key, &real_key),
        };
        assert!(
            got.contains(&format!("x-api-key: {want}\r\n")),
            "{method} {target}: {got}"
        );
        assert!(!got.contains(not.as_str()), "{method} {target}: {got}");
    }
    let added = p.of(Verdict::SecretAdded);
    assert_eq!(added.len(), 2, "{added:?}");
    let withheld = p.of(Verdict::SecretWithheld);
    assert_eq!(withheld.len(), 4, "{withheld:?}");
    let reasons: Vec<&str> = withheld.iter().map(|e| e.reason.as_str()).collect();
    assert!(reasons[0].contains("methods (POST)"), "{reasons:?}");
    assert!(reasons[1].contains("never match") && reasons[2].contains("never match"));
    assert!(reasons[3].contains("paths (/v1/messages)"), "{reasons:?}");
    for e in &withheld {
        assert_eq!(e.secret.as_deref(), Some("ANTHROPIC_API_KEY"));
        assert_eq!(
            (e.host.as_str(), e.port, e.status),
            ("api.anthropic.com", 443, None)
        );
        assert!(e
            .reason
            .starts_with("bound secret ANTHROPIC_API_KEY not added: "));
        assert!(!e.reason.contains("models") && !e.reason.contains("messagesX"));
    }
    let all = format!("{:?}", p.events());
    assert!(!all.contains(&real_key) && !all.contains(&key), "{all}");
    assert!(p.of(Verdict::Exfiltration).is_empty());
    p.handle.stop();
}
