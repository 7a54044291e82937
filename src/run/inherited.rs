//! The caller's fds a launch takes over, first thing: `--secrets-fd`, `--status-fd`, and the
//! fds `--keep-fd`/`--listen-fd` pass to the target (checked: listening sockets for socket
//! activation, reserved ports only where `listen` allows them).

use std::os::fd::{OwnedFd, RawFd};

use anyhow::{anyhow, bail, Context as _, Result};

use crate::cli::RunArgs;
use crate::model::{self, Context};
use crate::plan::fds::{self, Activation, Passed};
use crate::privilege;
use crate::run::status::StatusFd;

/// The caller's fds this launch took over: the secrets fd, and the fds passed to the target.
pub struct Inherited {
    pub secrets: Option<OwnedFd>,
    pub passed: Passed,
    pub kept: Vec<OwnedFd>,
}

/// The fds `--listen-fd` and `--keep-fd` pass to the target, resolved against the caller's
/// socket activation (LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES meant for this process).
pub fn passed_fds(args: &RunArgs) -> Result<Passed> {
    let activation = Activation::from_env(&privilege::caller_env(), std::process::id());
    fds::select(activation.as_ref(), &args.keep_fd, &args.listen_fd).map_err(|e| anyhow!(e))
}

/// Take over `--secrets-fd`, `--status-fd` and the kept fds before anything else opens an fd.
pub fn named_fds(
    args: &RunArgs,
    kept: &[RawFd],
) -> Result<(Option<OwnedFd>, Option<StatusFd>, Vec<OwnedFd>)> {
    let names: Vec<RawFd> = args
        .secrets_fd
        .into_iter()
        .chain(args.status_fd)
        .chain(kept.iter().copied())
        .collect();
    let owned = crate::sys::claim_named_fds(&names).map_err(|e| anyhow!(e))?;
    if args.secrets_fd.is_some() {
        // While the secrets are read, sbx-exec holds no fd but stdio and the named ones: a copy
        // of the pipe's write end inherited from the caller would otherwise keep it open (the
        // target never sees inherited fds anyway).
        let mut keep: Vec<RawFd> = names.clone();
        keep.sort_unstable();
        crate::sys::close_inherited_fds(&keep)
            .context("cannot close inherited file descriptors")?;
    }
    let mut owned = owned.into_iter();
    let secrets = args.secrets_fd.and_then(|_| owned.next().flatten());
    let status = match args.status_fd {
        Some(fd) => Some(StatusFd::open(fd, owned.next().flatten())?),
        None => None,
    };
    let mut fds = Vec::new();
    for (&fd, got) in kept.iter().zip(owned) {
        let got = got
            .with_context(|| format!("--keep-fd/--listen-fd: file descriptor {fd} is not open"))?;
        // Only the target gets it (placed on 3.. without close-on-exec); nothing else execs it.
        nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )
        .with_context(|| format!("cannot mark file descriptor {fd} close-on-exec"))?;
        fds.push(got);
    }
    Ok((secrets, status, fds))
}

/// Kept fds: socket activation passes on listening sockets only; a socket on a reserved port goes
/// only to a context whose `listen` names it; control mode passes its own ports and none else.
pub fn check_passed(
    ctx_name: &str,
    ctx: &Context,
    loaded: &model::Loaded,
    passed: &Passed,
    kept: &[OwnedFd],
) -> Result<()> {
    if ctx.supervise.is_some() && !kept.is_empty() {
        bail!("--keep-fd/--listen-fd cannot be used with control mode ([supervise]), which hands the control plane its own reserved ports");
    }
    let reserved = fds::reserved_ports(&loaded.policy);
    for (&fd, owned) in passed.fds.iter().zip(kept) {
        let facts = crate::sys::fd_facts(owned);
        let as_listen = passed.listen_names.is_some();
        fds::check(fd, facts, as_listen, &reserved, ctx_name, &ctx.listen)
            .map_err(|e| anyhow!(e))?;
    }
    Ok(())
}
