//! The proxy with bound secrets, driven on 127.0.0.1 only: stand-in HTTPS servers with a test CA
//! made here, a fake resolver mapping their names to documentation addresses (203.0.113.x) and a
//! connector that maps those back to 127.0.0.1 ports and refuses everything else.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

use super::*;
use crate::model::egress::EgressPolicy;
use crate::run::proxy::{serve_with, Event, EventSink, Limits, Outbound, ProxyHandle, Verdict};

pub(super) mod clients;
pub(super) mod leaks;
mod limits;
mod roots;

pub(super) const T: Duration = Duration::from_secs(5);
const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

pub(super) const SECRETS: &str = "ANTHROPIC_API_KEY=sk-ant-api03-REALrealREAL0123456789abcdefghijklmnop\nOPENAI_API_KEY=sk-proj-REALopenaiREAL0123456789abcdef\nGEMINI_API_KEY=AIzaREALgeminiREAL0123456789abcdefgh\n";
pub(super) const BINDS: &str = "[[bind]]\nname = \"ANTHROPIC_API_KEY\"\nhosts = [\"api.anthropic.com\"]\nheader = \"x-api-key\"\n[[bind]]\nname = \"OPENAI_API_KEY\"\nhosts = [\"api.openai.com\"]\nauthorization = \"Bearer\"\n[[bind]]\nname = \"GEMINI_API_KEY\"\nhosts = [\"generativelanguage.googleapis.com\"]\nquery = \"key\"\n";

/// The test's own CA, standing in for the public CAs the real APIs use.
pub(super) struct TestCa(CertifiedIssuer<'static, KeyPair>);

impl TestCa {
    pub(super) fn new() -> TestCa {
        let mut p = CertificateParams::default();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // A subject of its own: OpenSSL takes a leaf whose issuer equals its subject for
        // self-signed (rcgen's default name is the same for both).
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "sbx-exec test CA");
        TestCa(CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap())
    }

    pub(super) fn roots(&self) -> RootCertStore {
        let mut r = RootCertStore::empty();
        r.add(self.0.der().clone()).unwrap();
        r
    }

    pub(super) fn pem(&self) -> String {
        self.0.pem()
    }

    /// A leaf for `names` (PEM cert, PEM key).
    pub(super) fn leaf_pem(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.0)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    pub(super) fn server(&self, names: &[&str]) -> Arc<ServerConfig> {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.0)
            .unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let c = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key)
            .unwrap();
        Arc::new(c)
    }
}

/// A stand-in server on 127.0.0.1 (TLS when given a config): records each request (head and
/// body) and answers `ok`.
pub(super) struct Origin {
    pub(super) port: u16,
    pub(super) seen: Arc<Mutex<Vec<String>>>,
}

pub(super) fn origin(tls: Option<Arc<ServerConfig>>) -> Origin {
    let l = TcpListener::bind((LOCAL, 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            let _ = s.set_read_timeout(Some(T));
            let (seen, tls) = (s2.clone(), tls.clone());
            thread::spawn(move || match tls {
                Some(cfg) => {
                    let conn = ServerConnection::new(cfg).unwrap();
                    let mut t = rustls::StreamOwned::new(conn, s);
                    answer(&mut t, &seen);
                    t.conn.send_close_notify();
                    let _ = t.flush();
                }
                None => answer(&mut &s, &seen),
            });
        }
    });
    Origin { port, seen }
}

