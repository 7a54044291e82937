//! The system calls the confinement steps make ([`Kernel`]), as youki's `Syscall` trait: the
//! real ones ([`Host`], each a call into the facility module that makes it) and, in the tests, a
//! fake that records them in one sequence (`fake.rs`), so the order and arguments of the steps
//! are checked without root. The steps are generic over it: static dispatch, and [`Host`] is a
//! unit struct, so the real path costs what the direct calls did (the same code, inlined), and
//! nothing here allocates on the target's path between fork and exec.

use std::ffi::CStr;
use std::os::fd::{IntoRawFd, OwnedFd, RawFd};
use std::path::Path;

use anyhow::{Context as _, Result};
use caps::CapsHashSet;
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow, Signal};
use seccompiler::BpfProgram;

use crate::model::RunAs;
use crate::plan::landlock_rules::Plan as Landlock;
use crate::plan::mounts::Plan as Mounts;
use crate::plan::net::Plan as Net;
use crate::plan::secret_files::Files;
use crate::privilege::{IdMap, Identity};
use crate::run::apply;
use crate::sys;

/// What the confinement steps ask of the kernel, one method per operation.
pub trait Kernel {
    // Both processes.
    /// `setsid()`.
    fn new_session(&self) -> Result<()>;
    /// Close every fd from `first` up but `keep` (sorted).
    fn close_fds_from(&self, first: RawFd, keep: &[RawFd]) -> Result<()>;

    // Pid 1.
    /// Join the cgroups whose `cgroup.procs` (or `tasks`) files are open in `procs`.
    fn join_cgroup(&self, procs: &[OwnedFd]) -> Result<()>;
    /// Rootless mode: map the caller's ids in this new user namespace.
    fn write_id_maps(&self, map: &IdMap) -> Result<()>;
    /// Arm the parent-death signal, then check the parent's pipe: `false`, it is gone.
    fn die_with_parent(&self, alive: RawFd) -> Result<bool>;
    /// This process's name (`comm`).
    fn set_name(&self, name: &CStr);
    /// This process's `oom_score_adj` (best effort: the error is the caller's to ignore).
    fn oom_score_adj(&self, value: &[u8]) -> std::io::Result<()>;
    /// Never dumpable again.
    fn non_dumpable(&self) -> Result<()>;
    /// The tmpfs the secret files go on.
    fn secret_mount_point(&self) -> Result<()>;
    /// Apply the mount plan.
    fn mounts(&self, plan: &Mounts, degrade: bool) -> Result<()>;
    /// Write the secret files.
    fn secret_files(&self, files: &Files) -> Result<()>;
    /// `lo` up.
    fn loopback_up(&self) -> Result<()>;
    /// Bind the proxy's listener and hand it (and this network namespace) out on `sock`, which
    /// is closed then.
    fn hand_out_network(&self, sock: RawFd, plan: &Net) -> Result<()>;
    /// `chdir` by path (pid 1).
    fn chdir_path(&self, dir: &Path) -> std::io::Result<()>;
    /// Stdio on /dev/null.
    fn detach_stdio(&self) -> Result<()>;

    // The target (allocation-free on the real path, but for errors).
    /// A close-on-exec copy of `fd` at `min` or above.
    fn dup_above(&self, fd: RawFd, min: RawFd) -> Result<RawFd>;
    /// Place `fds` on 3, 4, ... without clobbering `keep`.
    fn arrange_fds(&self, fds: &[RawFd], keep: &[RawFd]) -> Result<()>;
    /// SIGPIPE back to its default, `mask` as the signal mask.
    fn reset_signals(&self, mask: &SigSet) -> Result<()>;
    /// `identity`: a user namespace of its own, mapped by the parent over `ends`; then its root.
    /// `false`: the kernel refused it and `degrade` says run without.
    fn user_namespace(&self, degrade: bool, ends: (RawFd, RawFd)) -> Result<bool>;
    /// Setuid mode: become `id` for good (the whole bounding set cut first).
    fn become_for_good(&self, id: &Identity) -> Result<()>;
    /// `chdir` by C string (the target).
    fn chdir(&self, dir: &CStr) -> nix::Result<()>;
    /// Cut the capabilities to `keep` (switching to `run_as` on the way).
    fn capabilities(
        &self,
        keep: &CapsHashSet,
        no_new_privs: bool,
        run_as: Option<RunAs>,
    ) -> Result<()>;
    /// `no_new_privs`.
    fn no_new_privs(&self) -> Result<()>;
    /// `chdir` resolved inside this process's root, no magic links.
    fn chdir_in_root(&self, dir: &CStr) -> std::io::Result<()>;
    /// Enforce the Landlock plan.
    fn landlock(&self, plan: &Landlock) -> Result<()>;
    /// Install the seccomp filter.
    fn seccomp(&self, prog: &BpfProgram) -> Result<()>;
    /// `execveat(fd, "", argv, envp, AT_EMPTY_PATH)`; returns only on failure.
    fn execveat(
        &self,
        fd: RawFd,
        argv: &[*const libc::c_char],
        envp: &[*const libc::c_char],
    ) -> std::io::Error;
}

