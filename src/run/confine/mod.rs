//! The confinement order, written once, as nsjail's `containProc` reads: what the sandbox's pid 1
//! does ([`PID1_ORDER`]) and what the target does between fork and exec ([`TARGET_ORDER`]), as
//! two ordered lists of steps. A plan selects the steps it needs ([`pid1_steps`],
//! [`target_steps`]: the lists filtered, never reordered), and one loop each runs them
//! ([`pid1::setup`], [`target::run`]), each step a call into the module named after its
//! facility, its system calls made through [`Kernel`] (the real one, [`Host`]; a recording fake
//! in the tests), so the order is unit-tested without root.
//!
//! ```text
//! outer ─clone(NEW*)─> pid 1: JoinCgroup → IdMaps → DieWithOuter | NameKeeper → OomScore
//!                             → NonDumpable → NewSession → CloseFds → SecretMountPoint → Mounts
//!                             → SecretFiles → Loopback → HandOutNetwork → Workdir | RootDir
//!                             → DetachStdio
//!                      └─fork─> target: NewSession → LiftLinks → PassFds → CloseFds
//!                             → ResetSignals → UserNamespace → BecomeCaller → CallerWorkdir
//!                             → Capabilities → NoNewPrivs → ParentDeath → WorkdirInRoot
//!                             → Landlock → Seccomp → Exec
//! ```
//!
//! Why this order (each one is a test in `tests.rs`):
//! - pid 1 joins the call's cgroup before anything else, so every process is counted; rootless
//!   mode's id maps come first of all it does in its user namespace;
//! - pid 1 dies with the outer process before it sets anything up, and is non-dumpable (no
//!   ptrace, no /proc/PID/mem) before it closes fds, mounts or writes secret files;
//! - inherited fds are closed before the mounts and before the target is forked; the secret
//!   files' mount point is made before the mounts, the files written after them (no later mount
//!   covers them); loopback is up before the proxy's listener is bound in it; the working
//!   directory is entered after the mounts (no handle below a covered path);
//! - the target starts a new session first (no TIOCSTI into the caller's terminal) and keeps
//!   only its fds before any change of ids or filter;
//! - the identity handshake (its own user namespace) and the setuid caller's identity come
//!   before the capabilities are cut, which come after every change of ids: nothing regains a
//!   privilege after the drop; the setuid caller's directory is entered as the caller, a join's
//!   inside the context's root only once its capabilities are gone;
//! - the parent-death signal is armed again after the last change of ids (which clears it);
//! - `no_new_privs` before Landlock and seccomp (both need it); Landlock before seccomp, and
//!   seccomp last before exec (the filter would refuse what the steps before it need).

pub mod kernel;
pub mod pid1;
pub mod target;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

pub use kernel::{Host, Kernel};
pub use pid1::Role;
pub use target::Links;

use crate::plan::launch::{Sandbox, Target};
use crate::plan::namespaces;

/// One step of the sandbox's pid 1, in [`PID1_ORDER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pid1Step {
    /// Join the call's cgroup (one-shot; a keeper's helper joins before the clone).
    JoinCgroup,
    /// Rootless mode: map the caller's ids in the new user namespace.
    IdMaps,
    /// One-shot with a pid namespace: SIGKILL when the outer process dies; stop if it has.
    DieWithOuter,
    /// A keeper: its name (`sbx-keeper`), which `ctx list` finds it by.
    NameKeeper,
    /// `oom_score_adj` +500: under memory pressure the sandbox goes before the trusted side.
    OomScore,
    /// Nobody in the sandbox may ptrace pid 1 or read its memory, environ or exe.
    NonDumpable,
    /// A session of its own.
    NewSession,
    /// Close every fd but those the plan keeps.
    CloseFds,
    /// The tmpfs for `secrets.files`, before the mounts.
    SecretMountPoint,
    /// The mount plan: read-only, writable, tmpfs, hidden paths, private /dev, /sys, /proc.
    Mounts,
    /// The secret files, on their tmpfs.
    SecretFiles,
    /// `lo` up in the new network namespace.
    Loopback,
    /// The proxy's listener bound inside, and the namespace, handed to the outer process.
    HandOutNetwork,
    /// One-shot: the planned working directory (`/` with mounts and none planned).
    Workdir,
    /// A keeper or a prepared sandbox: `/`, since it outlives the call that started it.
    RootDir,
    /// A keeper or a prepared sandbox: stdio on /dev/null.
    DetachStdio,
}

/// Everything pid 1 may do, in order.
pub const PID1_ORDER: [Pid1Step; 16] = [
    Pid1Step::JoinCgroup,
    Pid1Step::IdMaps,
    Pid1Step::DieWithOuter,
    Pid1Step::NameKeeper,
    Pid1Step::OomScore,
    Pid1Step::NonDumpable,
    Pid1Step::NewSession,
    Pid1Step::CloseFds,
    Pid1Step::SecretMountPoint,
    Pid1Step::Mounts,
    Pid1Step::SecretFiles,
    Pid1Step::Loopback,
    Pid1Step::HandOutNetwork,
    Pid1Step::Workdir,
    Pid1Step::RootDir,
    Pid1Step::DetachStdio,
];

