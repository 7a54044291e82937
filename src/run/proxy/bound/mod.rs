//! Bound secrets in the egress proxy (`[[context.NAME.secrets.bind]]`): the sandbox holds
//! placeholders; the proxy, outside it, holds the real values ([`crate::plan::bound::Bound`]).
//!
//! - `CONNECT` to a bound host is intercepted ([`intercept`]): TLS from the client is terminated
//!   with a leaf for that host signed by the per-call CA ([`ca`]; the sandbox trusts it through
//!   the CA bundle, [`crate::plan::bound::CA_VARIABLES`]); the proxy opens its own TLS to the
//!   host, verifying the host's certificate against the system roots (a certificate not valid
//!   for the name is refused: 502, no fallback to plain text or to the client's judgement),
//!   replaces the placeholder in the bound header / `Authorization` scheme / query parameter,
//!   or re-signs a SigV4 request ([`sigv4`]), and forwards one HTTP/1.1 request.
//! - Every other destination is tunnelled untouched, so it only ever sees placeholders.
//! - A placeholder seen on its way to a host it is not bound to (in a plain-HTTP request's
//!   head or body, in a host name asked for, or in an intercepted request to another bound host)
//!   is reported as [`Verdict::Exfiltration`] and sent on unchanged.
//! - Each use of a real value is reported as [`Verdict::SecretAdded`] with the secret's name and
//!   the host (never a value).
//! - A binding with `methods`/`paths` adds its value only to the requests they cover
//!   ([`crate::model::bind::requests`]); a request outside carrying its placeholder in the slot
//!   keeps the placeholder and is reported as [`Verdict::SecretWithheld`].
//!
//! A context without bound secrets creates none of this: no CA, no TLS configuration.

use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, OnceLock};

use anyhow::{Context as _, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

use super::{Event, EventSink, Protocol, ProxyHandle, Shared, Verdict};
use crate::model::egress::EgressPolicy;
use crate::model::Context;
use crate::plan::bound::Bound;
use crate::secrets::SecretSet;

pub mod ca;
pub mod intercept;
mod relay;
pub mod rewrite;
pub mod scrub;
pub mod sigv4;

/// The system CA bundle: what the proxy verifies upstreams against and what the sandbox's bundle
/// starts with.
pub const SYSTEM_CA_FILES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// The roots upstream hosts are verified against.
pub enum Roots {
    /// Ready (tests).
    Store(RootCertStore),
    /// The system bundle's PEM text, parsed when the first intercepted connection needs it (about
    /// 0.5 ms for ~140 certificates: a launch whose command never connects does not pay it).
    Pem(Arc<Vec<u8>>),
}

/// The proxy side of a call's bound secrets.
pub struct Interceptor {
    pub bound: Bound,
    /// Every form of every real value, with its placeholder's: what responses are scrubbed of.
    needles: scrub::Needles,
    ca: ca::Ca,
    roots: Roots,
    /// The TLS configuration for upstreams, made from `roots` once (or why it could not be).
    upstream: OnceLock<Result<Arc<ClientConfig>, String>>,
}

impl std::fmt::Debug for Interceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Interceptor({:?})", self.bound)
    }
}

pub(super) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Interceptor {
    /// A fresh per-call CA for `bound`'s hosts; upstreams are verified against `roots`.
    pub fn new(bound: Bound, roots: Roots) -> Result<Interceptor> {
        let hosts: Vec<_> = bound
            .bindings
            .iter()
            .flat_map(|b| &b.hosts)
            .map(|h| &h.pattern)
            .collect();
        let ca = ca::Ca::new(&hosts).context("cannot create the per-call CA for bound secrets")?;
        let needles = scrub::Needles::new(
            bound
                .swaps()
                .map(|(_, s)| (s.real(), s.placeholder.as_str())),
        );
        Ok(Interceptor {
            bound,
            needles,
            ca,
            roots,
            upstream: OnceLock::new(),
        })
    }

    /// The interceptor the launch made, in the gate process: the same bound secrets and
    /// placeholders, and the same CA (its key and certificate, `ca`).
    pub fn rebuilt(bound: Bound, ca: (&[u8], Vec<u8>), roots: Roots) -> Result<Interceptor> {
        let hosts: Vec<_> = bound
            .bindings
            .iter()
            .flat_map(|b| &b.hosts)
            .map(|h| &h.pattern)
            .collect();
        let ca = ca::Ca::from_parts(&hosts, ca.0, ca.1)
            .context("cannot rebuild the per-call CA for bound secrets")?;
        let needles = scrub::Needles::new(
            bound
                .swaps()
                .map(|(_, s)| (s.real(), s.placeholder.as_str())),
        );
        Ok(Interceptor {
            bound,
            needles,
            ca,
            roots,
            upstream: OnceLock::new(),
        })
    }

    /// The TLS configuration for upstreams: made on first use (the roots parsed then), the same
    /// one after. An error (no usable certificate in the bundle) is the same for every use.
    pub(super) fn upstream(&self) -> Result<Arc<ClientConfig>, String> {
        self.upstream
            .get_or_init(|| {
                let roots = match &self.roots {
                    Roots::Store(store) => store.clone(),
                    Roots::Pem(pem) => parse_roots(pem)?,
                };
                let config = ClientConfig::builder_with_provider(provider())
                    .with_safe_default_protocol_versions()
                    .map_err(|e| format!("TLS configuration: {e}"))?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                Ok(Arc::new(config))
            })
            .clone()
    }

    /// The per-call CA certificate (PEM).
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// The sandbox's CA bundle: the system CAs, then the per-call CA.
    pub fn bundle(&self, system_pem: &[u8]) -> Vec<u8> {
        let mut out = system_pem.to_vec();
        if !out.is_empty() && !out.ends_with(b"\n") {
            out.push(b'\n');
        }
        out.extend_from_slice(self.ca_pem().as_bytes());
        out
    }

    /// Is a `CONNECT` to `host:port` intercepted?
    pub fn intercepts(&self, host: &str, port: u16) -> bool {
        self.bound.binds_host(&normalize(host), port)
    }

    /// What responses from bound hosts are scrubbed of.
    pub fn needles(&self) -> &scrub::Needles {
        &self.needles
    }

    /// Report placeholders inside a host name asked for (DNS exfiltration); the request goes on.
    pub(super) fn check_host(&self, shared: &Shared, protocol: Protocol, host: &str, port: u16) {
        let h = normalize(host);
        let mut scan = rewrite::Scanner::new(self.bound.swaps().collect());
        for name in scan.feed(h.as_bytes()) {
            shared.emit(exfiltration(protocol, host, port, name, "in the host name"));
        }
    }
}

