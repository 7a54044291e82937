//! User namespaces. Rootless mode: one that maps the caller's uid and gid to themselves, created
//! with the sandbox's other namespaces. Root mode with `identity`: one for the target alone that
//! maps its root onto an unprivileged host range, written by its parent (who holds CAP_SETUID and
//! CAP_SETGID in the parent namespace, which a range needs).

use anyhow::{Context as _, Result};

use super::Mode;
use crate::model::{Context, IdRange, UserNs};

/// Rootless mode: the ids mapped into the new user namespace (each to itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    pub uid: u32,
    pub gid: u32,
}

/// Should this launch create a user namespace, and with which map? Only in rootless mode, when the
/// context asks for namespaces and does not say `userns = "never"`; `(uid, gid)` are this
/// process's effective ids, mapped to themselves.
pub fn userns_plan(
    mode: &Mode,
    ctx: &Context,
    wants_namespaces: bool,
    (uid, gid): (u32, u32),
) -> Option<IdMap> {
    (*mode == Mode::Rootless && ctx.userns == UserNs::Auto && wants_namespaces)
        .then_some(IdMap { uid, gid })
}

/// In the first process of a new user namespace: map the caller's uid and gid to themselves
/// (`setgroups` denied first, as the kernel requires for an unprivileged gid_map).
///
/// A non-dumpable process's /proc files belong to the global root, which this user namespace
/// cannot map, so the process is made dumpable for the three writes and non-dumpable again. In
/// that window only processes of the same uid outside the sandbox (the caller itself: rootless
/// mode guards no boundary between a user and its own processes) could attach to it.
pub fn write_id_maps(map: &IdMap) -> Result<()> {
    nix::sys::prctl::set_dumpable(true).context("cannot make pid 1 dumpable to map ids")?;
    let written = write_id_maps_now(map);
    nix::sys::prctl::set_dumpable(false).context("cannot make pid 1 non-dumpable")?;
    written
}

fn write_id_maps_now(map: &IdMap) -> Result<()> {
    std::fs::write("/proc/self/setgroups", b"deny").context("cannot write /proc/self/setgroups")?;
    let line = |id: u32| format!("{id} {id} 1\n");
    std::fs::write("/proc/self/uid_map", line(map.uid).as_bytes())
        .context("cannot write /proc/self/uid_map")?;
    std::fs::write("/proc/self/gid_map", line(map.gid).as_bytes())
        .context("cannot write /proc/self/gid_map")?;
    Ok(())
}

/// Root mode with `identity`: the range of host ids the target's user namespace maps its ids
/// 0..count onto. Rootless mode maps the caller to itself already and setuid mode runs the
/// caller's own uid: neither is root outside, so neither needs it.
pub fn identity_plan(mode: &Mode, ctx: &Context) -> Option<IdRange> {
    (*mode == Mode::Root).then_some(ctx.identity).flatten()
}

/// The `uid_map` and `gid_map` lines for `range`: the sandbox's 0..count onto the host's
/// uid..uid+count. Host uid 0 is never in the range (the policy refuses it), so nothing the
/// target does can carry root's id outside.
pub fn range_lines(range: &IdRange) -> (String, String) {
    (
        format!("0 {} {}\n", range.uid, range.count),
        format!("0 {} {}\n", range.gid, range.count),
    )
}

/// In the parent (root in the parent user namespace, which may map any range): write the maps of
/// `pid`'s new user namespace through `proc` (the /proc showing `pid`). `setgroups` stays
/// allowed, so the target can drop its supplementary groups, which only mapped groups can be.
pub fn write_range_maps(proc: &std::path::Path, pid: i32, range: &IdRange) -> Result<()> {
    let (uid_line, gid_line) = range_lines(range);
    let dir = proc.join(pid.to_string());
    std::fs::write(dir.join("uid_map"), uid_line.as_bytes())
        .with_context(|| format!("cannot write the uid map of pid {pid}"))?;
    std::fs::write(dir.join("gid_map"), gid_line.as_bytes())
        .with_context(|| format!("cannot write the gid map of pid {pid}"))?;
    Ok(())
}

/// In the target, once its parent has written the maps: become the namespace's root for good
/// (host uid/gid `range.uid`/`range.gid`), with no supplementary groups (those it inherited are
/// host root's, unmapped, and would still grant group access outside). Until this call the process
/// still carries host uid 0 for file access.
pub fn become_mapped_root() -> Result<()> {
    use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
    let root_gid = Gid::from_raw(0);
    let root_uid = Uid::from_raw(0);
    setgroups(&[]).context("cannot drop the supplementary groups in the user namespace")?;
    setresgid(root_gid, root_gid, root_gid)
        .context("cannot become gid 0 of the user namespace (were the maps written?)")?;
    setresuid(root_uid, root_uid, root_uid)
        .context("cannot become uid 0 of the user namespace (were the maps written?)")?;
    Ok(())
}
