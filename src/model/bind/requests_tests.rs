//! `methods` and `paths` of a binding: what the policy accepts, and which requests they cover,
//! the spellings that dodge a prefix included.

use super::*;

fn method(s: &str) -> Result<Method, LimitError> {
    Method::try_from(s.to_string())
}

fn path(s: &str) -> Result<PathPrefix, LimitError> {
    PathPrefix::try_from(s.to_string())
}

/// `methods = ["POST"]`, `paths = ["/v1/messages"]`.
fn post_messages() -> Requests {
    Requests {
        methods: Some(vec![method("POST").unwrap()]),
        paths: Some(vec![path("/v1/messages").unwrap()]),
    }
}

#[test]
fn methods_are_capital_tokens() {
    for ok in ["POST", "GET", "VERSION-CONTROL", "M_SEARCH", "X1"] {
        assert_eq!(method(ok).unwrap().0, ok);
    }
    let e = method("post").unwrap_err();
    assert_eq!(
        e,
        LimitError::MethodCase {
            given: "post".into()
        }
    );
    assert!(
        e.to_string()
            .starts_with("secrets.bind methods: \"post\" is not in capitals; write \"POST\""),
        "{e}"
    );
    for bad in [
        "",
        "PO ST",
        "1GET",
        "GET\r",
        "GET/",
        "P\u{c9}ST",
        &"A".repeat(33),
    ] {
        let e = method(bad).unwrap_err();
        assert_eq!(e, LimitError::Method { given: bad.into() });
        assert!(e.to_string().contains("e.g. methods = [\"POST\"]"), "{e}");
    }
}

#[test]
fn path_prefixes_are_plain() {
    for ok in [
        "/",
        "/v1/messages",
        "/v1/a.b",
        "/.well-known/x",
        "/v1/a:b@c",
        "/a-b_c~d",
    ] {
        assert_eq!(path(ok).unwrap().as_str(), ok);
    }
    type Made = fn(String) -> LimitError;
    let cases: &[(&str, Made)] = &[
        ("v1/messages", |given| LimitError::PathStart { given }),
        ("", |given| LimitError::PathStart { given }),
        ("/v1/messages?x=1", |given| LimitError::PathQuery { given }),
        ("/v1#x", |given| LimitError::PathQuery { given }),
        ("/v1/%2e%2e", |given| LimitError::PathEncoded { given }),
        ("/v1/messages%2Fx", |given| LimitError::PathEncoded {
            given,
        }),
        ("/v1;x", |given| LimitError::PathChar { given }),
        ("/v1 x", |given| LimitError::PathChar { given }),
        ("/v1\\x", |given| LimitError::PathChar { given }),
        ("/v1/caf\u{e9}", |given| LimitError::PathChar { given }),
        ("/v1//x", |given| LimitError::PathSegment { given }),
        ("//", |given| LimitError::PathSegment { given }),
        ("/v1/", |given| LimitError::PathSegment { given }),
        ("/v1/..", |given| LimitError::PathSegment { given }),
        ("/v1/./x", |given| LimitError::PathSegment { given }),
        ("/..", |given| LimitError::PathSegment { given }),
    ];
    for (bad, made) in cases {
        let e = path(bad).unwrap_err();
        assert_eq!(e, made(bad.to_string()));
        let text = e.to_string();
        assert!(
            text.starts_with(&format!("secrets.bind paths: {bad:?} ")),
            "{text}"
        );
    }
    let long = format!("/{}", "a".repeat(1024));
    let e = path(&long).unwrap_err();
    assert!(matches!(e, LimitError::PathLong { .. }));
    assert!(e.to_string().contains("longer than 1024 bytes"), "{e}");
    assert!(path("/v1/messages/")
        .unwrap_err()
        .to_string()
        .contains("e.g. \"/v1/messages\" (it covers \"/v1/messages/...\" too)"));
}

#[test]
fn a_prefix_covers_its_path_and_what_is_below_it() {
    let r = post_messages();
    for target in [
        "/v1/messages",
        "/v1/messages/",
        "/v1/messages/batches",
        "/v1/messages/batches/msgbatch_01",
        "/v1/messages?beta=true",
        "/v1/messages?p=/../models",
        "/v1/messages/count_tokens?x=%2e%2e",
        "/v1/messages/a%20b",
        "/v1/messages/caf%C3%A9",
        "/v1/messages/a;v=1",
        "/v1/messages/.well-known",
        "/v1/messages/a..b",
    ] {
        assert_eq!(r.admits("POST", target, &[]), Ok(()), "{target}");
    }
    for target in [
        "/v1/messagesX",
        "/v1/messages-batches",
        "/v1/messages;x",
        "/v1/models",
        "/v1/message",
        "/v1",
        "/",
        "/V1/Messages",
        "/v2/messages",
        "/x/v1/messages",
    ] {
        assert_eq!(
            r.admits("POST", target, &[]),
            Err(Outside::Path),
            "{target}"
        );
    }
    for m in ["GET", "HEAD", "PUT", "post", "POST "] {
        assert_eq!(
            r.admits(m, "/v1/messages", &[]),
            Err(Outside::Method),
            "{m}"
        );
    }
    // `/` covers every plain path; without limits, everything is admitted.
    let root = Requests {
        methods: None,
        paths: Some(vec![path("/").unwrap()]),
    };
    assert!(root.admits("DELETE", "/anything/at/all", &[]).is_ok());
    assert_eq!(root.admits("GET", "/a/../b", &[]), Err(Outside::NotPlain));
    assert!(Requests::default().admits("GET", "/a/../b", &[]).is_ok());
    let methods_only = Requests {
        methods: Some(vec![method("GET").unwrap()]),
        paths: None,
    };
    assert!(methods_only.admits("GET", "/a/%2e%2e/b", &[]).is_ok());
    assert_eq!(methods_only.admits("POST", "/", &[]), Err(Outside::Method));
}

