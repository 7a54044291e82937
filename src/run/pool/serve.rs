//! `sbx-exec pool serve`: keep the prepared sandboxes of every context with `pool = N` (control
//! mode starts it, and restarts it if it dies). One thread, one loop: answer the claims waiting
//! on the socket, reap what ended (and clean up after it), then prepare the next sandbox of the
//! pool that lacks one most; a pool whose sandbox cannot be made is retried after a pause, its
//! reason said once. SIGTERM, SIGINT or SIGHUP end it: the sandboxes still waiting end with it
//! (their socket closed), those claimed run on with their calls.

use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, UnixAddr};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

use super::prepared::{self, Pending, Prepared, Spent};
use crate::model::Context;
use crate::plan::cgroup::Layout;
use crate::plan::launch::Sandbox;
use crate::privilege::{self, Mode};
use crate::run::persist::state;
use crate::sys;

/// After a sandbox of a pool could not be made, how long before the next try.
const RETRY: Duration = Duration::from_secs(2);
/// How long the loop sleeps when nothing is to be done (a claim or a ready sandbox wakes it).
const IDLE: Duration = Duration::from_millis(500);
/// Sandboxes of one pool set up at once.
const PENDING: usize = 2;

/// One context's pool.
struct Pool<'a> {
    name: &'a str,
    ctx: &'a Context,
    sandbox: Sandbox,
    /// Its socket (`/run/sbx/pool-NAME-KEY.sock`), and the inode it was bound at.
    listener: OwnedFd,
    path: std::path::PathBuf,
    bound: Option<u64>,
    ready: VecDeque<Prepared>,
    /// Being set up by their pid 1 (at most [`PENDING`] at once).
    pending: Vec<Pending>,
    retry_at: Option<Instant>,
    said: Option<String>,
}

/// Run the server until a stopping signal; its exit status.
pub fn run(policy: Option<&Path>) -> Result<i32> {
    let mode = privilege::mode();
    if !matches!(mode, Mode::Root) {
        bail!("sbx-exec pool serve needs root (real and effective uid 0): it prepares sandboxes as a launch in root mode does");
    }
    // It holds the keys of its sandboxes' CAs (bound secrets) until they are claimed.
    crate::run::launch::harden_outer()?;
    let loaded = privilege::load_policy(mode, policy)?;
    let dir = state::dir(true)?.context("no runtime directory")?;
    let mut pools = plan_pools(&loaded, mode, &dir);
    let mut stopping = SigSet::empty();
    for s in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGCHLD,
    ] {
        stopping.add(s);
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&stopping), None)?;
    if pools.is_empty() {
        // Idle until stopped, so that a supervisor does not start it again and again.
        eprintln!("sbx-exec: pool: no context can have prepared sandboxes here; nothing to prepare (waiting for SIGTERM)");
        while let Ok(None | Some(Signal::SIGCHLD)) = sys::wait_signal(&stopping, None) {}
        return Ok(0);
    }
    let layout = pools
        .iter()
        .any(|p| p.ctx.limits.as_ref().is_some_and(|l| !l.is_empty()))
        .then(crate::plan::host::cgroup::layout);
    let mut spent: Vec<Spent> = Vec::new();
    let mut serial = 0u64;
    let mut counts = Counts::default();
    let code = loop {
        if let Ok(Some(sig)) = sys::wait_signal(&stopping, Some(Duration::ZERO)) {
            if sig != Signal::SIGCHLD {
                break 0;
            }
        }
        answer_claims(&mut pools, &mut spent, &mut counts);
        reap(&mut pools, &mut spent);
        promote(&mut pools, &mut spent);
        if refill(&mut pools, layout.as_ref(), &mut serial) {
            continue;
        }
        wait(&pools);
    };
    // Only our own sockets: a server started since (a restart) has bound new ones there.
    for p in &pools {
        if std::fs::metadata(&p.path).map(|m| m.ino()).ok() == p.bound {
            let _ = std::fs::remove_file(&p.path);
        }
    }
    eprintln!(
        "sbx-exec: pool: stopped; {} calls ran in prepared sandboxes, {} found none ready and built their own ({serial} prepared)",
        counts.handed, counts.none
    );
    for p in &mut pools {
        spent.extend(p.ready.drain(..).map(Prepared::discard));
        spent.extend(p.pending.drain(..).map(Pending::abandon));
    }
    // Those waiting end now (their socket closed); those claimed end with their calls: wait a
    // little for them, then leave them to control mode (the subreaper).
    let until = Instant::now() + Duration::from_secs(2);
    while !spent.is_empty() && Instant::now() < until {
        reap(&mut pools, &mut spent);
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(code)
}

