//! The net helper of a persistent context with `net = "private"` (`allow` and/or `publish`): one
//! process, outside the context's network namespace (in the container's), that runs the egress
//! proxy and the published ports' forwarders for as long as the keeper lives.
//!
//! ```text
//! first call: Bridge::prepare (socketpair, bind 127.0.0.1:P) ─> keeper (pid 1) hands out
//!             [listener, netns] over SCM_RIGHTS while it sets up, like a one-shot pid 1
//!             ─fork─> (setsid) ─fork─> net helper ("sbx-net"), then the first fork exits
//! net helper: non-dumpable, own session, stdio on /dev/null, no fds but the bridge's, the
//!             keeper's pidfd and the report pipe; receives the sockets, starts the proxy and the
//!             forwarders, listens on /run/sbx/NAME.net, reports "K", then polls the keeper's
//!             pidfd (and exits with it) and its control socket (`sbx-exec ctx net`: new egress
//!             rules, a new gate; [`super::netctl`])
//! ```
//! The first call records the helper (pid, start time) in the context's state as soon as it
//! exists, before the keeper is committed, so `ctx stop`, `ctx list` and the next call after a
//! crash find it ([`super::lifecycle::verify_net`], [`super::lifecycle::end_net`]). Joins need
//! nothing of it: the proxy's listener is inside the shared network namespace.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};
use nix::sys::wait::waitpid;
use nix::unistd::ForkResult;

use super::lifecycle::proc_stat;
use super::netctl::{Control, Ready, Reply};
use crate::run::audit::EgressLog;
use crate::run::net::{Bridge, Proxying, Running};
use crate::sys;

/// How long a first call waits for the net helper to say its proxy and forwarders run.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Start the net helper for the keeper behind `keeper` (which has handed its sockets out on
/// `bridge`'s socket pair by now). `record` runs with the helper's pid and start time as soon as
/// they are known; returns once the helper runs the proxy and the forwarders.
pub fn start(
    ctx_name: &str,
    bridge: Bridge,
    (keeper, cgroup_procs): (&OwnedFd, &[OwnedFd]),
    log: Option<EgressLog>,
    record: &mut dyn FnMut(i32, u64) -> Result<()>,
) -> Result<()> {
    let (report_r, report_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| anyhow::anyhow!("cannot make a pipe: {}", crate::error::errno_cause(e)))?;
    let forked = sys::fork()
        .map_err(|e| anyhow::anyhow!("cannot fork: {}", crate::error::errno_cause(e)))?;
    let first = match forked {
        ForkResult::Child => {
            drop(report_r);
            // A new session, then a second fork: the helper is nobody's child here, leads no
            // session, and never gets the caller's terminal.
            if nix::unistd::setsid().is_err() {
                sys::exit_now(1);
            }
            // In the context's cgroup (as its keeper), not the caller's: a caller's limits do
            // not cap the context's gate, and the context's limits count it.
            if let Err(e) = crate::run::apply::cgroup::join(cgroup_procs) {
                let _ = nix::unistd::write(&report_w, &0i32.to_ne_bytes());
                let _ = nix::unistd::write(
                    &report_w,
                    format!(
                        "Ecannot enter the context's cgroup: {}",
                        crate::error::cause(&e)
                    )
                    .as_bytes(),
                );
                sys::exit_now(1);
            }
            match sys::fork() {
                Ok(ForkResult::Child) => helper_main(ctx_name, bridge, keeper, report_w, log),
                _ => sys::exit_now(0),
            }
        }
        ForkResult::Parent { child } => child,
    };
    drop(report_w);
    drop(bridge); // the helper holds the sockets now; this call keeps none of them
    let _ = waitpid(first, None);
    let mut buf = [0u8; 4];
    if !read_within(&report_r, &mut buf) {
        bail!("cannot start the net helper of context {ctx_name:?}: it ended before it said its pid (fork or setsid failed)");
    }
    let pid = i32::from_ne_bytes(buf);
    let mut msg = Vec::new();
    if pid != 0 {
        let (_, start) = proc_stat(pid).context("the new net helper vanished")?;
        record(pid, start)?;
    }
    let mut byte = [0u8; 1];
    while read_within(&report_r, &mut byte) {
        msg.push(byte[0]);
    }
    match msg.split_first() {
        Some((b'K', warning)) => {
            if !warning.is_empty() {
                eprintln!(
                    "sbx-exec: warning: context {ctx_name:?}: {}",
                    String::from_utf8_lossy(warning)
                );
            }
            Ok(())
        }
        Some((_, why)) => bail!(
            "the net helper of context {ctx_name:?} cannot run its network: {}",
            String::from_utf8_lossy(why)
        ),
        None => bail!("the net helper of context {ctx_name:?} ended before it was ready"),
    }
}

/// Fill `buf` from `fd` within [`READY_TIMEOUT`]; false on end of file, error or timeout.
fn read_within(fd: &OwnedFd, buf: &mut [u8]) -> bool {
    let mut got = 0;
    while got < buf.len() {
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        let ms = PollTimeout::try_from(READY_TIMEOUT).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, ms) {
            Ok(n) if n > 0 => {}
            Err(nix::errno::Errno::EINTR) => continue,
            _ => return false,
        }
        match nix::unistd::read(fd.as_raw_fd(), &mut buf[got..]) {
            Ok(0) => return false,
            Ok(n) => got += n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return false,
        }
    }
    true
}

