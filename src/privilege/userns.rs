//! Rootless mode: a user namespace that maps the caller's uid and gid to themselves.

use anyhow::{Context as _, Result};

use super::Mode;
use crate::model::{Context, UserNs};

/// Rootless mode: the ids mapped into the new user namespace (each to itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    pub uid: u32,
    pub gid: u32,
}

/// Should this launch create a user namespace, and with which map? Only in rootless mode, when the
/// context asks for namespaces and does not say `userns = "never"`.
pub fn userns_plan(mode: &Mode, ctx: &Context, wants_namespaces: bool) -> Option<IdMap> {
    (*mode == Mode::Rootless && ctx.userns == UserNs::Auto && wants_namespaces).then(|| IdMap {
        uid: nix::unistd::geteuid().as_raw(),
        gid: nix::unistd::getegid().as_raw(),
    })
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