/// [`super::serve`] for a call with bound secrets (`secrets.bind`): `CONNECT`s to bound hosts are
/// intercepted by `bound`, placeholders elsewhere are reported.
pub fn serve(
    listener: TcpListener,
    policy: Arc<EgressPolicy>,
    on_event: EventSink,
    bound: Arc<Interceptor>,
) -> std::io::Result<ProxyHandle> {
    super::serve_resolving(listener, policy, on_event, Some(bound))
}

impl Interceptor {
    /// A plain-HTTP request (head already sent): its body as framed, every byte from the client
    /// (head and body) searched for placeholders (reported, never replaced: a real value never
    /// goes out in plain text). False if the body could not be sent.
    pub(super) fn forward_plain(
        &self,
        shared: &Shared,
        (host, port): (&str, u16),
        head: &[u8],
        framing: super::http::Framing,
        body: &mut impl std::io::Read,
        upstream: &TcpStream,
    ) -> bool {
        let mut scan = rewrite::Scanner::new(self.bound.swaps().collect());
        let host = normalize(host);
        let mut watch = |data: &[u8]| {
            for name in scan.feed(data) {
                let own = self
                    .bound
                    .swaps()
                    .any(|(b, s)| s.name == name && b.covers(&host));
                let mut ev =
                    exfiltration(Protocol::Http, &host, port, name, "in a plain-HTTP request");
                if own {
                    // Its own host, but in plain text: still not replaced (never sent in clear).
                    ev.reason = format!("the placeholder of {name} was sent to {host} in plain HTTP; a real value is only added over verified TLS, so it was passed on unchanged");
                }
                shared.emit(ev);
            }
        };
        watch(head);
        super::http::copy_body(framing, body, &mut &*upstream, &mut watch).is_ok()
    }
}

/// `host` as bindings match it: lowercase, no trailing dot.
pub fn normalize(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

pub(super) fn exfiltration(
    protocol: Protocol,
    host: &str,
    port: u16,
    name: &str,
    how: &str,
) -> Event {
    Event {
        verdict: Verdict::Exfiltration,
        protocol,
        host: host.to_string(),
        port,
        addr: None,
        reason: format!(
            "the placeholder of {name} was sent toward {host}, where it is not bound ({how}); passed on unchanged"
        ),
        secret: Some(name.to_string()),
        status: None,
        op: None,
    }
}

/// Read the system CA bundle (PEM): what the proxy verifies upstreams against (parsed on first
/// use, [`Interceptor::upstream`]) and what the sandbox's bundle starts with. A bundle without a
/// single certificate block is refused here, before the launch.
pub fn system_bundle() -> Result<Vec<u8>> {
    let (path, pem) = SYSTEM_CA_FILES
        .iter()
        .find_map(|p| std::fs::read(p).ok().map(|b| (*p, b)))
        .context("no system CA bundle (ca-certificates) found; bound secrets need it to verify upstream hosts")?;
    anyhow::ensure!(
        has_certificate_block(&pem),
        "{path} holds no CA certificate"
    );
    Ok(pem)
}

/// Whether a PEM text has at least one certificate block (parsed or not).
fn has_certificate_block(pem: &[u8]) -> bool {
    pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----")
}

/// The certificates of a PEM bundle as roots; an error if none is usable.
pub fn parse_roots(pem: &[u8]) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_slice_iter(pem).filter_map(|c| c.ok());
    let (added, _) = roots.add_parsable_certificates(certs);
    match added {
        0 => Err("the system CA bundle holds no usable CA certificate".to_string()),
        _ => Ok(roots),
    }
}

