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
        degrade,
    };
    let asks = !p.deny_bind.is_empty()
        || !p.deny_connect.is_empty()
        || p.scope
        || !p.exec_under.is_empty();
    asks.then_some(p)
}