/// The pools of the contexts with `pool = N` that can be planned here (one that cannot is named
/// once: its calls build their own).
fn plan_pools<'a>(loaded: &'a crate::model::Loaded, mode: &Mode, dir: &Path) -> Vec<Pool<'a>> {
    let mut pools = Vec::new();
    for (name, ctx) in loaded.policy.context.iter().filter(|(_, c)| c.pool > 0) {
        if ctx.persist || ctx.supervise.is_some() || !ctx.net.publish.is_empty() {
            eprintln!(
                "sbx-exec: pool: context {:?} gets no prepared sandboxes: pool has no effect with persist, supervise or net.publish",
                name.0
            );
            continue;
        }
        let sandbox = match crate::run::launch::pool_sandbox(loaded, &name.0, mode) {
            Ok(s) => s,
            Err(e) => {
                eprintln!(
                    "sbx-exec: pool: context {:?} gets no prepared sandboxes (its calls build their own, and fail the same way if it cannot run here): {e:#}",
                    name.0
                );
                continue;
            }
        };
        let key = super::key(&sandbox, ctx);
        let path = super::socket(dir, &name.0, key);
        let listener = match listen(&path) {
            Ok(l) => l,
            Err(e) => {
                eprintln!(
                    "sbx-exec: pool: context {:?} gets no prepared sandboxes: {e:#}",
                    name.0
                );
                continue;
            }
        };
        pools.push(Pool {
            name: &name.0,
            ctx,
            bound: std::fs::metadata(&path).map(|m| m.ino()).ok(),
            listener,
            path,
            sandbox,
            ready: VecDeque::new(),
            pending: Vec::new(),
            retry_at: None,
            said: None,
        });
    }
    pools
}

/// The listening socket: SOCK_SEQPACKET, mode 0600 in the root-only runtime directory,
/// non-blocking (a stale one of an ended server replaced).
fn listen(path: &Path) -> Result<OwnedFd> {
    let _ = std::fs::remove_file(path);
    let sock = socket::socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    let addr = UnixAddr::new(path)?;
    socket::bind(sock.as_raw_fd(), &addr)
        .with_context(|| format!("cannot bind {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot make {} root-only", path.display()))?;
    socket::listen(&sock, socket::Backlog::new(128)?)?;
    Ok(sock)
}

/// Claims answered with a sandbox, and with `none`.
#[derive(Default)]
struct Counts {
    handed: u64,
    none: u64,
}

/// Answer every waiting claim: a peer that is not root is closed unanswered; a claim (on the
/// socket of the pool whose plan the call has) gets a ready sandbox, or `none`.
fn answer_claims(pools: &mut [Pool], spent: &mut Vec<Spent>, count: &mut Counts) {
    for pool in pools.iter_mut() {
        while let Ok(raw) = socket::accept4(pool.listener.as_raw_fd(), SockFlag::SOCK_CLOEXEC) {
            let conn = sys::own_fd(raw);
            if !asked(&conn) {
                continue;
            }
            match take(pool, spent) {
                Some(p) => {
                    let (s, sent) = p.hand_to(conn.as_raw_fd());
                    if sent.is_err() {
                        eprintln!("sbx-exec: pool: a claim was not answered (the call gave up); its sandbox ends");
                    }
                    spent.push(s);
                    count.handed += 1;
                }
                None => {
                    let _ = sys::send_msg(conn.as_raw_fd(), b"none", &[]);
                    count.none += 1;
                }
            }
        }
    }
}

/// Did a root peer send `claim` on `conn` (within 100 ms)?
fn asked(conn: &OwnedFd) -> bool {
    let root =
        socket::getsockopt(conn, socket::sockopt::PeerCredentials).is_ok_and(|c| c.uid() == 0);
    let timeout = nix::sys::time::TimeVal::new(0, 100_000);
    let _ = socket::setsockopt(conn, socket::sockopt::ReceiveTimeout, &timeout);
    let _ = socket::setsockopt(conn, socket::sockopt::SendTimeout, &timeout);
    let mut buf = [0u8; 16];
    root && sys::recv_msg(conn.as_raw_fd(), &mut buf, 0).is_ok_and(|(n, _)| &buf[..n] == b"claim")
}

/// The pool's next ready sandbox that is still usable (one that ended while it waited, or whose
/// CA is a day old, is let go).
fn take(pool: &mut Pool, spent: &mut Vec<Spent>) -> Option<Prepared> {
    while let Some(p) = pool.ready.pop_front() {
        match p.usable() {
            true => return Some(p),
            false => spent.push(p.discard()),
        }
    }
    None
}

