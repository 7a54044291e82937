//! The sandbox's first process, pid 1 of its namespaces: one init for one-shot calls and for the
//! keepers of persistent contexts, so the two cannot drift apart.
//!
//! [`enter`] clones into the namespaces the plan asks for (with `degrade`, into those the kernel
//! allows). [`setup`] then runs in the new process, in this order: id maps (rootless) → die with
//! the outer process (one-shot) → oom_score_adj +500 → non-dumpable → new session → close fds → secret files' mount
//! point → mounts and private /proc → secret files → loopback → working directory → (keeper)
//! stdio on /dev/null. A one-shot pid 1 then forks the target and reaps ([`start`]); a keeper says
//! "ready" and reaps forever ([`crate::run::persist::keeper`]).

use std::borrow::Cow;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use anyhow::{anyhow, bail, Context as _, Result};
use nix::fcntl::OFlag;
use nix::unistd::{ForkResult, Pid};

use crate::error::EXIT_SBX;
use crate::plan::launch::{Sandbox, Target};
use crate::plan::namespaces;
use crate::run::apply;
use crate::run::reaper;
use crate::sys;

/// Who the init is, and what it keeps from the outer process.
pub enum Role<'a> {
    /// One-shot pid 1: `alive` is the read end of a pipe the outer process holds open for its
    /// life; end of file means it died.
    /// `program` is the target's checked program handle, kept for the target's `execveat`.
    /// `net`: the socket to hand the private network's sockets out on ([`crate::run::net`]).
    OneShot {
        alive: OwnedFd,
        program: RawFd,
        net: Option<RawFd>,
        /// The set-up error pipe ([`crate::run::status::SetupErrors`]).
        errors: Option<RawFd>,
    },
    /// A persistent context's keeper: detached from the caller; `ready`, `commit` (the read
    /// end of the pipe its first call commits it on) and `net` (as for one-shot; the net helper
    /// receives the sockets) are the only fds it keeps.
    Keeper {
        ready: &'a OwnedFd,
        commit: &'a OwnedFd,
        net: Option<RawFd>,
    },
}

/// Where [`enter`] returns: in the outer process with the new pid, or in the sandbox's first
/// process with the plan it sets up (the planned sandbox, or one derived from it without the
/// namespaces the kernel refused). Returned once per sandbox, in both processes: its size is
/// no cost worth a box.
#[allow(clippy::large_enum_variant)]
pub enum Entered<'a> {
    Parent(Pid),
    Child(Cow<'a, Sandbox>),
}

/// Clone the sandbox's first process into the plan's namespaces. When the kernel refuses, find
/// which namespaces it allows: without `degrade`, refuse naming the missing ones and the fix; with
/// it, warn and clone again with the plan without them ([`Sandbox::without`]).
pub fn enter<'a>(ctx_name: &str, sandbox: &'a Sandbox) -> Result<Entered<'a>> {
    let entered = |c: Option<Pid>, s: Cow<'a, Sandbox>| match c {
        Some(pid) => Entered::Parent(pid),
        None => Entered::Child(s),
    };
    match apply::namespaces::enter(&sandbox.kinds) {
        Ok(c) => Ok(entered(c, Cow::Borrowed(sandbox))),
        // A limit, not a refusal of namespaces: say which, and do not probe (which would fail
        // the same way and be taken for a missing namespace).
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::ENOMEM)) => Err(anyhow!(
            "cannot start the sandbox: clone: {}",
            crate::error::cause(&e)
        )),
        Err(_) if !sandbox.kinds.is_empty() => {
            let (_, missing) =
                apply::namespaces::available(ctx_name, &sandbox.kinds, sandbox.degrade)?;
            let names: Vec<&str> = missing.iter().map(|k| k.name).collect();
            eprintln!(
                "sbx-exec: warning: context {ctx_name:?} runs degraded (degrade = true): no {} namespace",
                names.join(", ")
            );
            let degraded = sandbox.without(&missing);
            let c =
                apply::namespaces::enter(&degraded.kinds).context("cannot create the sandbox")?;
            Ok(entered(c, Cow::Owned(degraded)))
        }
        Err(e) => Err(anyhow!(e).context("cannot start the command")),
    }
}

