//! The target's environment: cleared, then rebuilt from the context's allowlist, fixed values and
//! the secrets handed in, in that order.
//!
//! Some variables make a trusted program run code of someone else's choosing (`LD_PRELOAD`,
//! `BASH_ENV`, `NODE_OPTIONS`, ...) or read configuration from a path the caller picked
//! (`AWS_CONFIG_FILE`, `PGPASSFILE`, ...). They are dropped from the caller's environment even when
//! an allow pattern matches; only `env.set` can supply them, or a secret that `secrets.files` delivers
//! as a file (its variable then holds sbx-exec's path). The list is [`crate::model::env_names`]; a
//! secret with such a name is refused ([`crate::secrets::SecretSet::check_injection`]).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use zeroize::Zeroizing;

use crate::model::EnvPolicy;
use crate::secrets::{expose, SecretSet};

/// PATH used when neither the caller (through the allowlist) nor the policy sets one.
pub use crate::model::DEFAULT_PATH;

pub use crate::model::env_names::is_denied;

/// A prepared environment: `NAME=value\0` strings ready for `execve`, zeroized when dropped.
pub struct TargetEnv {
    entries: Vec<Zeroizing<Vec<u8>>>,
}

impl std::fmt::Debug for TargetEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl TargetEnv {
    /// The names set, in order (never the values).
    pub fn names(&self) -> Vec<String> {
        self.entries
            .iter()
            .map(|e| {
                let eq = e.iter().position(|&b| b == b'=').unwrap_or(e.len());
                String::from_utf8_lossy(&e[..eq]).into_owned()
            })
            .collect()
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&OsStr> {
        self.entries.iter().find_map(|e| {
            let rest = e.strip_prefix(name.as_bytes())?.strip_prefix(b"=")?;
            Some(OsStr::from_bytes(&rest[..rest.len() - 1]))
        })
    }

    /// NUL-terminated entries for `execve`; valid while `self` lives.
    pub fn as_ptrs(&self) -> Vec<*const libc::c_char> {
        self.entries
            .iter()
            .map(|e| e.as_ptr().cast())
            .chain(std::iter::once(std::ptr::null()))
            .collect()
    }

    fn set(&mut self, name: &[u8], value: &[u8]) {
        self.entries
            .retain(|e| !(e.starts_with(name) && e.get(name.len()) == Some(&b'=')));
        let mut e = Zeroizing::new(Vec::with_capacity(name.len() + value.len() + 2));
        e.extend_from_slice(name);
        e.push(b'=');
        e.extend_from_slice(value);
        e.push(0);
        self.entries.push(e);
    }
}

/// Build the environment from the caller's variables and the context's env policy; secrets are
/// added later with `TargetEnv::add_secrets` (tests) or [`TargetEnv::add_secrets_except`]. Variables with `=` in the name are skipped.
pub fn build(
    caller: impl IntoIterator<Item = (OsString, OsString)>,
    policy: &EnvPolicy,
) -> TargetEnv {
    let mut env = TargetEnv {
        entries: Vec::new(),
    };
    for (name, value) in caller {
        let Some(n) = name.to_str() else { continue };
        if n.is_empty() || n.contains('=') || value.as_bytes().contains(&0) {
            continue;
        }
        if (policy.hygiene && is_denied(n)) || !policy.allow.iter().any(|p| p.matches(n)) {
            continue;
        }
        env.set(n.as_bytes(), value.as_bytes());
    }
    for (name, value) in &policy.set {
        env.set(name.0.as_bytes(), value.0.as_bytes());
    }
    if env.get("PATH").is_none() {
        env.set(b"PATH", DEFAULT_PATH.as_bytes());
    }
    env
}

impl TargetEnv {
    /// Remove one variable, if present.
    pub fn remove(&mut self, name: &str) {
        let name = name.as_bytes();
        self.entries
            .retain(|e| !(e.starts_with(name) && e.get(name.len()) == Some(&b'=')));
    }

    /// The index of `name`'s entry in [`TargetEnv::as_ptrs`] (allocates nothing: used just before
    /// exec to fill in LISTEN_PID).
    pub fn position(&self, name: &str) -> Option<usize> {
        let name = name.as_bytes();
        self.entries
            .iter()
            .position(|e| e.starts_with(name) && e.get(name.len()) == Some(&b'='))
    }