/// The net helper. Says its pid, detaches, receives the keeper's sockets, starts the proxy and
/// the forwarders, binds its control socket, says "K" (or "E" and why), then lives exactly as
/// long as the keeper. Never returns.
fn helper_main(
    ctx_name: &str,
    bridge: Bridge,
    keeper: &OwnedFd,
    report: OwnedFd,
    log: Option<EgressLog>,
) -> ! {
    let _ = nix::unistd::write(&report, &std::process::id().to_ne_bytes());
    let fail = |e: anyhow::Error| -> ! {
        let _ = nix::unistd::write(&report, format!("E{e:#}").as_bytes());
        sys::exit_now(1)
    };
    if let Err(e) = detach(&bridge, keeper, &report) {
        fail(e.context("cannot detach"));
    }
    // The call id the control plane is told (ops): the call that started the context.
    let call = log.as_ref().map_or_else(
        || format!("{:016x}", sys::random_u64().unwrap_or_default()),
        |l| l.identity().0,
    );
    let proxying = Proxying {
        log,
        bound: None,
        call,
    };
    let mut running = match bridge.start(proxying, false) {
        Ok(r) => r,
        Err(e) => fail(e),
    };
    // The control socket, for a context with egress rules to change. Without it the context
    // runs (its egress works), and `ctx net` says it cannot reach the helper.
    let dir = std::path::Path::new(super::state::RUNTIME_DIR);
    let (mut control, warning) = match running.allow() {
        Some(_) => match Control::bind(dir, ctx_name) {
            Ok(c) => (Some(c), String::new()),
            Err(e) => (
                None,
                format!("its egress rules cannot be changed live (sbx-exec ctx net): {e:#}"),
            ),
        },
        None => (None, String::new()),
    };
    let _ = nix::unistd::write(&report, format!("K{warning}").as_bytes());
    drop(report);
    serve(ctx_name, keeper, &mut running, control.as_mut());
    drop(control);
    drop(running);
    sys::exit_now(0)
}

/// The helper's loop, until the keeper exits (its pidfd turns readable: the context's network is
/// gone). Meanwhile a gate that died (a crash, a kill) is started again: connections in flight
/// are lost, later ones work; at most one start a second. A request on the control socket
/// replaces the gate's rules ([`Running::replace_allow`]) and is answered.
fn serve(
    ctx_name: &str,
    keeper: &OwnedFd,
    running: &mut Running,
    mut control: Option<&mut Control>,
) {
    const CHECK: Duration = Duration::from_secs(1);
    let mut checked = Instant::now();
    loop {
        let wait = control
            .as_ref()
            .and_then(|c| c.wait())
            .map_or(CHECK, |w| w.min(CHECK));
        let mut fds = vec![PollFd::new(keeper.as_fd(), PollFlags::POLLIN)];
        if let Some(c) = control.as_ref() {
            fds.push(PollFd::new(c.fd(), PollFlags::POLLIN));
        }
        // The gate's requests for control plane connections (ops): answered below, never read.
        fds.extend(running.ops_fd().map(|o| PollFd::new(o, PollFlags::POLLIN)));
        let ms = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, ms) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => break,
        }
        if fds[0].any().unwrap_or(true) {
            break;
        }
        drop(fds);
        running.serve_ops();
        if let Some(c) = control.as_deref_mut() {
            if let Ready::Request(r) = c.step() {
                let reply = match running.replace_allow(&r.allow) {
                    Ok(()) => Reply::Applied { allow: r.allow },
                    Err(e) => Reply::Refused {
                        error: format!("context {ctx_name:?}: {e:#}"),
                    },
                };
                c.answer(&reply);
            }
        }
        if checked.elapsed() >= CHECK {
            checked = Instant::now();
            let _ = running.restart_if_dead();
        }
    }
}

/// Non-dumpable, named `sbx-net`, signals as a fresh process (sbx-exec blocks the ones it
/// forwards), set-uid callers' real ids gone, `/` as working directory, stdio on /dev/null and no
/// fds but the bridge's, the keeper's pidfd and the report pipe.
fn detach(bridge: &Bridge, keeper: &OwnedFd, report: &OwnedFd) -> Result<()> {
    nix::sys::prctl::set_dumpable(false).context("cannot make it non-dumpable")?;
    let _ = nix::sys::prctl::set_name(c"sbx-net");
    sys::reset_signal_dispositions();
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .context("cannot unblock signals")?;
    if nix::unistd::geteuid().is_root() {
        // A set-uid caller's real uid could otherwise signal it.
        let root_g = nix::unistd::Gid::from_raw(0);
        let root_u = nix::unistd::Uid::from_raw(0);
        nix::unistd::setresgid(root_g, root_g, root_g).context("setresgid")?;
        nix::unistd::setresuid(root_u, root_u, root_u).context("setresuid")?;
    }
    std::env::set_current_dir("/").context("cannot change to /")?;
    crate::run::init::detach_stdio()?;
    let mut keep = bridge.fds();
    keep.push(keeper.as_raw_fd());
    keep.push(report.as_raw_fd());
    keep.sort_unstable();
    sys::close_fds_from(3, &keep, false).context("cannot close inherited file descriptors")?;
    Ok(())
}
