//! The front door's proxy under test: allows only `origin.test:<port>` (a fake resolver and
//! connector), with an origin on 127.0.0.1 that records every byte it receives, and the checks
//! of one case.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::oracle::*;
use crate::model::egress::EgressPolicy;
use crate::run::proxy::http::{self, Framing};
use crate::run::proxy::request::absolute_form;
use crate::run::proxy::{
    serve_with, Event, EventSink, Limits, Outbound, Protocol, ProxyHandle, Verdict,
};

pub(super) const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// What `origin.test` "resolves" to (TEST-NET-3: a public-looking address, so no forbidden class
/// applies); the fake connector takes it to the test's origin on 127.0.0.1.
pub(super) const PUBLIC: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
pub(super) const ORIGIN_REPLY: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
pub(super) const ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection established\r\n\r\n";
pub(super) const STATUSES: &[u16] = &[200, 400, 403, 408, 421, 431, 501, 502, 504];
pub(super) const WAIT: Duration = Duration::from_secs(5);

/// What the origin received on each connection, by the order it accepted them.
pub(super) type Received = std::collections::BTreeMap<usize, Vec<u8>>;

/// A proxy allowing only `origin.test:<port>`, an origin on 127.0.0.1:<port>, and the record of
/// every lookup, dial, event, and of every byte the origin received (one entry per connection, by
/// the order the origin accepted them: a connection's record is written when it ends, and the
/// control request's may end after the next case's).
pub(super) struct Gate {
    pub(super) handle: ProxyHandle,
    pub(super) addr: SocketAddr,
    pub(super) port: u16,
    pub(super) events: Arc<Mutex<Vec<Event>>>,
    pub(super) dials: Arc<Mutex<Vec<SocketAddr>>>,
    pub(super) lookups: Arc<Mutex<Vec<String>>>,
    pub(super) connected: Arc<AtomicUsize>,
    pub(super) received: Arc<Mutex<Received>>,
    /// How the cases ended (shown with `--nocapture`, to see that the generators reach deep).
    pub(super) outcomes: Mutex<std::collections::BTreeMap<String, usize>>,
}

/// The origin: reads a head (and the body it frames, by the strict parser) or else everything
/// until the end, answers [`ORIGIN_REPLY`], half-closes, and reads on to the end, so that every
/// byte sent to it is recorded, including any after the body.
pub(super) fn origin_conn(s: TcpStream, n: usize, received: &Mutex<Received>) {
    let _ = s.set_read_timeout(Some(WAIT));
    let mut got = Vec::new();
    let mut chunk = vec![0u8; 4096];
    let mut read = |got: &mut Vec<u8>| match (&s).read(&mut chunk) {
        Ok(n) if n > 0 => {
            got.extend_from_slice(&chunk[..n]);
            true
        }
        _ => false,
    };
    let mut open = true;
    let end = loop {
        if let Some(end) = http::head_len(&got) {
            break Some(end);
        }
        if !read(&mut got) {
            open = false;
            break None;
        }
    };
    let framing =
        end.and_then(|e| Some((e, oracle_request_max(&got[..e], SENT_ON_MAX).ok()?.framing)));
    if let Some((e, f)) = framing {
        let rest = got.split_off(e);
        let mut tap = Tap {
            from: &s,
            log: Vec::new(),
        };
        let _ = http::copy_body(
            f,
            &mut (&rest[..]).chain(&mut tap),
            &mut io::sink(),
            &mut |_| {},
        );
        got.extend_from_slice(&rest);
        got.extend_from_slice(&tap.log);
    } else {
        while open && read(&mut got) {}
    }
    let _ = (&s).write_all(ORIGIN_REPLY);
    let _ = s.shutdown(Shutdown::Write);
    while read(&mut got) {}
    received.lock().unwrap().insert(n, got);
}

/// A reader that keeps a copy of everything it reads.
pub(super) struct Tap<'a> {
    from: &'a TcpStream,
    log: Vec<u8>,
}

impl Read for Tap<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.from.read(out)?;
        self.log.extend_from_slice(&out[..n]);
        Ok(n)
    }
}

