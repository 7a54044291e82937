//! One prepared sandbox: made by the pool's server ([`prepare`]), its pid 1's life ([`pid1`]),
//! handed to a call ([`Prepared::hand_to`]), and what is left of it to clean up after
//! ([`Spent`]).

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::unistd::Pid;

use super::claim::{Reply, NS_COUNT};
use crate::error::EXIT_SBX;
use crate::model::Context;
use crate::plan::cgroup::{Decision, Layout};
use crate::plan::launch::Sandbox;
use crate::run::apply::cgroup;
use crate::run::confine::{self, Host, Role};
use crate::run::init::Entered;
use crate::run::net::Bridge;
use crate::run::proxy::bound::CaParts;
use crate::sys;

/// How long pid 1 may take to set the sandbox up.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a sandbox with a CA (bound secrets) is handed out: its certificate is valid for 30
/// days from the day before it was made, a call's gate may run for days, and a sandbox left
/// unclaimed longer is let go and made again.
const CA_FRESH: Duration = Duration::from_secs(24 * 3600);

/// A sandbox ready for one call.
pub struct Prepared {
    pub pid: Pid,
    pidfd: OwnedFd,
    ctl: OwnedFd,
    ns: Vec<OwnedFd>,
    outer: Option<OwnedFd>,
    userns: Option<OwnedFd>,
    procs: Vec<OwnedFd>,
    dirs: Vec<PathBuf>,
    /// Bound secrets: the CA whose certificate pid 1 wrote into the sandbox's bundle.
    ca: Option<CaParts>,
    made: std::time::Instant,
}

/// What the server keeps of a sandbox it handed out or let go, until its pid 1 is reaped: the
/// cgroup to remove. It holds none of the namespaces: they are torn down as the last process in
/// them exits (pid 1, on a CPU of its own), never in the server's loop.
pub struct Spent {
    pub pid: Pid,
    dirs: Vec<PathBuf>,
}

impl Spent {
    /// Pid 1 was reaped: remove the cgroup once it is empty.
    pub fn clean_up(self) {
        cgroup::remove_when_empty(&self.dirs);
    }
}

/// What [`prepare`] needs of the context.
pub struct Spec<'a> {
    pub ctx_name: &'a str,
    pub ctx: &'a Context,
    pub sandbox: &'a Sandbox,
    pub layout: Option<&'a Layout>,
}

/// Begin sandbox number `serial` of `spec`: its cgroup leaf (`sbx-CTX.poolN-PID`), its user
/// namespace (`identity`), its network bridge, and its pid 1 cloned into the plan's namespaces,
/// which sets it up while the server goes on ([`Pending::finish`] once it says it is ready).
pub fn begin(spec: &Spec, serial: u64) -> Result<Pending> {
    let name = format!("{}.pool{serial}", spec.ctx_name);
    let limits = spec.ctx.limits.as_ref();
    let decision = Decision::new(&name, limits, spec.layout, std::process::id());
    let (procs, dirs) = match (&decision, limits) {
        (Decision::Make(plan), Some(l)) => match cgroup::create(&cgroup::Host, plan) {
            Ok(procs) => (procs, decision.dirs()),
            Err(e) => {
                cgroup::go_without(spec.ctx_name, l, spec.ctx.degrade, &format!("{e:#}"))?;
                (Vec::new(), Vec::new())
            }
        },
        (Decision::Unavailable(why), Some(l)) => {
            cgroup::go_without(spec.ctx_name, l, spec.ctx.degrade, why)?;
            (Vec::new(), Vec::new())
        }
        _ => (Vec::new(), Vec::new()),
    };
    // Bound secrets: this sandbox's own CA, its certificate in the bundle pid 1 writes.
    let ca = spec
        .sandbox
        .ca()
        .map(|c| CaParts::new(&c.hosts))
        .transpose();
    let made = ca.and_then(|ca| {
        let mut sandbox = match &ca {
            Some(ca) => spec.sandbox.with_ca_pem(&ca.pem),
            None => spec.sandbox.clone(),
        };
        if let Some(m) = &mut sandbox.mounts {
            m.show_cgroups(&dirs);
        }
        let userns = spec.ctx.identity.as_ref().map(user_namespace).transpose()?;
        start(spec.ctx_name, &sandbox, (procs, dirs.clone()), userns, ca)
    });
    if made.is_err() {
        cgroup::remove_when_empty(&dirs);
    }
    made
}

