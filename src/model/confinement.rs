//! How a context is walled in: its filesystem view (`fs`) and its privileges (`security`).

use serde::{Deserialize, Serialize};

use super::*;

/// The filesystem view, applied in this order inside the private mount namespace.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FsPolicy {
    /// Made read-only, recursively (`"/"` makes everything read-only).
    #[serde(default)]
    pub read_only: Vec<AbsPath>,
    /// Made writable again below a read-only path, nosuid and nodev there (paths that do not exist
    /// are skipped).
    #[serde(default)]
    pub writable: Vec<AbsPath>,
    /// A fresh, empty, private tmpfs mounted here (nosuid, nodev).
    #[serde(default)]
    pub tmpfs: Vec<AbsPath>,
    /// Hidden: a directory becomes an empty read-only tmpfs, a file reads as empty.
    #[serde(default)]
    pub hide: Vec<AbsPath>,
    /// Nothing below these paths can be executed or mapped executable (`noexec`, recursively;
    /// skipped where missing): where untrusted code writes, in a context holding secrets.
    #[serde(default)]
    pub noexec: Vec<AbsPath>,
    /// Symbolic links below these paths are not followed (`nosymfollow`): a link untrusted code
    /// planted there cannot redirect a write of the trusted tool.
    #[serde(default)]
    pub nosymfollow: Vec<AbsPath>,
    /// "private": a fresh /dev with only null, zero, full, random, urandom, tty, a new devpts
    /// instance (its own ptys), /dev/shm and the fd links; no host device node or pty. "host":
    /// the host's /dev. Absent: "private" when the context has the "pid" and "mount" namespaces.
    #[serde(default)]
    pub dev: Option<DevMode>,
    /// Host character devices added to the private /dev on purpose, at the same path
    /// (e.g. `["/dev/fuse"]`); each is checked to be a character device at launch.
    #[serde(default)]
    pub devices: Vec<AbsPath>,
    /// "private": a fresh read-only sysfs of the context's own network namespace on /sys (its
    /// /sys/class/net shows only its interfaces), whose /sys/fs/cgroup shows only the call's own
    /// cgroups, read-only; nothing of the container's or other calls' cgroups. "host" (the
    /// default): the container's /sys.
    #[serde(default)]
    pub sys: Option<SysMode>,
}

impl FsPolicy {
    pub fn is_empty(&self) -> bool {
        self.read_only.is_empty()
            && self.writable.is_empty()
            && self.tmpfs.is_empty()
            && self.hide.is_empty()
            && self.noexec.is_empty()
            && self.nosymfollow.is_empty()
            && self.dev != Some(DevMode::Private)
            && self.devices.is_empty()
            && self.sys != Some(SysMode::Private)
    }
}

/// Which /dev a context sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DevMode {
    Private,
    Host,
}

/// Which /sys a context sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SysMode {
    Private,
    Host,
}

/// Privilege settings applied to the target just before exec.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityPolicy {
    /// Capabilities kept (bounding, permitted, effective); `["ALL"]` keeps everything. Default: none.
    #[serde(default)]
    pub caps: Vec<CapName>,
    /// Set `no_new_privs` (setuid binaries and file capabilities grant nothing). Default: true.
    #[serde(default = "super::yes")]
    pub no_new_privs: bool,
    /// "default" installs sbx-exec's seccomp filter; "none" installs nothing.
    #[serde(default)]
    pub seccomp: SeccompMode,
    /// What a denied system call does: "errno" (fails with EPERM) or "kill" (kills the process).
    #[serde(default)]
    pub seccomp_action: SeccompAction,
    /// Let the target use ptrace on its own processes (seccomp denies it by default).
    #[serde(default)]
    pub allow_ptrace: bool,
    /// TCP ports the target may not bind (Landlock ABI >= 4), e.g. the control plane's.
    #[serde(default)]
    pub deny_bind: Vec<u16>,
    /// TCP ports the target may not connect to (Landlock ABI >= 4), e.g. the control API.
    #[serde(default)]
    pub deny_connect: Vec<u16>,
    /// Confine signals and abstract unix sockets to the context (Landlock ABI >= 6).
    #[serde(default)]
    pub scope: bool,
    /// Programs can be executed only below these paths (Landlock ABI >= 1; paths that do not exist
    /// are skipped); empty: no such rule. A second wall behind `fs.noexec`.
    #[serde(default)]
    pub exec_only_under: Vec<AbsPath>,
    /// Run the target as this uid/gid (supplementary groups: just `gid`); it then has no capabilities.
    #[serde(default)]
    pub run_as: Option<RunAs>,
}

/// A numeric user and group to run the target as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

impl Default for SecurityPolicy {
    fn default() -> Self {
        SecurityPolicy {
            caps: Vec::new(),
            no_new_privs: true,
            seccomp: SeccompMode::default(),
            seccomp_action: SeccompAction::default(),
            allow_ptrace: false,
            deny_bind: Vec::new(),
            deny_connect: Vec::new(),
            scope: false,
            exec_only_under: Vec::new(),
            run_as: None,
        }
    }
}

impl SecurityPolicy {
    /// True when `caps = ["ALL"]`: capabilities are left as they are.
    pub fn keeps_all_caps(&self) -> bool {
        self.caps.iter().any(|c| c.0 == "ALL")
    }
}

/// Which seccomp filter to install.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SeccompMode {
    #[default]
    None,
    Default,
}

/// What a system call denied by seccomp does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SeccompAction {
    #[default]
    Errno,
    Kill,
}