    /// Set one variable (replacing it if present).
    pub fn set_var(&mut self, name: &str, value: &str) {
        self.set(name.as_bytes(), value.as_bytes());
    }

    /// Add the secrets, each as a variable of its name (overriding anything set before).
    #[cfg(test)]
    pub fn add_secrets(&mut self, secrets: &SecretSet) {
        for s in secrets.iter() {
            self.set(s.name.as_bytes(), expose(s).as_bytes());
        }
    }

    /// `TargetEnv::add_secrets` (tests) or [`TargetEnv::add_secrets_except`], leaving out those for which `skip` says yes (delivered as files).
    pub fn add_secrets_except(&mut self, secrets: &SecretSet, skip: impl Fn(&str) -> bool) {
        for s in secrets.iter().filter(|s| !skip(&s.name)) {
            self.set(s.name.as_bytes(), expose(s).as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EnvName, EnvPattern, EnvValue};

    fn caller(vars: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        vars.iter().map(|(k, v)| (k.into(), v.into())).collect()
    }

    fn policy(allow: &[&str], set: &[(&str, &str)]) -> EnvPolicy {
        EnvPolicy {
            allow: allow.iter().map(|a| EnvPattern(a.to_string())).collect(),
            set: set
                .iter()
                .map(|(k, v)| (EnvName(k.to_string()), EnvValue(v.to_string())))
                .collect(),
            hygiene: true,
            caller: Vec::new(),
        }
    }

    #[test]
    fn cleared_then_rebuilt_from_allowlist() {
        let env = build(
            caller(&[
                ("PATH", "/bin"),
                ("LC_ALL", "C"),
                ("AWS_SECRET_ACCESS_KEY", "k"),
                ("TERM", "xterm"),
            ]),
            &policy(&["PATH", "LC_*", "TERM"], &[("HOME", "/root")]),
        );
        assert_eq!(env.names(), vec!["PATH", "LC_ALL", "TERM", "HOME"]);
        assert!(env.get("AWS_SECRET_ACCESS_KEY").is_none());
    }

    #[test]
    fn injection_variables_are_dropped_even_when_allowed() {
        let env = build(
            caller(&[
                ("LD_PRELOAD", "/tmp/x.so"),
                ("BASH_ENV", "/tmp/x"),
                ("NODE_OPTIONS", "-r x"),
                ("PGPASSFILE", "/tmp/p"),
                ("OK", "1"),
            ]),
            &policy(&["*"], &[]),
        );
        assert_eq!(env.names(), vec!["OK", "PATH"]);
        assert_eq!(env.get("PATH").unwrap(), DEFAULT_PATH);
    }

    #[test]
    fn deny_list_covers_code_and_config_injection() {
        for name in [
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "LD_AUDIT",
            "BASH_ENV",
            "ENV",
            "PYTHONSTARTUP",
            "PYTHONPATH",
            "NODE_OPTIONS",
            "PERL5OPT",
            "RUBYOPT",
            "GIT_SSH_COMMAND",
            "GIT_EXEC_PATH",
            "GIT_DIR",
            "GIT_CONFIG_KEY_0",
            "GIT_CONFIG_PARAMETERS",
            "AWS_CONFIG_FILE",
            "AWS_SHARED_CREDENTIALS_FILE",
            "AWS_DATA_PATH",
            "PGPASSFILE",
            "PGSERVICEFILE",
            "PGSYSCONFDIR",
            "OPENSSL_CONF",
            "SSLKEYLOGFILE",
        ] {
            assert!(is_denied(name), "{name} must not be inherited");
        }
        for name in ["PATH", "LANG", "TERM", "AWS_REGION", "PGHOST"] {
            assert!(!is_denied(name), "{name} is harmless");
        }
    }

    #[test]
    fn secrets_come_last_and_can_supply_denied_names() {
        let secrets = crate::secrets::parse(b"PGPASSFILE=/run/p\nTOKEN=abc").unwrap();
        let mut env = build(
            caller(&[("TOKEN", "from-caller")]),
            &policy(&["TOKEN"], &[]),
        );
        env.add_secrets(&secrets);
        assert_eq!(env.get("TOKEN").unwrap(), "abc");
        assert_eq!(env.get("PGPASSFILE").unwrap(), "/run/p");
        assert!(!format!("{env:?}").contains("abc"));
    }
}
