//! The TOML policy: its types, strict parsing and validation, and where the effective policy comes from.
//!
//! Every field type validates itself while it is deserialized, so a bad value is reported by `toml`
//! with the file, line and column and what would be accepted; unknown keys are refused the same way
//! (`deny_unknown_fields`). Checks that span several keys run in [`Policy::validate`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

/// The policy built into the binary, identical to `policies/default.toml`.
pub const EMBEDDED_DEFAULT: &str = include_str!("../policies/default.toml");
/// Where the system-wide policy lives.
pub const SYSTEM_POLICY: &str = "/etc/sbx/policy.toml";

/// Where the effective policy was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `--policy FILE`
    Flag(PathBuf),
    /// `/etc/sbx/policy.toml`
    System(PathBuf),
    /// The embedded default.
    Embedded,
}

impl Source {
    /// The policy file on disk, if any (so it can be bound read-only in confined contexts).
    pub fn path(&self) -> Option<&Path> {
        match self {
            Source::Flag(p) | Source::System(p) => Some(p),
            Source::Embedded => None,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag(p) => write!(f, "{} (from --policy)", p.display()),
            Source::System(p) => write!(f, "{} (system policy)", p.display()),
            Source::Embedded => f.write_str("embedded default policy"),
        }
    }
}

/// A parsed and validated policy, with where it came from.
#[derive(Debug)]
pub struct Loaded {
    pub policy: Policy,
    pub source: Source,
    /// The exact text that was parsed (for `policy show`).
    pub text: String,
}

/// Find, read, parse and validate the effective policy: `--policy FILE`, else the system file, else
/// the embedded default.
pub fn load(flag: Option<&Path>) -> Result<Loaded> {
    let (source, text) = match flag {
        Some(path) => (Source::Flag(path.to_path_buf()), read_policy_file(path)?),
        None => {
            let system = Path::new(SYSTEM_POLICY);
            match std::fs::read_to_string(system) {
                Ok(text) => (Source::System(system.to_path_buf()), text),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    (Source::Embedded, EMBEDDED_DEFAULT.to_string())
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot read policy {SYSTEM_POLICY}"))
                }
            }
        }
    };
    let policy = Policy::parse(&text, &source.to_string())?;
    Ok(Loaded {
        policy,
        source,
        text,
    })
}

fn read_policy_file(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read policy {} (check the path given to --policy)",
            path.display()
        )
    })
}

/// Read and validate a policy file without running anything (`sbx-exec policy check`).
pub fn check_file(path: &Path) -> Result<Policy> {
    let text = read_policy_file(path)?;
    Policy::parse(&text, &path.display().to_string())
}

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
                check_abs_path(&s)?;
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
    /// What this context is for (shown by `policy show`).
    #[serde(default)]
    pub description: String,
    /// New namespaces: any of "pid", "mount", "ipc", "uts".
    #[serde(default)]
    pub namespaces: Vec<Namespace>,
    /// "host" shares the network; "none" gives an empty network namespace with loopback up.
    #[serde(default)]
    pub net: Net,
    /// Run even when the kernel cannot give some isolation, warning on stderr (default: refuse).
    #[serde(default)]
    pub degrade: bool,
    /// Kill the target after this many seconds and exit 124 (0 or absent: no limit).
    #[serde(default)]
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
    /// Keep the context's namespaces between calls (a keeper process is their pid 1); later calls
    /// join them, so processes of one call are seen by the next. Needs "pid" and "mount".
    #[serde(default)]
    pub persist: bool,
    /// Resource limits (cgroups) shared by all processes of a persistent context.
    #[serde(default)]
    pub limits: Option<crate::cgroup::Limits>,
    /// Setuid mode: which callers may use this context (absent: any caller). A caller matches by
    /// real uid or by any of its groups.
    #[serde(default)]
    pub allow_callers: Option<AllowCallers>,
    /// Rootless mode (not root, no setuid bit): "auto" creates a user namespace with the others when
    /// the kernel allows it; "never" does not (the launch is then refused unless `degrade`).
    #[serde(default)]
    pub userns: UserNs,
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

