//! Installing the seccomp program built by [`crate::plan::seccomp::build`]: the last step before
//! exec.

use anyhow::{Context as _, Result};
use seccompiler::BpfProgram;

/// Install `prog` on this thread; needs `no_new_privs` (or CAP_SYS_ADMIN).
pub fn install(prog: &BpfProgram) -> Result<()> {
    seccompiler::apply_filter(prog).context("cannot install the seccomp filter (security.seccomp = \"default\"): the kernel needs CONFIG_SECCOMP_FILTER and the container runtime must allow seccomp(2); or set security.seccomp = \"none\" in the context")
}
