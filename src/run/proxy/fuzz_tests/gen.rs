//! The generators every fuzz module shares: hostile bytes, mutations, token soup, and HTTP heads
//! (requests and responses) from a grammar.

use proptest::prelude::*;
use proptest::sample::Index;

/// Bytes shown as escaped text when a case fails.
#[derive(Clone)]
pub(super) struct Shown(pub(super) Vec<u8>);

impl std::fmt::Debug for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "b\"{}\"", self.0.escape_ascii())
    }
}

/// A byte a smuggler would try: line ends, NUL and other controls, DEL, bytes outside ASCII,
/// and the separators of the grammar; or any byte.
pub(super) fn hostile_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => prop::sample::select(vec![
            b'\n', b'\r', 0, 0x01, 0x0b, 0x0c, 0x1b, 0x7f, 0x80, 0xc3, 0xff, b'\t', b' ', b':',
            b',', b';',
        ]),
        1 => any::<u8>(),
    ]
}

/// One change to a generated text: a byte inserted, replaced or deleted, or one CRLF made a bare
/// LF or a bare CR.
#[derive(Debug, Clone)]
pub(super) enum Mutation {
    Insert(Index, u8),
    Replace(Index, u8),
    Delete(Index),
    BareLf(Index),
    BareCr(Index),
}

pub(super) fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let one = prop_oneof![
        (any::<Index>(), hostile_byte()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<Index>(), hostile_byte()).prop_map(|(i, b)| Mutation::Replace(i, b)),
        any::<Index>().prop_map(Mutation::Delete),
        any::<Index>().prop_map(Mutation::BareLf),
        any::<Index>().prop_map(Mutation::BareCr),
    ];
    prop_oneof![3 => Just(Vec::new()), 2 => prop::collection::vec(one, 1..4)]
}

pub(super) fn mutate(mut v: Vec<u8>, ms: &[Mutation]) -> Vec<u8> {
    for m in ms {
        let crlfs: Vec<usize> = v
            .windows(2)
            .enumerate()
            .filter(|(_, w)| *w == b"\r\n")
            .map(|(i, _)| i)
            .collect();
        match m {
            Mutation::Insert(i, b) => v.insert(i.index(v.len() + 1), *b),
            Mutation::Replace(i, b) if !v.is_empty() => {
                let at = i.index(v.len());
                v[at] = *b;
            }
            Mutation::Delete(i) if !v.is_empty() => {
                v.remove(i.index(v.len()));
            }
            Mutation::BareLf(i) if !crlfs.is_empty() => {
                v.remove(crlfs[i.index(crlfs.len())]);
            }
            Mutation::BareCr(i) if !crlfs.is_empty() => {
                v.remove(crlfs[i.index(crlfs.len())] + 1);
            }
            _ => {}
        }
    }
    v
}

/// Pieces of HTTP, glued at random: reaches further into a parser than uniform bytes.
pub(super) fn token_soup() -> impl Strategy<Value = Vec<u8>> {
    let token = prop::sample::select(vec![
        &b"GET"[..],
        b"POST",
        b"CONNECT",
        b" ",
        b"/",
        b"http://origin.test",
        b"HTTP/1.1",
        b"HTTP/1.0",
        b"\r\n",
        b"\r\n\r\n",
        b"\n",
        b"\r",
        b":",
        b": ",
        b"Host",
        b"Content-Length",
        b"Transfer-Encoding",
        b"chunked",
        b"5",
        b"0",
        b"+",
        b",",
        b";",
        b"\t",
        b"\0",
        b"\x7f",
        b"\xff",
        b"x",
    ]);
    (prop::collection::vec(token, 0..40), any::<bool>()).prop_map(|(ts, end)| {
        let mut v = ts.concat();
        if end {
            v.extend_from_slice(b"\r\n\r\n");
        }
        v
    })
}

pub(super) fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "Host",
            "Content-Length",
            "content-length",
            "CONTENT-LENGTH",
            "Transfer-Encoding",
            "transfer-encoding",
            "Connection",
            "Proxy-Connection",
            "Proxy-Authorization",
            "Keep-Alive",
            "TE",
            "Upgrade",
            "Expect",
            "X-Api-Key",
            "User-Agent",
            "Content-Length ",
            " Content-Length",
            "Transfer_Encoding",
            "X",
        ])
        .prop_map(String::from),
        2 => "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}",
        1 => "[!-~]{0,8}",
    ]
}