/// The system CA bundle, open for reading: what the sandbox's bundle starts with (pid 1 copies
/// it in the kernel). Refused here, before the launch, when none of [`SYSTEM_CA_FILES`] opens or
/// its first 4 KiB hold no certificate block (the gate reads and parses it in full, for the
/// roots, when the sandbox first connects).
fn open_system_bundle() -> Result<std::os::fd::OwnedFd> {
    let (path, file) = SYSTEM_CA_FILES
        .iter()
        .find_map(|p| std::fs::File::open(p).ok().map(|f| (*p, f)))
        .context("no system CA bundle (ca-certificates) found; bound secrets need it to verify upstream hosts")?;
    let mut head = [0u8; 4096];
    let n = std::os::unix::fs::FileExt::read_at(&file, &mut head, 0)
        .with_context(|| format!("cannot read {path}"))?;
    anyhow::ensure!(
        has_certificate_block(&head[..n]),
        "{path} holds no CA certificate"
    );
    Ok(file.into())
}

/// A launch's bound secrets: the placeholder variables for the environment; the values and the
/// policy's bindings for the gate's config ([`BoundCall::wire`]); the CA bundle as planned (the
/// system bundle opened, the hosts). The per-call CA is made once the launch knows where the call
/// runs ([`CaParts::new`]): a prepared sandbox comes with its own ([`crate::run::pool`]).
pub struct BoundCall {
    pub bound: Bound,
    pub binds: Vec<crate::model::bind::Bind>,
    pub variables: Vec<(String, String)>,
    pub ca: crate::plan::secret_files::CaBundle,
}

/// A per-call CA as the gate rebuilds it: its private key (PKCS#8 DER) and certificate (DER),
/// and the certificate's PEM for the sandbox's bundle.
pub struct CaParts {
    pub key: zeroize::Zeroizing<Vec<u8>>,
    pub cert: Vec<u8>,
    pub pem: Vec<u8>,
}

impl CaParts {
    /// A fresh CA for `hosts` (its name constraints).
    pub fn new(hosts: &[crate::model::bind::HostPattern]) -> Result<CaParts> {
        let refs: Vec<_> = hosts.iter().collect();
        let ca = ca::Ca::new(&refs).context("cannot create the per-call CA for bound secrets")?;
        let (key, cert) = ca.parts();
        Ok(CaParts {
            key: zeroize::Zeroizing::new(key.to_vec()),
            cert: cert.to_vec(),
            pem: ca.pem().into_bytes(),
        })
    }
}

impl BoundCall {
    /// What the gate needs to rebuild the interceptor: the policy's entries, the values, the
    /// CA's key and certificate.
    pub fn wire(&self, ca: &CaParts) -> crate::run::gate::config::BoundWire {
        crate::run::gate::config::BoundWire {
            binds: self.binds.clone(),
            values: self
                .bound
                .values()
                .into_iter()
                .map(
                    |(name, real, placeholder)| crate::run::gate::config::Value {
                        name,
                        real: zeroize::Zeroizing::new(
                            secrecy::ExposeSecret::expose_secret(&real).to_string(),
                        ),
                        placeholder,
                    },
                )
                .collect(),
            ca_key: ca.key.clone(),
            ca_cert: ca.cert.clone(),
        }
    }
}

/// The CA bundle of a call of `ctx` with bound secrets, as planned: the system bundle opened, and
/// the CA for every host the context binds (a call handed fewer of its secrets too): the same for
/// every call of the context, so a prepared sandbox's serves any of them.
pub fn planned_bundle(ctx: &Context) -> Result<crate::plan::secret_files::CaBundle> {
    let system = Arc::new(open_system_bundle()?);
    let hosts = ctx.secrets.bind.iter().flat_map(|b| &b.hosts);
    let hosts = hosts.map(|h| h.pattern.clone()).collect();
    Ok(crate::plan::secret_files::CaBundle::new(system, hosts))
}

/// For a launch: the handed secrets `ctx` binds get placeholders (from getrandom); `None` when
/// none is bound (nothing is created then). The plan leaves the bound names out of the
/// environment ([`Bound::is_bound`]), sets `variables`, and plans the CA bundle with the secret
/// files.
pub fn prepare_call(set: &SecretSet, ctx: &Context) -> Result<Option<BoundCall>> {
    let mut failed = None;
    let mut fill = |buf: &mut [u8]| {
        if let Err(e) = getrandom::getrandom(buf) {
            failed = Some(e);
        }
    };
    let bound = Bound::split(set, &ctx.secrets.bind, &mut fill)?;
    if let Some(e) = failed {
        anyhow::bail!("cannot draw random placeholders for bound secrets: {e}");
    }
    let Some(bound) = bound else {
        return Ok(None);
    };
    Ok(Some(BoundCall {
        variables: bound.variables(),
        binds: ctx.secrets.bind.clone(),
        ca: planned_bundle(ctx)?,
        bound,
    }))
}

#[cfg(test)]
mod tests;
