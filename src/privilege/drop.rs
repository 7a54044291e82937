//! Dropping privileges for good: the one path that cuts the capability bounding set and switches
//! user. Used by setuid launches (stage 6: everything cut, become the caller) and by
//! `security.run_as` (the kept set, become the configured user).

use anyhow::{anyhow, bail, Context as _, Result};
use nix::unistd::{Gid, Uid};

use super::Identity;
use crate::sys;

/// Cut every capability not in `keep` (bit n = capability n) from the bounding set, ascending,
/// stopping at the first number the running kernel does not know (so capabilities newer than
/// this program go too). Needs CAP_SETPCAP.
pub fn cut_bounding_set(keep: u64) -> Result<()> {
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
    Ok(())
}

/// The capability numbers the bounding set loses, ascending: every number that fits the kernel's
/// 64-bit sets and is not kept.
pub fn bounding_drops(keep: u64) -> impl Iterator<Item = u32> {
    (0..64).filter(move |c| keep & (1u64 << c) == 0)
}

/// Become `id` for good: supplementary groups, gid and uid (real, effective and saved), then check
/// that the switch took and, for a non-root `id`, that uid 0 cannot be regained.
pub fn become_user(id: &Identity) -> Result<()> {
    use nix::unistd::{setgroups, setresgid, setresuid};
    let groups: Vec<Gid> = id.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    setgroups(&groups).context("cannot set the supplementary groups")?;
    let (uid, gid) = (Uid::from_raw(id.uid), Gid::from_raw(id.gid));
    setresgid(gid, gid, gid).context("cannot change group")?;
    setresuid(uid, uid, uid).context("cannot change user")?;
    let r = nix::unistd::getresuid()?;
    let g = nix::unistd::getresgid()?;
    if [r.real, r.effective, r.saved] != [uid; 3] || [g.real, g.effective, g.saved] != [gid; 3] {
        bail!("the switch to uid {} gid {} did not take", id.uid, id.gid);
    }
    if id.uid != 0 && nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        bail!("uid 0 could be regained after dropping privileges");
    }
    Ok(())
}

/// Stage 6 of a setuid launch, in the target before its capability sets are emptied: cut the
/// whole bounding set, then become `id` for good.
pub fn drop_privs(id: &Identity) -> Result<()> {
    cut_bounding_set(0)?;
    become_user(id)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