pub(super) fn gate() -> Gate {
    let origin = TcpListener::bind((LOCAL, 0)).unwrap();
    let port = origin.local_addr().unwrap().port();
    let received = Arc::new(Mutex::new(Received::new()));
    let r = received.clone();
    thread::spawn(move || {
        for (n, s) in origin.incoming().enumerate() {
            let Ok(s) = s else { return };
            let r = r.clone();
            thread::spawn(move || origin_conn(s, n, &r));
        }
    });
    let rule = format!("origin.test:{port}");
    let policy = Arc::new(EgressPolicy::parse("user", &[rule.as_str()], vec![]).unwrap());
    let (events, dials, lookups) = (
        Arc::new(Mutex::new(Vec::new())),
        Arc::new(Mutex::new(Vec::new())),
        Arc::new(Mutex::new(Vec::new())),
    );
    let connected = Arc::new(AtomicUsize::new(0));
    let (e, d, l, c) = (
        events.clone(),
        dials.clone(),
        lookups.clone(),
        connected.clone(),
    );
    let outbound = Outbound {
        resolve: Box::new(move |name, port| {
            l.lock().unwrap().push(name.to_string());
            match name {
                "origin.test" => Ok(vec![SocketAddr::new(PUBLIC, port)]),
                _ => Err(io::Error::new(io::ErrorKind::NotFound, "unknown test name")),
            }
        }),
        // Never a socket to anything but the test's origin.
        connect: Box::new(move |addr, timeout| {
            d.lock().unwrap().push(*addr);
            if *addr != SocketAddr::new(PUBLIC, port) {
                return Err(io::ErrorKind::ConnectionRefused.into());
            }
            let s = TcpStream::connect_timeout(&SocketAddr::new(LOCAL, port), timeout)?;
            c.fetch_add(1, Ordering::SeqCst);
            Ok(s)
        }),
    };
    let limits = Limits {
        max_connections: 64,
        per_call: 64,
        max_head: 2048,
        head_timeout: Duration::from_millis(200),
        connect_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(2),
    };
    let listener = TcpListener::bind((LOCAL, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let sink: EventSink = Arc::new(move |ev: &Event| e.lock().unwrap().push(ev.clone()));
    let handle = serve_with(listener, policy, sink, outbound, limits, None).unwrap();
    Gate {
        handle,
        addr,
        port,
        events,
        dials,
        lookups,
        connected,
        received,
        outcomes: Mutex::new(Default::default()),
    }
}

/// Write all of `input`, close the write side, read the reply to its end.
pub(super) fn exchange(addr: SocketAddr, input: &[u8]) -> Result<Vec<u8>, TestCaseError> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let _ = s.write_all(input); // the proxy may have answered and closed already
    let _ = s.shutdown(Shutdown::Write);
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Err(TestCaseError::fail(format!(
                "no end of the reply in {WAIT:?} (got {:?})",
                String::from_utf8_lossy(&out)
            )))
        }
        _ => Ok(out),
    }
}

/// A reply on the HTTP side: nothing, or a status line with a known code; the proxy's own
/// answers are whole (`Content-Length` true, `Connection: close`).
pub(super) fn check_http_reply(reply: &[u8]) -> Result<(), TestCaseError> {
    if reply.is_empty() || reply == ORIGIN_REPLY || reply.starts_with(ESTABLISHED) {
        return Ok(());
    }
    let end = http::head_len(reply);
    prop_assert!(
        end.is_some(),
        "no whole head in {:?}",
        String::from_utf8_lossy(reply)
    );
    let end = end.unwrap();
    let r = http::parse_response(&reply[..end]);
    prop_assert!(r.is_ok(), "{:?}", String::from_utf8_lossy(reply));
    let r = r.unwrap();
    prop_assert!(reply.starts_with(b"HTTP/1.1 "));
    prop_assert!(
        STATUSES.contains(&r.status) && r.status != 200,
        "status {}",
        r.status
    );
    let body = &reply[end..];
    let len = body.len().to_string();
    prop_assert_eq!(r.get("content-length"), Some(len.as_str()));
    prop_assert_eq!(r.get("connection"), Some("close"));
    prop_assert!(body.starts_with(b"sbx-exec egress proxy: "));
    Ok(())
}

