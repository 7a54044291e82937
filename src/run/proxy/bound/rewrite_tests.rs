//! Unit tests of the swaps: exact slots only, SigV4 within its scope.

use super::*;

use crate::plan::bound::test_bound as bound;
use crate::run::proxy::http::parse_request;

const AWS: &str = "[[bind]]\nkind = \"aws-sigv4\"\nhosts = [\"examplebucket.s3.amazonaws.com\", \"s3.amazonaws.com\", \"sts.amazonaws.com\"]\nservices = [\"s3\"]\n";
const REAL_ID: &str = "AKIAIOSFODNN7EXAMPLE";
const REAL_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const KEY: &str = "[[bind]]\nname = \"K\"\nhosts = [\"a.example\"]\nheader = \"x-api-key\"\n[[bind]]\nname = \"Q\"\nhosts = [\"a.example\"]\nquery = \"key\"\n[[bind]]\nname = \"B\"\nhosts = [\"b.example\"]\nauthorization = \"Bearer\"\n";
const SECRETS: &str = "K=sk-ant-api03-0123456789abcdefghijklmnop\nQ=AIzaSyD0123456789abcdefghijklmnopqrs\nB=ghp_0123456789abcdefABCDEF0123456789abcd\n";

fn head(s: &str) -> Head {
    parse_request(s.as_bytes()).unwrap()
}

fn aws_bound() -> Bound {
    bound(
        &format!("AWS_ACCESS_KEY_ID={REAL_ID}\nAWS_SECRET_ACCESS_KEY={REAL_SECRET}\nAWS_SESSION_TOKEN=FwoGZXIvYXdzEXAMPLETOKEN0123456789\n"),
        AWS,
    )
}

/// A request signed by the client with the placeholder key, for `service` in us-east-1.
fn signed(b: &Bound, target: &str, host: &str, service: &str, extra: &[(&str, &str)]) -> Head {
    let vars = b.variables();
    let (ph_id, ph_secret, ph_token) = (&vars[0].1, &vars[1].1, &vars[2].1);
    let mut headers = vec![
        ("Host".to_string(), host.to_string()),
        (
            "x-amz-content-sha256".to_string(),
            "UNSIGNED-PAYLOAD".to_string(),
        ),
        ("x-amz-date".to_string(), "20130524T000000Z".to_string()),
        ("X-Amz-Security-Token".to_string(), ph_token.clone()),
    ];
    for (k, v) in extra {
        headers.push((k.to_string(), v.to_string()));
    }
    let scope = format!("20130524/us-east-1/{service}/aws4_request");
    let signed_names: Vec<String> = headers
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect();
    let mut auth = Authorization::parse(&format!(
        "AWS4-HMAC-SHA256 Credential={ph_id}/{scope}, SignedHeaders={}, Signature=x",
        signed_names.join(";")
    ))
    .unwrap();
    let req = Signable {
        method: "GET",
        target,
        headers: &headers,
        payload_hash: "UNSIGNED-PAYLOAD",
    };
    auth.signature = sigv4::signature(&req, &auth, "20130524T000000Z", ph_secret);
    headers.push(("Authorization".into(), auth.header_value()));
    Head {
        method: "GET".into(),
        target: target.into(),
        minor: 1,
        headers,
    }
}

#[test]
fn sigv4_is_re_signed_with_the_real_key_only_within_its_scope() {
    let b = aws_bound();
    let host = "examplebucket.s3.amazonaws.com";
    let mut h = signed(&b, "/test.txt?x=1", host, "s3", &[]);
    // Another host: untouched.
    assert!(apply(&mut h, "example.com", 443, &b, None)
        .unwrap()
        .added
        .is_empty());
    let used = apply(&mut h, host, 443, &b, None).unwrap();
    assert_eq!(used.added, ["AWS_ACCESS_KEY_ID"]);
    let got = Authorization::parse(h.get("authorization").unwrap()).unwrap();
    assert_eq!(got.key_id, REAL_ID);
    assert_eq!(
        h.get("x-amz-security-token"),
        Some("FwoGZXIvYXdzEXAMPLETOKEN0123456789")
    );
    // What AWS would compute with the real key over what is sent.
    let mut check = got.clone();
    check.signature = String::new();
    let req = Signable {
        method: "GET",
        target: "/test.txt?x=1",
        headers: &h.headers,
        payload_hash: "UNSIGNED-PAYLOAD",
    };
    assert_eq!(
        got.signature,
        sigv4::signature(&req, &check, "20130524T000000Z", REAL_SECRET)
    );
}