/// The real kernel.
#[derive(Debug, Clone, Copy, Default)]
pub struct Host;

impl Kernel for Host {
    fn new_session(&self) -> Result<()> {
        nix::unistd::setsid().context("cannot start a new session")?;
        Ok(())
    }

    fn close_fds_from(&self, first: RawFd, keep: &[RawFd]) -> Result<()> {
        sys::close_fds_from(first, keep, false).context("cannot close inherited file descriptors")
    }

    fn join_cgroup(&self, procs: &[OwnedFd]) -> Result<()> {
        apply::cgroup::join(procs).context("cannot enter the call's cgroup ([limits])")
    }

    fn write_id_maps(&self, map: &IdMap) -> Result<()> {
        crate::privilege::userns::write_id_maps(map).context("cannot map ids in the user namespace")
    }

    fn die_with_parent(&self, alive: RawFd) -> Result<bool> {
        sys::die_with_parent(sys::borrow_raw(alive)).context("cannot set the parent-death signal")
    }

    fn set_name(&self, name: &CStr) {
        let _ = nix::sys::prctl::set_name(name);
    }

    fn oom_score_adj(&self, value: &[u8]) -> std::io::Result<()> {
        apply::cgroup::set_oom_score_adj(value)
    }

    fn non_dumpable(&self) -> Result<()> {
        nix::sys::prctl::set_dumpable(false).context("cannot make pid 1 non-dumpable")
    }

    fn secret_mount_point(&self) -> Result<()> {
        apply::secret_files::prepare_mount_point()
    }

    fn mounts(&self, plan: &Mounts, degrade: bool) -> Result<()> {
        apply::mounts::apply(plan, degrade)
    }

    fn secret_files(&self, files: &Files) -> Result<()> {
        apply::secret_files::install(files)
    }

    fn loopback_up(&self) -> Result<()> {
        sys::loopback_up().context("cannot bring up loopback in the new network namespace (net = \"none\" or \"private\"): it needs CAP_NET_ADMIN, or user namespaces so that sbx-exec owns the network namespace (in a container: allow user namespaces — docker's default seccomp profile does with --cap-add SYS_ADMIN — or docker run --cap-add NET_ADMIN, which acts only on the container's own network); or use net = \"host\" if the context needs no network isolation")
    }

    fn hand_out_network(&self, sock: RawFd, plan: &Net) -> Result<()> {
        crate::run::net::hand_out(sock, plan)?;
        // Kept through the fd cleanup for this; closed once used: the target never has it.
        let _ = nix::unistd::close(sock);
        Ok(())
    }

    fn chdir_path(&self, dir: &Path) -> std::io::Result<()> {
        std::env::set_current_dir(dir)
    }

    fn detach_stdio(&self) -> Result<()> {
        crate::run::init::detach_stdio()
    }

    fn dup_above(&self, fd: RawFd, min: RawFd) -> Result<RawFd> {
        Ok(sys::dup_cloexec_above(fd, min)
            .context("cannot keep the parent's pipes")?
            .into_raw_fd())
    }

    fn arrange_fds(&self, fds: &[RawFd], keep: &[RawFd]) -> Result<()> {
        sys::arrange_fds(fds, keep).context("cannot pass the kept file descriptors")
    }

    fn reset_signals(&self, mask: &SigSet) -> Result<()> {
        // Rust ignores SIGPIPE for itself; the target gets the default back.
        sys::signal_default(Signal::SIGPIPE).context("cannot reset SIGPIPE")?;
        sigprocmask(SigmaskHow::SIG_SETMASK, Some(mask), None)
            .context("cannot restore the signal mask")
    }

    fn user_namespace(&self, degrade: bool, ends: (RawFd, RawFd)) -> Result<bool> {
        apply::identity::enter(degrade, ends)
    }

    fn become_for_good(&self, id: &Identity) -> Result<()> {
        crate::privilege::drop::drop_privs(id)
    }

    fn chdir(&self, dir: &CStr) -> nix::Result<()> {
        nix::unistd::chdir(dir)
    }

    fn capabilities(
        &self,
        keep: &CapsHashSet,
        no_new_privs: bool,
        run_as: Option<RunAs>,
    ) -> Result<()> {
        apply::capabilities::drop_to(keep, no_new_privs, run_as)
    }

    fn no_new_privs(&self) -> Result<()> {
        apply::capabilities::set_no_new_privs()
    }

    fn chdir_in_root(&self, dir: &CStr) -> std::io::Result<()> {
        sys::chdir_in_root(dir)
    }

    fn landlock(&self, plan: &Landlock) -> Result<()> {
        apply::landlock::install(plan)
    }

    fn seccomp(&self, prog: &BpfProgram) -> Result<()> {
        apply::seccomp::install(prog)
    }

    fn execveat(
        &self,
        fd: RawFd,
        argv: &[*const libc::c_char],
        envp: &[*const libc::c_char],
    ) -> std::io::Error {
        sys::execveat_fd(fd, argv, envp)
    }
}
