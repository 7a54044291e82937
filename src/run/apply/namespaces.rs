//! Creating the sandbox's namespaces (one `clone`), and what to say when the kernel refuses.

use std::os::fd::{AsRawFd, OwnedFd};

use anyhow::{bail, Result};
use nix::sched::CloneFlags;
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::unistd::Pid;

use crate::plan::namespaces::{flags, Kind, NET, USER};
use crate::sys;

/// Can this process create `kind`? Tried in a throwaway child that exits at once.
pub fn can_create(kind: Kind) -> bool {
    sys::can_clone(kind.flag)
}

/// Called after the clone asking for all of `wanted` failed: probe each namespace on its own and
/// return those the kernel allows and those it refuses. Without `degrade`, refuse with a message
/// naming each missing namespace and how to get it.
pub fn available(ctx_name: &str, wanted: &[Kind], degrade: bool) -> Result<(Vec<Kind>, Vec<Kind>)> {
    let (ok, missing): (Vec<Kind>, Vec<Kind>) = wanted.iter().partition(|k| can_create(**k));
    if !missing.is_empty() && !degrade {
        let names: Vec<&str> = missing.iter().map(|k| k.name).collect();
        bail!(
            "cannot create the {} namespace{} that context {ctx_name:?} asks for: {}. Run sbx-exec as root (or with CAP_SYS_ADMIN), \
             allow namespaces in the container runtime (e.g. docker run --cap-add SYS_ADMIN or a seccomp profile that permits unshare/clone), \
             or set degrade = true in [context.{ctx_name}] to run without them",
            names.join(", "),
            if names.len() > 1 { "s" } else { "" },
            why_refused(),
        );
    }
    Ok((ok, missing))
}

fn why_refused() -> &'static str {
    if nix::unistd::geteuid().is_root() {
        "the kernel or a security policy refused the clone (EPERM)"
    } else {
        "sbx-exec is not running as root, and no user namespace was used (the kernel refuses unprivileged ones: \
         sysctl user.max_user_namespaces / kernel.unprivileged_userns_clone, or the context says userns = \"never\")"
    }
}

/// Start the sandbox's first process in fresh namespaces. `None` in the child.
///
/// A network namespace without a user namespace (root and setuid mode) is made first, in a user
/// namespace of its own ([`owned_netns`]), and the child enters it: root owns that user
/// namespace, so sbx-exec has every capability over the network namespace (bringing up `lo`,
/// its routes, ports under 1024) without CAP_NET_ADMIN from the container, which a container
/// started with `--cap-add SYS_ADMIN` alone does not have. Where that cannot be made (user
/// namespaces refused), the clone makes the network namespace as before.
pub fn enter(kinds: &[Kind]) -> std::io::Result<Option<Pid>> {
    if kinds.contains(&NET) && !kinds.contains(&USER) {
        if let Some(ns) = owned_netns() {
            let rest: Vec<Kind> = kinds.iter().copied().filter(|k| *k != NET).collect();
            let entered = sys::clone_fork(flags(&rest))?;
            if entered.is_none() {
                if let Err(e) = nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET) {
                    eprintln!("sbx-exec: cannot enter the sandbox's network namespace: {e}");
                    sys::exit_now(crate::error::EXIT_SBX);
                }
            }
            return Ok(entered);
        }
    }
    sys::clone_fork(flags(kinds))
}

/// Can a sandbox's network namespace be set up here without CAP_NET_ADMIN: one made in a user
/// namespace of its own ([`owned_netns`]), entered by a throwaway child that brings its `lo` up.
pub fn can_own_network() -> bool {
    let Some(ns) = owned_netns() else {
        return false;
    };
    match sys::fork() {
        Ok(nix::unistd::ForkResult::Child) => {
            let ok = nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET).is_ok()
                && sys::loopback_up().is_ok();
            sys::exit_now(i32::from(!ok))
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => matches!(
            nix::sys::wait::waitpid(child, None),
            Ok(nix::sys::wait::WaitStatus::Exited(_, 0))
        ),
        Err(_) => false,
    }
}

/// A new network namespace owned by a new user namespace (made by a child that exits at once,
/// handing the namespace out), or `None` if the kernel refuses.
pub fn owned_netns() -> Option<OwnedFd> {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .ok()?;
    match sys::clone_fork(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) {
        Ok(None) => {
            let sent = std::fs::File::open("/proc/self/ns/net")
                .and_then(|ns| sys::send_fds(theirs.as_raw_fd(), &[ns.as_raw_fd()]));
            sys::exit_now(i32::from(sent.is_err()))
        }
        Ok(Some(pid)) => {
            drop(theirs);
            let got = sys::recv_fds(ours.as_raw_fd(), 1);
            let _ = nix::sys::wait::waitpid(pid, None);
            got.ok()?.into_iter().next()
        }
        Err(_) => None,
    }
}