#[test]
fn sigv4_is_refused_for_minting_other_services_presigned_urls_and_streaming() {
    let b = aws_bound();
    let host = "examplebucket.s3.amazonaws.com";
    // STS, even at a bound host: never (its every operation mints credentials).
    let mut sts = signed(
        &b,
        "/?Action=GetSessionToken&Version=2011-06-15",
        "sts.amazonaws.com",
        "sts",
        &[],
    );
    let e = apply(&mut sts, "sts.amazonaws.com", 443, &b, None).unwrap_err();
    assert_eq!(e.0, 403, "{e:?}");
    assert!(e.1.contains("mint"), "{e:?}");
    assert!(
        Authorization::parse(sts.get("authorization").unwrap())
            .unwrap()
            .key_id
            != REAL_ID
    );
    // A service the binding does not name: refused.
    let mut other = signed(&b, "/", "s3.amazonaws.com", "dynamodb", &[]);
    assert!(apply(&mut other, "s3.amazonaws.com", 443, &b, None)
        .unwrap_err()
        .1
        .contains("not \"dynamodb\""));
    // A minting operation of a named service.
    let ecr = bound(
        &format!("AWS_ACCESS_KEY_ID={REAL_ID}\nAWS_SECRET_ACCESS_KEY={REAL_SECRET}\nAWS_SESSION_TOKEN=FwoGZXIvYXdzEXAMPLETOKEN0123456789\n"),
        "[[bind]]\nkind = \"aws-sigv4\"\nhosts = [\"api.ecr.us-east-1.amazonaws.com\"]\nservices = [\"ecr\"]\n",
    );
    let mut tok = signed(
        &ecr,
        "/",
        "api.ecr.us-east-1.amazonaws.com",
        "ecr",
        &[(
            "X-Amz-Target",
            "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken",
        )],
    );
    assert_eq!(
        apply(&mut tok, "api.ecr.us-east-1.amazonaws.com", 443, &ecr, None)
            .unwrap_err()
            .0,
        403
    );
    // A presigned URL with the placeholder key: refused.
    let vars = b.variables();
    let mut pre = head(&format!(
        "GET /o?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={}%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=ab HTTP/1.1\r\nHost: s3.amazonaws.com\r\n\r\n",
        vars[0].1
    ));
    assert!(apply(&mut pre, "s3.amazonaws.com", 443, &b, None)
        .unwrap_err()
        .1
        .contains("presigned"));
    // Signed with some other key: left alone.
    let mut foreign_key = head("GET / HTTP/1.1\r\nHost: s3.amazonaws.com\r\nAuthorization: AWS4-HMAC-SHA256 Credential=AKIAOTHER/20130524/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=abc\r\n\r\n");
    assert!(apply(&mut foreign_key, "s3.amazonaws.com", 443, &b, None)
        .unwrap()
        .added
        .is_empty());
    // Streaming signed payloads are refused, not forwarded with a bad signature.
    let mut stream = signed(&b, "/o", host, "s3", &[]);
    stream.set("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD");
    assert!(apply(&mut stream, host, 443, &b, None).is_err());
}

