//! The corpus `fuzz/corpus/http/` of request heads, each named `ok-*` or `err-*` for the outcome
//! it must have at the gate.

use std::path::Path;

use super::oracle::*;
use crate::run::proxy::http::{self, Framing};
use crate::run::proxy::request::{absolute_form, origin_head, split_host_port};

/// The gate's verdict on a request head: parsed strictly, and what `request::http` checks next
/// (`CONNECT` to `host:port` without a body; else an `http://` absolute-form URL without
/// credentials); for a forward request, the head sent on must frame the body the same way.
fn gate_verdict(head: &[u8]) -> Result<(), (u16, String)> {
    let req = http::parse_request(head)?;
    let denial = |d: crate::run::proxy::Denial| (d.status, d.reason);
    if req.method == "CONNECT" {
        if http::request_framing(&req) != Ok(Framing::None) {
            return Err((400, "CONNECT takes no body".into()));
        }
        split_host_port(&req.target, None).map_err(denial)?;
        return Ok(());
    }
    let (authority, path) = absolute_form(&req.target).map_err(denial)?;
    split_host_port(authority, Some(80)).map_err(denial)?;
    // The head sent on, by the forward path and by the interception path (`Head::to_bytes`).
    for sent in [origin_head(&req, authority, &path), req.to_bytes().to_vec()] {
        let again = oracle_request_max(&sent, SENT_ON_MAX).expect("the head sent on parses");
        assert_eq!(
            Ok(again.framing),
            http::request_framing(&req),
            "the head sent on frames the body otherwise: {}",
            String::from_utf8_lossy(&sent)
        );
    }
    Ok(())
}

#[test]
fn fuzz_corpus_http() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/http");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect();
    files.sort();
    assert!(files.len() >= 5, "corpus http is nearly empty");
    for (name, bytes) in files {
        let ok = match name.split('-').next() {
            Some("ok") => true,
            Some("err") => false,
            _ => panic!("corpus file {name} must be named ok-* or err-*"),
        };
        let verdict = gate_verdict(&bytes);
        assert_eq!(verdict.is_ok(), ok, "{name}: {verdict:?}");
        // The oracle agrees on the parse, and every smuggling shape is refused.
        let parsed = http::parse_request(&bytes).map(|_| ()).map_err(|e| e.0);
        assert_eq!(parsed, oracle_request(&bytes).map(|_| ()), "{name}");
        if let Some(shape) = smuggling_shape(&bytes) {
            assert!(parsed.is_err(), "{name}: accepted with {shape}");
        }
    }
}
