//! Resource limits through cgroups (v2 where mounted, else the v1 `pids`, `memory` and `cpu`
//! hierarchies): what this machine offers ([`detect`], for `probe`) and the directories and files
//! a context's limits need (a pure plan, unit-tested). [`crate::run::apply::cgroup`] creates,
//! joins and removes them.
//!
//! A cgroup limits resources; it hides nothing (processes are hidden by the pid namespace).

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use serde::Serialize;

use crate::model::limits::Limits;

const ROOT: &str = "/sys/fs/cgroup";
/// v1 controllers sbx-exec uses, by the key that needs them.
const V1_CONTROLLERS: &[&str] = &["pids", "memory", "cpu"];
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

/// One cgroup directory to create, the limit files to write in it, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dir {
    pub path: PathBuf,
    pub files: Vec<(&'static str, String)>,
}

/// The cgroups of one persistent context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub dirs: Vec<Dir>,
    /// v2: controllers to enable in the parent's `cgroup.subtree_control`.
    pub enable: Vec<&'static str>,
}

/// This process's cgroup path for `controller` ("" for v2's unified line) from /proc/self/cgroup.
fn own_path<'a>(self_cgroup: &'a str, controller: &str) -> Option<&'a str> {
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

/// Build the plan (pure): a directory `leaf` below this process's own cgroup in each hierarchy
/// the limits need. Errors name the missing controller.
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
    let values = |c: &str| -> Vec<(&'static str, String)> {
        let v2 = info.version == Version::V2;
        match c {
            "pids" => vec![("pids.max", limits.pids_max.unwrap_or(0).to_string())],
            "memory" => {
                let b = limits.memory_max.map_or(0, |b| b.0).to_string();
                vec![(
                    if v2 {
                        "memory.max"
                    } else {
                        "memory.limit_in_bytes"
                    },
                    b,
                )]
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
    };
    let under = |hier: &str, own: &str| {
        let mut p = PathBuf::from(ROOT);
        if !hier.is_empty() {
            p.push(hier);
        }
        p.push(own.trim_start_matches('/'));
        p.push(leaf);
        p
    };
    if info.version == Version::V2 {
        let own = own_path(self_cgroup, "").ok_or("no unified (0::) line in /proc/self/cgroup")?;
        let files = wanted.iter().flat_map(|c| values(c)).collect();
        return Ok(Plan {
            dirs: vec![Dir {
                path: under("", own),
                files,
            }],
            enable: wanted,
        });
    }
    let mut dirs = Vec::new();
    for c in wanted {
        let own =
            own_path(self_cgroup, c).ok_or_else(|| format!("no {c} line in /proc/self/cgroup"))?;
        dirs.push(Dir {
            path: under(c, own),
            files: values(c),
        });
    }
    Ok(Plan {
        dirs,
        enable: Vec::new(),
    })
}

/// Create the planned cgroups and write their limits. Returns an open `cgroup.procs` handle for
/// The leaf name of a context's cgroup: unique per keeper so that a stale one never collides.
pub fn leaf_name(ctx: &str, creator_pid: u32) -> String {
    format!("sbx-{ctx}-{creator_pid}")
}

/// The plan for `limits` on this host, below this process's own cgroups; `Err` says why the
/// limits cannot be applied here (a launch refuses with it, `probe` reports it).
fn plan_here(ctx_name: &str, limits: &Limits) -> std::result::Result<Plan, String> {
    let self_cgroup = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
    let leaf = leaf_name(ctx_name, std::process::id());
    plan(&detect(), &self_cgroup, &leaf, limits)
}

/// Can `limits` be applied on this host? (What `probe` asks; the launch asks [`plan_for`].)
pub fn limits_available(ctx_name: &str, limits: &Limits) -> std::result::Result<(), String> {
    plan_here(ctx_name, limits).map(drop)
}

/// Refuse (unless `degrade`) when the limits cannot be applied; `Ok(None)` when degraded.
pub fn plan_for(ctx_name: &str, limits: &Limits, degrade: bool) -> Result<Option<Plan>> {
    match plan_here(ctx_name, limits) {
        Ok(p) => Ok(Some(p)),
        Err(why) if degrade => {
            eprintln!("sbx-exec: warning: context {ctx_name:?} runs degraded (degrade = true): no resource limits: {why}");
            Ok(None)
        }
        Err(why) => bail!(
            "cannot apply [context.{ctx_name}.limits]: {why}; mount the cgroup hierarchy (cgroup v2 on /sys/fs/cgroup, \
             or the v1 pids/memory/cpu controllers), remove the limits, or set degrade = true in [context.{ctx_name}]"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::limits::{Bytes, Cpus};

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
            cpu_max: Some(Cpus(0.5)),
        };
        let p = plan(&info, V1_SELF, "sbx-user-7", &limits).unwrap();
        assert_eq!(p.dirs.len(), 3);
        assert_eq!(p.dirs[0].path, Path::new("/sys/fs/cgroup/pids/sbx-user-7"));
        assert_eq!(p.dirs[0].files, vec![("pids.max", "32".to_string())]);
        assert_eq!(
            p.dirs[1].path,
            Path::new("/sys/fs/cgroup/memory/process_api/abc/sbx-user-7")
        );
        assert_eq!(
            p.dirs[1].files,
            vec![("memory.limit_in_bytes", (1u64 << 30).to_string())]
        );
        assert_eq!(p.dirs[2].path, Path::new("/sys/fs/cgroup/cpu/sbx-user-7"));
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
            Path::new("/sys/fs/cgroup/user.slice/x/sbx-u-1")
        );
        assert_eq!(p.enable, vec!["pids"]);
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
