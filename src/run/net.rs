//! The network of a `net = "private"` sandbox, run by the outer sbx-exec. No bridge process and no
//! veth: a socket keeps the network namespace it was created in.
//!
//! ```text
//! outer sbx-exec (container netns)                 sandbox pid 1 (new netns, lo up)
//!   socketpair, bind 127.0.0.1:P (publish) ─clone─>  bind 127.0.0.1:3128 (the proxy's listener)
//!   recv [listener, netns] <──── SCM_RIGHTS ──────   open /proc/self/ns/net, send both, close them
//!   proxy::serve(listener): accepts from inside, connects out from the container's netns
//!   publish: accept on 127.0.0.1:P ─> "inside" thread (setns(netns)) connects to 127.0.0.1:P
//!            inside the sandbox ─> splice
//! ```
//!
//! [`Bridge::prepare`] runs before the clone (the outer process is still single-threaded there:
//! the clone is a plain fork); [`Bridge::start`] after it, and only then are threads started: the
//! proxy's on the sandbox's first connection to it ([`Running`]). With `net.allow = []` no
//! listener is made and no proxy thread exists; without `publish` no forwarder. Everything ends
//! with the outer process. A persistent context's keeper hands out the same way, to a net helper
//! that lives as long as the keeper ([`crate::run::persist::nethelper`]).

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::{anyhow, Context as _, Result};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

use crate::model::net::PROXY_PORT;
use crate::plan::egress::{local_addrs, EgressPolicy};
use crate::plan::net::Plan;
use crate::run::audit::EgressLog;
use crate::run::proxy::bound::Interceptor;
use crate::run::proxy::{self, Event, EventSink, ProxyHandle, Verdict};
use crate::sys;

const THREAD_STACK: usize = 256 * 1024;

/// What the call's proxy adds to forwarding: the audit log of its events, and the interceptor of
/// the bound secrets the call was handed.
#[derive(Default)]
pub struct Proxying {
    pub log: Option<EgressLog>,
    pub bound: Option<Arc<Interceptor>>,
}

/// The outer side of a sandbox's network, before the clone.
pub struct Bridge {
    plan: Plan,
    outer: OwnedFd,
    inner: OwnedFd,
    published: Vec<(u16, TcpListener)>,
}

/// What runs for the sandbox's network: stopped when dropped (with the outer process).
///
/// The egress proxy starts on its first connection, not at launch: until then its listener only
/// queues connections (the kernel does that), and the outer process is told of the first one by
/// SIGIO, which it takes in its wait ([`crate::run::reaper::supervise`]) and answers with
/// [`Running::start_proxy`]. A call that never uses the network pays for no thread and no address
/// listing.
#[derive(Default)]
pub struct Running {
    proxy: Option<ProxyHandle>,
    pending: Option<Pending>,
}

/// A proxy not started yet: its listener (armed for SIGIO) and what it will serve with.
struct Pending {
    listener: TcpListener,
    egress: EgressPolicy,
    proxying: Proxying,
}

impl Running {
    /// Start the proxy if it has not started: on SIGIO, or at once where nothing waits for that
    /// signal (a persistent context's net helper). On failure the listener is closed: the
    /// sandbox's clients find their connections refused, as with no egress.
    pub fn start_proxy(&mut self) -> Result<()> {
        let Some(Pending {
            listener,
            mut egress,
            proxying,
        }) = self.pending.take()
        else {
            return Ok(());
        };
        let _ = sys::notify_on_input(listener.as_fd(), false);
        egress.self_addrs = local_addrs().context("cannot list the container's addresses")?;
        self.proxy = Some(serve_proxy(listener, egress, proxying)?);
        Ok(())
    }
}