/// The spellings a host may read as another path than the one written are never covered, even
/// when they start with the prefix (the control: the same request without `paths` is admitted,
/// and its plain spelling is covered).
#[test]
fn evasions_are_never_covered() {
    let r = post_messages();
    let anywhere = Requests {
        methods: r.methods.clone(),
        paths: None,
    };
    assert!(r.admits("POST", "/v1/messages/models", &[]).is_ok());
    for target in [
        "/v1/messages/../models",
        "/v1/messages/..",
        "/v1/messages/.",
        "/v1/messages/./batches",
        "/v1/messages/...",
        "/v1/messages/%2e%2e/models",
        "/v1/messages/%2E%2e/models",
        "/v1/messages/.%2e/models",
        "/v1/messages/%2e",
        "/v1/messages%2fbatches",
        "/v1/messages/%2F..%2Fmodels",
        "/v1/messages/%5c..%5cmodels",
        "/v1/messages\\..\\models",
        "/v1/messages/%252e%252e/models",
        "/v1/messages/%3b/x",
        "/v1/messages/..;/models",
        "/v1/messages/..;x=1/models",
        "/v1/messages/;/x",
        "//v1/messages",
        "/v1//messages",
        "/v1/messages//batches",
        "/v1/messages/%c0%ae%c0%ae/models",
        "/v1/messages/%c0%af",
        "/v1/messages/%e0%80%af",
        "/v1/messages/%ff",
        "/v1/messages/%00",
        "/v1/messages/%0d%0a",
        "/v1/messages/%7f",
        "/v1/messages/%6dodels",
        "/v1/m%65ssages",
        "/v1/messages/%zz",
        "/v1/messages/%2",
        "/v1/messages/%",
        "/v1/messages/x#frag",
        "/v1/messages/x y",
        "/v1/messages/caf\u{e9}",
        "/v1/messages/\"",
        "/v1/messages/<x>",
        "*",
        "https://api.anthropic.com/v1/messages",
        "v1/messages",
        "",
    ] {
        assert_eq!(
            r.admits("POST", target, &[]),
            Err(Outside::NotPlain),
            "{target}"
        );
        assert_eq!(anywhere.admits("POST", target, &[]), Ok(()), "{target}");
    }
}

#[test]
fn withheld_reasons_name_the_key_never_the_request() {
    let r = post_messages();
    assert_eq!(
        r.explain(Outside::Method),
        "its method is not in the binding's methods (POST)"
    );
    assert_eq!(
        r.explain(Outside::Path),
        "its path is under none of the binding's paths (/v1/messages)"
    );
    let not_plain = r.explain(Outside::NotPlain);
    assert!(not_plain.contains("never match"), "{not_plain}");
    assert!(!not_plain.contains("/v1"), "{not_plain}");
}

/// With `methods`, a request that names another method beside its request line (the headers
/// frameworks honour, a `_method` parameter in any spelling) is outside; without `methods`, or
/// with a parameter that only looks alike, it is not (the control).
#[test]
fn a_method_override_is_outside_the_methods() {
    let r = post_messages();
    let h = |name: &str| vec![(name.to_string(), "DELETE".to_string())];
    for name in [
        "X-HTTP-Method-Override",
        "x-http-method",
        "X-Method-Override",
    ] {
        assert_eq!(
            r.admits("POST", "/v1/messages", &h(name)),
            Err(Outside::MethodOverride),
            "{name}"
        );
    }
    for target in [
        "/v1/messages?_method=DELETE",
        "/v1/messages?a=1&_METHOD=DELETE",
        "/v1/messages?%5Fmethod=DELETE",
        "/v1/messages?_%6dethod=DELETE",
        "/v1/messages?_method",
    ] {
        assert_eq!(
            r.admits("POST", target, &[]),
            Err(Outside::MethodOverride),
            "{target}"
        );
    }
    // The controls.
    assert!(r.admits("POST", "/v1/messages", &h("x-api-key")).is_ok());
    assert!(r
        .admits("POST", "/v1/messages?method=x&_methods=y&a=_method", &[])
        .is_ok());
    let paths_only = Requests {
        methods: None,
        paths: r.paths.clone(),
    };
    assert!(paths_only
        .admits(
            "POST",
            "/v1/messages?_method=DELETE",
            &h("X-HTTP-Method-Override")
        )
        .is_ok());
    assert!(r
        .explain(Outside::MethodOverride)
        .contains("method-override header"));
}