/// Control mode: how sbx-exec supervises the control plane.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Supervise {
    /// TCP ports bound (IPv4 and IPv6) before the control plane starts, handed to it as LISTEN_FDS.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// When to restart the control plane: "on-failure" (default), "always", "never".
    #[serde(default)]
    pub restart: Restart,
    /// Give up after this many restarts within `restart_window` seconds (default 5 in 60).
    #[serde(default = "default_max_restarts")]
    pub max_restarts: u32,
    #[serde(default = "default_restart_window")]
    pub restart_window: u64,
    /// First restart delay in milliseconds; doubles on each restart in the window, up to 10 s.
    #[serde(default = "default_restart_delay")]
    pub restart_delay_ms: u64,
    /// Seconds between SIGTERM and SIGKILL when stopping (default 10).
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout: u64,
}

fn default_max_restarts() -> u32 {
    5
}
fn default_restart_window() -> u64 {
    60
}
fn default_restart_delay() -> u64 {
    200
}
fn default_stop_timeout() -> u64 {
    10
}

/// Restart policy of the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    #[default]
    OnFailure,
    Always,
    Never,
}

impl Context {
    pub fn has(&self, ns: Namespace) -> bool {
        self.namespaces.contains(&ns)
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
}

impl Default for EnvPolicy {
    fn default() -> Self {
        EnvPolicy {
            allow: Vec::new(),
            set: BTreeMap::new(),
            hygiene: true,
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
    /// Made writable again below a read-only path (paths that do not exist are skipped).
    #[serde(default)]
    pub writable: Vec<AbsPath>,
    /// A fresh, empty, private tmpfs mounted here (nosuid, nodev).
    #[serde(default)]
    pub tmpfs: Vec<AbsPath>,
    /// Hidden: a directory becomes an empty read-only tmpfs, a file reads as empty.
    #[serde(default)]
    pub hide: Vec<AbsPath>,
}

impl FsPolicy {
    pub fn is_empty(&self) -> bool {
        self.read_only.is_empty()
            && self.writable.is_empty()
            && self.tmpfs.is_empty()
            && self.hide.is_empty()
    }
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

/// The network a context gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Net {
    #[default]
    Host,
    None,
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

/// Declares a string newtype that validates itself on deserialization (so errors carry spans).
macro_rules! checked_string {
    ($(#[$doc:meta])* $name:ident, $check:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(pub String);

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> std::result::Result<Self, String> {
                $check(&s).map(|()| $name(s))
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

checked_string!(
    /// A context name: lowercase letters, digits, `-` and `_`.
    ContextName,
    check_context_name
);
checked_string!(
    /// An environment variable name.
    EnvName,
    check_env_name
);
checked_string!(
    /// A variable name, or a prefix ending in `*`.
    EnvPattern,
    check_env_pattern
);
checked_string!(
    /// A fixed variable value (no NUL).
    EnvValue,
    check_env_value
);
checked_string!(
    /// An absolute, normalized path.
    AbsPath,
    check_abs_path
);
checked_string!(
    /// A capability name such as `"CHOWN"` or `"CAP_CHOWN"`, or `"ALL"`.
    CapName,
    check_cap_name
);

impl AbsPath {
    pub fn as_path(&self) -> &Path {
        Path::new(&self.0)
    }

    /// Is `p` this path or below it?
    pub fn contains(&self, p: &Path) -> bool {
        p.starts_with(self.as_path())
    }
}

impl EnvPattern {
    /// Does this pattern admit `name`?
    pub fn matches(&self, name: &str) -> bool {
        match self.0.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => self.0 == name,
        }
    }
}

impl CapName {
    /// The capability, unless this is `"ALL"`.
    pub fn capability(&self) -> Option<caps::Capability> {
        parse_cap(&self.0)
    }
}

fn parse_cap(s: &str) -> Option<caps::Capability> {
    let upper = s.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    full.parse().ok()
}

fn check_context_name(s: &str) -> std::result::Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid context name {s:?}: use 1-64 lowercase letters, digits, '-' or '_'"
        ))
    }
}

/// Is this a valid environment variable (and secret) name?
pub fn is_env_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

fn check_env_name(s: &str) -> std::result::Result<(), String> {
    if is_env_name(s) {
        Ok(())
    } else {
        Err(format!(
            "invalid variable name {s:?}: use letters, digits and '_', not starting with a digit"
        ))
    }
}

fn check_env_pattern(s: &str) -> std::result::Result<(), String> {
    let stem = s.strip_suffix('*').unwrap_or(s);
    if stem.is_empty() || is_env_name(stem) {
        Ok(())
    } else {
        Err(format!(
            "invalid name pattern {s:?}: use a variable name, or a prefix followed by '*' (\"LC_*\")"
        ))
    }
}

fn check_env_value(s: &str) -> std::result::Result<(), String> {
    if s.contains('\0') {
        Err("a variable value cannot contain a NUL byte".into())
    } else {
        Ok(())
    }
}

fn check_abs_path(s: &str) -> std::result::Result<(), String> {
    let normal = s == "/" || s[1..].split('/').all(|seg| !matches!(seg, "" | "." | ".."));
    if !s.starts_with('/') || s.contains('\0') {
        Err(format!("path {s:?} must be absolute (start with '/')"))
    } else if !normal {
        Err(format!(
            "path {s:?} must be normalized: no '.', '..', '//' or trailing '/'"
        ))
    } else {
        Ok(())
    }
}

fn check_cap_name(s: &str) -> std::result::Result<(), String> {
    if s == "ALL" || parse_cap(s).is_some() {
        Ok(())
    } else {
        Err(format!(
            "unknown capability {s:?}: use a name from capabilities(7) such as \"CHOWN\" or \"CAP_KILL\", or \"ALL\""
        ))
    }
}

impl Policy {
    /// Parse and validate policy text; `origin` names the file in error messages.
    pub fn parse(text: &str, origin: &str) -> Result<Policy> {
        let policy: Policy = toml::from_str(text).map_err(|e| {
            let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
            anyhow::anyhow!(
                "invalid policy {origin}:{line}:{col}: {}",
                e.message().trim_end()
            )
        })?;
        policy.validate(text, origin)?;
        Ok(policy)
    }

    /// Checks that involve several keys at once.
    fn validate(&self, text: &str, origin: &str) -> Result<()> {
        for (name, ctx) in &self.context {
            let here = || {
                let line = find_line(text, &format!("[context.{name}")).unwrap_or(0);
                format!("invalid policy {origin}:{line}: context \"{name}\"")
            };
            if ctx.has(Namespace::Pid) && !ctx.has(Namespace::Mount) {
                bail!(
                    "{}: namespace \"pid\" needs \"mount\" too, so that a private /proc showing only the context's processes can be mounted; add \"mount\" to namespaces",
                    here()
                );
            }
            if !ctx.fs.is_empty() && !ctx.has(Namespace::Mount) {
                bail!(
                    "{}: [fs] settings need the \"mount\" namespace; add \"mount\" to namespaces",
                    here()
                );
            }
            let all = ctx.security.keeps_all_caps();
            if all && ctx.security.caps.len() > 1 {
                bail!(
                    "{}: security.caps = [\"ALL\"] keeps every capability and cannot be combined with other names",
                    here()
                );
            }
            if ctx.security.seccomp == SeccompMode::Default && !ctx.security.no_new_privs {
                bail!(
                    "{}: seccomp = \"default\" needs no_new_privs = true (the kernel installs filters only then)",
                    here()
                );
            }
            if ctx.has(Namespace::Pid) {
                let never = crate::caps::NEVER_FOR_CONFINED;
                if all {
                    bail!("{}: a context with its own pid namespace is confined and cannot keep all capabilities (caps = [\"ALL\"]); list the ones it needs", here());
                }
                if let Some(c) = ctx
                    .security
                    .caps
                    .iter()
                    .find(|c| c.capability().is_some_and(|c| never.contains(&c)))
                {
                    bail!(
                        "{}: a confined context (own pid namespace) cannot keep {} because it can undo the sandbox; remove it from security.caps",
                        here(),
                        c
                    );
                }
            }
            if let Some(sup) = &ctx.supervise {
                if !ctx.namespaces.is_empty() || ctx.net != Net::Host {
                    bail!(
                        "{}: [supervise] (control mode) runs the control plane in the container's own namespaces, where it is not hidden from what it supervises; remove namespaces/net from this context",
                        here()
                    );
                }
                if sup.ports.contains(&0) {
                    bail!("{}: supervise.ports cannot contain 0", here());
                }
                let mut seen = sup.ports.clone();
                seen.sort_unstable();
                seen.dedup();
                if seen.len() != sup.ports.len() {
                    bail!("{}: supervise.ports lists a port twice", here());
                }
            }
            let sec = &ctx.security;
            if (!sec.deny_bind.is_empty() || !sec.deny_connect.is_empty() || sec.scope)
                && !sec.no_new_privs
            {
                bail!(
                    "{}: Landlock settings (deny_bind, deny_connect, scope) need no_new_privs = true",
                    here()
                );
            }
            if sec.run_as.is_some() && !sec.caps.is_empty() {
                bail!(
                    "{}: security.run_as switches to a non-root user, which keeps no capabilities; remove security.caps",
                    here()
                );
            }
            if sec.deny_bind.contains(&0) || sec.deny_connect.contains(&0) {
                bail!(
                    "{}: port 0 cannot be denied (it means \"any free port\"); list real ports",
                    here()
                );
            }
            if !ctx.secrets.files.is_empty() && !ctx.has(Namespace::Mount) {
                bail!(
                    "{}: secrets.files puts secrets on a private tmpfs, which needs the \"mount\" namespace; add \"mount\" to namespaces",
                    here()
                );
            }
            if let Some(f) = ctx
                .secrets
                .files
                .iter()
                .find(|f| !ctx.secrets.allow.iter().any(|a| a.matches(&f.0)))
            {
                bail!(
                    "{}: secrets.files lists {f}, which secrets.allow does not admit; add it to secrets.allow or remove it from files",
                    here()
                );
            }
            if ctx.security.seccomp == SeccompMode::None && ctx.security.allow_ptrace {
                bail!(
                    "{}: security.allow_ptrace only has a meaning with seccomp = \"default\"",
                    here()
                );
            }
            if let Err(why) = crate::persist::check_policy(ctx) {
                bail!("{}: {why}", here());
            }
        }
        Ok(())
    }

    /// The named context, or an error listing the ones that exist.
    pub fn context(&self, name: &str) -> Result<&Context> {
        self.context
            .iter()
            .find(|(n, _)| n.0 == name)
            .map(|(_, c)| c)
            .with_context(|| {
                let known: Vec<&str> = self.context.keys().map(|k| k.0.as_str()).collect();
                format!(
                    "unknown context {name:?}; this policy defines: {}",
                    if known.is_empty() {
                        "(none)".to_string()
                    } else {
                        known.join(", ")
                    }
                )
            })
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

fn find_line(text: &str, needle: &str) -> Option<usize> {
    text.lines()
        .position(|l| l.trim_start().starts_with(needle))
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Policy> {
        Policy::parse(text, "test.toml")
    }

    #[test]
    fn embedded_default_parses_and_has_the_three_contexts() {
        let p = parse(EMBEDDED_DEFAULT).unwrap();
        for name in ["control", "platform", "user"] {
            p.context(name).unwrap();
        }
        let user = p.context("user").unwrap();
        assert!(user.secrets.allow.is_empty(), "user must take no secrets");
        assert!(user.has(Namespace::Pid) && user.has(Namespace::Mount));
    }

    #[test]
    fn secrets_files_redact_and_audit_are_validated() {
        let ok = "version = 1\naudit = \"/var/log/sbx/audit.jsonl\"\n[context.p]\nnamespaces = [\"mount\"]\n[context.p.secrets]\nallow = [\"PG*\"]\nfiles = [\"PGPASSFILE\"]\nredact = true\n";
        let p = parse(ok).unwrap();
        assert_eq!(
            p.audit,
            Some(AuditTarget::File("/var/log/sbx/audit.jsonl".into()))
        );
        let c = p.context("p").unwrap();
        assert!(c.secrets.redact && c.secrets.files[0].0 == "PGPASSFILE");
        for a in ["stderr", "syslog"] {
            parse(&format!("version = 1\naudit = \"{a}\"\n")).unwrap();
        }
        let err = parse("version = 1\naudit = \"relative.log\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("test.toml:2:") && err.contains("absolute"),
            "{err}"
        );
        let err = parse(&ok.replace("namespaces = [\"mount\"]", "namespaces = []"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"mount\" namespace"), "{err}");
        let err = parse(&ok.replace("allow = [\"PG*\"]", "allow = [\"AWS_*\"]"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("PGPASSFILE") && err.contains("secrets.allow"),
            "{err}"
        );
    }

    #[test]
    fn unknown_key_names_line_and_column() {
        let err = parse("version = 1\n[context.x]\nnamespacez = []\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("test.toml:3:1"), "{err}");
        assert!(err.contains("unknown field `namespacez`"), "{err}");
        assert!(
            err.contains("namespaces"),
            "should list what is allowed: {err}"
        );
    }

    #[test]
    fn wrong_type_and_bad_values_are_refused_with_position() {
        let err = parse("version = 1\n[context.x]\ndegrade = \"yes\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("test.toml:3:"), "{err}");
        let err = parse("version = 1\n[context.x]\nnamespaces = [\"pid\", \"time\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("test.toml:3:") && err.contains("time"),
            "{err}"
        );
        let err = parse("version = 1\n[context.x]\nnamespaces = [\"mount\"]\n[context.x.fs]\nread_only = [\"usr\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("test.toml:5:") && err.contains("absolute"),
            "{err}"
        );
        let err = parse("version = 1\n[context.x.security]\ncaps = [\"SYS_WIZARD\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown capability"), "{err}");
        let err = parse("version = 2\n").unwrap_err().to_string();
        assert!(err.contains("version"), "{err}");
        let err = parse("version = 1\n[context.Bad]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("context name"), "{err}");
    }

    #[test]
    fn cross_key_rules() {
        let err = parse("version = 1\n[context.x]\nnamespaces = [\"pid\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("test.toml:2") && err.contains("\"mount\""),
            "{err}"
        );
        let err = parse("version = 1\n[context.x.fs]\ntmpfs = [\"/tmp\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("mount"), "{err}");
    }

    #[test]
    fn unknown_context_lists_known_ones() {
        let p = parse(EMBEDDED_DEFAULT).unwrap();
        let err = p.context("nope").unwrap_err().to_string();
        assert!(err.contains("control") && err.contains("user"), "{err}");
    }

    #[test]
    fn patterns_match() {
        let p = EnvPattern("LC_*".into());
        assert!(p.matches("LC_ALL") && !p.matches("LANG"));
        assert!(EnvPattern("*".into()).matches("ANY"));
        assert!(
            EnvPattern("PATH".into()).matches("PATH")
                && !EnvPattern("PATH".into()).matches("PATHX")
        );
        assert!(check_env_pattern("9X").is_err() && check_env_pattern("A-B*").is_err());
    }

    #[test]
    fn paths_must_be_normal() {
        for bad in ["rel", "/a/../b", "/a/./b", "/a//b", "/a/"] {
            assert!(check_abs_path(bad).is_err(), "{bad}");
        }
        for good in ["/", "/usr", "/usr/local/bin"] {
            assert!(check_abs_path(good).is_ok(), "{good}");
        }
    }
}
