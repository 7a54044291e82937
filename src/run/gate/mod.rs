//! The egress gate: the proxy and the published ports' forwarders run in a process of their own,
//! never in the launcher. Everything the sandbox sends through the network (HTTP, CONNECT, SOCKS5,
//! TLS) is parsed there, by a process that holds no privilege and only the bound secrets of its
//! call:
//!
//! ```text
//! launcher (root, secrets) ─fork─> child: fds onto 3.. (config, listeners, dialer, audit sink),
//!                                  the rest closed; uid/gid 65534 (root and setuid mode), no
//!                                  capabilities, no_new_privs ─execveat(/proc/self/exe)─>
//!                                  "sbx-gate": non-dumpable, not traced, dies with the launcher;
//!                                  reads its config, then Landlock (no file but the resolver's),
//!                                  seccomp (an allow-list, sockets of four families), serves
//! with published ports: ─fork─> child: setns(the sandbox's network), the same drop ─exec─>
//!                                  "sbx-gate-dial": connects to the sandbox's 127.0.0.1:PORT
//!                                  for the gate and hands the socket over (SCM_RIGHTS)
//! ```
//!
//! The exec gives each a fresh address space: nothing of the launcher's memory (the call's other
//! secrets, its environment) comes along; the gate learns what it needs from its config
//! ([`config`]). A one-shot call starts the gate on the sandbox's first connection to the proxy
//! ([`crate::run::net::Running`]), or at once when it publishes ports; a persistent context's net
//! helper starts it at once and again if it dies. The launcher never parses a byte from the
//! sandbox; a crash or a stall of the gate ends only that call's egress.

pub mod config;
pub mod dial;
pub mod dns;
pub mod dns_server;
pub mod peek;
pub mod resolver;
pub mod serve;

use std::ffi::CString;
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use anyhow::{anyhow, Context as _, Result};
use nix::sys::signal::Signal;
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::unistd::{ForkResult, Pid};

use crate::sys;
use config::Config;

/// The gate's program name (argv[0]): `sbx-exec` started so runs the gate.
pub const GATE: &str = "sbx-gate";
/// The dialer's.
pub const DIAL: &str = "sbx-gate-dial";
/// The uid and gid the gate and its dialer run as when the launcher is root (root or setuid
/// mode): `nobody`. In rootless mode they keep the caller's, without capabilities.
pub const GATE_ID: u32 = 65534;

/// What the gate serves: the proxy's listener with its rules, the published ports with the
/// sandbox's network namespace, and where its events go.
pub struct Spec<'a> {
    pub config: Config,
    pub listener: Option<&'a TcpListener>,
    /// The captured ports' listeners and the DNS socket (with `listener` only).
    pub capture: &'a [(u16, TcpListener)],
    pub dns: Option<&'a OwnedFd>,
    pub published: &'a [(u16, TcpListener)],
    pub netns: Option<&'a OwnedFd>,
    /// The gate's end of the control plane's dialer (with `ops`, see
    /// [`crate::run::net::Running`]).
    pub ops: Option<&'a OwnedFd>,
    pub log: Option<OwnedFd>,
}

/// A running gate (and its dialer): killed and reaped when dropped.
pub struct Gate {
    pub pid: Pid,
    dialer: Option<Pid>,
}

impl Drop for Gate {
    fn drop(&mut self) {
        for pid in std::iter::once(self.pid).chain(self.dialer) {
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
        }
    }
}

impl Gate {
    /// Has the gate exited (reaped here if so)?
    pub fn exited(&self) -> bool {
        use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
        !matches!(
            waitpid(self.pid, Some(WaitPidFlag::WNOHANG)),
            Ok(WaitStatus::StillAlive)
        )
    }
}