#[test]
fn a_placeholder_is_replaced_only_as_its_slots_whole_value() {
    let b = bound(SECRETS, KEY);
    let v = b.variables();
    let (k, q, t) = (&v[0].1, &v[1].1, &v[2].1);
    let mut ok = head(&format!(
        "GET /v1?key={q}&x=1 HTTP/1.1\r\nHost: a.example\r\nx-api-key: {k}\r\n\r\n"
    ));
    let used = apply(&mut ok, "a.example", 443, &b, None).unwrap();
    assert_eq!(used.added, ["K", "Q"]);
    assert_eq!(
        ok.get("x-api-key"),
        Some("sk-ant-api03-0123456789abcdefghijklmnop")
    );
    assert!(ok
        .target
        .contains("key=AIzaSyD0123456789abcdefghijklmnopqrs"));
    let mut bearer = head(&format!(
        "GET / HTTP/1.1\r\nHost: b.example\r\nAuthorization: Bearer {t}\r\n\r\n"
    ));
    assert_eq!(
        apply(&mut bearer, "b.example", 443, &b, None)
            .unwrap()
            .added,
        ["B"]
    );
    // On another port of the same name: nothing is added.
    let mut port = head(&format!(
        "GET / HTTP/1.1\r\nHost: a.example\r\nx-api-key: {k}\r\n\r\n"
    ));
    assert!(apply(&mut port, "a.example", 8443, &b, None)
        .unwrap()
        .added
        .is_empty());
    assert_eq!(port.get("x-api-key"), Some(k.as_str()));
    // Embedded, twice in one value, in the path, in another header, in a longer parameter: 400.
    for bad in [
        format!("GET / HTTP/1.1\r\nHost: a.example\r\nx-api-key: AAA{k}BBB {k}\r\n\r\n"),
        format!("GET /{k} HTTP/1.1\r\nHost: a.example\r\nx-api-key: {k}\r\n\r\n"),
        format!("GET / HTTP/1.1\r\nHost: a.example\r\nx-echo: {k}\r\nx-api-key: {k}\r\n\r\n"),
        format!("GET /?key={q}x HTTP/1.1\r\nHost: a.example\r\n\r\n"),
        format!("GET /?other={q} HTTP/1.1\r\nHost: a.example\r\n\r\n"),
        format!("GET / HTTP/1.1\r\nHost: b.example\r\nAuthorization: Bearer {t} extra\r\n\r\n"),
    ] {
        let mut h = head(&bad);
        let host = if bad.contains("b.example") {
            "b.example"
        } else {
            "a.example"
        };
        let e = apply(&mut h, host, 443, &b, None).unwrap_err();
        assert_eq!(e.0, 400, "{bad:?}: {e:?}");
        // Nothing was swapped in.
        assert!(
            !h.headers
                .iter()
                .any(|(_, v)| v.contains("0123456789abcdefghijklmnop")),
            "{bad:?}"
        );
    }
}

#[test]
fn the_scanner_finds_a_placeholder_split_across_chunks_once() {
    let b = bound(SECRETS, KEY);
    let ph = b.variables()[0].1.clone();
    let mut s = Scanner::new(foreign(&b, "other.example"));
    let (x, y) = ph.split_at(10);
    assert!(s.feed(format!("aaa{x}").as_bytes()).is_empty());
    assert_eq!(s.feed(format!("{y}bbb").as_bytes()), ["K"]);
    assert!(s.feed(ph.as_bytes()).is_empty(), "reported once");
    assert!(Scanner::new(foreign(&b, "a.example"))
        .feed(ph.as_bytes())
        .is_empty());
    let mut h = head("GET / HTTP/1.1\r\nx-api-key: other\r\n\r\n");
    assert!(apply(&mut h, "a.example", 443, &b, None)
        .unwrap()
        .added
        .is_empty());
}

#[test]
fn operations_are_read_from_target_header_query_and_form() {
    let h = head("POST / HTTP/1.1\r\nX-Amz-Target: DynamoDB_20120810.GetItem\r\n\r\n");
    assert_eq!(operation(&h, None).as_deref(), Some("GetItem"));
    let h = head("GET /?Version=1&Action=GetSessionToken HTTP/1.1\r\n\r\n");
    assert_eq!(operation(&h, None).as_deref(), Some("GetSessionToken"));
    let h = head("POST / HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded; charset=utf-8\r\nContent-Length: 28\r\n\r\n");
    assert_eq!(
        operation(&h, Some(b"Action=AssumeRole&Version=1")).as_deref(),
        Some("AssumeRole")
    );
    let rest = head("GET /bucket/key HTTP/1.1\r\n\r\n");
    assert_eq!(operation(&rest, None), None);
}

/// K (a header) limited to `POST /v1/messages` beside Q (a query parameter, no limits) on the
/// same host, and B (a bearer token) limited to GET.
const LIMITED: &str = "[[bind]]\nname = \"K\"\nhosts = [\"a.example\"]\nheader = \"x-api-key\"\nmethods = [\"POST\"]\npaths = [\"/v1/messages\"]\n[[bind]]\nname = \"Q\"\nhosts = [\"a.example\"]\nquery = \"key\"\n[[bind]]\nname = \"B\"\nhosts = [\"b.example\"]\nauthorization = \"Bearer\"\nmethods = [\"GET\"]\n";
const REAL_K: &str = "sk-ant-api03-0123456789abcdefghijklmnop";

