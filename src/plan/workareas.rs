//! Work areas the code inside can write (`fs.writable` of a context whose code runs as another
//! host uid: `identity`, or `security.run_as`, in root mode). A `/workspace` or `/home` that root
//! made (0755) is not writable by host uid 100000, and files the control plane (root) puts there
//! later would not be either. sbx-exec grants the context's host ids access with POSIX ACLs on
//! the area itself: an access entry (`user:UID:rwx`, `group:GID:rwx`) and the same as default
//! entries, which every file and directory created there afterwards inherits (so what root
//! writes there later stays usable inside). Nothing is chowned or changed recursively; files that
//! were there before keep their permissions. See docs/DESIGN.md, "Work areas".
//!
//! Pure: the ACL's binary form (`system.posix_acl_access` / `system.posix_acl_default`, as the
//! kernel reads it: a version word, then entries of tag, permission and id, sorted) and the merge
//! of the grant into what an area already has. [`crate::run::apply::workareas`] reads and writes
//! the attributes.

use crate::model::{Context, IdRange, Namespace, RunAs};

/// The ACL extended attributes.
pub const ACCESS: &str = "system.posix_acl_access";
pub const DEFAULT: &str = "system.posix_acl_default";

const VERSION: u32 = 2;
const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const GROUP: u16 = 0x08;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;
const RWX: u16 = 7;
/// The id field of entries that have none.
const NO_ID: u32 = u32::MAX;

/// One ACL entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    pub tag: u16,
    pub id: u32,
    pub perm: u16,
}

/// Whose access a context's work areas need: the host ids its code runs as. `None` when it runs
/// as root outside (no grant needed) or outside root mode (sbx-exec changes no host permission
/// for a setuid or rootless caller).
pub fn grantee(ctx: &Context, root_mode: bool) -> Option<RunAs> {
    if !root_mode || !ctx.has(Namespace::Mount) || ctx.fs.writable.is_empty() {
        return None;
    }
    let inside = ctx.security.run_as.unwrap_or(RunAs { uid: 0, gid: 0 });
    let outside = match ctx.identity {
        Some(IdRange { uid, gid, .. }) => RunAs {
            uid: uid + inside.uid,
            gid: gid + inside.gid,
        },
        None => inside,
    };
    (outside.uid != 0).then_some(outside)
}

