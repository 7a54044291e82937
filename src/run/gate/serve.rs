//! The gate process ("sbx-gate"): hardened and confined before it reads a byte from the sandbox,
//! then the proxy and the published ports' forwarders, until the launcher ends.
//!
//! Order: [`super::harden`] (non-dumpable, not traced, unprivileged, dies with the launcher) →
//! its config read from fd 3 and wiped → the launcher is still its parent → the system CA bundle
//! read (bound secrets only) → Landlock (reads only of the resolver's files; no other file, no
//! TCP bind, no abstract unix socket or signal outside itself where the kernel scopes them) →
//! seccomp ([`crate::plan::gate_seccomp`]) → serve.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context as _, Result};
use zeroize::Zeroizing;

use super::config::{self, Config};
use super::dns::Rcode;
use super::dns_server;
use super::resolver::{Decision, Resolver};
use crate::model::egress::EgressPolicy;
use crate::run::audit::{self, EgressEvent, EgressLog};
use crate::run::proxy::bound::{Interceptor, Roots};
use crate::run::proxy::{self, Event, EventSink, Limits, Verdict};

/// The files the resolver reads (glibc's `files` and `dns` sources); nothing else is readable.
const RESOLVER_FILES: &[&str] = &[
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/services",
    "/etc/protocols",
];

/// The gate's main. Never returns.
pub fn main() -> ! {
    if let Err(e) = run() {
        eprintln!("sbx-exec: the egress gate: {e:#}");
        crate::sys::exit_now(crate::error::EXIT_SBX);
    }
    // Serving happens on the proxy's and the forwarders' threads; this one waits for the end
    // (the launcher's death: SIGKILL).
    loop {
        nix::unistd::pause();
    }
}

fn run() -> Result<()> {
    super::harden(super::GATE)?;
    let config = read_config()?;
    if nix::unistd::getppid().as_raw() != config.launcher {
        return Err(anyhow!("the launcher is gone"));
    }
    let layout = config.layout();
    let system_pem = match &config.bound {
        Some(_) => Some(crate::run::proxy::bound::system_bundle()?),
        None => None,
    };
    confine()?;
    let log = match (&config.log, layout.log) {
        (Some(l), Some(fd)) => Some(EgressLog::on_fd(
            take(fd)?,
            l.syslog,
            l.call.clone(),
            l.uid,
            l.context.clone(),
        )),
        _ => None,
    };
    if let (Some(e), Some(fd)) = (&config.egress, layout.listener) {
        serve_egress(&config, &layout, e, fd, log, system_pem)?;
    }
    if let Some(dialer) = layout.dialer {
        let listeners = config
            .publish
            .iter()
            .enumerate()
            .map(|(i, &port)| {
                Ok((
                    port,
                    TcpListener::from(take(layout.published + i as RawFd)?),
                ))
            })
            .collect::<Result<Vec<(u16, TcpListener)>>>()?;
        let idle = Duration::from_millis(config.idle_timeout_ms);
        forward(listeners, take(dialer)?, idle)?;
    }
    drop(config);
    Ok(())
}

/// Owned from the gate's confinement on: a fd the launcher placed (see [`config::Layout`]), each
/// taken once.
fn take(fd: RawFd) -> Result<OwnedFd> {
    super::placed_fd(super::GATE, fd)
}