#[test]
fn a_value_is_added_only_within_methods_and_paths() {
    let b = bound(SECRETS, LIMITED);
    let v = b.variables();
    let k = &v[0].1;
    let req = |method: &str, target: &str| {
        head(&format!(
            "{method} {target} HTTP/1.1\r\nHost: a.example\r\nx-api-key: {k}\r\n\r\n"
        ))
    };
    // The control: POST /v1/messages, and what is below it, gets the value.
    for target in ["/v1/messages", "/v1/messages/batches?limit=1"] {
        let mut h = req("POST", target);
        let done = apply(&mut h, "a.example", 443, &b, None).unwrap();
        let want = Applied {
            added: vec!["K".into()],
            withheld: vec![],
        };
        assert_eq!(done, want, "{target}");
        assert_eq!(h.get("x-api-key"), Some(REAL_K));
    }
    // Outside: the placeholder stays as it is, and the binding is reported withheld, with the
    // key that said no (never the request's path or a value).
    for (method, target, why) in [
        ("GET", "/v1/models", "methods (POST)"),
        ("GET", "/v1/messages", "methods (POST)"),
        ("POST", "/v1/models", "paths (/v1/messages)"),
        ("POST", "/v1/messagesX", "paths (/v1/messages)"),
        ("POST", "/v1/messages/../models", "never match"),
        ("POST", "/v1/messages/%2e%2e/models", "never match"),
        ("POST", "/v1/messages%2fbatches", "never match"),
        ("POST", "//v1/messages", "never match"),
        ("POST", "/v1/./messages", "never match"),
        ("POST", "/v1/messages/..;/models", "never match"),
    ] {
        let mut h = req(method, target);
        let done = apply(&mut h, "a.example", 443, &b, None).unwrap();
        assert!(done.added.is_empty(), "{method} {target}: {done:?}");
        let [(name, reason)] = done.withheld.as_slice() else {
            panic!("{method} {target}: {done:?}");
        };
        assert_eq!(name, "K");
        assert!(reason.contains(why), "{method} {target}: {reason}");
        assert!(!reason.contains(k.as_str()) && !reason.contains("models"));
        assert_eq!(h.get("x-api-key"), Some(k.as_str()), "{method} {target}");
        assert!(!format!("{:?}", h.headers).contains(REAL_K));
    }
}

#[test]
fn limits_see_method_overrides_hold_per_binding_and_keep_the_slot_rule() {
    let b = bound(SECRETS, LIMITED);
    let v = b.variables();
    let (k, q, t) = (&v[0].1, &v[1].1, &v[2].1);
    // A method override beside POST: outside too.
    let mut over = head(&format!(
        "POST /v1/messages HTTP/1.1\r\nHost: a.example\r\nX-HTTP-Method-Override: DELETE\r\nx-api-key: {k}\r\n\r\n"
    ));
    let done = apply(&mut over, "a.example", 443, &b, None).unwrap();
    assert!(done.added.is_empty(), "{done:?}");
    assert!(
        done.withheld[0].1.contains("method-override header"),
        "{done:?}"
    );
    assert_eq!(over.get("x-api-key"), Some(k.as_str()));
    // Limits are per binding: Q, unlimited, is added to the request K is withheld from.
    let mut both = head(&format!(
        "GET /v1/models?key={q} HTTP/1.1\r\nHost: a.example\r\nx-api-key: {k}\r\n\r\n"
    ));
    let done = apply(&mut both, "a.example", 443, &b, None).unwrap();
    assert_eq!(done.added, ["Q"]);
    assert_eq!(done.withheld.len(), 1);
    assert_eq!(done.withheld[0].0, "K");
    assert!(both
        .target
        .contains("key=AIzaSyD0123456789abcdefghijklmnopqrs"));
    assert_eq!(both.get("x-api-key"), Some(k.as_str()));
    // A request outside the limits that carries no placeholder is nothing to report.
    let mut bare = head("GET /v1/models HTTP/1.1\r\nHost: a.example\r\n\r\n");
    assert_eq!(
        apply(&mut bare, "a.example", 443, &b, None).unwrap(),
        Applied::default()
    );
    // A method limit alone: B is added to a GET anywhere, withheld from a POST.
    let bearer = |method: &str| {
        head(&format!(
            "{method} /any/path HTTP/1.1\r\nHost: b.example\r\nAuthorization: Bearer {t}\r\n\r\n"
        ))
    };
    let mut get = bearer("GET");
    assert_eq!(
        apply(&mut get, "b.example", 443, &b, None).unwrap().added,
        ["B"]
    );
    let mut post = bearer("POST");
    let done = apply(&mut post, "b.example", 443, &b, None).unwrap();
    assert!(
        done.added.is_empty() && done.withheld[0].0 == "B",
        "{done:?}"
    );
    assert_eq!(
        post.get("authorization"),
        Some(format!("Bearer {t}").as_str())
    );
    // The slot rule holds outside the limits too: a placeholder out of its slot is a 400.
    let mut stray = head(&format!(
        "GET /v1/models HTTP/1.1\r\nHost: a.example\r\nx-echo: {k}\r\nx-api-key: {k}\r\n\r\n"
    ));
    assert_eq!(
        apply(&mut stray, "a.example", 443, &b, None).unwrap_err().0,
        400
    );
}

