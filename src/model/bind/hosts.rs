//! Where a bound secret works: host patterns (`api.example.com`, `*.example.com`) and the port.

use serde::{Deserialize, Serialize};

/// A bound host: `Exact("api.example.com")` or `Subdomains("example.com")` (`*.example.com`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum HostPattern {
    Exact(String),
    Subdomains(String),
}

impl HostPattern {
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(n) => host == n,
            HostPattern::Subdomains(d) => host
                .strip_suffix(d.as_str())
                .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.')),
        }
    }
}

impl TryFrom<String> for HostPattern {
    type Error = String;
    fn try_from(s: String) -> Result<HostPattern, String> {
        let bad = |why: &str| {
            format!("invalid bound host {s:?}: {why}; write a DNS name (api.example.com) or *.example.com")
        };
        let lower = s.to_ascii_lowercase();
        let lower = lower.strip_suffix('.').unwrap_or(&lower);
        let (sub, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower),
        };
        let labels: Vec<&str> = name.split('.').collect();
        let label_ok = |l: &&str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if name.is_empty() || name.len() > 253 || !labels.iter().all(label_ok) {
            return Err(bad("not a DNS name"));
        }
        if labels.len() < 2 {
            return Err(bad("a single label"));
        }
        if labels
            .last()
            .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(bad("an address, not a name"));
        }
        Ok(match sub {
            true => HostPattern::Subdomains(name.to_string()),
            false => HostPattern::Exact(name.to_string()),
        })
    }
}

impl From<HostPattern> for String {
    fn from(h: HostPattern) -> String {
        match h {
            HostPattern::Exact(n) => n,
            HostPattern::Subdomains(d) => format!("*.{d}"),
        }
    }
}

/// A bound host: a name pattern and the port (443 unless written `name:PORT`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct BoundHost {
    pub pattern: HostPattern,
    pub port: u16,
}

impl BoundHost {
    /// Does a request to `host:port` (lowercase, no trailing dot) go where the secret is bound?
    pub fn matches(&self, host: &str, port: u16) -> bool {
        self.port == port && self.pattern.matches(host)
    }

    /// A wildcard must cover names of one owner: `*.D` is refused when D is, or holds below it,
    /// a public suffix (the Public Suffix List: `*.amazonaws.com` holds `s3.amazonaws.com`,
    /// under which anyone names a bucket).
    pub(super) fn check_exclusive(&self) -> Result<(), super::BindViolation> {
        let HostPattern::Subdomains(d) = &self.pattern else {
            return Ok(());
        };
        match crate::model::public_suffix::shared_under(d) {
            Some(rule) => Err(super::BindViolation::SharedSuffix {
                domain: d.clone(),
                rule: rule.to_string(),
            }),
            None => Ok(()),
        }
    }
}

impl TryFrom<String> for BoundHost {
    type Error = String;
    fn try_from(s: String) -> Result<BoundHost, String> {
        let (name, port) = match s.rsplit_once(':') {
            Some((n, p)) => {
                let port = Some(p)
                    .filter(|p| {
                        !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
                    })
                    .and_then(|p| p.parse::<u16>().ok())
                    .filter(|&p| p > 0)
                    .ok_or_else(|| {
                        format!("invalid bound host {s:?}: the port after ':' must be 1-65535")
                    })?;
                (n.to_string(), port)
            }
            None => (s.clone(), 443),
        };
        Ok(BoundHost {
            pattern: HostPattern::try_from(name)?,
            port,
        })
    }
}

impl From<BoundHost> for String {
    fn from(h: BoundHost) -> String {
        let name = String::from(h.pattern);
        match h.port {
            443 => name,
            p => format!("{name}:{p}"),
        }
    }
}

impl HostPattern {
    /// The domain of the pattern (its name, or the `D` of `*.D`).
    pub fn domain(&self) -> &str {
        match self {
            HostPattern::Exact(n) | HostPattern::Subdomains(n) => n,
        }
    }
}