/// Start the egress proxy (on the listener at `listener`, the captured ports' listeners and the
/// sandbox's DNS at their places in `layout`) with the rules `e`; it serves until the process
/// ends.
fn serve_egress(
    config: &Config,
    layout: &config::Layout,
    e: &config::Egress,
    listener: RawFd,
    log: Option<EgressLog>,
    system_pem: Option<Vec<u8>>,
) -> Result<()> {
    let allow: Vec<&str> = e.allow.iter().map(String::as_str).collect();
    let policy = EgressPolicy::parse(&e.context, &allow, Vec::new())
        .map_err(|e| anyhow!("the egress rules: {} ({})", e.problem, e.entry))?;
    let limits = Limits {
        max_connections: e.max_connections,
        per_call: e.per_call,
        head_timeout: Duration::from_millis(e.head_timeout_ms),
        idle_timeout: Duration::from_millis(config.idle_timeout_ms),
        ..Limits::default()
    };
    let interceptor = match (&config.bound, system_pem) {
        (Some(b), Some(pem)) => Some(Arc::new(interceptor(b, pem)?)),
        _ => None,
    };
    let policy = Arc::new(policy);
    let listener = TcpListener::from(take(listener)?);
    let listeners = (0..e.capture.len())
        .map(|i| Ok(TcpListener::from(take(layout.capture + i as RawFd)?)))
        .collect::<Result<Vec<_>>>()?;
    let resolver = Arc::new(Resolver::new(
        policy.clone(),
        Box::new(|name: &str| Ok((name, 0u16).to_socket_addrs()?.map(|a| a.ip()).collect())),
        Box::new(|| crate::plan::host::local_addrs().map_err(std::io::Error::from)),
    ));
    if let Some(fd) = layout.dns {
        let (sock, report) = (take(fd)?, dns_report(log.clone()));
        let r = resolver.clone();
        std::thread::Builder::new()
            .name("sbx-gate-dns".into())
            .spawn(move || dns_server::serve(sock, r, report))
            .context("cannot start the sandbox's DNS")?;
    }
    let ops = match (layout.ops, e.ops.is_empty()) {
        (Some(fd), false) => Some(Arc::new(proxy::ops::Ops::over(e.ops.clone(), take(fd)?))),
        _ => None,
    };
    let capture = proxy::Capture {
        listeners,
        resolver: Some(resolver),
        ops,
    };
    let handle = proxy::serve_gate(
        listener,
        policy,
        sink(log, placeholders(config)),
        (interceptor, capture),
        limits,
    )
    .context("cannot start the egress proxy")?;
    // It serves until the process ends.
    std::mem::forget(handle);
    Ok(())
}

/// The config from fd 3 (at most [`config::MAX_CONFIG`] bytes; the buffer is wiped).
fn read_config() -> Result<Config> {
    let f = std::fs::File::from(super::placed_fd(super::GATE, config::CONFIG_FD)?);
    let mut buf = Zeroizing::new(Vec::new());
    f.take(config::MAX_CONFIG as u64 + 1)
        .read_to_end(&mut buf)
        .context("cannot read the gate's config")?;
    if buf.len() > config::MAX_CONFIG {
        return Err(anyhow!("the gate's config is too large"));
    }
    Config::decode(&buf).map_err(|e| anyhow!(e))
}

/// The bound secrets' (name, placeholder) pairs: what [`masked`] keeps out of audit reasons.
fn placeholders(config: &Config) -> Vec<(String, String)> {
    config.bound.as_ref().map_or_else(Vec::new, |b| {
        b.values
            .iter()
            .map(|v| (v.name.clone(), v.placeholder.clone()))
            .collect()
    })
}

/// The interceptor of the call's bound secrets, rebuilt from the config.
fn interceptor(b: &config::BoundWire, system_pem: Vec<u8>) -> Result<Interceptor> {
    let values: Vec<_> = b
        .values
        .iter()
        .map(|v| {
            (
                v.name.clone(),
                secrecy::SecretString::from(v.real.as_str()),
                v.placeholder.clone(),
            )
        })
        .collect();
    let bound = crate::plan::bound::Bound::rebuild(&b.binds, &values)?
        .ok_or_else(|| anyhow!("no bound secret in the gate's config"))?;
    Interceptor::rebuilt(
        bound,
        (&b.ca_key, b.ca_cert.clone()),
        Roots::Pem(Arc::new(system_pem)),
    )
}

/// The proxy's events to the audit log: every refusal and failure it answered (with the status,
/// and the host and port once read) and the bound secrets' events, names only. A placeholder in a
/// reason (one the sandbox wrote where a header name or a target is quoted) is written as
/// `<placeholder of NAME>`: no value of a bound secret, real or placeholder, is in a reason. The
/// host is the one asked for, as asked (a placeholder sent as a host name is the evidence of a
/// `secret-exfiltration` line).
fn sink(log: Option<EgressLog>, placeholders: Vec<(String, String)>) -> EventSink {
    Arc::new(move |e: &Event| {
        if let (Verdict::Op, Some(log)) = (e.verdict, &log) {
            let why = masked(&e.reason, &placeholders);
            let op = masked(e.op.as_deref().unwrap_or_default(), &placeholders);
            return log.log_op(&op, e.status.unwrap_or_default(), &why);
        }
        let event = match e.verdict {
            Verdict::Op => return,
            Verdict::Refused => EgressEvent::EgressRefused,
            Verdict::Failed => EgressEvent::EgressFailed,
            Verdict::SecretAdded => EgressEvent::SecretAdded,
            Verdict::Exfiltration => EgressEvent::SecretExfiltration,
            Verdict::SecretWithheld => EgressEvent::SecretWithheld,
            Verdict::Allowed => return,
        };
        if let Some(log) = &log {
            let protocol = match e.protocol {
                proxy::Protocol::Http => audit::Protocol::Http,
                proxy::Protocol::Connect => audit::Protocol::Connect,
                proxy::Protocol::Socks5 => audit::Protocol::Socks5,
                proxy::Protocol::Captured => audit::Protocol::Captured,
            };
            let why = match (&e.secret, e.verdict) {
                (Some(name), Verdict::SecretAdded) => format!("bound secret {name} added"),
                (Some(name), Verdict::Exfiltration) => {
                    format!("placeholder of bound secret {name} sent to a host it is not bound to")
                }
                _ => masked(&e.reason, &placeholders),
            };
            log.log(event, protocol, (&e.host, e.port), e.status, &why);
        }
    })
}

