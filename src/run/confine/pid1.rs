//! The sandbox's pid 1 sets up its sandbox: [`super::PID1_ORDER`], run by [`setup`].

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use anyhow::{bail, Context as _, Result};

use super::{pid1_steps, Kernel, Pid1Step};
use crate::error::EXIT_SBX;
use crate::plan::launch::Sandbox;
use crate::run::apply::cgroup::CONFINED_OOM_SCORE_ADJ;
use crate::sys;

/// Who the init is, and what it keeps from the outer process.
pub enum Role<'a> {
    /// One-shot pid 1: `alive` is the read end of a pipe the outer process holds open for its
    /// life; end of file means it died.
    /// `program` is the target's checked program handle, kept for the target's `execveat`.
    /// `net`: the socket to hand the private network's sockets out on ([`crate::run::net`]).
    /// `cgroup`: the call's open `cgroup.procs` files, joined first (none without limits).
    OneShot {
        alive: OwnedFd,
        program: RawFd,
        net: Option<RawFd>,
        /// The set-up error pipe ([`crate::run::status::SetupErrors`]).
        errors: Option<RawFd>,
        cgroup: &'a [OwnedFd],
    },
    /// A persistent context's keeper: detached from the caller; `ready`, `commit` (the read
    /// end of the pipe its first call commits it on) and `net` (as for one-shot; the net helper
    /// receives the sockets) are the only fds it keeps.
    Keeper {
        ready: &'a OwnedFd,
        commit: &'a OwnedFd,
        net: Option<RawFd>,
        /// The listener it hands its namespaces out on ([`crate::run::persist::nssock`]).
        ns: Option<RawFd>,
    },
    /// A prepared sandbox of a pool ([`crate::run::pool`]): `ctl` is its end of the socket the
    /// pool's server holds, and then the call that claims it (end of file: pid 1 ends, and the
    /// sandbox with it); `net` and `cgroup` as for one-shot.
    Prepared {
        ctl: RawFd,
        net: Option<RawFd>,
        cgroup: &'a [OwnedFd],
    },
}

impl Role<'_> {
    /// The socket the private network's sockets are handed out on.
    pub fn net(&self) -> Option<RawFd> {
        match self {
            Role::OneShot { net, .. } | Role::Keeper { net, .. } | Role::Prepared { net, .. } => {
                *net
            }
        }
    }

    /// The call's cgroup `cgroup.procs` files pid 1 joins first (none for a keeper, whose
    /// helper joins before the clone).
    pub fn cgroup(&self) -> &[OwnedFd] {
        match self {
            Role::OneShot { cgroup, .. } | Role::Prepared { cgroup, .. } => cgroup,
            Role::Keeper { .. } => &[],
        }
    }

    /// The fds pid 1 keeps through its fd clean-up, sorted: a one-shot pid 1 the target's (the
    /// fds passed to it, its program's handle, the set-up error pipe) and the net socket; a
    /// keeper only its pipes to the caller and the net socket; a one-shot or prepared pid 1 of
    /// a call with bound secrets also the system CA bundle it copies.
    fn keep(&self, sandbox: &Sandbox) -> Vec<RawFd> {
        let mut keep = match self {
            Role::OneShot {
                program,
                net,
                errors,
                ..
            } => {
                let mut keep = sandbox.keep_fds.clone();
                keep.push(*program);
                keep.extend(*net);
                keep.extend(*errors);
                keep
            }
            Role::Keeper {
                ready,
                commit,
                net,
                ns,
            } => {
                let mut keep = vec![ready.as_raw_fd(), commit.as_raw_fd()];
                keep.extend(*net);
                keep.extend(*ns);
                keep
            }
            Role::Prepared { ctl, net, .. } => {
                let mut keep = vec![*ctl];
                keep.extend(*net);
                keep
            }
        };
        // Bound secrets: the system CA bundle, which pid 1 copies into the sandbox's bundle.
        if !matches!(self, Role::Keeper { .. }) {
            keep.extend(sandbox.ca().map(|c| c.system.as_raw_fd()));
        }
        keep.sort_unstable();
        keep
    }
}

/// Set up the sandbox in its first process: its steps ([`pid1_steps`]) in order.
pub fn setup<K: Kernel>(k: &K, sandbox: &Sandbox, role: Role) -> Result<()> {
    let steps: Vec<Pid1Step> = pid1_steps(sandbox, &role).collect();
    let (keep, net) = (role.keep(sandbox), role.net());
    // Dropped at the fd clean-up: a one-shot pid 1's `alive` pipe is closed there.
    let mut role = Some(role);
    for step in steps {
        match step {
            Pid1Step::JoinCgroup => {
                if let Some(r) = &role {
                    k.join_cgroup(r.cgroup())?;
                }
            }
            Pid1Step::IdMaps => {
                if let Some(map) = &sandbox.userns {
                    k.write_id_maps(map)?;
                }
            }
            Pid1Step::DieWithOuter => {
                if let Some(Role::OneShot { alive, .. }) = &role {
                    if !k.die_with_parent(alive.as_raw_fd())? {
                        sys::exit_now(EXIT_SBX);
                    }
                }
            }
            Pid1Step::NameKeeper => k.set_name(c"sbx-keeper"),
            // Best effort: raising needs no capability, but a non-dumpable process's /proc
            // files belong to root, so rootless mode may not write it. The target and
            // everything it starts inherit this.
            Pid1Step::OomScore => drop(k.oom_score_adj(CONFINED_OOM_SCORE_ADJ)),
            Pid1Step::NonDumpable => k.non_dumpable()?,
            Pid1Step::NewSession => k.new_session()?,
            Pid1Step::CloseFds => {
                drop(role.take());
                k.close_fds_from(3, &keep)?;
            }
            Pid1Step::SecretMountPoint => {
                if sandbox.mounts.is_none() {
                    bail!("secrets.files needs the mount namespace, which the kernel refused; the secrets were not delivered");
                }
                k.secret_mount_point()?;
            }
            Pid1Step::Mounts => {
                if let Some(plan) = &sandbox.mounts {
                    k.mounts(plan, sandbox.degrade)?;
                }
            }
            Pid1Step::SecretFiles => {
                if let Some(files) = &sandbox.creds {
                    k.secret_files(files)?;
                }
            }
            Pid1Step::Loopback => k.loopback_up()?,
            Pid1Step::HandOutNetwork => {
                if let (Some(plan), Some(sock)) = (&sandbox.net, net) {
                    k.hand_out_network(sock, plan)?;
                }
            }
            Pid1Step::Workdir => enter_cwd(k, sandbox)?,
            Pid1Step::RootDir => k.chdir_path("/".as_ref()).context("cannot change to /")?,
            Pid1Step::DetachStdio => k.detach_stdio()?,
        }
    }
    Ok(())
}

/// Enter the planned working directory; with mounts and none planned (setuid mode), `/`, so pid 1
/// keeps no handle below a path the mounts may have covered.
fn enter_cwd<K: Kernel>(k: &K, sandbox: &Sandbox) -> Result<()> {
    match &sandbox.cwd {
        Some(cwd) => cwd.enter(|p| k.chdir_path(p), |p| p.display().to_string()),
        None if sandbox.mounts.is_some() => k
            .chdir_path("/".as_ref())
            .context("cannot change to / in the sandbox"),
        None => Ok(()),
    }
}
