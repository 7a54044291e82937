//! Landlock: a second, kernel-enforced wall that does not depend on namespaces. Built as a plan
//! before the fork ([`plan`]), applied by the target just before seccomp ([`crate::run::apply::landlock`]).
//!
//! - ABI >= 4: deny TCP `bind` (and optionally `connect`) on the reserved ports. Landlock rules
//!   only *allow*, so "all ports but these" is one allow rule per other port.
//! - ABI >= 1: execute only below `security.exec_only_under` (the system paths), so nothing in a
//!   place untrusted code writes runs, even where the policy forgot a `noexec` mount.
//! - ABI >= 6: scope signals and abstract unix sockets to the context, so nothing outside it can be
//!   signalled or reached through an abstract socket even if a pid or name leaks in.
//!
//! What the kernel cannot enforce is refused (exit 125) unless the context says `degrade = true`.

use crate::model::SecurityPolicy;

/// What to ask of Landlock for one launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub deny_bind: Vec<u16>,
    pub deny_connect: Vec<u16>,
    pub scope: bool,
    /// Directories below which programs may be executed (empty: execution not handled).
    pub exec_under: Vec<std::path::PathBuf>,
    /// With `exec_under`: the target's own program handle may be executed too, wherever it lies
    /// (sbx-exec itself in a role the launcher chose: the file tool; [`with_own_program`]).
    pub exec_handle: Option<std::os::fd::RawFd>,
    pub degrade: bool,
}

/// The Landlock plan of a context, or `None` when it asks for nothing.
pub fn plan(sec: &SecurityPolicy, degrade: bool) -> Option<Plan> {
    let p = Plan {
        deny_bind: sec.deny_bind.clone(),
        deny_connect: sec.deny_connect.clone(),
        scope: sec.scope,
        exec_under: sec
            .exec_only_under
            .iter()
            .map(|p| p.as_path().to_path_buf())
            .collect(),
        exec_handle: None,
        degrade,
    };
    let asks = !p.deny_bind.is_empty()
        || !p.deny_connect.is_empty()
        || p.scope
        || !p.exec_under.is_empty();
    asks.then_some(p)
}

/// `plan` for a target that runs sbx-exec's own binary through `handle` (the file tool): where
/// execution is limited to `exec_only_under`, that one file may be executed too, since the
/// launcher chose it (it need not lie below a listed directory, nor be visible inside). Nothing
/// else changes: no rule is added where execution is not limited.
pub fn with_own_program(plan: Option<Plan>, handle: std::os::fd::RawFd) -> Option<Plan> {
    plan.map(|p| match p.exec_under.is_empty() {
        true => p,
        false => Plan {
            exec_handle: Some(handle),
            ..p
        },
    })
}