/// Where the sandbox's DNS reports: a `dns-refused` line per name it answered NXDOMAIN (a
/// failed lookup is an `egress-failed` one); answered names are not logged, as allowed
/// connections are not.
fn dns_report(log: Option<EgressLog>) -> dns_server::Report {
    Arc::new(move |d: &Decision| {
        let (Some(log), Some(why)) = (&log, &d.reason) else {
            return;
        };
        let event = match d.rcode {
            Rcode::NxDomain => EgressEvent::DnsRefused,
            _ => EgressEvent::EgressFailed,
        };
        log.log(event, audit::Protocol::Dns, (&d.name, 0), None, why);
    })
}

/// `reason` with every placeholder in `placeholders` (name, placeholder) replaced by
/// `<placeholder of NAME>`.
fn masked(reason: &str, placeholders: &[(String, String)]) -> String {
    let mut out = reason.to_string();
    for (name, ph) in placeholders {
        if !ph.is_empty() && out.contains(ph.as_str()) {
            out = out.replace(ph.as_str(), &format!("<placeholder of {name}>"));
        }
    }
    out
}

/// Landlock and seccomp on the process (one thread yet: the threads started later inherit both).
fn confine() -> Result<()> {
    crate::run::apply::landlock::confine_gate(RESOLVER_FILES)?;
    let prog = crate::plan::gate_seccomp::build(nix::unistd::getpid().as_raw())?;
    seccompiler::apply_filter(&prog).context("cannot install the gate's seccomp filter")
}

/// One accept thread per published port; each connection is dialed inside the sandbox by the
/// dialer and spliced until both sides end or nothing moves for `idle` (net.limits.idle_timeout).
fn forward(published: Vec<(u16, TcpListener)>, dialer: OwnedFd, idle: Duration) -> Result<()> {
    let dialer = Arc::new(Mutex::new(dialer));
    for (port, listener) in published {
        let d = dialer.clone();
        std::thread::Builder::new()
            .name("sbx-publish".into())
            .stack_size(256 * 1024)
            .spawn(move || accept_loop(port, &listener, &d, idle))
            .context("cannot start a forwarder")?;
    }
    Ok(())
}

fn accept_loop(port: u16, listener: &TcpListener, dialer: &Mutex<OwnedFd>, idle: Duration) {
    loop {
        let client = match listener.accept() {
            Ok((c, _)) => c,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        let Some(upstream) = dial(dialer, port) else {
            continue; // nothing listens on that port inside: the client sees the connection close
        };
        let _ = std::thread::Builder::new()
            .name("sbx-publish-conn".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                let _ = client.set_nodelay(true);
                let _ = upstream.set_nodelay(true);
                proxy::splice(&client, &upstream, false, idle);
            });
    }
}

/// Ask the dialer for a connection to the sandbox's 127.0.0.1:`port`.
fn dial(dialer: &Mutex<OwnedFd>, port: u16) -> Option<TcpStream> {
    let d = dialer.lock().unwrap_or_else(|e| e.into_inner());
    crate::sys::write_raw(d.as_raw_fd(), &port.to_be_bytes()).ok()?;
    let mut fds = crate::sys::recv_fds(d.as_raw_fd(), 1).ok()?;
    fds.pop().map(TcpStream::from)
}

/// The dialer's side: connect to the sandbox's 127.0.0.1:PORT for each request.
pub(super) fn connect_inside(port: u16) -> std::io::Result<TcpStream> {
    TcpStream::connect_timeout(
        &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        Duration::from_secs(5),
    )
}
