//! `http::chunk_size` and `http::copy_chunked`: chunk-size lines against `httparse`, generated
//! chunked bodies round-trip, truncated or corrupted ones are refused.

use std::io::{self, Read};

use proptest::prelude::*;
use proptest::sample::Index;

use super::cases;
use super::gen::*;
use super::oracle::*;
use crate::run::proxy::http;

/// A chunk-size line: hex digits (any case, leading zeros), whitespace, an extension, a line end;
/// then mutated.
fn chunk_line() -> impl Strategy<Value = Vec<u8>> {
    let digits = prop_oneof![
        4 => "[0-9a-fA-F]{1,4}",
        1 => "0{0,20}[0-9a-fA-F]{0,20}",
        1 => prop::sample::select(vec!["", "0x5", "+5", "-5", "5 5", "ffffffffffffffff", "10000000000000000"])
            .prop_map(String::from),
    ];
    let ws = prop::sample::select(vec!["", "", "", " ", "\t", "  "]);
    let ext = prop_oneof![
        3 => Just(String::new()),
        1 => prop::sample::select(vec![";x", ";x=1", ";n=\"q v\"", ";", ";;", "; x = 1"]).prop_map(String::from),
        1 => ";[ -~\t]{0,12}",
    ];
    let end = prop::sample::select(vec!["\r\n", "\r\n", "\r\n", "\n", "\r", "", "\r\n\r\n"]);
    (digits, ws, ext, end, mutations())
        .prop_map(|(d, w, x, e, muts)| mutate(format!("{d}{w}{x}{e}").into_bytes(), &muts))
}

/// httparse's grammar for a chunk-size line, on clean bytes: 1 to 16 hex digits, whitespace,
/// optionally `;` and anything, CRLF (and no other line end).
fn oracle_chunk_size(line: &[u8]) -> Option<u64> {
    let body = line.strip_suffix(b"\r\n")?;
    if !clean(line) || body.contains(&b'\r') {
        return None;
    }
    let n = body.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if !(1..=16).contains(&n) {
        return None;
    }
    let rest = &body[n..];
    let ws = rest
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t'))
        .count();
    if !(rest[ws..].is_empty() || rest[ws] == b';') {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(&body[..n]).unwrap(), 16).ok()
}

proptest! {
    #![proptest_config(cases(1000))]

    #[test]
    fn fuzz_http_chunk_size(
        line in prop_oneof![
            4 => chunk_line(),
            1 => prop::collection::vec(any::<u8>(), 0..24),
        ].prop_map(Shown),
    ) {
        let line = line.0;
        let ours = http::chunk_size(&line).ok();
        prop_assert_eq!(ours, oracle_chunk_size(&line));
        if let Some(n) = ours {
            prop_assert_eq!(
                httparse::parse_chunk_size(&line),
                Ok(httparse::Status::Complete((line.len(), n)))
            );
        }
    }
}

/// A reader that hands out its bytes in pieces of the given sizes, and counts what it gave.
struct Pieces<'a> {
    data: &'a [u8],
    pos: usize,
    sizes: Vec<usize>,
    k: usize,
}

impl<'a> Pieces<'a> {
    fn new(data: &'a [u8], sizes: Vec<usize>) -> Pieces<'a> {
        Pieces {
            data,
            pos: 0,
            sizes,
            k: 0,
        }
    }
}

impl Read for Pieces<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let piece = self.sizes.get(self.k % self.sizes.len().max(1)).copied();
        self.k += 1;
        let n = out
            .len()
            .min(piece.unwrap_or(usize::MAX).max(1))
            .min(self.data.len() - self.pos);
        out[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// `copy_chunked` over `input`: the result, what it wrote, the payload it saw, what it read.
fn run_chunked(input: &[u8], sizes: Vec<usize>) -> (io::Result<()>, Vec<u8>, Vec<u8>, usize) {
    let mut from = Pieces::new(input, sizes);
    let (mut out, mut seen) = (Vec::new(), Vec::new());
    let r = http::copy_chunked(&mut from, &mut out, &mut |b| seen.extend_from_slice(b));
    (r, out, seen, from.pos)
}

fn piece_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..20, 1..5)
}

