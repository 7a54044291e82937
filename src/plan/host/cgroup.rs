//! What this host's cgroups are: the hierarchy mounted on /sys/fs/cgroup, this process's own
//! cgroups, and whether sbx-exec may write there (facts for [`crate::plan::cgroup::plan`] and
//! `probe`).

use std::path::Path;

use crate::model::limits::Limits;
use crate::plan::cgroup::{
    base_of, own_path, plan_on, CgroupInfo, Layout, Version, PARENT, ROOT, V1_CONTROLLERS,
};

/// Look at /sys/fs/cgroup: v2 if `cgroup.controllers` is there, else the v1 controller dirs.
pub fn detect() -> CgroupInfo {
    let root = Path::new(ROOT);
    if let Ok(list) = std::fs::read_to_string(root.join("cgroup.controllers")) {
        let controllers = list
            .split_whitespace()
            .filter(|c| V1_CONTROLLERS.contains(c))
            .map(String::from)
            .collect();
        return CgroupInfo {
            version: Version::V2,
            controllers,
        };
    }
    let controllers: Vec<String> = V1_CONTROLLERS
        .iter()
        .filter(|c| root.join(c).join("cgroup.procs").exists())
        .map(|c| c.to_string())
        .collect();
    let version = if controllers.is_empty() {
        Version::None
    } else {
        Version::V1
    };
    CgroupInfo {
        version,
        controllers,
    }
}

/// Read the layout ([`Layout`]).
pub fn layout() -> Layout {
    if !nix::unistd::geteuid().is_root() {
        return Layout {
            root: false,
            info: CgroupInfo {
                version: Version::None,
                controllers: Vec::new(),
            },
            self_cgroup: Err(String::new()),
        };
    }
    let self_cgroup = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"));
    Layout {
        root: true,
        info: detect(),
        self_cgroup,
    }
}

/// Can `limits` be applied on this host? (What `probe` asks; a launch plans with [`plan_on`].)
pub fn limits_available(ctx_name: &str, limits: &Limits) -> std::result::Result<(), String> {
    plan_on(&layout(), ctx_name, limits, std::process::id()).map(drop)
}

/// For `probe`: each `[limits]` key, and why it cannot be enforced on this host (`None`: it can).
/// Asks what a launch needs: root, the controller, and a writable directory to create cgroups in.
pub fn enforceable() -> Vec<(&'static str, Option<String>)> {
    let info = detect();
    let self_cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let root = Path::new(ROOT);
    let why = |c: &str, file: Option<&str>| -> Option<String> {
        if !nix::unistd::geteuid().is_root() {
            return Some("the cgroup tree belongs to root (rootless mode)".into());
        }
        if info.version == Version::None {
            return Some("no cgroup hierarchy is mounted on /sys/fs/cgroup".into());
        }
        if !info.controllers.iter().any(|h| h == c) {
            return Some(format!("the {c} controller is not available"));
        }
        let (hier, own) = match info.version {
            Version::V2 => ("", own_path(&self_cgroup, "")),
            _ => (c, own_path(&self_cgroup, c)),
        };
        let base = base_of(root, hier, own.unwrap_or("/")).0;
        if nix::unistd::access(&base, nix::unistd::AccessFlags::W_OK).is_err() {
            return Some(format!(
                "{} is not writable (read-only cgroup mount?)",
                base.display()
            ));
        }
        if let Some(f) = file {
            if !base.join(f).exists() && !base.join(PARENT).join(f).exists() {
                return Some(format!("the kernel has no {f} (swap accounting off?)"));
            }
        }
        None
    };
    let swap = match info.version {
        Version::V2 => "memory.swap.max",
        _ => "memory.memsw.limit_in_bytes",
    };
    // On v2 the root cgroup has no memory.swap.max of its own; a child's is what counts.
    let swap_file = (info.version == Version::V1).then_some(swap);
    vec![
        ("pids_max", why("pids", None)),
        ("memory_max", why("memory", None)),
        ("memory_swap_max", why("memory", swap_file)),
        ("cpu_max", why("cpu", None)),
    ]
}