/// A reply on the SOCKS5 side: nothing, a method refusal, or the method choice then nothing or
/// one reply of ten bytes (the origin's bytes after it only on success).
pub(super) fn check_socks_reply(reply: &[u8]) -> Result<(), TestCaseError> {
    if reply.is_empty() || reply == [5, 0xff] {
        return Ok(());
    }
    prop_assert!(reply.starts_with(&[5, 0]), "{:?}", reply);
    let rest = &reply[2..];
    if rest.is_empty() {
        return Ok(());
    }
    prop_assert!(rest.len() >= 10, "{:?}", reply);
    let code = rest[1];
    prop_assert_eq!(&rest[..10], &[5, code, 0, 1, 0, 0, 0, 0, 0, 0][..]);
    prop_assert!([0, 1, 2, 4, 5, 7, 8].contains(&code), "code {}", code);
    if code != 0 {
        prop_assert_eq!(rest.len(), 10);
    }
    Ok(())
}

/// The end of a SOCKS5 request in `b` (greeting with its methods, then the request), if whole.
pub(super) fn socks_request_end(b: &[u8]) -> Option<usize> {
    let at = 2 + usize::from(*b.get(1)?);
    let addr_len = match b.get(at + 3)? {
        1 => 4,
        4 => 16,
        3 => 1 + usize::from(*b.get(at + 4)?),
        _ => return None,
    };
    Some(at + 4 + addr_len + 2).filter(|&end| end <= b.len())
}

/// The framed body of the request head at the start of `input` as the proxy must send it: run the
/// same copy over the client's bytes. Whether it is whole, and the bytes.
pub(super) fn framed_body(input: &[u8], end: usize, f: Framing) -> (bool, Vec<u8>) {
    let mut out = Vec::new();
    let ok = http::copy_body(f, &mut &input[end..], &mut out, &mut |_| {}).is_ok();
    (ok, out)
}

/// A plain-HTTP request the gate passed on: the origin got a strict origin-form head with the
/// Host from the URL, no proxy or hop-by-hop headers and the same framing, then the body as framed
/// and not a byte after it; the client got the origin's reply if the body was whole.
fn check_forwarded_http(input: &[u8], got: &[u8], reply: &[u8]) -> Result<(), TestCaseError> {
    let shown = || String::from_utf8_lossy(input).into_owned();
    let end = http::head_len(input).unwrap();
    let req = http::parse_request(&input[..end]);
    prop_assert!(req.is_ok(), "forwarded a head we refuse: {}", shown());
    let req = req.unwrap();
    let (authority, path) = absolute_form(&req.target).ok().unwrap();
    let framing = http::request_framing(&req).unwrap();
    // A strict head, origin-form, Host from the URL, no proxy or hop-by-hop headers, the same
    // framing.
    let fend = http::head_len(got);
    prop_assert!(fend.is_some(), "{:?}", String::from_utf8_lossy(got));
    let fend = fend.unwrap();
    let fwd = oracle_request_max(&got[..fend], SENT_ON_MAX);
    prop_assert!(fwd.is_ok(), "{:?}: {:?}", String::from_utf8_lossy(got), fwd);
    let fwd = fwd.unwrap();
    prop_assert_eq!(
        (&fwd.method, &fwd.target, fwd.minor),
        (&req.method, &path, req.minor)
    );
    prop_assert_eq!(values(&fwd.fields, "host"), vec![authority]);
    prop_assert_eq!(values(&fwd.fields, "connection"), vec!["close"]);
    let named: Vec<String> = values(&req.headers, "connection")
        .iter()
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| t != "content-length" && t != "transfer-encoding")
        .collect();
    for (n, _) in &fwd.fields {
        let n = n.to_ascii_lowercase();
        let hop = n.starts_with("proxy-")
            || ["keep-alive", "te", "upgrade"].contains(&n.as_str())
            || (named.contains(&n) && n != "host" && n != "connection");
        prop_assert!(!hop, "{} sent on: {}", n, String::from_utf8_lossy(got));
    }
    prop_assert_eq!(
        fwd.framing,
        framing,
        "the origin frames the body otherwise: {}",
        String::from_utf8_lossy(got)
    );
    // The body as framed and not a byte after it.
    let (whole, body) = framed_body(input, end, framing);
    prop_assert_eq!(
        String::from_utf8_lossy(&got[fend..]),
        String::from_utf8_lossy(&body),
        "request {}",
        shown()
    );
    if whole {
        prop_assert_eq!(reply, ORIGIN_REPLY);
    } else {
        prop_assert!(reply.is_empty());
    }
    Ok(())
}

