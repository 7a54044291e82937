//! Which capabilities a context's target keeps, as sets the kernel takes (pure; applied by
//! [`crate::run::apply::capabilities`]).

use caps::CapsHashSet;

use crate::model::SecurityPolicy;
use crate::sys::CapSets;

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

/// The sets the target keeps: effective = permitted = what is permitted now and kept, nothing
/// inheritable (which also empties the ambient set).
pub fn reduced(permitted: u64, keep: u64) -> CapSets {
    CapSets {
        effective: permitted & keep,
        permitted: permitted & keep,
        inheritable: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use caps::Capability;

    #[test]
    fn mask_has_one_bit_per_kept_capability() {
        let keep: CapsHashSet = [Capability::CAP_CHOWN, Capability::CAP_SETPCAP].into();
        assert_eq!(mask_of(&keep), (1 << 0) | (1 << 8));
        assert_eq!(mask_of(&CapsHashSet::new()), 0);
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