/// Ask for SIGIO on the proxy's first connection; true if it must be waited for. One may already
/// be queued (the target runs while the outer process receives the listener): then no signal
/// comes, and the proxy starts at once.
fn arm(listener: &TcpListener) -> Result<bool> {
    sys::notify_on_input(listener.as_fd(), true)
        .context("cannot watch the egress proxy's listener")?;
    let mut fds = [nix::poll::PollFd::new(
        listener.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    let ready = nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO)
        .context("cannot poll the egress proxy's listener")?;
    Ok(ready == 0)
}

impl Bridge {
    /// Before the clone: the socketpair pid 1 answers on, and the published ports bound on the
    /// container's 127.0.0.1 (a port already taken is an error now, before anything runs).
    pub fn prepare(plan: &Plan) -> Result<Bridge> {
        let (outer, inner) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .context("cannot create the socket pair for the sandbox's network")?;
        let mut published = Vec::new();
        for &port in &plan.publish {
            let l = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).with_context(|| {
                format!("cannot publish port {port} on the container's 127.0.0.1 (net.publish); is it in use (by another call of this context)?")
            })?;
            published.push((port, l));
        }
        Ok(Bridge {
            plan: plan.clone(),
            outer,
            inner,
            published,
        })
    }

    /// Pid 1's end of the socket pair (kept through its fd cleanup; closed here after the clone).
    pub fn inner(&self) -> &OwnedFd {
        &self.inner
    }

    /// Every fd this holds (a persistent context's net helper keeps them through its fd cleanup).
    pub fn fds(&self) -> Vec<std::os::fd::RawFd> {
        let mut v = vec![self.outer.as_raw_fd(), self.inner.as_raw_fd()];
        v.extend(self.published.iter().map(|(_, l)| l.as_raw_fd()));
        v
    }

    /// After the clone: receive pid 1's sockets, then start the forwarders, and the proxy: at
    /// once, or with `lazy` on its first connection (the caller has SIGIO blocked and takes it).
    pub fn start(self, proxying: Proxying, lazy: bool) -> Result<Running> {
        let Bridge {
            plan,
            outer,
            inner,
            published,
        } = self;
        drop(inner); // pid 1 holds the other copy: its exit is end of file here
        let want = usize::from(plan.egress.is_some()) + usize::from(!published.is_empty());
        let fds = sys::recv_fds(outer.as_raw_fd(), want).context(
            "the sandbox did not hand out its network sockets (its setup failed; see above)",
        )?;
        if fds.is_empty() && want > 0 {
            // degrade = true and the kernel refused the network namespace: the target shares the
            // container's network, and nothing of the proxy or the published ports runs; the proxy
            // variables lead nowhere.
            // (The degrade warning already named the missing "net" namespace.)
            return Ok(Running::default());
        }
        let mut fds = fds.into_iter();
        let mut running = Running::default();
        if let Some(egress) = plan.egress {
            let listener = fds.next().ok_or_else(|| anyhow!("no proxy listener"))?;
            let listener = TcpListener::from(listener);
            let wait = lazy && arm(&listener)?;
            running.pending = Some(Pending {
                listener,
                egress,
                proxying,
            });
            if !wait {
                running.start_proxy()?;
            }
        }
        if !published.is_empty() {
            let netns = fds.next().ok_or_else(|| anyhow!("no network namespace"))?;
            forward(published, netns)?;
        }
        Ok(running)
    }
}

/// In pid 1, after `lo` is up and before the target is forked: bind the proxy's listener (when
/// there is egress) and hand it out with this network namespace (when ports are published).
pub fn hand_out(sock: std::os::fd::RawFd, plan: &Plan) -> Result<()> {
    let mut send: Vec<OwnedFd> = Vec::new();
    if plan.egress.is_some() {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, PROXY_PORT)).with_context(|| {
            format!("cannot bind the egress proxy's port 127.0.0.1:{PROXY_PORT} in the sandbox")
        })?;
        send.push(l.into());
    }
    if !plan.publish.is_empty() {
        let ns = std::fs::File::open("/proc/self/ns/net")
            .context("cannot open the sandbox's network namespace")?;
        send.push(ns.into());
    }
    let raw: Vec<i32> = send.iter().map(|f| f.as_raw_fd()).collect();
    sys::send_fds(sock, &raw).context("cannot hand the network sockets out")?;
    Ok(())
}