/// Start the gate (and, with published ports, its dialer). The caller must be single-threaded
/// (the launcher is: its forwarders and proxy are the gate now).
pub fn spawn(spec: Spec<'_>) -> Result<Gate> {
    let exe =
        sys::open_self_exe().context("cannot open sbx-exec's own binary to start the gate")?;
    let null = dev_null()?;
    let dialer = match (spec.published.is_empty(), spec.netns) {
        (false, Some(ns)) => Some(spawn_dialer(&exe, &null, ns)?),
        (false, None) => return Err(anyhow!("published ports without the sandbox's network")),
        (true, _) => None,
    };
    let (cfg_r, cfg_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| anyhow!("cannot make a pipe: {}", crate::error::errno_cause(e)))?;
    let mut fds: Vec<RawFd> = vec![cfg_r.as_raw_fd()];
    fds.extend(spec.listener.map(|l| l.as_raw_fd()));
    fds.extend(spec.capture.iter().map(|(_, l)| l.as_raw_fd()));
    fds.extend(spec.dns.map(|d| d.as_raw_fd()));
    fds.extend(spec.published.iter().map(|(_, l)| l.as_raw_fd()));
    fds.extend(dialer.as_ref().map(|(s, _)| s.as_raw_fd()));
    fds.extend(spec.ops.map(|o| o.as_raw_fd()));
    fds.extend(spec.log.as_ref().map(|f| f.as_raw_fd()));
    let launcher = std::process::id() as i32;
    let mut config = spec.config;
    config.launcher = launcher;
    let bytes = config.encode();
    if bytes.len() > config::MAX_CONFIG {
        return Err(anyhow!(
            "the gate's config is too large ({} bytes)",
            bytes.len()
        ));
    }
    let argv0 = CString::new(GATE).expect("no NUL");
    let child = match sys::fork()
        .map_err(|e| anyhow!("cannot fork the gate: {}", crate::error::errno_cause(e)))?
    {
        ForkResult::Child => become_unprivileged_and_exec(&exe, &null, &fds, &[&argv0]),
        ForkResult::Parent { child } => child,
    };
    drop(cfg_r);
    // The config fits a pipe's buffer in practice; a larger one is written while the gate reads.
    let written = write_all(cfg_w.as_fd(), &bytes);
    drop(cfg_w);
    let gate = Gate {
        pid: child,
        dialer: dialer.map(|(_, pid)| pid),
    };
    written.map_err(|e| anyhow!("cannot hand the gate its config: {e}"))?;
    Ok(gate)
}

