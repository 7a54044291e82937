//! Capabilities and `no_new_privs`: the last privilege changes before seccomp and exec.
//!
//! The bounding set is cut first (it limits what any later exec can gain, even as uid 0), then the
//! inheritable and ambient sets are emptied and permitted/effective reduced to the kept set.

use anyhow::{anyhow, Context as _, Result};
use caps::{CapSet, Capability, CapsHashSet};

use crate::policy::{RunAs, SecurityPolicy};
use crate::sys::{self, CapSets};

/// The capabilities a context keeps; `None` means "leave them all".
pub fn kept(sec: &SecurityPolicy) -> Option<CapsHashSet> {
    if sec.keeps_all_caps() {
        return None;
    }
    Some(sec.caps.iter().filter_map(|c| c.capability()).collect())
}

/// Bit mask of `caps` (bit n = capability number n).
pub fn mask_of(caps: &CapsHashSet) -> u64 {
    caps.iter().fold(0, |m, c| m | c.bitmask())
}

/// The capability numbers the bounding set loses, ascending: every number that fits the kernel's
/// 64-bit sets and is not kept. [`drop_to`] stops at the first one the running kernel does not
/// know, so capabilities newer than this program are dropped too.
fn bounding_drops(keep: u64) -> impl Iterator<Item = u32> {
    (0..64).filter(move |c| keep & (1u64 << c) == 0)
}

/// The sets the target keeps: effective = permitted = what is permitted now and kept, nothing
/// inheritable (which also empties the ambient set).
fn reduced(permitted: u64, keep: u64) -> CapSets {
    CapSets {
        effective: permitted & keep,
        permitted: permitted & keep,
        inheritable: 0,
    }
}

/// Drop every capability not in `keep` from all five sets of this thread.
///
/// Cutting the bounding set needs CAP_SETPCAP. Without it (sbx-exec not run as root), the bounding
/// set is left alone when `no_new_privs` is set: it then limits nothing that exec could gain.
///
/// Cost: one `capget`, one `PR_CAPBSET_DROP` per capability not kept (dropping one that is
/// already gone is a no-op, cheaper than reading first), one `capset` for three sets.
pub fn drop_to(keep: &CapsHashSet, no_new_privs: bool, run_as: Option<RunAs>) -> Result<()> {
    let keep = mask_of(keep);
    let now = sys::capget().context("cannot read the capability sets")?;
    if now.effective & Capability::CAP_SETPCAP.bitmask() != 0 {
        for cap in bounding_drops(keep) {
            match sys::capbset_drop(cap) {
                Ok(()) => {}
                // Past the running kernel's last capability: nothing left to drop.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) && cap > 0 => break,
                Err(e) => {
                    return Err(anyhow!(e).context(format!(
                        "cannot drop capability {cap} from the bounding set"
                    )))
                }
            }
        }
    } else if !no_new_privs {
        anyhow::bail!("cannot cut the capability bounding set without CAP_SETPCAP; run sbx-exec as root or set no_new_privs = true");
    }
    let permitted = match run_as {
        Some(ids) => {
            switch_user(ids)?;
            sys::capget()
                .context("cannot read the capability sets")?
                .permitted
        }
        None => now.permitted,
    };
    caps::clear(None, CapSet::Ambient).context("cannot clear the ambient set")?;
    sys::capset(reduced(permitted, keep)).context("cannot set the capability sets")?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_has_one_bit_per_kept_capability() {
        let keep: CapsHashSet = [Capability::CAP_CHOWN, Capability::CAP_SETPCAP].into();
        assert_eq!(mask_of(&keep), (1 << 0) | (1 << 8));
        assert_eq!(mask_of(&CapsHashSet::new()), 0);
    }

    #[test]
    fn bounding_drops_everything_not_kept() {
        let keep = (1 << 0) | (1 << 8) | (1 << 63);
        let drops: Vec<u32> = bounding_drops(keep).collect();
        assert_eq!(drops.len(), 61);
        assert!(!drops.contains(&0) && !drops.contains(&8) && !drops.contains(&63));
        assert!(drops.contains(&21), "CAP_SYS_ADMIN is dropped");
        assert!(
            drops.windows(2).all(|w| w[0] < w[1]),
            "ascending, so EINVAL ends it"
        );
        assert_eq!(bounding_drops(0).count(), 64);
    }

    #[test]
    fn reduced_keeps_only_what_is_both_permitted_and_kept() {
        let sets = reduced(0b1111, 0b1010_0000_0110);
        assert_eq!(sets.permitted, 0b0110);
        assert_eq!(sets.effective, 0b0110);
        assert_eq!(sets.inheritable, 0);
        assert_eq!(reduced(0, u64::MAX), CapSets::default());
    }
}