pub(super) fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "5",
            "0",
            "12",
            "+5",
            "-1",
            "5, 5",
            " 5 ",
            "05",
            "0x5",
            "1e3",
            "5 5",
            "",
            "999999999999999999",
            "9999999999999999999",
            "18446744073709551616",
            "chunked",
            "Chunked",
            "CHUNKED",
            "chunked, identity",
            "chunked,chunked",
            "identity",
            "gzip, chunked",
            " chunked",
            "chunked ",
            "chunked\t",
            "xchunked",
            "chunked;q=1",
            "close",
            "keep-alive",
            "Content-Length",
            "Transfer-Encoding",
            "content-length, x-a",
            "transfer-encoding",
            "100-continue",
            "origin.test",
            "a\tb",
        ])
        .prop_map(String::from),
        2 => "[ -~\t]{0,16}",
    ]
}

/// A header line: mostly `name: value`, sometimes a folded or shapeless line.
pub(super) fn header_line() -> impl Strategy<Value = String> {
    let sep = prop::sample::select(vec![": ", ":", ":\t", ":  ", " : "]);
    prop_oneof![
        6 => (header_name(), sep, header_value()).prop_map(|(n, s, v)| format!("{n}{s}{v}")),
        1 => ("[ \t]", "[ -~]{0,10}").prop_map(|(a, b)| format!("{a}{b}")),
        1 => "[ -~\t]{0,24}",
    ]
}

pub(super) fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(vec![
            "GET", "POST", "PUT", "HEAD", "CONNECT", "OPTIONS", "DELETE", "get", "G@T", "",
        ])
        .prop_map(String::from),
        1 => "[A-Z]{1,7}",
        1 => "[!-~]{1,5}",
    ]
}

pub(super) fn target() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "/",
            "/p?q=1",
            "http://origin.test/",
            "http://a.test:8080/x#f",
            "*",
            "origin.test:443",
            "http://u:p@a.test/",
            "HTTP://A.TEST",
        ])
        .prop_map(String::from),
        2 => "[!-~]{1,24}",
    ]
}

pub(super) fn version() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(vec!["HTTP/1.1", "HTTP/1.0"]).prop_map(String::from),
        1 => prop::sample::select(vec![
            "HTTP/2.0", "HTTP/1.2", "http/1.1", "HTTP/1.1 ", "HTTP/1", "HTTP/1.10", "",
        ])
        .prop_map(String::from),
    ]
}

/// Headers: a few generated lines, sometimes padded with `X-n: y` lines to near the limit.
pub(super) fn header_block() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(header_line(), 0..8),
        prop_oneof![8 => Just(0usize), 1 => 90usize..110],
    )
        .prop_map(|(hs, many)| {
            let mut s = String::new();
            for h in hs {
                s.push_str(&h);
                s.push_str("\r\n");
            }
            for i in 0..many {
                s.push_str(&format!("X-{i}: y\r\n"));
            }
            s
        })
}

/// Well-formed headers only (for the front door, where most cases should get past the parser).
pub(super) fn clean_header_block() -> impl Strategy<Value = String> {
    let name = prop::sample::select(vec![
        "Host",
        "User-Agent",
        "Accept",
        "X-A",
        "Expect",
        "Keep-Alive",
        "TE",
        "Upgrade",
        "Proxy-Authorization",
    ]);
    prop::collection::vec((name, "[!-~]([ -~]{0,10}[!-~])?"), 0..4).prop_map(|hs| {
        hs.iter()
            .map(|(n, v)| format!("{n}: {v}\r\n"))
            .collect::<String>()
    })
}

/// Headers at the front door: mostly well-formed.
pub(super) fn door_headers() -> impl Strategy<Value = String> {
    prop_oneof![6 => clean_header_block(), 1 => header_block()]
}

/// The version at the front door: mostly HTTP/1.1.
pub(super) fn door_version() -> impl Strategy<Value = String> {
    prop_oneof![8 => Just("HTTP/1.1".to_string()), 1 => version()]
}

/// Mutations at the front door: rarer.
pub(super) fn door_mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop_oneof![4 => Just(Vec::new()), 1 => mutations()]
}

/// A request head from the grammar, then mutated.
pub(super) fn request_head() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![6 => Just(0usize), 1 => 1usize..3],
        method(),
        target(),
        version(),
        header_block(),
        mutations(),
    )
        .prop_map(|(lead, m, t, v, hs, muts)| {
            let s = format!("{}{m} {t} {v}\r\n{hs}\r\n", "\r\n".repeat(lead));
            mutate(s.into_bytes(), &muts)
        })
}