/// The proxy, with the bound secrets' interceptor when the call was handed any; its refusals and
/// bound-secret events go to the audit log (names only).
fn serve_proxy(
    listener: TcpListener,
    egress: EgressPolicy,
    proxying: Proxying,
) -> Result<ProxyHandle> {
    let Proxying { log, bound } = proxying;
    let sink: EventSink = Arc::new(move |e: &Event| {
        let event = match e.verdict {
            Verdict::Refused => "egress-refused",
            Verdict::SecretAdded => "secret-added",
            Verdict::Exfiltration => "secret-exfiltration",
            _ => return,
        };
        if let Some(log) = &log {
            let protocol = format!("{:?}", e.protocol).to_lowercase();
            let why = match (&e.secret, e.verdict) {
                (Some(name), Verdict::SecretAdded) => format!("bound secret {name} added"),
                (Some(name), Verdict::Exfiltration) => {
                    format!("placeholder of bound secret {name} sent to a host it is not bound to")
                }
                _ => e.reason.clone(),
            };
            log.event(event, &protocol, &e.host, e.port, &why);
        }
    });
    let policy = Arc::new(egress);
    match bound {
        Some(b) => proxy::bound::serve(listener, policy, sink, b),
        None => proxy::serve(listener, policy, sink),
    }
    .context("cannot start the egress proxy")
}

/// A request to the inside thread: connect to the sandbox's 127.0.0.1:port.
type Dial = (u16, mpsc::Sender<std::io::Result<TcpStream>>);

/// Start the inside thread (in the sandbox's network namespace) and one accept thread per
/// published port; each accepted connection is spliced to the same port inside.
fn forward(published: Vec<(u16, TcpListener)>, netns: OwnedFd) -> Result<()> {
    let (tx, rx) = mpsc::channel::<Dial>();
    let (ready_tx, ready_rx) = mpsc::channel::<std::io::Result<()>>();
    spawn("sbx-net-inside", move || {
        // setns(2) of a network namespace changes only this thread's.
        let entered = nix::sched::setns(netns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET);
        let ok = entered.is_ok();
        let _ = ready_tx.send(entered.map_err(std::io::Error::from));
        if !ok {
            return;
        }
        for (port, reply) in rx {
            let to = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let _ = reply.send(TcpStream::connect_timeout(&to, Duration::from_secs(5)));
        }
    })?;
    ready_rx
        .recv()
        .map_err(|_| anyhow!("the forwarder thread ended"))?
        .context("cannot enter the sandbox's network namespace for net.publish (it needs root; rootless mode cannot publish ports)")?;
    for (port, listener) in published {
        let tx = tx.clone();
        spawn("sbx-publish", move || accept_loop(port, &listener, &tx))?;
    }
    Ok(())
}

fn accept_loop(port: u16, listener: &TcpListener, inside: &mpsc::Sender<Dial>) {
    loop {
        let client = match listener.accept() {
            Ok((c, _)) => c,
            Err(_) => {
                thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        let (reply_tx, reply_rx) = mpsc::channel();
        if inside.send((port, reply_tx)).is_err() {
            return;
        }
        let Ok(Ok(upstream)) = reply_rx.recv() else {
            continue; // nothing listens on that port inside: the client sees the connection close
        };
        let _ = spawn("sbx-publish-conn", move || {
            let _ = client.set_nodelay(true);
            let _ = upstream.set_nodelay(true);
            proxy::splice(&client, &upstream, false, Duration::from_secs(24 * 3600));
        });
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<()> {
    thread::Builder::new()
        .name(name.into())
        .stack_size(THREAD_STACK)
        .spawn(f)
        .map(drop)
        .with_context(|| format!("cannot start thread {name}"))
}
