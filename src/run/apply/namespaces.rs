//! Creating the sandbox's namespaces (one `clone`), and what to say when the kernel refuses.

use anyhow::{bail, Result};
use nix::unistd::Pid;

use crate::plan::namespaces::{flags, Kind};
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
pub fn enter(kinds: &[Kind]) -> std::io::Result<Option<Pid>> {
    sys::clone_fork(flags(kinds))
}