impl Gate {
    /// One case: the reply's shape, the dials, and what reached the origin.
    pub(super) fn case(&self, input: &[u8]) -> Result<(), TestCaseError> {
        let before = self.events.lock().unwrap().len();
        let reply = exchange(self.addr, input)?;
        let shown = || String::from_utf8_lossy(input).into_owned();
        if input.first() == Some(&5) {
            check_socks_reply(&reply)?;
        } else {
            check_http_reply(&reply)?;
        }
        // Nothing looked up but the allowed name, nothing dialled but its address and port.
        let allowed = SocketAddr::new(PUBLIC, self.port);
        prop_assert!(self.dials.lock().unwrap().iter().all(|d| *d == allowed));
        prop_assert!(self
            .lookups
            .lock()
            .unwrap()
            .iter()
            .all(|n| n == "origin.test"));
        let events: Vec<Event> = self.events.lock().unwrap()[before..].to_vec();
        let outcome = match (events.first(), reply.get(..12)) {
            (Some(e), _) => format!("{:?} {:?}", e.protocol, e.verdict),
            (None, Some(r)) => String::from_utf8_lossy(r).into_owned(),
            (None, None) => format!("{:?}", reply.escape_ascii().to_string()),
        };
        *self.outcomes.lock().unwrap().entry(outcome).or_default() += 1;
        prop_assert!(events.len() <= 1, "{:?}", events);
        let Some(ev) = events.iter().find(|e| e.verdict == Verdict::Allowed) else {
            // Not connected: no success reply.
            prop_assert!(
                reply != ORIGIN_REPLY && !reply.starts_with(ESTABLISHED),
                "{}",
                shown()
            );
            if input.first() == Some(&5) && reply.len() > 2 {
                prop_assert_ne!(reply[3], 0);
            }
            return Ok(());
        };
        let asked = ev.host.trim_end_matches('.').to_ascii_lowercase();
        prop_assert_eq!((asked.as_str(), ev.port), ("origin.test", self.port));
        let got = self.origin_received()?;
        match ev.protocol {
            Protocol::Http => check_forwarded_http(input, &got, &reply)?,
            Protocol::Connect => {
                let end = http::head_len(input).unwrap();
                prop_assert_eq!(&got, &input[end..]);
                prop_assert_eq!(reply, [ESTABLISHED, ORIGIN_REPLY].concat());
            }
            Protocol::Socks5 => {
                let end = socks_request_end(input).unwrap();
                prop_assert_eq!(&got, &input[end..]);
                let want = [&[5, 0, 5, 0, 0, 1, 0, 0, 0, 0, 0, 0][..], ORIGIN_REPLY].concat();
                prop_assert_eq!(reply, want);
            }
            // The front door's proxy listener never sees a captured connection.
            Protocol::Captured => prop_assert!(false, "a proxy client taken as captured"),
        }
        Ok(())
    }

    /// What the origin received on the connection just made (waiting, bounded, for its record).
    pub(super) fn origin_received(&self) -> Result<Vec<u8>, TestCaseError> {
        let until = Instant::now() + WAIT;
        loop {
            let want = self.connected.load(Ordering::SeqCst);
            let got = self.received.lock().unwrap();
            // Nothing reached the origin but through the connector.
            prop_assert!(got.keys().all(|&n| n < want), "{:?}", got.keys());
            if let Some(last) = want.checked_sub(1).and_then(|n| got.get(&n)) {
                return Ok(last.clone());
            }
            drop(got);
            prop_assert!(Instant::now() < until, "the origin recorded nothing");
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// The proxy still serves: a plain forward request gets the origin's answer.
    pub(super) fn control(&self) {
        let req = format!(
            "GET http://origin.test:{}/control HTTP/1.1\r\nHost: x\r\n\r\n",
            self.port
        );
        let reply = exchange(self.addr, req.as_bytes()).unwrap();
        assert_eq!(reply, ORIGIN_REPLY, "{}", String::from_utf8_lossy(&reply));
    }

    /// Every connection ended (a connection thread that panicked never leaves the table).
    pub(super) fn drained(&self) {
        let until = Instant::now() + WAIT;
        while !self.handle.shared.open().is_empty() && Instant::now() < until {
            thread::sleep(Duration::from_millis(5));
        }
        assert!(
            self.handle.shared.open().is_empty(),
            "a connection never ended (its thread panicked?)"
        );
    }
}
