//! Fuzzing of the gate's parsers, as property tests (stable Rust has no cargo-fuzz): everything the
//! sandbox writes to the proxy and everything a bound host answers is hostile input.
//!
//! - [`super::http::parse_request`]: against an independent oracle written from RFC 9112 (the same
//!   status for every input), against `httparse` (whatever we accept it accepts alike), and the
//!   smuggling shapes it must refuse; heads from a grammar with hostile bytes injected.
//! - [`super::http::parse_response`] and [`super::http::response_framing`]: the same for response heads.
//! - [`super::http::chunk_size`] and [`super::http::copy_chunked`]: against `httparse::parse_chunk_size`;
//!   generated chunked bodies round-trip through the terminating CRLF and not a byte further,
//!   truncated or corrupted ones are refused.
//! - The front door: a real proxy on 127.0.0.1 with a fake resolver and connector, fed arbitrary
//!   bytes, near-valid forward requests, `CONNECT`s and SOCKS5 requests; every reply has a known
//!   shape, nothing is dialled but the one allowed origin, what reaches the origin is a strict head
//!   with the body as framed and nothing after it, and the proxy serves a control request after.
//! - The response scrubber: no encoding of a secret survives, whatever the split points; lengths
//!   are kept; text without a secret passes unchanged.
//! - The corpus `fuzz/corpus/http/` of request heads, each named `ok-*` or `err-*` for the outcome
//!   it must have at the gate.
//!
//! The case counts are small so `cargo test` stays quick; run longer with
//! `PROPTEST_CASES=5000 cargo test --lib fuzz_` (the variable replaces every count here).

use proptest::prelude::ProptestConfig;

mod chunks;
mod corpus;
mod front_door;
mod gate;
mod gen;
mod heads;
mod oracle;
mod scrub;

/// `n` cases, or `PROPTEST_CASES` when set; failures are not written to files in the tree.
fn cases(n: u32) -> ProptestConfig {
    let mut c = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = n;
    }
    c.failure_persistence = None;
    c
}
