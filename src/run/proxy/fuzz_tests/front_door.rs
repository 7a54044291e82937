//! The front door: arbitrary bytes, near-valid forward requests, `CONNECT`s and SOCKS5 requests
//! through a real proxy ([`super::gate`]).

use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestRunner;

use super::cases;
use super::gate::*;
use super::gen::*;

/// Run `strategy`'s inputs (given the origin's port) through one proxy.
fn front_door<S: Strategy<Value = Vec<u8>>>(n: u32, strategy: impl Fn(u16) -> S) {
    let g = gate();
    g.control();
    let mut runner = TestRunner::new(cases(n));
    let result = runner.run(&strategy(g.port).prop_map(Shown), |input| g.case(&input.0));
    if let Err(e) = result {
        panic!("{e}");
    }
    g.control();
    g.drained();
    eprintln!("outcomes: {:#?}", g.outcomes.lock().unwrap());
}

/// An authority to ask for: the allowed one, its spellings, and every way around it.
fn authority(port: u16) -> impl Strategy<Value = String> {
    let p = port;
    prop_oneof![
        5 => Just(format!("origin.test:{p}")),
        3 => prop::sample::select(vec![
            format!("ORIGIN.test:{p}"),
            format!("origin.test.:{p}"),
            format!("origin.test:0{p}"),
            "origin.test".to_string(),
            "origin.test:80".to_string(),
            format!("origin.test:{}", p.wrapping_add(1)),
            "origin.test:0".to_string(),
            "origin.test:65536".to_string(),
            format!("origin.test:+{p}"),
            format!("origin.test:{p}:{p}"),
            format!("[origin.test]:{p}"),
            format!("127.0.0.1:{p}"),
            format!("203.0.113.7:{p}"),
            format!("[::ffff:203.0.113.7]:{p}"),
            format!("[::1]:{p}"),
            format!("0x7f.1:{p}"),
            format!("localhost:{p}"),
            format!("evil.test:{p}"),
            format!("origin.test:{p}@evil.test"),
            format!("evil.test@origin.test:{p}"),
            format!("user:pw@origin.test:{p}"),
            format!("origin.test%2e:{p}"),
            format!("origin..test:{p}"),
            format!("xn--origin.test:{p}"),
            String::new(),
        ]),
        1 => "[!-~]{0,16}",
    ]
}

/// How a request's body is given: not at all, with `Content-Length`, chunked, or raw bytes under
/// whatever the headers say.
fn body() -> impl Strategy<Value = (String, Vec<u8>)> {
    prop_oneof![
        2 => Just((String::new(), Vec::new())),
        2 => prop::collection::vec(any::<u8>(), 0..40)
            .prop_map(|b| (format!("Content-Length: {}\r\n", b.len()), b)),
        2 => chunked_body().prop_map(|c| ("Transfer-Encoding: chunked\r\n".to_string(), c.encode().bytes)),
        1 => prop::collection::vec(any::<u8>(), 0..40).prop_map(|b| (String::new(), b)),
    ]
}

/// A second request after the first one's body: must never reach the origin.
fn tail(port: u16) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => Just(Vec::new()),
        1 => Just(format!("GET http://evil.test:{port}/smuggled HTTP/1.1\r\nHost: evil.test\r\n\r\n").into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 1..20),
    ]
}

fn forward_request(port: u16) -> impl Strategy<Value = Vec<u8>> {
    let scheme = prop_oneof![
        8 => Just("http://"),
        1 => prop::sample::select(vec!["HTTP://", "https://", "", "//"]),
    ];
    let path = prop_oneof![
        3 => prop::sample::select(vec!["", "/", "/p?q=1", "?x", "#frag", "/a#b@evil.test", "/%2e%2e/"])
            .prop_map(String::from),
        1 => "[!-~]{0,12}",
    ];
    let method = prop::sample::select(vec![
        "GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "get",
    ]);
    let big = prop_oneof![8 => Just(0usize), 1 => 1500usize..2500];
    let connection = prop_oneof![
        4 => Just(""),
        1 => prop::sample::select(vec![
            "Connection: close\r\n",
            "Connection: Content-Length\r\n",
            "Connection: keep-alive, transfer-encoding\r\n",
            "Connection: Host\r\n",
            "Connection: X-A\r\nX-A: 1\r\n",
            "Proxy-Connection: keep-alive\r\n",
            "Proxy-Authorization: Basic dTpw\r\n",
        ]),
    ];
    (
        (method, scheme, authority(port), path, door_version()),
        (door_headers(), connection),
        body(),
        big,
        tail(port),
        door_mutations(),
    )
        .prop_map(|((m, s, a, p, v), (hs, conn), (bh, b), big, tail, muts)| {
            let pad = match big {
                0 => String::new(),
                n => format!("X-Big: {}\r\n", "a".repeat(n)),
            };
            let head = format!("{m} {s}{a}{p} {v}\r\n{hs}{conn}{bh}{pad}\r\n");
            let mut out = mutate(head.into_bytes(), &muts);
            out.extend_from_slice(&b);
            out.extend_from_slice(&tail);
            out
        })
}