/// Parse an ACL attribute; `None` if it is not one the kernel would have written.
pub fn parse(bytes: &[u8]) -> Option<Vec<Entry>> {
    let (head, rest) = bytes.split_first_chunk::<4>()?;
    if u32::from_le_bytes(*head) != VERSION || rest.len() % 8 != 0 {
        return None;
    }
    let entries = rest
        .chunks_exact(8)
        .map(|c| Entry {
            tag: u16::from_le_bytes([c[0], c[1]]),
            perm: u16::from_le_bytes([c[2], c[3]]),
            id: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    Some(entries)
}

/// The attribute's bytes for `entries` (sorted as the kernel requires).
pub fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut sorted = entries.to_vec();
    sorted.sort();
    let mut out = VERSION.to_le_bytes().to_vec();
    for e in sorted {
        out.extend_from_slice(&e.tag.to_le_bytes());
        out.extend_from_slice(&e.perm.to_le_bytes());
        out.extend_from_slice(&e.id.to_le_bytes());
    }
    out
}

/// The minimal ACL of a file mode (owner, group, other), as the kernel sees a file without one.
pub fn from_mode(mode: u32) -> Vec<Entry> {
    let bits = |shift: u32| ((mode >> shift) & 7) as u16;
    vec![
        Entry {
            tag: USER_OBJ,
            id: NO_ID,
            perm: bits(6),
        },
        Entry {
            tag: GROUP_OBJ,
            id: NO_ID,
            perm: bits(3),
        },
        Entry {
            tag: OTHER,
            id: NO_ID,
            perm: bits(0),
        },
    ]
}

/// Does `acl` already give `who` full access (its entries rwx, and a mask that lets them through)?
pub fn grants(acl: &[Entry], who: RunAs) -> bool {
    let has = |tag: u16, id: u32| {
        acl.iter()
            .any(|e| e.tag == tag && e.id == id && e.perm == RWX)
    };
    let mask_ok = acl.iter().all(|e| e.tag != MASK || e.perm == RWX);
    has(USER, who.uid) && has(GROUP, who.gid) && mask_ok
}

/// `acl` (or the mode's minimal ACL) with `who` given rwx: its named user and group entries set
/// (replacing any it had) and the mask opened to rwx. Other entries are kept as they were.
pub fn with_grant(acl: &[Entry], who: RunAs) -> Vec<Entry> {
    let mut out: Vec<Entry> = acl
        .iter()
        .copied()
        .filter(|e| {
            e.tag != MASK
                && !(e.tag == USER && e.id == who.uid)
                && !(e.tag == GROUP && e.id == who.gid)
        })
        .collect();
    out.push(Entry {
        tag: USER,
        id: who.uid,
        perm: RWX,
    });
    out.push(Entry {
        tag: GROUP,
        id: who.gid,
        perm: RWX,
    });
    out.push(Entry {
        tag: MASK,
        id: NO_ID,
        perm: RWX,
    });
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const WHO: RunAs = RunAs {
        uid: 100000,
        gid: 100000,
    };

    #[test]
    fn a_root_made_area_gets_the_grant_once() {
        let base = from_mode(0o755);
        assert!(!grants(&base, WHO));
        let acl = with_grant(&base, WHO);
        assert!(grants(&acl, WHO));
        // The binary form round-trips, sorted by tag then id, as the kernel checks.
        let bytes = encode(&acl);
        assert_eq!(&bytes[..4], &[2, 0, 0, 0]);
        assert_eq!(bytes.len(), 4 + 8 * 6);
        let back = parse(&bytes).unwrap();
        assert_eq!(back, acl);
        let tags: Vec<u16> = back.iter().map(|e| e.tag).collect();
        assert_eq!(tags, [USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER]);
        // Owner, group and other keep the mode's bits.
        assert!(back.contains(&Entry {
            tag: USER_OBJ,
            id: NO_ID,
            perm: 7
        }));
        assert!(back.contains(&Entry {
            tag: OTHER,
            id: NO_ID,
            perm: 5
        }));
        // Granting again changes nothing.
        assert_eq!(with_grant(&acl, WHO), acl);
    }

    #[test]
    fn an_existing_acl_keeps_its_entries_and_a_narrow_mask_is_opened() {
        let mut acl = from_mode(0o750);
        acl.push(Entry {
            tag: USER,
            id: 1000,
            perm: 5,
        });
        acl.push(Entry {
            tag: USER,
            id: WHO.uid,
            perm: 7,
        });
        acl.push(Entry {
            tag: GROUP,
            id: WHO.gid,
            perm: 7,
        });
        acl.push(Entry {
            tag: MASK,
            id: NO_ID,
            perm: 5,
        });
        assert!(!grants(&acl, WHO), "a mask of r-x lets no write through");
        let granted = with_grant(&acl, WHO);
        assert!(grants(&granted, WHO));
        assert!(granted.contains(&Entry {
            tag: USER,
            id: 1000,
            perm: 5
        }));
        assert_eq!(granted.iter().filter(|e| e.tag == MASK).count(), 1);
        assert!(parse(b"\x01\x00\x00\x00").is_none());
        assert!(parse(b"\x02\x00\x00\x00\x01").is_none());
    }

    #[test]
    fn only_code_that_is_not_host_root_in_root_mode_needs_a_grant() {
        let p = crate::model::Policy::parse(crate::model::EMBEDDED_DEFAULT, "default").unwrap();
        let user = p.context("user").unwrap();
        assert_eq!(grantee(user, true), Some(WHO));
        assert_eq!(
            grantee(user, false),
            None,
            "setuid and rootless change no host permission"
        );
        assert_eq!(
            grantee(p.context("platform").unwrap(), true),
            None,
            "host root"
        );
        let mut run_as = user.clone();
        run_as.security.run_as = Some(RunAs {
            uid: 1000,
            gid: 1000,
        });
        assert_eq!(
            grantee(&run_as, true),
            Some(RunAs {
                uid: 101000,
                gid: 101000
            })
        );
    }
}
