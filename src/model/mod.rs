//! The TOML policy: its types ([`Policy`], [`Context`] and one struct per table), strict parsing
//! and validation ([`validate`]), the checked value types ([`values`]), limits ([`limits`]) and
//! where the effective policy comes from ([`mod@load`]). Pure data: nothing here imports anything but
//! other `model` files.
//!
//! Every field type validates itself while it is deserialized, so a bad value is reported by `toml`
//! with the file, line and column and what would be accepted; unknown keys are refused the same way
//! (`deny_unknown_fields`). Checks that span several keys run in [`validate`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub mod bind;
pub mod egress;
pub mod env_names;
pub mod extends;
pub mod limits;
pub mod load;
pub mod net;
mod place;
pub mod public_suffix;
mod services;
pub mod supervise;
pub mod trust;
pub mod validate;
pub mod values;
pub mod weak;

pub use load::{check_file, load, Loaded, Source, EMBEDDED_DEFAULT, SYSTEM_POLICY};
pub use net::{Net, NetMode, NetRule, PortRange};
pub use supervise::{Restart, Service, Supervise};
pub use trust::trust_warnings;
pub use values::{is_env_name, AbsPath, CapName, ContextName, EnvName, EnvPattern, EnvValue};
pub use weak::weak_warnings;

/// The longest timeout a policy or `--timeout` may give (one year): durations stay far from any
/// overflow.
pub const MAX_TIMEOUT_SECS: u64 = 366 * 24 * 3600;

/// The PATH a target gets when the policy sets none (and the one setuid launches search).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A whole policy file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Format version; only `1` exists.
    pub version: Version,
    /// The contexts, by name.
    #[serde(default)]
    pub context: BTreeMap<ContextName, Context>,
    /// Where to write one JSON line per invocation (absent: no audit log).
    #[serde(default)]
    pub audit: Option<AuditTarget>,
}

/// Audit log destination: an absolute file path, `"stderr"` or `"syslog"` (`/dev/log`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum AuditTarget {
    File(std::path::PathBuf),
    Stderr,
    Syslog,
}

impl TryFrom<String> for AuditTarget {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        match s.as_str() {
            "stderr" => Ok(AuditTarget::Stderr),
            "syslog" => Ok(AuditTarget::Syslog),
            _ if s.starts_with('/') && s != "/" => {
                values::check_abs_path(&s)?;
                Ok(AuditTarget::File(s.into()))
            }
            _ => Err(format!(
                "invalid audit {s:?}: use an absolute file path (\"/var/log/sbx/audit.jsonl\"), \"stderr\" or \"syslog\""
            )),
        }
    }
}

impl From<AuditTarget> for String {
    fn from(a: AuditTarget) -> String {
        match a {
            AuditTarget::File(p) => p.display().to_string(),
            AuditTarget::Stderr => "stderr".into(),
            AuditTarget::Syslog => "syslog".into(),
        }
    }
}