/// Reap every ended child: a handed-out sandbox's pid 1 is cleaned up after; a waiting one that
/// ended (killed) is taken out of its pool.
fn reap(pools: &mut [Pool], spent: &mut Vec<Spent>) {
    loop {
        let pid = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(status) => status.pid(),
        };
        let Some(pid) = pid else { continue };
        if let Some(i) = spent.iter().position(|s| s.pid == pid) {
            spent.swap_remove(i).clean_up();
            continue;
        }
        for p in pools.iter_mut() {
            if let Some(i) = p.ready.iter().position(|r| r.pid == pid) {
                if let Some(r) = p.ready.remove(i) {
                    r.discard().clean_up();
                }
            }
            if let Some(i) = p.pending.iter().position(|r| r.pid == pid) {
                p.pending.swap_remove(i).abandon().clean_up();
            }
        }
    }
}

/// Prepare one sandbox for the pool that lacks the most (and is not waiting to retry); true if
/// one was tried.
fn refill(pools: &mut [Pool], layout: Option<&Layout>, serial: &mut u64) -> bool {
    let now = Instant::now();
    let short = pools
        .iter_mut()
        .filter(|p| p.ready.len() + p.pending.len() < p.ctx.pool as usize)
        .filter(|p| p.pending.len() < PENDING && p.retry_at.is_none_or(|t| t <= now))
        .max_by_key(|p| p.ctx.pool as usize - p.ready.len() - p.pending.len());
    let Some(pool) = short else {
        return false;
    };
    *serial += 1;
    let spec = prepared::Spec {
        ctx_name: pool.name,
        ctx: pool.ctx,
        sandbox: &pool.sandbox,
        layout,
    };
    match prepared::begin(&spec, *serial) {
        Ok(p) => pool.pending.push(p),
        Err(e) => failed(pool, &e),
    }
    true
}

/// A sandbox of `pool` could not be made: say why (once for the same reason), retry later.
fn failed(pool: &mut Pool, e: &anyhow::Error) {
    let why = format!("{e:#}");
    if pool.said.as_deref() != Some(why.as_str()) {
        eprintln!(
            "sbx-exec: pool: cannot prepare a sandbox of context {:?} (its calls build their own meanwhile; retried every {} s): {why}",
            pool.name,
            RETRY.as_secs()
        );
    }
    pool.said = Some(why);
    pool.retry_at = Some(Instant::now() + RETRY);
}

/// Sandboxes whose pid 1 said it is ready (or failed, or took too long): into their pool's
/// ready ones, or ended.
fn promote(pools: &mut [Pool], spent: &mut Vec<Spent>) {
    for pool in pools.iter_mut() {
        let mut i = 0;
        while i < pool.pending.len() {
            let p = &pool.pending[i];
            let mut fds = [nix::poll::PollFd::new(
                p.ctl(),
                nix::poll::PollFlags::POLLIN,
            )];
            let said = nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).unwrap_or(0) > 0;
            if !said && !p.late() {
                i += 1;
                continue;
            }
            match pool.pending.swap_remove(i).finish_or_late(said) {
                Ok(ready) => {
                    pool.retry_at = None;
                    pool.said = None;
                    pool.ready.push_back(ready);
                }
                Err((left, e)) => {
                    spent.push(left);
                    failed(pool, &e);
                }
            }
        }
    }
}

/// Sleep until a claim comes, a sandbox being set up is ready, a retry is due, or [`IDLE`].
fn wait(pools: &[Pool]) {
    let left = next_retry(pools).map_or(IDLE, |t| t.min(IDLE));
    let mut fds: Vec<_> = pools
        .iter()
        .map(|p| nix::poll::PollFd::new(p.listener.as_fd(), nix::poll::PollFlags::POLLIN))
        .collect();
    for p in pools.iter().flat_map(|p| &p.pending) {
        fds.push(nix::poll::PollFd::new(
            p.ctl(),
            nix::poll::PollFlags::POLLIN,
        ));
    }
    let ms = left.as_millis().min(u16::MAX as u128) as u16;
    let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms));
}

/// How long until the earliest retry.
fn next_retry(pools: &[Pool]) -> Option<Duration> {
    let now = Instant::now();
    pools
        .iter()
        .filter(|p| p.ready.len() < p.ctx.pool as usize)
        .filter_map(|p| p.retry_at)
        .map(|t| t.saturating_duration_since(now))
        .min()
}
