//! The sandbox's first process, pid 1 of its namespaces: one init for one-shot calls and for the
//! keepers of persistent contexts, so the two cannot drift apart.
//!
//! [`enter`] clones into the namespaces the plan asks for (with `degrade`, into those the kernel
//! allows, with the plan derived for them). The new process then sets up its sandbox: the steps of
//! [`crate::run::confine::PID1_ORDER`], run by [`crate::run::confine::pid1::setup`]. A one-shot
//! pid 1 then forks the target and reaps ([`start`]); a keeper says "ready" and reaps forever
//! ([`crate::run::persist::keeper`]).

use std::borrow::Cow;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use anyhow::{anyhow, Context as _, Result};
use nix::fcntl::OFlag;
use nix::unistd::{ForkResult, Pid};

use crate::error::EXIT_SBX;
use crate::plan::launch::{Sandbox, Target};
use crate::plan::namespaces;
use crate::run::apply;
use crate::run::confine::{self, Host, Role};
use crate::run::reaper;
use crate::sys;

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
            let role = Role::OneShot {
                alive: alive_r,
                program: target.program.as_raw_fd(),
                net: net.map(AsRawFd::as_raw_fd),
                errors,
                cgroup,
            };
            one_shot_pid1(&sandbox, target, role, errors)
        }
    }
}

/// The first process of a one-shot sandbox: its set-up ([`crate::run::confine::PID1_ORDER`]),
/// then the target forked (`identity`: its user namespace mapped), then reaping. Never returns.
/// `errors`: the set-up error pipe.
fn one_shot_pid1(sandbox: &Sandbox, target: &Target, role: Role, errors: Option<RawFd>) -> ! {
    let has_pidns = sandbox.kinds.contains(&namespaces::PID);
    if let Err(e) = confine::pid1::setup(&Host, sandbox, role) {
        fail(errors, &format!("{e:#}"));
    }
    let links = confine::Links {
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
        Ok(ForkResult::Child) => target.exec_with(confine::Links {
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