/// One named context: what a launch in it gets and what it is denied.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Context {
    /// Start from this context (of the same file, else of the embedded default) and override
    /// its keys ([`extends`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extends: Option<String>,
    /// What this context is for (shown by `policy show`).
    #[serde(default)]
    pub description: String,
    /// New namespaces: any of "pid", "mount", "ipc", "uts".
    #[serde(default)]
    pub namespaces: Vec<Namespace>,
    /// "host" shares the network; "none" gives an empty network namespace with loopback up;
    /// "private" adds egress through sbx-exec's proxy (`allow`) and published ports (`publish`).
    #[serde(default)]
    pub net: Net,
    /// Run even when the kernel cannot give some isolation, warning on stderr (default: refuse).
    #[serde(default)]
    pub degrade: bool,
    /// Kill the target after this many seconds and exit 124 (0 or absent: no limit).
    #[serde(default, deserialize_with = "values::opt_seconds")]
    pub timeout: Option<u64>,
    #[serde(default)]
    pub env: EnvPolicy,
    #[serde(default)]
    pub secrets: SecretsPolicy,
    #[serde(default)]
    pub exec: ExecPolicy,
    #[serde(default)]
    pub fs: FsPolicy,
    #[serde(default)]
    pub security: SecurityPolicy,
    /// Control mode: supervise the command as a control plane, holding reserved ports.
    #[serde(default)]
    pub supervise: Option<Supervise>,
    /// Reserved ports (a control context's `supervise.ports`) this context may be handed as an
    /// inherited listening socket (`--listen-fd`, `--keep-fd`); a socket on any other reserved
    /// port is refused. Default: none.
    #[serde(default)]
    pub listen: Vec<u16>,
    /// Keep the context's namespaces between calls (a keeper process is their pid 1); later calls
    /// join them, so processes of one call are seen by the next. Needs "pid" and "mount".
    #[serde(default)]
    pub persist: bool,
    /// Resource limits (cgroups): per call for one-shot contexts, shared by all processes of a
    /// persistent context.
    #[serde(default)]
    pub limits: Option<crate::model::limits::Limits>,
    /// Setuid mode: which callers may use this context (absent: any caller). A caller matches by
    /// real uid or by any of its groups.
    #[serde(default)]
    pub allow_callers: Option<AllowCallers>,
    /// Rootless mode (not root, no setuid bit): "auto" creates a user namespace with the others when
    /// the kernel allows it; "never" does not (the launch is then refused unless `degrade`).
    #[serde(default)]
    pub userns: UserNs,
    /// Root mode: the target runs in a user namespace mapping its ids 0..count to the host ids
    /// uid..uid+count (gid likewise), so what it does outside (files, SO_PEERCRED, setuid bits)
    /// carries an unprivileged host id; inside it is still root. Needs "pid" (and so "mount").
    #[serde(default)]
    pub identity: Option<IdRange>,
    /// Where a command starts when the caller's directory is not part of the context (or with
    /// `--in-workdir`). Default: the first `fs.writable` area that exists inside, else `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<AbsPath>,
}

/// A range of host ids a context's user namespace maps its ids 0.. onto (`identity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IdRange {
    /// The host uid the sandbox's uid 0 becomes.
    pub uid: u32,
    /// The host gid the sandbox's gid 0 becomes.
    pub gid: u32,
    /// How many ids are mapped (the sandbox's 0..count); 65536 covers `nobody` (65534).
    pub count: u32,
}

/// Setuid mode: the callers allowed to use a context.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AllowCallers {
    #[serde(default)]
    pub uids: Vec<u32>,
    #[serde(default)]
    pub gids: Vec<u32>,
}

/// Whether a non-root launch creates a user namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UserNs {
    #[default]
    Auto,
    Never,
}

impl Context {
    pub fn has(&self, ns: Namespace) -> bool {
        self.namespaces.contains(&ns)
    }

    /// Whether the context gets a private /dev: `fs.dev`, or by default when it has its own pid
    /// and mount namespaces (a confined context).
    pub fn private_dev(&self) -> bool {
        match self.fs.dev {
            Some(DevMode::Private) => true,
            Some(DevMode::Host) => false,
            None => self.has(Namespace::Pid) && self.has(Namespace::Mount),
        }
    }

    /// Whether the context gets a private /sys: `fs.sys = "private"` (default: the host's).
    pub fn private_sys(&self) -> bool {
        self.fs.sys == Some(SysMode::Private)
    }

    /// Where a command starts when the caller's directory is not used, in the order tried:
    /// `workdir` alone when the policy names one; else the writable areas, then `/`.
    pub fn workdir_candidates(&self) -> Vec<std::path::PathBuf> {
        match &self.workdir {
            Some(w) => vec![w.as_path().to_path_buf()],
            None => self
                .fs
                .writable
                .iter()
                .map(|p| p.as_path().to_path_buf())
                .chain(std::iter::once(std::path::PathBuf::from("/")))
                .collect(),
        }
    }
}

