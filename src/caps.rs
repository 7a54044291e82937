//! Capabilities and `no_new_privs`: the last privilege changes before seccomp and exec.
//!
//! The bounding set is cut first (it limits what any later exec can gain, even as uid 0), then the
//! inheritable and ambient sets are emptied and permitted/effective reduced to the kept set.

use std::collections::HashSet;

use anyhow::{Context as _, Result};
use caps::{CapSet, Capability, CapsHashSet};

use crate::policy::{RunAs, SecurityPolicy};

/// The capabilities a context keeps; `None` means "leave them all".
pub fn kept(sec: &SecurityPolicy) -> Option<CapsHashSet> {
    if sec.keeps_all_caps() {
        return None;
    }
    Some(sec.caps.iter().filter_map(|c| c.capability()).collect())
}

/// Drop every capability not in `keep` from all five sets of this thread.
///
/// Cutting the bounding set needs CAP_SETPCAP. Without it (sbx-exec not run as root), the bounding
/// set is left alone when `no_new_privs` is set: it then limits nothing that exec could gain.
pub fn drop_to(keep: &CapsHashSet, no_new_privs: bool, run_as: Option<RunAs>) -> Result<()> {
    let effective = caps::read(None, CapSet::Effective).context("cannot read the effective set")?;
    if effective.contains(&Capability::CAP_SETPCAP) {
        let bounding =
            caps::read(None, CapSet::Bounding).context("cannot read the bounding set")?;
        for cap in bounding.difference(keep) {
            caps::drop(None, CapSet::Bounding, *cap)
                .with_context(|| format!("cannot drop {cap} from the bounding set"))?;
        }
    } else if !no_new_privs {
        anyhow::bail!("cannot cut the capability bounding set without CAP_SETPCAP; run sbx-exec as root or set no_new_privs = true");
    }
    if let Some(ids) = run_as {
        switch_user(ids)?;
    }
    caps::clear(None, CapSet::Ambient).context("cannot clear the ambient set")?;
    caps::set(None, CapSet::Inheritable, &HashSet::new())
        .context("cannot clear the inheritable set")?;
    let permitted = caps::read(None, CapSet::Permitted).context("cannot read the permitted set")?;
    let now: CapsHashSet = permitted.intersection(keep).copied().collect();
    caps::set(None, CapSet::Effective, &now).context("cannot set the effective set")?;
    caps::set(None, CapSet::Permitted, &now).context("cannot set the permitted set")?;
    Ok(())
}

/// Become `ids.uid`/`ids.gid` for good (real, effective and saved), with `gid` as the only
/// group. Leaving uid 0 clears the permitted and effective capability sets.
fn switch_user(ids: RunAs) -> Result<()> {
    use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
    let (uid, gid) = (Uid::from_raw(ids.uid), Gid::from_raw(ids.gid));
    setgroups(&[gid]).context("cannot set the supplementary groups (security.run_as)")?;
    setresgid(gid, gid, gid).context("cannot change group (security.run_as)")?;
    setresuid(uid, uid, uid).context("cannot change user (security.run_as)")?;
    Ok(())
}

/// Capabilities no confined context should keep: each one can undo the sandbox or read past it.
pub const NEVER_FOR_CONFINED: &[Capability] = &[
    Capability::CAP_SYS_ADMIN,
    Capability::CAP_SYS_PTRACE,
    Capability::CAP_DAC_READ_SEARCH,
    Capability::CAP_NET_ADMIN,
    Capability::CAP_SYS_MODULE,
    Capability::CAP_SYS_RAWIO,
    Capability::CAP_BPF,
    Capability::CAP_PERFMON,
    Capability::CAP_SYSLOG,
    Capability::CAP_MAC_ADMIN,
    Capability::CAP_MAC_OVERRIDE,
    Capability::CAP_SYS_BOOT,
    Capability::CAP_SYS_TIME,
];

/// Set `no_new_privs`: from here on, exec can never gain privileges.
pub fn set_no_new_privs() -> Result<()> {
    nix::sys::prctl::set_no_new_privs().context("cannot set no_new_privs")
}