proptest! {
    #![proptest_config(cases(400))]

    #[test]
    fn fuzz_http_chunked_round_trip(
        body in chunked_body(),
        after in prop::collection::vec(any::<u8>(), 0..16),
        sizes in piece_sizes(),
    ) {
        let e = body.encode();
        let mut input = e.bytes.clone();
        input.extend_from_slice(&after);
        let (r, out, seen, read) = run_chunked(&input, sizes);
        prop_assert!(r.is_ok(), "{:?}", r);
        prop_assert_eq!(seen, body.payload());
        prop_assert_eq!(&out, &e.bytes);
        // Not a byte beyond the body's end is consumed (it belongs to whatever follows).
        prop_assert_eq!(read, e.bytes.len());
    }

    #[test]
    fn fuzz_http_chunked_truncated_is_refused(
        body in chunked_body(),
        cut in any::<Index>(),
        sizes in piece_sizes(),
    ) {
        let e = body.encode();
        let short = &e.bytes[..cut.index(e.bytes.len())];
        let (r, out, _, _) = run_chunked(short, sizes);
        prop_assert!(r.is_err());
        prop_assert!(e.bytes.starts_with(&out));
    }

    #[test]
    fn fuzz_http_chunked_corrupted_is_refused(
        body in chunked_body(),
        at in any::<Index>(),
        to in any::<u8>(),
        digit in any::<bool>(),
        after in prop::collection::vec(any::<u8>(), 0..16),
        sizes in piece_sizes(),
    ) {
        // A framing CR or LF made anything else, or a size digit made a byte that cannot go on a
        // size (not a digit, not whitespace or `;`): refused, with or without bytes after.
        let e = body.encode();
        let mut input = e.bytes.clone();
        let ok_in_size = |b: u8| b.is_ascii_hexdigit() || matches!(b, b' ' | b'\t' | b';');
        match digit {
            true if !ok_in_size(to) => input[e.digits[at.index(e.digits.len())]] = to,
            _ if to != b'\r' && to != b'\n' => input[e.line_ends[at.index(e.line_ends.len())]] = to,
            _ => return Ok(()),
        }
        input.extend_from_slice(&after);
        let (r, out, _, read) = run_chunked(&input, sizes);
        prop_assert!(r.is_err(), "accepted {:?}", String::from_utf8_lossy(&input));
        prop_assert!(input.starts_with(&out));
        prop_assert!(read <= input.len());
    }

    #[test]
    fn fuzz_http_chunked_arbitrary(
        input in prop_oneof![
            1 => prop::collection::vec(any::<u8>(), 0..200),
            2 => prop::collection::vec(
                prop::sample::select(vec![
                    &b"5\r\n"[..], b"0\r\n", b"\r\n", b"hello", b"a;x\r\n", b"\n", b"\r", b"X: y\r\n",
                    b"ffffffff\r\n", b" ", b"0", b"\0",
                ]),
                0..12,
            )
            .prop_map(|v| v.concat()),
        ].prop_map(Shown),
        sizes in piece_sizes(),
    ) {
        let input = input.0;
        let (r, out, seen, read) = run_chunked(&input, sizes);
        prop_assert!(input.starts_with(&out));
        prop_assert!(read <= input.len());
        if r.is_ok() {
            // A body accepted once is accepted again as it was copied, whole.
            prop_assert_eq!(read, out.len());
            let (again, out2, seen2, _) = run_chunked(&out, vec![7]);
            prop_assert!(again.is_ok());
            prop_assert_eq!(out2, out);
            prop_assert_eq!(seen2, seen);
        }
    }
}
