//! Resource limits through cgroups (v2 where mounted, else the v1 `pids`, `memory` and `cpu`
//! hierarchies): the directories and files a context's limits need (a pure plan, unit-tested),
//! from what this machine offers ([`crate::plan::host::cgroup`], also for `probe`). [`crate::run::apply::cgroup`] creates,
//! joins and removes them.
//!
//! A cgroup limits resources; it hides nothing (processes are hidden by the pid namespace).

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use serde::Serialize;

use crate::model::limits::Limits;

pub(crate) const ROOT: &str = "/sys/fs/cgroup";
/// v1 controllers sbx-exec uses, by the key that needs them.
pub(crate) const V1_CONTROLLERS: &[&str] = &["pids", "memory", "cpu"];
/// CFS period used for `cpu_max` (100 ms, the kernel's default).
const CPU_PERIOD_US: u64 = 100_000;

/// Which cgroup hierarchy the machine has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Version {
    V1,
    V2,
    None,
}

impl Version {
    /// As `probe` prints it.
    pub fn name(self) -> &'static str {
        match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
            Version::None => "none",
        }
    }
}

/// What `probe` reports about cgroups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CgroupInfo {
    pub version: Version,
    /// Controllers sbx-exec can use among pids, memory, cpu.
    pub controllers: Vec<String>,
}

/// The directory, below sbx-exec's own cgroup (or its parent, when that is sbx-exec's `sbx-init`
/// leaf), that holds every cgroup sbx-exec makes: root-owned like the rest of the tree.
pub const PARENT: &str = "sbx";
/// v2: the leaf sbx-exec (and the processes that shared its cgroup) move into, so that the
/// cgroup above may enable controllers (v2 allows no processes in a cgroup that does).
pub const SELF_LEAF: &str = "sbx-init";

/// One cgroup directory to create, the limit files to write in it, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dir {
    /// The `sbx` directory it lives in (created if missing, swept of stale leaves).
    pub parent: PathBuf,
    pub path: PathBuf,
    pub files: Vec<(&'static str, String)>,
}

/// The cgroups of one call (one-shot) or one persistent context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub version: Version,
    pub dirs: Vec<Dir>,
    /// v2: controllers to enable in `cgroup.subtree_control` of the base and of `sbx`.
    pub enable: Vec<&'static str>,
    /// v2: the leaf for sbx-exec itself when it still sits in the base cgroup (`None` when it
    /// already runs in `sbx-init`).
    pub self_leaf: Option<PathBuf>,
}

/// This process's cgroup path for `controller` ("" for v2's unified line) from /proc/self/cgroup.
pub(crate) fn own_path<'a>(self_cgroup: &'a str, controller: &str) -> Option<&'a str> {
    self_cgroup.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        let hit = if controller.is_empty() {
            ctrls.is_empty()
        } else {
            ctrls.split(',').any(|c| c == controller)
        };
        hit.then_some(path)
    })
}

/// The limit files for controller `c` (v1 or v2 names).
fn values(limits: &Limits, c: &str, v2: bool) -> Vec<(&'static str, String)> {
    match c {
        "pids" => vec![("pids.max", limits.pids_max.unwrap_or(0).to_string())],
        "memory" => {
            let mut v = Vec::new();
            let mem = limits.memory_max.map(|b| b.0);
            if v2 {
                if let Some(m) = mem {
                    v.push(("memory.max", m.to_string()));
                }
                if let Some(s) = limits.memory_swap_max {
                    v.push(("memory.swap.max", s.0.to_string()));
                }
                // One OOM kill takes the whole call (or context), not one random process.
                v.push(("memory.oom.group", "1".to_string()));
            } else {
                if let Some(m) = mem {
                    v.push(("memory.limit_in_bytes", m.to_string()));
                    if let Some(s) = limits.memory_swap_max {
                        // v1 counts memory and swap together.
                        v.push((
                            "memory.memsw.limit_in_bytes",
                            m.saturating_add(s.0).to_string(),
                        ));
                    }
                }
            }
            v
        }
        _ => {
            let quota = (limits.cpu_max.map_or(1.0, |c| c.0) * CPU_PERIOD_US as f64) as u64;
            if v2 {
                vec![("cpu.max", format!("{quota} {CPU_PERIOD_US}"))]
            } else {
                vec![
                    ("cpu.cfs_period_us", CPU_PERIOD_US.to_string()),
                    ("cpu.cfs_quota_us", quota.to_string()),
                ]
            }
        }
    }
}

/// The base cgroup for sbx-exec's directories: its own, or the parent of its own when that is
/// its `sbx-init` leaf (v2, after an earlier call moved it there). Returns (base, in_self_leaf).
pub(crate) fn base_of(root: &Path, hier: &str, own: &str) -> (PathBuf, bool) {
    let mut p = root.to_path_buf();
    if !hier.is_empty() {
        p.push(hier);
    }
    p.push(own.trim_start_matches('/'));
    if p.file_name().is_some_and(|n| n == SELF_LEAF) {
        if let Some(parent) = p.parent() {
            return (parent.to_path_buf(), true);
        }
    }
    (p, false)
}

