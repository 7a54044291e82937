//! The TOML policy: its types ([`Policy`], [`Context`] and one struct per table: the context's own
//! keys in `context.rs`, env, secrets and exec in `inputs.rs`, fs and security in
//! `confinement.rs`), strict parsing and validation ([`validate`]), the checked value types
//! ([`values`]), limits ([`limits`]) and where the effective policy comes from ([`mod@load`]). Pure
//! data: nothing here imports anything but other `model` files.
//!
//! Every field type validates itself while it is deserialized, so a bad value is reported by `toml`
//! with the file, line and column and what would be accepted; unknown keys are refused the same way
//! (`deny_unknown_fields`). Checks that span several keys run in [`validate`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub mod bind;
mod confinement;
mod context;
pub mod egress;
pub mod env_names;
pub mod extends;
mod inputs;
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

pub use confinement::{
    DevMode, FsPolicy, RunAs, SeccompAction, SeccompMode, SecurityPolicy, SysMode,
};
pub use context::{AllowCallers, Context, IdRange, Namespace, UserNs};
pub use inputs::{EnvPolicy, ExecPolicy, SecretsPolicy};
pub use load::{check_file, load, Loaded, Source, EMBEDDED_DEFAULT, SYSTEM_POLICY};
pub use net::{Net, NetMode, NetRule, NetViolation, PortRange};
pub use services::ServiceViolation;
pub use supervise::{Restart, Service, Supervise};
pub use trust::trust_warnings;
pub use validate::{PolicyError, Violation};
pub use values::{
    is_env_name, AbsPath, CapName, ContextName, EnvName, EnvPattern, EnvValue, OpName,
};
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

/// The default of keys that are on unless a policy turns them off.
fn yes() -> bool {
    true
}