fn answer(s: &mut (impl Read + Write), seen: &Mutex<Vec<String>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let done = |b: &[u8]| {
        let Some(end) = b.windows(4).position(|w| w == b"\r\n\r\n") else {
            return false;
        };
        let head = String::from_utf8_lossy(&b[..end]).to_ascii_lowercase();
        let body = &b[end + 4..];
        match head.split("content-length:").nth(1) {
            Some(n) => body.len() >= n.lines().next().unwrap().trim().parse().unwrap_or(0),
            None if head.contains("chunked") => body.ends_with(b"0\r\n\r\n"),
            None => true,
        }
    };
    while !done(&buf) {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    seen.lock()
        .unwrap()
        .push(String::from_utf8_lossy(&buf).into_owned());
    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
}

pub(super) struct Proxy {
    pub(super) handle: ProxyHandle,
    pub(super) addr: SocketAddr,
    pub(super) events: Arc<Mutex<Vec<Event>>>,
    pub(super) ic: Arc<Interceptor>,
}

impl Proxy {
    pub(super) fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    pub(super) fn of(&self, verdict: Verdict) -> Vec<Event> {
        self.events()
            .into_iter()
            .filter(|e| e.verdict == verdict)
            .collect()
    }
}

/// A proxy allowing `allow`, with `secrets` bound by `binds`; `names` maps each stand-in host to
/// its port on 127.0.0.1 (through 203.0.113.N). Upstreams are verified against `roots` only.
pub(super) fn proxy(
    allow: &[&str],
    secrets: &str,
    binds: &str,
    names: &[(&str, u16)],
    roots: RootCertStore,
) -> Proxy {
    let bound = crate::plan::bound::test_bound(secrets, binds);
    let ic = Arc::new(Interceptor::new(bound, Roots::Store(roots)).unwrap());
    // "name" maps every port, "name:port" that port only.
    let mut ips: HashMap<String, IpAddr> = HashMap::new();
    let mut back: HashMap<(IpAddr, Option<u16>), u16> = HashMap::new();
    for (n, local) in names {
        let (host, port) = match n.split_once(':') {
            Some((h, p)) => (h, Some(p.parse::<u16>().unwrap())),
            None => (*n, None),
        };
        let next = IpAddr::V4(Ipv4Addr::new(203, 0, 113, ips.len() as u8 + 1));
        let ip = *ips.entry(host.to_string()).or_insert(next);
        back.insert((ip, port), *local);
    }
    let outbound = Outbound {
        resolve: Box::new(move |name, port| match ips.get(name) {
            Some(ip) => Ok(vec![SocketAddr::new(*ip, port)]),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "unknown test name",
            )),
        }),
        connect: Box::new(move |addr, timeout| {
            let local = back
                .get(&(addr.ip(), Some(addr.port())))
                .or(back.get(&(addr.ip(), None)));
            match local {
                Some(p) => TcpStream::connect_timeout(&SocketAddr::new(LOCAL, *p), timeout),
                None => Err(std::io::ErrorKind::ConnectionRefused.into()),
            }
        }),
    };
    let policy = Arc::new(EgressPolicy::parse("agent", allow, vec![]).unwrap());
    let events = Arc::new(Mutex::new(Vec::new()));
    let e = events.clone();
    let sink: EventSink = Arc::new(move |ev: &Event| e.lock().unwrap().push(ev.clone()));
    let listener = TcpListener::bind((LOCAL, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = serve_with(
        listener,
        policy,
        sink,
        outbound,
        Limits::default(),
        Some(ic.clone()),
    )
    .unwrap();
    Proxy {
        handle,
        addr,
        events,
        ic,
    }
}

pub(super) fn placeholder_of(p: &Proxy, name: &str) -> String {
    let vars = p.ic.bound.variables();
    vars.into_iter().find(|(n, _)| n == name).unwrap().1
}

/// CONNECT through the proxy, TLS trusting `roots_pem`, one request; the response or an error.
pub(super) fn https(
    p: &Proxy,
    host: &str,
    roots_pem: &str,
    request: &str,
) -> Result<String, String> {
    let mut s = TcpStream::connect(p.addr).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(format!("CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n").as_bytes())
        .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).map_err(|e| e.to_string())? == 0 {
            return Err(String::from_utf8_lossy(&head).into_owned());
        }
        head.push(b[0]);
    }
    if !head.starts_with(b"HTTP/1.1 200") {
        return Err(String::from_utf8_lossy(&head).into_owned());
    }
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(roots_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_string()).unwrap();
    let conn = ClientConnection::new(Arc::new(cfg), name).unwrap();
    let mut t = rustls::StreamOwned::new(conn, s);
    t.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    match t.read_to_end(&mut out) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) => return Err(e.to_string()),
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

pub(super) fn real(name: &str) -> String {
    let line = SECRETS.lines().find(|l| l.starts_with(name)).unwrap();
    line.split_once('=').unwrap().1.to_string()
}

const ALLOW: &[&str] = &[
    "api.anthropic.com",
    "api.openai.com",
    "generativelanguage.googleapis.com",
    "other.example",
];