/// `identity`: a user namespace mapping `range` ahead of the call (what a target otherwise makes
/// and has mapped while the call waits): a child of the server makes it, the server maps it, the
/// child hands it back and exits. The target of the one call that claims the sandbox enters it.
fn user_namespace(range: &crate::model::IdRange) -> Result<OwnedFd> {
    let h = crate::run::apply::identity::Handshake::new()?;
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    match sys::fork().map_err(|e| anyhow!("cannot fork: {e}"))? {
        nix::unistd::ForkResult::Child => {
            drop(ours);
            let handed = crate::run::apply::identity::enter(false, h.target_ends())
                .and_then(|_| Ok(std::fs::File::open("/proc/self/ns/user")?))
                .and_then(|f| Ok(sys::send_fds(theirs.as_raw_fd(), &[f.as_raw_fd()])?));
            sys::exit_now(if handed.is_ok() { 0 } else { EXIT_SBX })
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(theirs);
            let mapped = crate::run::apply::identity::map_child(child, range, h.parent(), true)?;
            if let Some(code) = mapped {
                bail!("the user namespace's maker ended with {code} before it was mapped");
            }
            let got = sys::recv_fds(ours.as_raw_fd(), 1);
            let _ = nix::sys::wait::waitpid(child, None);
            got?.pop().context("no user namespace was handed back")
        }
    }
}

/// A sandbox whose pid 1 is still setting it up.
pub struct Pending {
    pub pid: Pid,
    ctl: OwnedFd,
    outer: Option<OwnedFd>,
    userns: Option<OwnedFd>,
    procs: Vec<OwnedFd>,
    dirs: Vec<PathBuf>,
    ca: Option<CaParts>,
    since: std::time::Instant,
}

/// Clone pid 1 (it sets the sandbox up on its own).
fn start(
    ctx_name: &str,
    sandbox: &Sandbox,
    (procs, dirs): (Vec<OwnedFd>, Vec<PathBuf>),
    userns: Option<OwnedFd>,
    ca: Option<CaParts>,
) -> Result<Pending> {
    let bridge = sandbox.net.as_ref().map(Bridge::prepare).transpose()?;
    let (ctl, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .context("cannot make the prepared sandbox's socket pair")?;
    let pid = match crate::run::init::enter(ctx_name, sandbox)? {
        Entered::Child(sb) => {
            drop(ctl);
            let full = sb.kinds == sandbox.kinds;
            let net = bridge.as_ref().map(|b| b.inner().as_raw_fd());
            pid1(&sb, theirs, net, &procs, full)
        }
        Entered::Parent(pid) => pid,
    };
    Ok(Pending {
        pid,
        ctl,
        outer: bridge.map(Bridge::into_outer),
        userns,
        procs,
        dirs,
        ca,
        since: std::time::Instant::now(),
    })
}

impl Pending {
    /// Its socket: readable once pid 1 is ready (or gone).
    pub fn ctl(&self) -> std::os::fd::BorrowedFd<'_> {
        self.ctl.as_fd()
    }

    /// Has it been setting up for longer than [`READY_TIMEOUT`]?
    pub fn late(&self) -> bool {
        self.since.elapsed() > READY_TIMEOUT
    }

    /// Pid 1 said it is ready (its socket is readable): the sandbox, or why not (it is then
    /// ended: killed, and its leftovers for the server to clean up after it is reaped).
    pub fn finish(self) -> std::result::Result<Prepared, (Spent, anyhow::Error)> {
        let ready = ready(self.ctl.as_raw_fd()).and_then(|ns| {
            let pidfd = sys::pidfd_open(self.pid).context("pidfd_open")?;
            Ok((ns, pidfd))
        });
        match ready {
            Ok((ns, pidfd)) => Ok(Prepared {
                pid: self.pid,
                pidfd,
                ctl: self.ctl,
                ns,
                outer: self.outer,
                userns: self.userns,
                procs: self.procs,
                dirs: self.dirs,
                ca: self.ca,
                made: self.since,
            }),
            Err(e) => Err((self.abandon(), e)),
        }
    }

    /// [`Pending::finish`] when pid 1 `said` something; else it took too long: ended.
    pub fn finish_or_late(
        self,
        said: bool,
    ) -> std::result::Result<Prepared, (Spent, anyhow::Error)> {
        match said {
            true => self.finish(),
            false => Err((
                self.abandon(),
                anyhow!(
                    "the prepared sandbox did not get ready within {} s",
                    READY_TIMEOUT.as_secs()
                ),
            )),
        }
    }

    /// End it (killed): its leftovers, cleaned up once it is reaped.
    pub fn abandon(self) -> Spent {
        let _ = nix::sys::signal::kill(self.pid, Signal::SIGKILL);
        Spent {
            pid: self.pid,
            dirs: self.dirs,
        }
    }
}

/// Pid 1's "ready" on `ctl` (readable): `R` with its namespaces (`D`: the kernel refused some of
/// them and the context degrades; such a sandbox is not the plan and is not pooled).
fn ready(ctl: RawFd) -> Result<Vec<OwnedFd>> {
    let mut said = [0u8; 1];
    let (_, ns) = sys::recv_msg(ctl, &mut said, NS_COUNT)
        .map_err(|_| anyhow!("the prepared sandbox's set-up failed (see above)"))?;
    match (said[0], ns.len()) {
        (b'R', NS_COUNT) => Ok(ns),
        (b'D', _) => bail!("the kernel refused some of its namespaces (degrade = true): a degraded sandbox is built per call, not pooled"),
        _ => bail!("the prepared sandbox handed out {} namespaces, not {NS_COUNT}", ns.len()),
    }
}

