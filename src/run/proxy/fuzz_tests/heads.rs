//! `http::parse_request` and `http::parse_response` against the oracle and `httparse`.

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::cases;
use super::gen::*;
use super::oracle::*;
use crate::run::proxy::http::{self, Framing, MAX_HEADERS};

fn check_request(b: &[u8]) -> Result<(), TestCaseError> {
    let ours = http::parse_request(b);
    let want = oracle_request(b);
    match (&ours, &want) {
        (Ok(h), Ok(w)) => {
            let got = (&h.method, &h.target, h.minor, &h.headers);
            prop_assert_eq!(got, (&w.method, &w.target, w.minor, &w.fields));
            prop_assert_eq!(http::request_framing(h).unwrap(), w.framing);
        }
        (Err((code, why)), Err(w)) => prop_assert_eq!(code, w, "{}", why),
        _ => prop_assert!(false, "ours {:?}, the oracle {:?}", ours, want),
    }
    if let Some(shape) = smuggling_shape(b) {
        prop_assert!(ours.is_err(), "accepted with {}", shape);
    }
    if let Ok(h) = &ours {
        // httparse reads the same bytes the same way.
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut r = httparse::Request::new(&mut slots);
        prop_assert_eq!(r.parse(b), Ok(httparse::Status::Complete(b.len())));
        prop_assert_eq!(r.method, Some(h.method.as_str()));
        prop_assert_eq!(r.path, Some(h.target.as_str()));
        prop_assert_eq!(r.version, Some(h.minor));
        prop_assert_eq!(owned(r.headers), h.headers.clone());
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(1000))]

    #[test]
    fn fuzz_http_parse_request(b in any_request_head().prop_map(Shown)) {
        check_request(&b.0)?;
    }
}

// ---------------------------------------------------------------- 2. parse_response

fn check_response(b: &[u8], method: &str) -> Result<(), TestCaseError> {
    let ours = http::parse_response(b);
    let want = oracle_head(b, status_line);
    match (&ours, &want) {
        (Ok(r), Ok((code, fields))) => {
            prop_assert_eq!((r.status, &r.headers), (*code, fields));
            let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut h = httparse::Response::new(&mut slots);
            prop_assert_eq!(h.parse(b), Ok(httparse::Status::Complete(b.len())));
            prop_assert_eq!(h.code, Some(r.status));
            prop_assert_eq!(owned(h.headers), r.headers.clone());
            // RFC 9112 §6.3.
            let no_body = method.eq_ignore_ascii_case("HEAD")
                || r.status < 200
                || r.status == 204
                || r.status == 304;
            let want = match no_body {
                true => Ok(Framing::None),
                false => oracle_framing(fields, None)
                    .map(|f| f.unwrap_or(Framing::Close))
                    .map_err(|_| 502),
            };
            let got = http::response_framing(method, r).map_err(|(c, _)| c);
            prop_assert_eq!(got, want);
        }
        (Err((code, _)), Err(_)) => prop_assert_eq!(*code, 502),
        _ => prop_assert!(false, "ours {:?}, the oracle {:?}", ours, want),
    }
    if !clean(b) {
        prop_assert!(ours.is_err(), "accepted bytes outside the grammar");
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(1000))]

    #[test]
    fn fuzz_http_parse_response(
        b in prop_oneof![
            4 => response_head(),
            1 => prop::collection::vec(any::<u8>(), 0..300),
            1 => token_soup(),
        ].prop_map(Shown),
        method in prop::sample::select(vec!["GET", "HEAD", "head", "POST", "CONNECT"]),
    ) {
        check_response(&b.0, method)?;
    }
}
