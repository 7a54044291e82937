//! Where the effective policy comes from: `--policy FILE`, else the system file, else the
//! embedded default.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use super::Policy;

/// The policy built into the binary, identical to `policies/default.toml`.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../policies/default.toml");
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

/// Read and validate a policy file without running anything (`sbx-exec policy check`); the
/// policy and its text (for the lines of warnings).
pub fn check_file(path: &Path) -> Result<(Policy, String)> {
    let text = read_policy_file(path)?;
    let p = Policy::parse(&text, &path.display().to_string())?;
    Ok((p, text))
}