/// Pid 1 of a prepared sandbox: set it up ([`Role::Prepared`]), send "ready" with its
/// namespaces on `ctl`, then reap until `ctl` reaches end of file (its holder, the server or
/// the call that claimed it, is done or gone); exiting ends the sandbox. Never returns.
fn pid1(sandbox: &Sandbox, ctl: OwnedFd, net: Option<RawFd>, procs: &[OwnedFd], full: bool) -> ! {
    let role = Role::Prepared {
        ctl: ctl.as_raw_fd(),
        net,
        cgroup: procs,
    };
    if let Err(e) = confine::pid1::setup(&Host, sandbox, role) {
        eprintln!("sbx-exec: pool: {e:#}");
        sys::exit_now(EXIT_SBX);
    }
    let ns = match crate::run::persist::nssock::open_own() {
        Ok(ns) => ns,
        Err(e) => {
            eprintln!("sbx-exec: pool: {e:#}");
            sys::exit_now(EXIT_SBX)
        }
    };
    let raw: Vec<RawFd> = ns.iter().map(AsRawFd::as_raw_fd).collect();
    let said: &[u8] = if full { b"R" } else { b"D" };
    if sys::send_msg(ctl.as_raw_fd(), said, &raw).is_err() {
        sys::exit_now(EXIT_SBX);
    }
    drop(ns);
    reap_until_closed(&ctl)
}

/// Reap every child (orphans of the call's processes) until `ctl` reaches end of file.
fn reap_until_closed(ctl: &OwnedFd) -> ! {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    let _ = mask.thread_block();
    let Ok(sfd) = nix::sys::signalfd::SignalFd::with_flags(
        &mask,
        nix::sys::signalfd::SfdFlags::SFD_CLOEXEC | nix::sys::signalfd::SfdFlags::SFD_NONBLOCK,
    ) else {
        sys::exit_now(EXIT_SBX)
    };
    loop {
        let mut fds = [
            nix::poll::PollFd::new(ctl.as_fd(), nix::poll::PollFlags::POLLIN),
            nix::poll::PollFd::new(sfd.as_fd(), nix::poll::PollFlags::POLLIN),
        ];
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => sys::exit_now(0),
            Ok(_) => {}
        }
        let ended = fds[0].revents().is_some_and(|r| !r.is_empty());
        while let Ok(Some(_)) = sfd.read_signal() {}
        crate::run::reaper::reap(None);
        if ended {
            let mut buf = [0u8; 16];
            if matches!(nix::unistd::read(ctl.as_raw_fd(), &mut buf), Ok(0) | Err(_)) {
                sys::exit_now(0);
            }
        }
    }
}

impl Prepared {
    /// Is its pid 1 still there (not ended while it waited), and its CA (if any) fresh?
    pub fn usable(&self) -> bool {
        self.alive() && (self.ca.is_none() || self.made.elapsed() < CA_FRESH)
    }

    /// Is its pid 1 still there (not ended while it waited)?
    fn alive(&self) -> bool {
        let mut fds = [nix::poll::PollFd::new(
            self.pidfd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).unwrap_or(1) == 0
    }

    /// Hand it to the call on `conn` (its answer and fds); what the server keeps of it. On a
    /// failed send the sandbox ends with this (its `ctl` closed) and `Err` says so.
    pub fn hand_to(self, conn: RawFd) -> (Spent, std::io::Result<()>) {
        let mut raw = vec![self.ctl.as_raw_fd(), self.pidfd.as_raw_fd()];
        raw.extend(self.ns.iter().map(AsRawFd::as_raw_fd));
        raw.extend(self.outer.iter().map(AsRawFd::as_raw_fd));
        raw.extend(self.userns.iter().map(AsRawFd::as_raw_fd));
        raw.extend(self.procs.iter().map(AsRawFd::as_raw_fd));
        let flags = (self.outer.is_some(), self.userns.is_some());
        let text = Reply::text(self.pid, flags, &self.dirs, self.ca.as_ref());
        let sent = sys::send_msg(conn, text.as_bytes(), &raw);
        let spent = Spent {
            pid: self.pid,
            dirs: self.dirs,
        };
        (spent, sent)
    }

    /// Its leftovers, for a sandbox that is let go unclaimed (its `ctl` closed: pid 1 ends).
    pub fn discard(self) -> Spent {
        Spent {
            pid: self.pid,
            dirs: self.dirs,
        }
    }
}