impl Pid1Step {
    /// Does `sandbox` (in this `role`) need this step?
    pub fn applies(self, sandbox: &Sandbox, role: &Role) -> bool {
        let one_shot = matches!(role, Role::OneShot { .. });
        let keeper = matches!(role, Role::Keeper { .. });
        let pidns = sandbox.kinds.contains(&namespaces::PID);
        match self {
            Pid1Step::JoinCgroup => !role.cgroup().is_empty(),
            Pid1Step::IdMaps => sandbox.userns.is_some(),
            Pid1Step::DieWithOuter => one_shot && pidns,
            Pid1Step::NameKeeper => keeper,
            Pid1Step::RootDir | Pid1Step::DetachStdio => !one_shot,
            Pid1Step::OomScore | Pid1Step::CloseFds => true,
            Pid1Step::NonDumpable | Pid1Step::NewSession => pidns,
            Pid1Step::SecretMountPoint | Pid1Step::SecretFiles => sandbox.creds.is_some(),
            Pid1Step::Mounts => sandbox.mounts.is_some(),
            Pid1Step::Loopback => sandbox.loopback,
            Pid1Step::HandOutNetwork => sandbox.net.is_some() && role.net().is_some(),
            Pid1Step::Workdir => one_shot,
        }
    }
}

/// The steps pid 1 runs for `sandbox` in `role`, in order.
pub fn pid1_steps<'a>(sandbox: &'a Sandbox, role: &'a Role) -> impl Iterator<Item = Pid1Step> + 'a {
    PID1_ORDER
        .into_iter()
        .filter(move |s| s.applies(sandbox, role))
}

/// One step of the target between fork and exec, in [`TARGET_ORDER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetStep {
    /// A new session: no controlling terminal to push keystrokes into (TIOCSTI).
    NewSession,
    /// The parent's pipes (identity handshake, parent alive) moved above where the kept fds go.
    LiftLinks,
    /// The kept fds (`--keep-fd`, socket activation, control's ports) onto 3, 4, ...
    PassFds,
    /// Every other fd closed.
    CloseFds,
    /// SIGPIPE back to its default, the caller's signal mask restored.
    ResetSignals,
    /// `identity`: its own user namespace, mapped by its parent, then its root.
    UserNamespace,
    /// Setuid mode: the caller (or `run_as`) for good, the whole bounding set cut.
    BecomeCaller,
    /// Setuid mode: the working directory, entered as the caller.
    CallerWorkdir,
    /// The bounding, inheritable and ambient sets cut, permitted and effective reduced to the
    /// kept set (and `run_as` switched to).
    Capabilities,
    /// `no_new_privs`: no exec can gain privileges any more.
    NoNewPrivs,
    /// A join: the parent-death signal armed again (a change of ids cleared it), the parent
    /// checked.
    ParentDeath,
    /// A join: the working directory, resolved inside the context's root.
    WorkdirInRoot,
    /// The Landlock ruleset.
    Landlock,
    /// The seccomp filter.
    Seccomp,
    /// LISTEN_PID filled in, `execveat` of the checked handle.
    Exec,
}

/// Everything the target may do, in order.
pub const TARGET_ORDER: [TargetStep; 15] = [
    TargetStep::NewSession,
    TargetStep::LiftLinks,
    TargetStep::PassFds,
    TargetStep::CloseFds,
    TargetStep::ResetSignals,
    TargetStep::UserNamespace,
    TargetStep::BecomeCaller,
    TargetStep::CallerWorkdir,
    TargetStep::Capabilities,
    TargetStep::NoNewPrivs,
    TargetStep::ParentDeath,
    TargetStep::WorkdirInRoot,
    TargetStep::Landlock,
    TargetStep::Seccomp,
    TargetStep::Exec,
];

impl TargetStep {
    /// Does `target` (with these `links` from its parent) need this step?
    pub fn applies(self, target: &Target, links: &Links) -> bool {
        match self {
            TargetStep::NewSession
            | TargetStep::CloseFds
            | TargetStep::ResetSignals
            | TargetStep::Exec => true,
            TargetStep::LiftLinks => links.handshake.is_some() || links.parent_alive.is_some(),
            TargetStep::PassFds => !target.pass_fds.is_empty(),
            TargetStep::UserNamespace => target.identity.is_some(),
            TargetStep::BecomeCaller => target.drop_to.is_some(),
            TargetStep::CallerWorkdir => target.chdir_after_drop.is_some(),
            // A degraded identity runs with no capabilities even where the plan keeps them.
            TargetStep::Capabilities => {
                target.caps.is_some() || target.identity.is_some_and(|m| m.degrade)
            }
            TargetStep::NoNewPrivs => target.no_new_privs,
            TargetStep::ParentDeath => links.parent_alive.is_some(),
            TargetStep::WorkdirInRoot => target.cwd_in_root.is_some(),
            TargetStep::Landlock => target.landlock.is_some(),
            TargetStep::Seccomp => target.seccomp.is_some(),
        }
    }

    /// Does this step change the process's ids or capabilities (so it must come before the
    /// capabilities are cut, and before the parent-death signal is armed again)?
    pub fn changes_ids(self) -> bool {
        matches!(
            self,
            TargetStep::UserNamespace | TargetStep::BecomeCaller | TargetStep::Capabilities
        )
    }
}

/// The steps the target runs, in order. Allocation-free: safe between fork and exec.
pub fn target_steps<'a>(
    target: &'a Target,
    links: &'a Links,
) -> impl Iterator<Item = TargetStep> + 'a {
    TARGET_ORDER
        .into_iter()
        .filter(move |s| s.applies(target, links))
}
