//! One context (`[context.NAME]`): its top-level keys, and what it says about namespaces, callers
//! and identity. Its tables are in [`super::inputs`] and [`super::confinement`].

use serde::{Deserialize, Serialize};

use super::*;

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
    /// Control mode keeps this many single-use sandboxes of the context prepared (namespaces,
    /// mounts, network, cgroup), and a root-mode call claims one instead of building its own
    /// ([`crate::run::pool`]). 0: none. Needs "pid" and "mount".
    #[serde(default)]
    pub pool: u32,
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
    /// Platform operations user code may ask the control plane to perform (`POST
    /// http://sbx-ops/NAME` through the egress proxy, or `sbx-exec op NAME`; docs/ops.md).
    /// Needs the egress gate (`net.mode = "private"` with a non-empty `net.allow`) and
    /// /run/sbx hidden. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ops: Vec<OpName>,
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

/// A namespace a context can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Namespace {
    Pid,
    Mount,
    Ipc,
    Uts,
}