fn connect_request(port: u16) -> impl Strategy<Value = Vec<u8>> {
    let after = prop_oneof![
        2 => Just(Vec::new()),
        2 => Just(b"GET / HTTP/1.1\r\nHost: origin.test\r\n\r\n".to_vec()),
        1 => prop::collection::vec(any::<u8>(), 1..60),
    ];
    let method = prop_oneof![
        8 => Just("CONNECT"),
        1 => prop::sample::select(vec!["connect", "Connect", "GET"]),
    ];
    (
        method,
        authority(port),
        door_version(),
        door_headers(),
        after,
        door_mutations(),
    )
        .prop_map(|(m, a, v, hs, after, muts)| {
            let mut out = mutate(format!("{m} {a} {v}\r\n{hs}\r\n").into_bytes(), &muts);
            out.extend_from_slice(&after);
            out
        })
}

fn socks_request(port: u16) -> impl Strategy<Value = Vec<u8>> {
    let methods = prop_oneof![
        3 => Just(vec![0u8]),
        1 => prop::collection::vec(any::<u8>(), 0..4),
    ];
    let name = prop_oneof![
        3 => Just(b"origin.test".to_vec()),
        3 => prop::sample::select(vec![
            "origin.test", "ORIGIN.TEST", "origin.test.", "evil.test", "localhost", "",
            "origin.test\0", "127.0.0.1", "203.0.113.7", "[::1]", "origin.test:1",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..12),
    ];
    let addr = prop_oneof![
        2 => Just(vec![1, 203, 0, 113, 7]),
        1 => Just(vec![1, 127, 0, 0, 1]),
        1 => prop::collection::vec(any::<u8>(), 4).prop_map(|a| [vec![1], a].concat()),
        1 => Just([vec![4], Ipv4Addr::new(203, 0, 113, 7).to_ipv6_mapped().octets().to_vec()].concat()),
        1 => prop::collection::vec(any::<u8>(), 16).prop_map(|a| [vec![4], a].concat()),
        8 => (name, prop_oneof![4 => Just(None), 1 => any::<u8>().prop_map(Some)]).prop_map(|(n, len)| {
            [vec![3, len.unwrap_or(n.len() as u8)], n].concat()
        }),
        1 => (any::<u8>(), prop::collection::vec(any::<u8>(), 0..8)).prop_map(|(t, a)| [vec![t], a].concat()),
    ];
    let p = prop_oneof![4 => Just(port), 1 => Just(0u16), 1 => any::<u16>()];
    let head = prop_oneof![
        6 => Just((5u8, 1u8, 0u8)),
        1 => (any::<u8>(), any::<u8>(), any::<u8>()),
    ];
    let after = prop_oneof![
        2 => Just(Vec::new()),
        1 => Just(b"GET / HTTP/1.1\r\nHost: origin.test\r\n\r\n".to_vec()),
        1 => prop::collection::vec(any::<u8>(), 1..40),
    ];
    let cut = prop_oneof![5 => Just(None), 1 => any::<Index>().prop_map(Some)];
    (
        methods,
        prop_oneof![5 => Just(None), 1 => any::<u8>().prop_map(Some)],
        head,
        addr,
        p,
        after,
        cut,
    )
        .prop_map(|(ms, n, (ver, cmd, rsv), addr, port, after, cut)| {
            let mut out = vec![5, n.unwrap_or(ms.len() as u8)];
            out.extend_from_slice(&ms);
            out.extend_from_slice(&[ver, cmd, rsv]);
            out.extend_from_slice(&addr);
            out.extend_from_slice(&port.to_be_bytes());
            out.extend_from_slice(&after);
            if let Some(c) = cut {
                out.truncate(c.index(out.len() + 1));
            }
            out
        })
}

#[test]
fn fuzz_proxy_forward_requests() {
    front_door(200, |port| {
        prop_oneof![
            6 => forward_request(port),
            1 => prop::collection::vec(any::<u8>(), 0..200),
            1 => token_soup(),
        ]
    });
}

#[test]
fn fuzz_proxy_connect_requests() {
    front_door(128, connect_request);
}

#[test]
fn fuzz_proxy_socks5_requests() {
    front_door(128, socks_request);
}

/// Found by `fuzz_proxy_forward_requests` (fixed in `http::hop_by_hop`): a `Connection` header
/// naming `Content-Length` or `Transfer-Encoding` had that header dropped from the head sent on
/// while the body still went, so the origin read the body as a second request.
#[test]
fn fuzz_regression_connection_names_the_framing() {
    let g = gate();
    let p = g.port;
    let chunked = "5\r\nhello\r\n0\r\n\r\n";
    let smuggled = "GET http://evil.test/ HTTP/1.1\r\n\r\n";
    for input in [
        format!("GET http://origin.test:{p} HTTP/1.1\r\nConnection: Content-Length\r\nContent-Length: 0\r\n\r\n"),
        format!("POST http://origin.test:{p}/ HTTP/1.1\r\nConnection: content-length\r\nContent-Length: {}\r\n\r\n{smuggled}", smuggled.len()),
        format!("POST http://origin.test:{p}/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive, Transfer-Encoding\r\n\r\n{chunked}{smuggled}"),
    ] {
        if let Err(e) = g.case(input.as_bytes()) {
            panic!("{input:?}: {e}");
        }
    }
    assert_eq!(g.connected.load(Ordering::SeqCst), 3);
}