fn write_all(fd: std::os::fd::BorrowedFd<'_>, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// `/dev/null` for the gate's and the dialer's stdin and stdout: the launcher's are the command's
/// (its input may be the user's terminal or data), and neither reads input or prints output.
fn dev_null() -> Result<OwnedFd> {
    // std opens it close-on-exec.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .context("cannot open /dev/null for the gate")?;
    Ok(f.into())
}

/// The dialer: a child that enters the sandbox's network namespace, drops the same way and runs
/// as "sbx-gate-dial" on one end of a socket pair; returns the other end and its pid.
fn spawn_dialer(exe: &OwnedFd, null: &OwnedFd, netns: &OwnedFd) -> Result<(OwnedFd, Pid)> {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .context("cannot make the dialer's socket pair")?;
    let argv0 = CString::new(DIAL).expect("no NUL");
    let launcher = CString::new(std::process::id().to_string()).expect("no NUL");
    match sys::fork()
        .map_err(|e| anyhow!("cannot fork the dialer: {}", crate::error::errno_cause(e)))?
    {
        ForkResult::Child => {
            // setns(2) of a network namespace needs CAP_SYS_ADMIN: before the drop.
            if nix::sched::setns(netns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).is_err() {
                sys::exit_now(crate::error::EXIT_SBX);
            }
            become_unprivileged_and_exec(exe, null, &[theirs.as_raw_fd()], &[&argv0, &launcher])
        }
        ForkResult::Parent { child } => Ok((ours, child)),
    }
}

/// In the forked child (allocation-free): die with the launcher, `null` (/dev/null) on stdin and
/// stdout, `fds` on 3, 4, ..., everything else closed, become [`GATE_ID`] with no capabilities
/// (when root), set no_new_privs, and execute sbx-exec with `args` (its argv[0] names the role)
/// and an empty environment. Never returns.
fn become_unprivileged_and_exec(
    exe: &OwnedFd,
    null: &OwnedFd,
    fds: &[RawFd],
    args: &[&CString],
) -> ! {
    let fail = || -> ! { sys::exit_now(crate::error::EXIT_SBX) };
    if nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).is_err() {
        fail();
    }
    sys::reset_signal_dispositions();
    let empty = nix::sys::signal::SigSet::empty();
    if nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&empty),
        None,
    )
    .is_err()
    {
        fail();
    }
    // The launcher's stdin and stdout are the command's: a gate that its parsers let someone
    // take over must not read what the command is fed nor write into its output. stderr is
    // kept: the gate and the dialer say there why they could not start (and a panic would).
    // The launcher keeps 0-2 open, so `null` and `fds` are all above 2.
    for std in [0, 1] {
        if nix::unistd::dup2(null.as_raw_fd(), std).is_err() {
            fail();
        }
    }
    // The binary's handle above the numbers the fds go to, so none lands on it.
    let top = 3 + fds.len() as RawFd;
    let Ok(exe) = sys::dup_cloexec_above(exe.as_raw_fd(), top) else {
        fail();
    };
    let keep = [exe.as_raw_fd()];
    if sys::arrange_fds(fds, &keep).is_err() {
        fail();
    }
    let mut kept: Vec<RawFd> = (3..top).collect();
    kept.push(exe.as_raw_fd());
    if sys::close_fds_from(3, &kept, false).is_err() {
        fail();
    }
    if nix::unistd::geteuid().is_root() {
        let nobody = crate::privilege::Identity {
            uid: GATE_ID,
            gid: GATE_ID,
            groups: Vec::new(),
        };
        if crate::privilege::drop::drop_privs(&nobody).is_err() {
            fail();
        }
    }
    if nix::sys::prctl::set_no_new_privs().is_err() {
        fail();
    }
    let mut argv = [std::ptr::null(); 3];
    for (slot, a) in argv.iter_mut().zip(args.iter().take(2)) {
        *slot = a.as_ptr();
    }
    let envp = [std::ptr::null()];
    let _ = sys::execveat_fd(exe.as_raw_fd(), &argv, &envp);
    fail()
}

/// Is this process started as the gate or the dialer? (Its argv[0].)
pub fn role() -> Option<&'static str> {
    let argv0 = std::env::args_os().next()?;
    [GATE, DIAL].into_iter().find(|r| argv0 == *r)
}

/// An fd the launcher placed for this process (see [`config::Layout`]), owned from here; refused
/// when it is not open (the gate or dialer started by hand), rather than owning a number that
/// names nothing.
pub(crate) fn placed_fd(role: &str, fd: RawFd) -> Result<OwnedFd> {
    crate::sys::claim_placed_fd(fd).ok_or_else(|| {
        anyhow!(
            "{role} runs only as sbx-exec starts it, with its fds placed (fd {fd} is not open); this is not a command to run by hand"
        )
    })
}

/// The first steps of the gate and the dialer, before anything else: non-dumpable (and nothing
/// attached before that), unprivileged as sbx-exec started it (no_new_privs, no capability),
/// dying with the launcher (which must still be its parent: `launcher`). An `Err` ends the
/// process.
pub fn harden(role: &str) -> Result<()> {
    nix::sys::prctl::set_dumpable(false).context("cannot make the gate non-dumpable")?;
    let status = std::fs::read_to_string("/proc/self/status").context("/proc/self/status")?;
    let traced = status
        .lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))
        .is_some_and(|v| v.trim() != "0");
    if traced {
        return Err(anyhow!("{role} is being traced; refusing to start"));
    }
    let nnp = nix::sys::prctl::get_no_new_privs().unwrap_or(false);
    let permitted = caps::read(None, caps::CapSet::Permitted).unwrap_or_default();
    if !nnp || !permitted.is_empty() {
        return Err(anyhow!(
            "{role} runs only as sbx-exec starts it: without privileges (no_new_privs, no capability); this is not a command to run by hand"
        ));
    }
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
        .context("cannot set the parent-death signal")?;
    Ok(())
}