pub(super) fn any_request_head() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => request_head(),
        1 => prop::collection::vec(any::<u8>(), 0..300),
        2 => token_soup(),
    ]
}

pub(super) fn response_head() -> impl Strategy<Value = Vec<u8>> {
    let code = prop_oneof![
        3 => prop::sample::select(vec![
            "100", "101", "199", "200", "201", "204", "206", "299", "304", "400", "404", "500",
            "999", "000", "20", "2000",
        ])
        .prop_map(String::from),
        1 => "[0-9]{3}",
    ];
    let reason = prop::sample::select(vec![
        "",
        " ",
        " OK",
        " Not Modified",
        " \tx",
        "  OK",
        " OK ",
    ]);
    let line = prop_oneof![
        6 => (prop::sample::select(vec!["HTTP/1.1", "HTTP/1.0"]), code, reason)
            .prop_map(|(v, c, r)| format!("{v} {c}{r}")),
        1 => "[ -~]{0,20}",
    ];
    (
        prop_oneof![6 => Just(0usize), 1 => 1usize..3],
        line,
        header_block(),
        mutations(),
    )
        .prop_map(|(lead, l, hs, muts)| {
            let s = format!("{}{l}\r\n{hs}\r\n", "\r\n".repeat(lead));
            mutate(s.into_bytes(), &muts)
        })
}

/// A chunked body to encode: chunks (payload, leading zeros on the size, uppercase hex, an
/// extension), the last chunk's zeros and extension, trailer lines.
#[derive(Debug, Clone)]
pub(super) struct Chunked {
    pub(super) chunks: Vec<(Vec<u8>, usize, bool, String)>,
    pub(super) last_zeros: usize,
    pub(super) last_ext: String,
    pub(super) trailers: Vec<String>,
}

/// The encoded body, where its framing CRs and LFs are, and where its size digits are.
pub(super) struct Encoded {
    pub(super) bytes: Vec<u8>,
    pub(super) line_ends: Vec<usize>,
    pub(super) digits: Vec<usize>,
}

impl Chunked {
    pub(super) fn payload(&self) -> Vec<u8> {
        self.chunks.iter().flat_map(|c| c.0.clone()).collect()
    }

    pub(super) fn encode(&self) -> Encoded {
        let mut e = Encoded {
            bytes: Vec::new(),
            line_ends: Vec::new(),
            digits: Vec::new(),
        };
        fn line(e: &mut Encoded, size: Option<String>, rest: &str) {
            if let Some(size) = size {
                let at = e.bytes.len();
                e.digits.extend(at..at + size.len());
                e.bytes.extend_from_slice(size.as_bytes());
            }
            e.bytes.extend_from_slice(rest.as_bytes());
            let at = e.bytes.len();
            e.line_ends.extend([at, at + 1]);
            e.bytes.extend_from_slice(b"\r\n");
        }
        for (data, zeros, upper, ext) in &self.chunks {
            let size = match upper {
                true => format!("{}{:X}", "0".repeat(*zeros), data.len()),
                false => format!("{}{:x}", "0".repeat(*zeros), data.len()),
            };
            line(&mut e, Some(size), ext);
            e.bytes.extend_from_slice(data);
            line(&mut e, None, "");
        }
        line(
            &mut e,
            Some("0".repeat(self.last_zeros + 1)),
            &self.last_ext,
        );
        for t in &self.trailers {
            line(&mut e, None, t);
        }
        line(&mut e, None, "");
        e
    }
}

pub(super) fn chunk_ext() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just(String::new()),
        1 => prop::sample::select(vec![";x", ";x=1", ";n=\"q v\"", " ;x", ";", ";;"]).prop_map(String::from),
        1 => ";[ -~\t]{0,10}",
    ]
}

pub(super) fn chunked_body() -> impl Strategy<Value = Chunked> {
    (
        prop::collection::vec(
            (
                prop::collection::vec(any::<u8>(), 1..80),
                0usize..3,
                any::<bool>(),
                chunk_ext(),
            ),
            0..6,
        ),
        0usize..3,
        chunk_ext(),
        prop::collection::vec("[A-Za-z-]{1,8}: [ -~]{0,10}", 0..3),
    )
        .prop_map(|(chunks, last_zeros, last_ext, trailers)| Chunked {
            chunks,
            last_zeros,
            last_ext,
            trailers,
        })
}
