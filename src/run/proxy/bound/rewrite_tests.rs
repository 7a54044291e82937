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
        .is_empty());
    let used = apply(&mut h, host, 443, &b, None).unwrap();
    assert_eq!(used, ["AWS_ACCESS_KEY_ID"]);
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
    assert_eq!(used, ["K", "Q"]);
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
        apply(&mut bearer, "b.example", 443, &b, None).unwrap(),
        ["B"]
    );
    // On another port of the same name: nothing is added.
    let mut port = head(&format!(
        "GET / HTTP/1.1\r\nHost: a.example\r\nx-api-key: {k}\r\n\r\n"
    ));
    assert!(apply(&mut port, "a.example", 8443, &b, None)
        .unwrap()
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
