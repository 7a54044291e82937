//! The checked value types of the policy: each validates itself while it is deserialized, so a
//! bad value is reported by `toml` with the file, line and column and what would be accepted.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

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
    /// A platform operation's name (`ops`): a lowercase letter, then up to 62 lowercase letters,
    /// digits, `_` or `-`.
    OpName,
    check_op_name
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

    /// The capability's canonical name (`"CAP_CHOWN"`), unless this is `"ALL"`.
    pub fn canonical(&self) -> Option<String> {
        self.capability().map(|c| c.to_string())
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

fn check_op_name(s: &str) -> std::result::Result<(), String> {
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid operation name {s:?}: use a lowercase letter, then up to 62 lowercase letters, digits, '_' or '-'"
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

pub fn check_abs_path(s: &str) -> std::result::Result<(), String> {
    let Some(rest) = s.strip_prefix('/').filter(|_| !s.contains('\0')) else {
        return Err(format!("path {s:?} must be absolute (start with '/')"));
    };
    let normal = rest.is_empty() || rest.split('/').all(|seg| !matches!(seg, "" | "." | ".."));
    if !normal {
        Err(format!(
            "path {s:?} must be normalized: no '.', '..', '//' or trailing '/'"
        ))
    } else {
        Ok(())
    }
}

/// The longest duration a policy key may give (`timeout`, `stop_timeout`, `restart_window`,
/// `restart_delay_ms`): one year. Bounded at parse time so no launch can overflow a clock.
pub const MAX_SECONDS: u64 = 365 * 86_400;

fn bounded<'de, D: serde::Deserializer<'de>>(
    d: D,
    max: u64,
    unit: &str,
) -> std::result::Result<u64, D::Error> {
    let v = u64::deserialize(d)?;
    if v > max {
        return Err(serde::de::Error::custom(format!(
            "{v} {unit} is more than a year; give at most {max} {unit}"
        )));
    }
    Ok(v)
}

/// Deserialize a number of seconds, at most [`MAX_SECONDS`].
pub fn seconds<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<u64, D::Error> {
    bounded(d, MAX_SECONDS, "seconds")
}

/// Deserialize an optional number of seconds, at most [`MAX_SECONDS`].
pub fn opt_seconds<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<u64>, D::Error> {
    seconds(d).map(Some)
}

/// Deserialize a number of milliseconds, at most a year of them.
pub fn millis<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<u64, D::Error> {
    bounded(d, MAX_SECONDS * 1000, "milliseconds")
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

#[cfg(test)]
mod tests {
    use super::*;

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
        for bad in [
            "", "rel", "é/x", "ü", "/a/../b", "/a/./b", "/a//b", "/a/", "//", "/\0",
        ] {
            assert!(check_abs_path(bad).is_err(), "{bad}");
        }
        for good in ["/", "/usr", "/usr/local/bin"] {
            assert!(check_abs_path(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn durations_are_bounded_at_parse_time() {
        use crate::model::Policy;
        let p = |body: &str| Policy::parse(&format!("version = 1\n{body}"), "t.toml");
        for body in [
            "[context.a]\ntimeout = 9223372036854775807\n",
            "[context.a]\ntimeout = 31536001\n",
            "[context.a.supervise]\nstop_timeout = 9223372036854775807\n",
            "[context.a.supervise]\nrestart_window = 9223372036854775807\n",
            "[context.a.supervise]\nrestart_delay_ms = 9223372036854775807\n",
        ] {
            let e = format!("{:#}", p(body).unwrap_err());
            assert!(
                e.contains("t.toml:") && e.contains("more than a year"),
                "{e}"
            );
        }
        let ok = p("[context.a]\ntimeout = 31536000\n[context.b.supervise]\nstop_timeout = 5\n")
            .unwrap();
        assert_eq!(ok.context("a").unwrap().timeout, Some(MAX_SECONDS));
    }
}