/// The environment of the target: cleared, then rebuilt from this.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EnvPolicy {
    /// Caller variables passed through: exact names, or prefixes ending in `*` (`"LC_*"`; `"*"` = all).
    #[serde(default)]
    pub allow: Vec<EnvPattern>,
    /// Variables set to fixed values (after `allow`, before secrets).
    #[serde(default)]
    pub set: BTreeMap<EnvName, EnvValue>,
    /// Drop variables that inject code or config (`LD_*`, `BASH_ENV`, `NODE_OPTIONS`, `PGPASSFILE`...)
    /// even when `allow` matches them. Default: true.
    #[serde(default = "yes")]
    pub hygiene: bool,
    /// Variables a caller may set for one call with `--env NAME=VALUE` (names or prefixes ending
    /// in `*`); never an injection variable, never a secret's name. Default: none.
    #[serde(default)]
    pub caller: Vec<EnvPattern>,
}

impl Default for EnvPolicy {
    fn default() -> Self {
        EnvPolicy {
            allow: Vec::new(),
            set: BTreeMap::new(),
            hygiene: true,
            caller: Vec::new(),
        }
    }
}

/// Which secret names this context may receive on `--secrets-fd`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsPolicy {
    /// Names or prefixes ending in `*`; empty means the context takes no secrets at all.
    #[serde(default)]
    pub allow: Vec<EnvPattern>,
    /// Secrets delivered as a file on a private tmpfs (`$CREDENTIALS_DIRECTORY/NAME`, mode 0400);
    /// the variable NAME is set to the file's path instead of the value.
    #[serde(default)]
    pub files: Vec<EnvName>,
    /// Replace secret values (and their base64 form) in the target's stdout/stderr.
    #[serde(default)]
    pub redact: bool,
    /// Secrets bound to hosts (`[[context.NAME.secrets.bind]]`): the target gets a placeholder,
    /// the egress proxy adds the real value only on its way to a bound host ([`bind`]).
    #[serde(default)]
    pub bind: Vec<bind::Bind>,
    /// Seconds the writer of `--secrets-fd` has to send everything and close it (default 10,
    /// at least 1); after that the call is refused with 125 instead of waiting for ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_timeout: Option<u64>,
    /// Secrets every call needs (plain names, each admitted by `allow`): a call whose
    /// `--secrets-fd` is missing, empty or lacks one of them is refused with 125 naming the
    /// missing names, and nothing runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub require: Vec<EnvName>,
}

impl SecretsPolicy {
    /// The default of `secrets.read_timeout`, in seconds.
    pub const DEFAULT_READ_TIMEOUT: u64 = 10;

    /// How long `--secrets-fd` is read before the call is refused.
    pub fn read_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(
            self.read_timeout
                .unwrap_or(Self::DEFAULT_READ_TIMEOUT)
                .max(1),
        )
    }
}

/// Which programs may be run.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExecPolicy {
    /// Absolute paths of the programs allowed (after resolving symlinks); empty means any.
    #[serde(default)]
    pub allow: Vec<AbsPath>,
    /// Refuse a program unless it and every directory above it are owned by root and not writable
    /// by group or others (so nobody but root can have changed it).
    #[serde(default)]
    pub verify_owner: bool,
    /// Programs, or directories of programs, exempt from `verify_owner`.
    #[serde(default)]
    pub trusted: Vec<AbsPath>,
    /// Refuse programs below these directories (where untrusted code can write, e.g. /workspace).
    #[serde(default)]
    pub deny_under: Vec<AbsPath>,
}

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
    #[serde(default = "yes")]
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

fn yes() -> bool {
    true
}

impl SecurityPolicy {
    /// True when `caps = ["ALL"]`: capabilities are left as they are.
    pub fn keeps_all_caps(&self) -> bool {
        self.caps.iter().any(|c| c.0 == "ALL")
    }
}

/// Only policy format 1 exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "u32")]
pub struct Version;

impl From<Version> for u32 {
    fn from(_: Version) -> u32 {
        1
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match u32::deserialize(d)? {
            1 => Ok(Version),
            n => Err(serde::de::Error::custom(format!(
                "unsupported policy version {n}; this sbx-exec reads version = 1"
            ))),
        }
    }
}

/// A namespace a context can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Namespace {
    Pid,
    Mount,
    Ipc,
    Uts,
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