/// Create a one-shot sandbox. Returns the pid of its first process (pid 1 inside, if it has a pid
/// namespace; otherwise the target itself).
/// `cgroup` holds the call's open `cgroup.procs` files (none without limits): pid 1 joins them
/// before anything else runs, so every process of the sandbox is counted. `errors`: the write
/// end of the set-up error pipe ([`crate::run::status::SetupErrors`]).
pub fn start(
    ctx_name: &str,
    sandbox: &Sandbox,
    target: &Target,
    cgroup: &[OwnedFd],
    net: Option<&OwnedFd>,
    errors: Option<RawFd>,
) -> Result<Pid> {
    let (alive_r, alive_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("pipe")?;
    match enter(ctx_name, sandbox)? {
        Entered::Parent(pid) => {
            drop(alive_r);
            // alive_w stays open in this process until it exits: the sandbox watches it.
            std::mem::forget(alive_w);
            Ok(pid)
        }
        Entered::Child(sandbox) => {
            drop(alive_w);
            if let Err(e) = apply::cgroup::join(cgroup) {
                eprintln!("sbx-exec: cannot enter the call's cgroup ([limits]): {e}");
                sys::exit_now(EXIT_SBX);
            }
            let links = (net.map(AsRawFd::as_raw_fd), errors);
            one_shot_pid1(&sandbox, target, alive_r, links)
        }
    }
}

/// The first process of a one-shot sandbox. Never returns. `(net, errors)`: the net socket and
/// the set-up error pipe.
fn one_shot_pid1(
    sandbox: &Sandbox,
    target: &Target,
    alive: OwnedFd,
    (net, errors): (Option<RawFd>, Option<RawFd>),
) -> ! {
    let has_pidns = sandbox.kinds.contains(&namespaces::PID);
    let program = target.program.as_raw_fd();
    let role = Role::OneShot {
        alive,
        program,
        net,
        errors,
    };
    if let Err(e) = setup(sandbox, role) {
        fail(errors, &format!("{e:#}"));
    }
    let links = crate::run::target::Links {
        errors,
        ..Default::default()
    };
    // A target that maps its own user namespace needs a parent to write the maps: pid 1.
    if !has_pidns && target.identity.is_none() {
        target.exec_with(links);
    }
    let handshake = match target.identity {
        Some(_) => match apply::identity::Handshake::new() {
            Ok(h) => Some(h),
            Err(e) => fail(errors, &format!("{e:#}")),
        },
        None => None,
    };
    match sys::fork() {
        Ok(ForkResult::Child) => target.exec_with(crate::run::target::Links {
            handshake: handshake.as_ref().map(|h| h.target_ends()),
            ..links
        }),
        Ok(ForkResult::Parent { child }) => {
            if let (Some(m), Some(h)) = (&target.identity, handshake) {
                match apply::identity::map_child(child, &m.range, h.parent(), true) {
                    Ok(None) => {}
                    Ok(Some(code)) => sys::exit_now(code),
                    Err(e) => fail(errors, &format!("{e:#}")),
                }
            }
            // Only the target may still say why it gives up; pid 1 holds no copy of the pipe.
            if let Some(fd) = errors {
                let _ = nix::unistd::close(fd);
            }
            reaper::pid1(child)
        }
        Err(e) => fail(errors, &format!("cannot fork the command: {e}")),
    }
}

/// Pid 1 gives up: says why (stderr, and the set-up error pipe `errors`) and exits 125.
fn fail(errors: Option<RawFd>, msg: &str) -> ! {
    eprintln!("sbx-exec: {msg}");
    crate::run::status::tell_setup_error(errors, msg);
    sys::exit_now(EXIT_SBX)
}

/// Set up the sandbox in its first process (see the module doc for the order).
pub fn setup(sandbox: &Sandbox, role: Role) -> Result<()> {
    if let Some(map) = &sandbox.userns {
        crate::privilege::userns::write_id_maps(map)
            .context("cannot map ids in the user namespace")?;
    }
    let has_pidns = sandbox.kinds.contains(&namespaces::PID);
    let is_keeper = matches!(role, Role::Keeper { .. });
    let net_sock: Option<RawFd>;
    let keep: Vec<i32> = match &role {
        Role::OneShot {
            alive,
            program,
            net,
            errors,
        } => {
            if has_pidns {
                die_with_outer(alive)?;
            }
            net_sock = *net;
            // The program's checked handle, the fds passed to the target (`--keep-fd`) and the
            // net socket; a keeper never holds them.
            let mut keep = sandbox.keep_fds.clone();
            keep.push(*program);
            keep.extend(*net);
            keep.extend(*errors);
            keep.sort_unstable();
            keep
        }
        Role::Keeper { ready, commit, net } => {
            let _ = nix::sys::prctl::set_name(c"sbx-keeper");
            net_sock = *net;
            let mut keep = vec![ready.as_raw_fd(), commit.as_raw_fd()];
            keep.extend(*net);
            keep.sort_unstable();
            keep
        }
    };
    // Under memory pressure the kernel kills the sandbox before the trusted side; the target and
    // everything it starts inherit this. Best effort: raising needs no capability, but a
    // non-dumpable process's /proc files belong to root, so rootless mode may not write it.
    let _ = apply::cgroup::set_oom_score_adj(apply::cgroup::CONFINED_OOM_SCORE_ADJ);
    if has_pidns {
        // Nobody in the sandbox may ptrace pid 1 or read its memory, environ or exe.
        nix::sys::prctl::set_dumpable(false).context("cannot make pid 1 non-dumpable")?;
        nix::unistd::setsid().context("cannot start a new session")?;
    }
    drop(role_alive(role));
    sys::close_fds_from(3, &keep, false).context("cannot close inherited file descriptors")?;
    filesystem(sandbox)?;
    if sandbox.loopback {
        sys::loopback_up().context("cannot bring up loopback in the new network namespace (net = \"none\" or \"private\"): it needs CAP_NET_ADMIN (in a container: docker run --cap-add NET_ADMIN, which acts only on the container's own network); or use net = \"host\" if the context needs no network isolation")?;
    }
    if let (Some(plan), Some(sock)) = (&sandbox.net, net_sock) {
        crate::run::net::hand_out(sock, plan)?;
        // Kept through the fd cleanup above for this; closed once used: the target never has it.
        let _ = nix::unistd::close(sock);
    }
    if !is_keeper {
        enter_cwd(sandbox)?;
    } else {
        // A keeper outlives the call that started it: no caller directory, no caller stdio.
        std::env::set_current_dir("/").context("cannot change to /")?;
        detach_stdio()?;
    }
    Ok(())
}

/// The one-shot `alive` fd is dropped once checked; a keeper has none.
fn role_alive(role: Role) -> Option<OwnedFd> {
    match role {
        Role::OneShot { alive, .. } => Some(alive),
        Role::Keeper { .. } => None,
    }
}

/// Die with the outer process (SIGKILL when it exits); if it is already gone, stop here.
fn die_with_outer(alive: &OwnedFd) -> Result<()> {
    if !sys::die_with_parent(alive.as_fd()).context("cannot set the parent-death signal")? {
        sys::exit_now(EXIT_SBX);
    }
    Ok(())
}

/// Mounts, the private /proc and the secret files, in the private mount namespace.
fn filesystem(sandbox: &Sandbox) -> Result<()> {
    if sandbox.creds.is_some() {
        if sandbox.mounts.is_none() {
            bail!("secrets.files needs the mount namespace, which the kernel refused; the secrets were not delivered");
        }
        apply::secret_files::prepare_mount_point()?;
    }
    if let Some(plan) = &sandbox.mounts {
        apply::mounts::apply(plan, sandbox.degrade)?;
    }
    if let Some(files) = &sandbox.creds {
        apply::secret_files::install(files)?;
    }
    Ok(())
}

/// Enter the planned working directory; with mounts and none planned (setuid mode, keepers), `/`,
/// so pid 1 keeps no handle below a path the mounts may have covered.
fn enter_cwd(sandbox: &Sandbox) -> Result<()> {
    match &sandbox.cwd {
        Some(cwd) => cwd.enter(
            |p| std::env::set_current_dir(p),
            |p| p.display().to_string(),
        ),
        None if sandbox.mounts.is_some() => {
            std::env::set_current_dir("/").context("cannot change to / in the sandbox")
        }
        None => Ok(()),
    }
}

/// A keeper outlives its caller: its stdio goes to /dev/null.
pub fn detach_stdio() -> Result<()> {
    let null = nix::fcntl::open(
        c"/dev/null",
        OFlag::O_RDWR | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .context("cannot open /dev/null")?;
    for fd in 0..3 {
        nix::unistd::dup2(null, fd).context("cannot put stdio on /dev/null")?;
    }
    if null > 2 {
        let _ = nix::unistd::close(null);
    }
    Ok(())
}