/// Build the plan (pure): a directory `<base>/sbx/<leaf>` in each hierarchy the limits need,
/// where base is this process's own cgroup (see `base_of`). Errors name the missing controller.
pub fn plan(
    info: &CgroupInfo,
    self_cgroup: &str,
    leaf: &str,
    limits: &Limits,
) -> std::result::Result<Plan, String> {
    let wanted = limits.controllers();
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|c| !info.controllers.iter().any(|have| have == c))
        .collect();
    if info.version == Version::None || !missing.is_empty() {
        return Err(format!(
            "the cgroup controller{} {} {} not available (cgroup version {:?}, controllers: [{}])",
            if missing.len() > 1 { "s" } else { "" },
            missing.join(", "),
            if missing.len() > 1 { "are" } else { "is" },
            info.version,
            info.controllers.join(", ")
        ));
    }
    let root = Path::new(ROOT);
    if info.version == Version::V2 {
        let own = own_path(self_cgroup, "").ok_or("no unified (0::) line in /proc/self/cgroup")?;
        let (base, in_leaf) = base_of(root, "", own);
        let files = wanted
            .iter()
            .flat_map(|c| values(limits, c, true))
            .collect();
        let parent = base.join(PARENT);
        return Ok(Plan {
            version: Version::V2,
            dirs: vec![Dir {
                path: parent.join(leaf),
                parent,
                files,
            }],
            enable: wanted,
            self_leaf: (!in_leaf).then(|| base.join(SELF_LEAF)),
        });
    }
    let mut dirs = Vec::new();
    for c in wanted {
        let own =
            own_path(self_cgroup, c).ok_or_else(|| format!("no {c} line in /proc/self/cgroup"))?;
        let parent = base_of(root, c, own).0.join(PARENT);
        dirs.push(Dir {
            path: parent.join(leaf),
            parent,
            files: values(limits, c, false),
        });
    }
    Ok(Plan {
        version: Version::V1,
        dirs,
        enable: Vec::new(),
        self_leaf: None,
    })
}

/// The leaf name of a call's or context's cgroup: `sbx-CTX-PID`, PID the process that created
/// it, so a leaf left by a killed launcher is recognised (creator dead) and swept.
pub fn leaf_name(ctx: &str, creator_pid: u32) -> String {
    format!("sbx-{ctx}-{creator_pid}")
}

/// The creator pid in a leaf name made by [`leaf_name`].
pub fn leaf_creator(name: &str) -> Option<i32> {
    let rest = name.strip_prefix("sbx-")?;
    let (_, pid) = rest.rsplit_once('-')?;
    pid.parse().ok().filter(|p: &i32| *p > 0)
}

/// What planning `[limits]` reads of the host ([`crate::plan::host::cgroup::layout`]): gathered
/// only for a context that sets limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The cgroup tree belongs to root: without euid 0 nothing else is read.
    pub root: bool,
    pub info: CgroupInfo,
    /// `/proc/self/cgroup`, or why it cannot be read.
    pub self_cgroup: std::result::Result<String, String>,
}

/// The plan for `limits` on a host with `layout`, a leaf named for `pid` (pure); `Err` says why
/// the limits cannot be applied there (a launch refuses with it, `probe` reports it).
pub fn plan_on(
    layout: &Layout,
    ctx_name: &str,
    limits: &Limits,
    pid: u32,
) -> std::result::Result<Plan, String> {
    if !layout.root {
        return Err("the cgroup tree belongs to root".into());
    }
    let self_cgroup = layout.self_cgroup.as_deref().map_err(|e| e.to_string())?;
    plan(&layout.info, self_cgroup, &leaf_name(ctx_name, pid), limits)
}

/// What a launch does about `[limits]`: decided when it is planned, carried out when the cgroups
/// are made, where a refusal comes as a failed creation's does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No `[limits]` (or all empty).
    None,
    /// Make these cgroups.
    Make(Plan),
    /// They cannot be applied on this host, for this reason: [`unavailable`] says what then.
    Unavailable(String),
}

impl Decision {
    /// The decision for `limits` on a host with `layout` (read only when there are limits), the
    /// leaf named for `pid`.
    pub fn new(
        ctx_name: &str,
        limits: Option<&Limits>,
        layout: Option<&Layout>,
        pid: u32,
    ) -> Decision {
        let (Some(limits), Some(layout)) = (limits.filter(|l| !l.is_empty()), layout) else {
            return Decision::None;
        };
        match plan_on(layout, ctx_name, limits, pid) {
            Ok(p) => Decision::Make(p),
            Err(why) => Decision::Unavailable(why),
        }
    }

    /// The directories it makes (none unless [`Decision::Make`]).
    pub fn dirs(&self) -> Vec<PathBuf> {
        match self {
            Decision::Make(p) => p.dirs.iter().map(|d| d.path.clone()).collect(),
            _ => Vec::new(),
        }
    }
}

