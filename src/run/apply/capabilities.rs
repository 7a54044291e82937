//! Capabilities and `no_new_privs`: the last privilege changes before Landlock, seccomp and exec.
//!
//! The bounding set is cut first (it limits what any later exec can gain, even as uid 0), then the
//! user switched (`security.run_as`), then the inheritable and ambient sets emptied and
//! permitted/effective reduced to the kept set. The bounding cut and the user switch are the same
//! code a setuid launch uses ([`crate::privilege::drop`]).

use anyhow::{Context as _, Result};
use caps::{CapSet, Capability, CapsHashSet};

use crate::model::RunAs;
use crate::plan::capabilities::{mask_of, reduced};
use crate::privilege::drop::{become_user, cut_bounding_set};
use crate::privilege::Identity;
use crate::sys;

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
        cut_bounding_set(keep)?;
    } else if !no_new_privs {
        anyhow::bail!("cannot cut the capability bounding set without CAP_SETPCAP; run sbx-exec as root or set no_new_privs = true");
    }
    let permitted = match run_as {
        Some(ids) => {
            become_user(&Identity {
                uid: ids.uid,
                gid: ids.gid,
                groups: vec![ids.gid],
            })
            .context("security.run_as")?;
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

/// Set `no_new_privs`: from here on, exec can never gain privileges.
pub fn set_no_new_privs() -> Result<()> {
    nix::sys::prctl::set_no_new_privs().context("cannot set no_new_privs")
}
