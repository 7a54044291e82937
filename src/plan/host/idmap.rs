//! Are an `identity`'s host ids there to map? A context's identity maps its sandbox's ids onto
//! host ids `uid..uid+count` (and gid likewise); those ids must exist in the user namespace
//! sbx-exec itself runs in. In a container with a user namespace of its own (rootless Podman,
//! Kubernetes' `hostUsers: false`) only the ids the runtime mapped exist, often 65536: an
//! identity above them cannot be given, and the kernel says only EINVAL at the first mount or
//! chown that names one. This reads `/proc/self/uid_map` and `gid_map` so that a launch refuses
//! it first, naming the ids and the fix, and `probe` says so.

use crate::model::IdRange;

/// What of `range` is not mapped in this process's user namespace, as a sentence naming the
/// fix; `None` when every id is (or the maps cannot be read: the launch then finds out).
pub fn unmapped(range: &IdRange) -> Option<String> {
    let read = |file: &str| std::fs::read_to_string(file).ok().map(|t| extents(&t));
    let uids = read("/proc/self/uid_map")?;
    let gids = read("/proc/self/gid_map")?;
    describe(range, &uids, &gids)
}

/// The same, from the maps' extents (`inside`, `count`): pure, for tests.
pub fn describe(range: &IdRange, uids: &[(u64, u64)], gids: &[(u64, u64)]) -> Option<String> {
    let missing: Vec<String> = [("uid", range.uid, uids), ("gid", range.gid, gids)]
        .into_iter()
        .filter(|(_, first, map)| !covered(map, u64::from(*first), u64::from(range.count)))
        .map(|(kind, first, _)| {
            format!(
                "{kind} {first}..{}",
                u64::from(first) + u64::from(range.count) - 1
            )
        })
        .collect();
    if missing.is_empty() {
        return None;
    }
    let top = u64::from(range.uid.max(range.gid)) + u64::from(range.count);
    Some(format!(
        "identity: host {} not mapped in the user namespace sbx-exec runs in (its /proc/self/uid_map \
         and gid_map; a container with a user namespace of its own, such as rootless Podman or \
         Kubernetes' hostUsers: false, often has 65536 ids): give the container {top} ids or more \
         (Podman: subordinate ids in /etc/subuid and /etc/subgid), or an identity inside the ids it has",
        missing.join(" and ")
    ))
}

/// The extents (first id inside, count) of a `uid_map`/`gid_map` text.
fn extents(text: &str) -> Vec<(u64, u64)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let inside = f.next()?.parse().ok()?;
            let _outside: u64 = f.next()?.parse().ok()?;
            let count = f.next()?.parse().ok()?;
            Some((inside, count))
        })
        .collect()
}

/// Is every id of `first..first+count` inside one of `map`'s extents?
fn covered(map: &[(u64, u64)], first: u64, count: u64) -> bool {
    let end = first + count;
    let mut at = first;
    while at < end {
        match map.iter().find(|(s, n)| *s <= at && at < s + n) {
            Some((s, n)) => at = s + n,
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDK: IdRange = IdRange {
        uid: 100000,
        gid: 100000,
        count: 65536,
    };

    #[test]
    fn the_initial_namespace_maps_every_identity() {
        let all = extents("         0          0 4294967295\n");
        assert_eq!(describe(&SDK, &all, &all), None);
    }

    #[test]
    fn a_container_of_65536_ids_lacks_the_sdk_identity() {
        let small = extents("0 0 65536\n");
        let why = describe(&SDK, &small, &small).unwrap();
        assert!(
            why.contains("uid 100000..165535 and gid 100000..165535 not mapped"),
            "{why}"
        );
        assert!(why.contains("165536 ids or more"), "{why}");
    }

    #[test]
    fn extents_may_join_and_must_cover_the_whole_range() {
        // Podman's rootless map: 0 to the user, 1.. to the subordinate range.
        let joined = extents("0 1000 1\n1 200000 200000\n");
        assert_eq!(describe(&SDK, &joined, &joined), None);
        // One id short at the top, and a hole in the middle.
        let short = extents("0 0 165535\n");
        assert!(describe(&SDK, &short, &short).is_some());
        let hole = extents("0 0 120000\n120001 500 100000\n");
        assert!(describe(&SDK, &hole, &hole).is_some());
        // Only the gids lacking: named alone.
        let all = extents("0 0 4294967295\n");
        let why = describe(&SDK, &all, &short).unwrap();
        assert!(why.contains("host gid 100000..165535 not"), "{why}");
    }

    #[test]
    fn this_process_maps_what_it_runs_as() {
        let me = IdRange {
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            count: 1,
        };
        assert_eq!(unmapped(&me), None);
    }
}