/// What to do when the limits cannot be applied (`why`): refuse (`Err`), or run without them,
/// with `Some(warning)` to print when that is worth saying (`degrade = true`).
pub fn unavailable(
    ctx_name: &str,
    limits: &Limits,
    degrade: bool,
    why: &str,
) -> Result<Option<String>> {
    if !limits.is_required() {
        // required = false: limits where possible; `probe` reports where they are not. No
        // warning per call, which would clutter every call's stderr on a rootless laptop.
        return Ok(None);
    }
    if degrade {
        return Ok(Some(format!(
            "context {ctx_name:?} runs degraded (degrade = true): no resource limits: {why}"
        )));
    }
    bail!(
        "cannot apply [context.{ctx_name}.limits]: {why}; run sbx-exec as root with the cgroup hierarchy mounted \
         (cgroup v2 on /sys/fs/cgroup, or the v1 pids/memory/cpu controllers), remove the limits, \
         set required = false in [context.{ctx_name}.limits], or degrade = true in [context.{ctx_name}]"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::limits::{Bytes, Cpus, SwapBytes};

    const V1_SELF: &str =
        "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/abc\n2:cpuacct:/\n1:cpu:/\n0::/\n";

    #[test]
    fn v1_paths_go_below_the_own_cgroup_of_each_controller() {
        let info = CgroupInfo {
            version: Version::V1,
            controllers: vec!["pids".into(), "memory".into(), "cpu".into()],
        };
        let limits = Limits {
            pids_max: Some(32),
            memory_max: Some(Bytes(1 << 30)),
            memory_swap_max: Some(SwapBytes(0)),
            cpu_max: Some(Cpus(0.5)),
            required: None,
        };
        let p = plan(&info, V1_SELF, "sbx-user-7", &limits).unwrap();
        assert_eq!(p.dirs.len(), 3);
        assert_eq!(
            p.dirs[0].path,
            Path::new("/sys/fs/cgroup/pids/sbx/sbx-user-7")
        );
        assert_eq!(p.dirs[0].parent, Path::new("/sys/fs/cgroup/pids/sbx"));
        assert_eq!(p.dirs[0].files, vec![("pids.max", "32".to_string())]);
        assert_eq!(
            p.dirs[1].path,
            Path::new("/sys/fs/cgroup/memory/process_api/abc/sbx/sbx-user-7")
        );
        assert_eq!(
            p.dirs[1].files,
            vec![
                ("memory.limit_in_bytes", (1u64 << 30).to_string()),
                ("memory.memsw.limit_in_bytes", (1u64 << 30).to_string())
            ]
        );
        assert_eq!(
            p.dirs[2].path,
            Path::new("/sys/fs/cgroup/cpu/sbx/sbx-user-7")
        );
        assert_eq!(
            p.dirs[2].files[1],
            ("cpu.cfs_quota_us", "50000".to_string())
        );
    }

    #[test]
    fn v2_is_one_directory_and_missing_controllers_are_named() {
        let info = CgroupInfo {
            version: Version::V2,
            controllers: vec!["pids".into(), "memory".into()],
        };
        let limits = Limits {
            pids_max: Some(8),
            ..Limits::default()
        };
        let p = plan(&info, "0::/user.slice/x\n", "sbx-u-1", &limits).unwrap();
        assert_eq!(p.dirs.len(), 1);
        assert_eq!(
            p.dirs[0].path,
            Path::new("/sys/fs/cgroup/user.slice/x/sbx/sbx-u-1")
        );
        assert_eq!(p.enable, vec!["pids"]);
        assert_eq!(
            p.self_leaf.as_deref(),
            Some(Path::new("/sys/fs/cgroup/user.slice/x/sbx-init"))
        );
        // Already in the sbx-init leaf: the base is its parent, nothing to move.
        let p = plan(&info, "0::/user.slice/x/sbx-init\n", "sbx-u-1", &limits).unwrap();
        assert_eq!(
            p.dirs[0].path,
            Path::new("/sys/fs/cgroup/user.slice/x/sbx/sbx-u-1")
        );
        assert_eq!(p.self_leaf, None);
        let mem = Limits {
            memory_max: Some(Bytes(64 << 20)),
            ..Limits::default()
        };
        let p = plan(&info, "0::/\n", "l", &mem).unwrap();
        assert!(p.dirs[0].files.contains(&("memory.oom.group", "1".into())));
        assert_eq!(leaf_creator("sbx-user-42"), Some(42));
        assert_eq!(leaf_creator("sbx-my-ctx-7"), Some(7));
        assert_eq!(leaf_creator("sbx-init"), None);
        let cpu = Limits {
            cpu_max: Some(Cpus(2.0)),
            ..Limits::default()
        };
        let err = plan(&info, "0::/\n", "l", &cpu).unwrap_err();
        assert!(err.contains("cpu is not available"), "{err}");
        let none = CgroupInfo {
            version: Version::None,
            controllers: vec![],
        };
        assert!(plan(&none, "", "l", &limits).is_err());
    }
}