/// A re-signature adds the key as surely as a header does: SigV4 keeps to `methods` and `paths`
/// too, and a request outside them goes on signed by the placeholder key (which AWS refuses).
#[test]
fn sigv4_is_re_signed_only_within_methods_and_paths() {
    let b = bound(
        &format!("AWS_ACCESS_KEY_ID={REAL_ID}\nAWS_SECRET_ACCESS_KEY={REAL_SECRET}\nAWS_SESSION_TOKEN=FwoGZXIvYXdzEXAMPLETOKEN0123456789\n"),
        "[[bind]]\nkind = \"aws-sigv4\"\nhosts = [\"s3.amazonaws.com\"]\nservices = [\"s3\"]\nmethods = [\"GET\", \"HEAD\"]\npaths = [\"/reports\"]\n",
    );
    let host = "s3.amazonaws.com";
    let ph_token = b.variables()[2].1.clone();
    let key_id = |h: &Head| {
        Authorization::parse(h.get("authorization").unwrap())
            .unwrap()
            .key_id
    };
    // The control: GET /reports/... is re-signed with the real key.
    let mut ok = signed(&b, "/reports/q1.csv", host, "s3", &[]);
    ok.remove("x-amz-content-sha256");
    assert!(needs_body(&ok, host, 443, &b));
    ok.set("x-amz-content-sha256", "UNSIGNED-PAYLOAD");
    let done = apply(&mut ok, host, 443, &b, None).unwrap();
    assert_eq!(done.added, ["AWS_ACCESS_KEY_ID"]);
    assert_eq!(key_id(&ok), REAL_ID);
    assert_eq!(
        ok.get("x-amz-security-token"),
        Some("FwoGZXIvYXdzEXAMPLETOKEN0123456789")
    );
    for (method, target, why) in [
        ("GET", "/secrets/key.pem", "paths (/reports)"),
        ("GET", "/reportsX/q1.csv", "paths (/reports)"),
        ("PUT", "/reports/q1.csv", "methods (GET, HEAD)"),
        ("DELETE", "/reports/q1.csv", "methods (GET, HEAD)"),
        ("GET", "/reports/../secrets/key.pem", "never match"),
        ("GET", "/reports/%2e%2e/secrets/key.pem", "never match"),
        ("GET", "/reports%2F..%2Fsecrets", "never match"),
    ] {
        let mut h = signed(&b, target, host, "s3", &[]);
        h.method = method.into();
        let before = h.get("authorization").unwrap().to_string();
        let done = apply(&mut h, host, 443, &b, None).unwrap();
        assert!(done.added.is_empty(), "{method} {target}: {done:?}");
        assert_eq!(done.withheld.len(), 1, "{method} {target}");
        assert_eq!(done.withheld[0].0, "AWS_ACCESS_KEY_ID");
        assert!(done.withheld[0].1.contains(why), "{:?}", done.withheld);
        assert_eq!(h.get("authorization"), Some(before.as_str()));
        assert_ne!(key_id(&h), REAL_ID);
        assert_eq!(h.get("x-amz-security-token"), Some(ph_token.as_str()));
        // Not re-signed, so its body is never held back to hash.
        h.remove("x-amz-content-sha256");
        assert!(!needs_body(&h, host, 443, &b), "{method} {target}");
    }
}