#[test]
fn the_bound_host_gets_the_real_value_in_header_authorization_and_query() {
    let ca = TestCa::new();
    let anthropic = origin(Some(ca.server(&["api.anthropic.com"])));
    let openai = origin(Some(ca.server(&["api.openai.com"])));
    let gemini = origin(Some(ca.server(&["generativelanguage.googleapis.com"])));
    let names = [
        ("api.anthropic.com", anthropic.port),
        ("api.openai.com", openai.port),
        ("generativelanguage.googleapis.com", gemini.port),
    ];
    let p = proxy(ALLOW, SECRETS, BINDS, &names, ca.roots());
    let ca_pem = p.ic.ca_pem();
    let key = placeholder_of(&p, "ANTHROPIC_API_KEY");
    assert!(key.starts_with("sk-ant-api03-") && key.len() == real("ANTHROPIC_API_KEY").len());
    let body = "{\"model\":\"m\"}";
    let req = format!("POST /v1/messages HTTP/1.1\r\nHost: api.anthropic.com\r\nx-api-key: {key}\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    let resp = https(&p, "api.anthropic.com", &ca_pem, &req).unwrap();
    assert!(
        resp.starts_with("HTTP/1.1 200 OK") && resp.ends_with("ok"),
        "{resp}"
    );
    let seen = anthropic.seen.lock().unwrap()[0].clone();
    assert!(
        seen.contains(&format!("x-api-key: {}\r\n", real("ANTHROPIC_API_KEY"))),
        "{seen}"
    );
    assert!(!seen.contains(&key) && seen.ends_with(body), "{seen}");

    let token = placeholder_of(&p, "OPENAI_API_KEY");
    let req = format!(
        "GET /v1/models HTTP/1.1\r\nHost: api.openai.com\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    assert!(https(&p, "api.openai.com", &ca_pem, &req)
        .unwrap()
        .ends_with("ok"));
    let seen = openai.seen.lock().unwrap()[0].clone();
    assert!(
        seen.contains(&format!(
            "Authorization: Bearer {}\r\n",
            real("OPENAI_API_KEY")
        )),
        "{seen}"
    );

    let g = placeholder_of(&p, "GEMINI_API_KEY");
    let req = format!("GET /v1/models?alt=json&key={g} HTTP/1.1\r\nHost: generativelanguage.googleapis.com\r\n\r\n");
    assert!(
        https(&p, "generativelanguage.googleapis.com", &ca_pem, &req)
            .unwrap()
            .ends_with("ok")
    );
    let seen = gemini.seen.lock().unwrap()[0].clone();
    assert!(
        seen.starts_with(&format!(
            "GET /v1/models?alt=json&key={} HTTP/1.1",
            real("GEMINI_API_KEY")
        )),
        "{seen}"
    );

    added_each_for_its_host_and_no_value_shown(&p);
    p.handle.stop();
}

/// The events of the three requests above: each secret added for its own host, in order; no
/// real value in any event; nothing reported as exfiltration.
fn added_each_for_its_host_and_no_value_shown(p: &Proxy) {
    let added = p.of(Verdict::SecretAdded);
    let pairs: Vec<(String, String)> = added
        .iter()
        .map(|e| (e.secret.clone().unwrap(), e.host.clone()))
        .collect();
    assert_eq!(
        pairs,
        [
            (
                "ANTHROPIC_API_KEY".to_string(),
                "api.anthropic.com".to_string()
            ),
            ("OPENAI_API_KEY".into(), "api.openai.com".into()),
            (
                "GEMINI_API_KEY".into(),
                "generativelanguage.googleapis.com".into()
            ),
        ]
    );
    let all = format!("{:?}", p.events());
    for n in ["ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY"] {
        assert!(!all.contains(&real(n)), "a value in the events: {all}");
    }
    assert!(p.of(Verdict::Exfiltration).is_empty());
}

#[test]
fn a_chunked_body_reaches_the_bound_host_whole() {
    let ca = TestCa::new();
    let anthropic = origin(Some(ca.server(&["api.anthropic.com"])));
    let p = proxy(
        ALLOW,
        SECRETS,
        BINDS,
        &[("api.anthropic.com", anthropic.port)],
        ca.roots(),
    );
    let key = placeholder_of(&p, "ANTHROPIC_API_KEY");
    let req = format!("POST / HTTP/1.1\r\nHost: api.anthropic.com:443\r\nx-api-key: {key}\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    let resp = https(&p, "api.anthropic.com", &p.ic.ca_pem(), &req).unwrap();
    assert!(
        resp.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK"),
        "{resp}"
    );
    let seen = anthropic.seen.lock().unwrap()[0].clone();
    assert!(
        seen.ends_with("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
        "{seen}"
    );
    assert!(
        seen.contains(&real("ANTHROPIC_API_KEY")) && !seen.to_ascii_lowercase().contains("expect")
    );
}

/// (d) An upstream whose certificate is not valid for the name, or not from a trusted CA, is
/// refused: nothing is sent to it, the client gets 502.
#[test]
fn an_upstream_with_a_wrong_certificate_gets_nothing() {
    let ca = TestCa::new();
    let wrong_name = origin(Some(ca.server(&["wrong.example"])));
    let other_ca = TestCa::new();
    let untrusted = origin(Some(other_ca.server(&["api.openai.com"])));
    let names = [
        ("api.anthropic.com", wrong_name.port),
        ("api.openai.com", untrusted.port),
    ];
    let p = proxy(ALLOW, SECRETS, BINDS, &names, ca.roots());
    for (host, slot) in [
        (
            "api.anthropic.com",
            format!("x-api-key: {}", placeholder_of(&p, "ANTHROPIC_API_KEY")),
        ),
        (
            "api.openai.com",
            format!(
                "Authorization: Bearer {}",
                placeholder_of(&p, "OPENAI_API_KEY")
            ),
        ),
    ] {
        let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\n{slot}\r\n\r\n");
        let resp = https(&p, host, &p.ic.ca_pem(), &req).unwrap();
        assert!(resp.starts_with("HTTP/1.1 502"), "{resp}");
        assert!(resp.contains("request not sent"), "{resp}");
    }
    thread::sleep(Duration::from_millis(100));
    assert!(wrong_name.seen.lock().unwrap().is_empty());
    assert!(untrusted.seen.lock().unwrap().is_empty());
    assert!(p.of(Verdict::SecretAdded).is_empty());
    assert_eq!(p.of(Verdict::Failed).len(), 2);
}

#[test]
fn without_bound_secrets_nothing_is_intercepted() {
    let ca = TestCa::new();
    let other = origin(Some(ca.server(&["other.example"])));
    let p = proxy(
        ALLOW,
        SECRETS,
        BINDS,
        &[("other.example", other.port)],
        ca.roots(),
    );
    assert!(!p.ic.intercepts("other.example", 443) && p.ic.intercepts("API.anthropic.com.", 443));
    assert!(!p.ic.intercepts("api.anthropic.com", 8443));
    // The client trusts only the test CA: it reaches other.example's own certificate.
    let resp = https(
        &p,
        "other.example",
        &ca.pem(),
        "GET / HTTP/1.1\r\nHost: other.example\r\n\r\n",
    );
    assert!(resp.unwrap().ends_with("ok"));
}

/// Not a check: the proxy-side setup cost of a call with bound secrets (CA key and certificate,
/// system roots, bundle) and of one leaf. `cargo test --lib bound_setup_cost -- --ignored --nocapture`
#[test]
#[ignore]
fn bound_setup_cost() {
    let set = crate::secrets::parse(SECRETS.as_bytes()).unwrap();
    let ctx: crate::model::Context = toml::from_str(&format!(
        "namespaces = [\"mount\"]\n[secrets]\nallow = [\"*\"]\n{}",
        BINDS.replace("[[bind]]", "[[secrets.bind]]")
    ))
    .unwrap();
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let call = prepare_call(&set, &ctx).unwrap().unwrap();
        let setup = t.elapsed();
        let t = std::time::Instant::now();
        let parts = CaParts::new(&call.ca.hosts).unwrap();
        let made = t.elapsed();
        let t = std::time::Instant::now();
        let refs: Vec<_> = call.ca.hosts.iter().collect();
        ca::Ca::from_parts(&refs, &parts.key, parts.cert.clone())
            .unwrap()
            .server_config("api.anthropic.com")
            .unwrap();
        println!(
            "prepare_call {setup:?}, CA {made:?}, first leaf {:?}",
            t.elapsed()
        );
    }
}
