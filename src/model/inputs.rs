//! What a call brings into a context: the environment (`env`), secrets (`secrets`) and the
//! program (`exec`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::*;

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
    #[serde(default = "super::yes")]
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
