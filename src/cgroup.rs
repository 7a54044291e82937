//! Resource limits of a persistent context through cgroups (v2 where mounted, else the v1
//! `pids`, `memory` and `cpu` hierarchies): the `[context.NAME.limits]` policy table, what this
//! machine offers ([`detect`], for `probe`), the directories and files to write (a pure plan,
//! unit-tested), and creating / joining / removing them.
//!
//! A cgroup limits resources; it hides nothing (processes are hidden by the pid namespace).

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

const ROOT: &str = "/sys/fs/cgroup";
/// v1 controllers sbx-exec uses, by the key that needs them.
const V1_CONTROLLERS: &[&str] = &["pids", "memory", "cpu"];
/// CFS period used for `cpu_max` (100 ms, the kernel's default).
const CPU_PERIOD_US: u64 = 100_000;

/// `[context.NAME.limits]`: limits shared by every process of a persistent context.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Most processes (and threads) at once, keeper included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_max: Option<u64>,
    /// Most memory in bytes: an integer, or a string with a K/M/G/T suffix ("512M", "2G").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_max: Option<Bytes>,
    /// CPU time as a number of CPUs (0.5 = half of one CPU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_max: Option<Cpus>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        self.pids_max.is_none() && self.memory_max.is_none() && self.cpu_max.is_none()
    }

    /// The v1 controllers these limits need.
    fn controllers(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.pids_max.is_some() {
            v.push("pids");
        }
        if self.memory_max.is_some() {
            v.push("memory");
        }
        if self.cpu_max.is_some() {
            v.push("cpu");
        }
        v
    }
}

/// A size in bytes; written in the policy as an integer or a string such as "512M".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "u64")]
pub struct Bytes(pub u64);

impl From<Bytes> for u64 {
    fn from(b: Bytes) -> u64 {
        b.0
    }
}

/// Parse "4096", "64K", "512M", "2G", "1T" (powers of 1024; a trailing "B"/"iB" is accepted).
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let bad = || {
        format!("invalid size {s:?}: use bytes as an integer, or a number with K, M, G or T (\"512M\", \"2G\")")
    };
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (num, shift) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 10),
        Some('M' | 'm') => (&t[..t.len() - 1], 20),
        Some('G' | 'g') => (&t[..t.len() - 1], 30),
        Some('T' | 't') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = num.parse().map_err(|_| bad())?;
    let v = n.checked_mul(1u64 << shift).ok_or_else(bad)?;
    if v == 0 {
        return Err(format!("invalid size {s:?}: must be more than 0"));
    }
    Ok(v)
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size in bytes (integer) or a string such as \"512M\" or \"2G\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<Bytes, E> {
                match u64::try_from(v) {
                    Ok(n) if n > 0 => Ok(Bytes(n)),
                    _ => Err(E::custom(format!("invalid size {v}: must be more than 0"))),
                }
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<Bytes, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<Bytes, E> {
                parse_size(v).map(Bytes).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A number of CPUs, more than 0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(into = "f64")]
pub struct Cpus(pub f64);

impl From<Cpus> for f64 {
    fn from(c: Cpus) -> f64 {
        c.0
    }
}

impl<'de> Deserialize<'de> for Cpus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        if (0.01..=4096.0).contains(&v) {
            Ok(Cpus(v))
        } else {
            Err(serde::de::Error::custom(format!(
                "invalid cpu_max {v}: give a number of CPUs from 0.01 up (0.5 = half a CPU)"
            )))
        }
    }
}

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
/// each, so that a process can move itself in (write "0") without opening a path later.
/// On failure, whatever was created is removed again.
pub fn create(plan: &Plan) -> Result<Vec<OwnedFd>> {
    let mut made: Vec<PathBuf> = Vec::new();
    let r = (|| {
        if let Some(parent) = plan.dirs.first().and_then(|d| d.path.parent()) {
            for c in &plan.enable {
                write_file(&parent.join("cgroup.subtree_control"), &format!("+{c}"))?;
            }
        }
        let mut procs = Vec::new();
        for d in &plan.dirs {
            std::fs::create_dir(&d.path)
                .with_context(|| format!("cannot create cgroup {}", d.path.display()))?;
            made.push(d.path.clone());
            for (file, value) in &d.files {
                write_file(&d.path.join(file), value)?;
            }
            let f = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(d.path.join("cgroup.procs"))
                .with_context(|| format!("cannot open {}/cgroup.procs", d.path.display()))?;
            procs.push(OwnedFd::from(f));
        }
        Ok(procs)
    })();
    if r.is_err() {
        remove(&made);
    }
    r
}

/// Open the `cgroup.procs` files of existing cgroups (a context's, recorded in its state).
pub fn open_procs(paths: &[PathBuf]) -> Result<Vec<OwnedFd>> {
    paths
        .iter()
        .map(|p| {
            OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(p.join("cgroup.procs"))
                .map(OwnedFd::from)
                .with_context(|| format!("cannot open {}/cgroup.procs", p.display()))
        })
        .collect()
}

fn write_file(path: &Path, value: &str) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    f.write_all(value.as_bytes())
        .with_context(|| format!("cannot write {value:?} to {}", path.display()))
}

/// Move the calling process into each cgroup (write "0" to its `cgroup.procs`). Allocation-free:
/// safe between fork and exec.
pub fn join(procs: &[OwnedFd]) -> std::io::Result<()> {
    for fd in procs {
        let mut f = File::from(fd.try_clone()?);
        f.write_all(b"0")?;
    }
    Ok(())
}

/// Remove cgroup directories (empty ones only; the kernel refuses others). Errors are ignored:
/// this is cleanup.
pub fn remove(paths: &[PathBuf]) {
    for p in paths {
        let _ = std::fs::remove_dir(p);
    }
}

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

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        for bad in ["", "M", "1.5G", "-1", "12X", "0", "99999999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_deserialize_from_integer_or_string() {
        let l: Limits =
            toml::from_str("pids_max = 32\nmemory_max = \"512M\"\ncpu_max = 0.5\n").unwrap();
        assert_eq!(l.pids_max, Some(32));
        assert_eq!(l.memory_max, Some(Bytes(512 << 20)));
        assert_eq!(l.cpu_max, Some(Cpus(0.5)));
        let l: Limits = toml::from_str("memory_max = 1048576\n").unwrap();
        assert_eq!(l.memory_max, Some(Bytes(1 << 20)));
        assert!(toml::from_str::<Limits>("memory_max = \"lots\"\n").is_err());
        assert!(toml::from_str::<Limits>("cpu_max = 0.0\n").is_err());
        assert!(toml::from_str::<Limits>("cpus = 1.0\n").is_err());
    }

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
