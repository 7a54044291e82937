//! Bound secrets (`[[context.NAME.secrets.bind]]`): a secret that works only where it belongs.
//! The target gets a placeholder of the same shape; the egress proxy, outside the sandbox, puts
//! the real value into requests to the bound hosts only (header, `Authorization` scheme or query
//! parameter), or re-signs AWS requests (`kind = "aws-sigv4"`). Everywhere else the placeholder
//! stays a placeholder.
//!
//! ```toml
//! [[context.agent.secrets.bind]]
//! name = "ANTHROPIC_API_KEY"
//! hosts = ["api.anthropic.com"]
//! header = "x-api-key"               # or: authorization = "Bearer", or: query = "key"
//!
//! [[context.agent.secrets.bind]]
//! kind = "aws-sigv4"                 # AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
//! hosts = ["*.amazonaws.com"]
//! ```
//!
//! Host patterns are written like the egress domain rules: `api.example.com` (that name only),
//! `*.example.com` (its subdomains, not the name itself). Names only: a secret is never bound to
//! an address, since the proxy must prove the upstream's name by its TLS certificate.

use serde::{Deserialize, Serialize};

use super::values::EnvName;

/// The variables a `kind = "aws-sigv4"` binding takes.
pub const AWS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
pub const AWS_SECRET: &str = "AWS_SECRET_ACCESS_KEY";
pub const AWS_TOKEN: &str = "AWS_SESSION_TOKEN";

/// One `[[context.NAME.secrets.bind]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Bind {
    /// The secret's name (for `kind = "value"`); absent for `aws-sigv4`, which binds the three
    /// AWS variables.
    #[serde(default)]
    pub name: Option<EnvName>,
    /// "value" (default): the value goes into one header, `Authorization` scheme or query
    /// parameter; "aws-sigv4": requests are re-signed with the real key.
    #[serde(default)]
    pub kind: BindKind,
    /// Where the secret works: `api.example.com` or `*.example.com`.
    pub hosts: Vec<HostPattern>,
    /// The header whose value holds the placeholder (`x-api-key`).
    #[serde(default)]
    pub header: Option<HeaderName>,
    /// The scheme of an `Authorization: SCHEME VALUE` header (`Bearer`).
    #[serde(default)]
    pub authorization: Option<HeaderName>,
    /// The query parameter holding the placeholder (`key`).
    #[serde(default)]
    pub query: Option<HeaderName>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BindKind {
    #[default]
    Value,
    AwsSigv4,
}

impl Bind {
    /// The secret names this entry binds.
    pub fn names(&self) -> Vec<&str> {
        match (self.kind, &self.name) {
            (BindKind::AwsSigv4, _) => vec![AWS_KEY_ID, AWS_SECRET, AWS_TOKEN],
            (BindKind::Value, Some(n)) => vec![n.0.as_str()],
            (BindKind::Value, None) => vec![],
        }
    }

    /// Does this entry bind the secret to `host` (lowercase, no trailing dot)?
    pub fn covers(&self, host: &str) -> bool {
        self.hosts.iter().any(|h| h.matches(host))
    }

    /// The cross-key check of one entry (`Err` says what to fix).
    pub fn check(&self) -> Result<(), String> {
        let slots = [&self.header, &self.authorization, &self.query]
            .iter()
            .filter(|s| s.is_some())
            .count();
        if self.hosts.is_empty() {
            return Err("secrets.bind: hosts is empty; name where the secret works, e.g. hosts = [\"api.example.com\"]".into());
        }
        match self.kind {
            BindKind::Value => {
                let Some(name) = &self.name else {
                    return Err("secrets.bind: name is missing; write name = \"SECRET_NAME\" (or kind = \"aws-sigv4\")".into());
                };
                if slots != 1 {
                    return Err(format!("secrets.bind for {}: give exactly one of header = \"x-api-key\", authorization = \"Bearer\" or query = \"key\"", name.0));
                }
            }
            BindKind::AwsSigv4 => {
                if self.name.is_some() || slots != 0 {
                    return Err("secrets.bind with kind = \"aws-sigv4\" binds AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN and re-signs requests: remove name, header, authorization and query".into());
                }
            }
        }
        Ok(())
    }
}

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

/// An HTTP header name, scheme or query parameter name: an RFC 9110 token, none of those that
/// frame the message or belong to the proxy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct HeaderName(pub String);

impl TryFrom<String> for HeaderName {
    type Error = String;
    fn try_from(s: String) -> Result<HeaderName, String> {
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if s.is_empty() || s.len() > 64 || !s.bytes().all(token) {
            return Err(format!(
                "invalid name {s:?}: use letters, digits and -_. (at most 64)"
            ));
        }
        let lower = s.to_ascii_lowercase();
        if matches!(
            lower.as_str(),
            "host" | "content-length" | "transfer-encoding" | "connection" | "te" | "upgrade"
        ) || lower.starts_with("proxy-")
        {
            return Err(format!(
                "{s:?} frames the request or belongs to the proxy; a secret cannot be bound to it"
            ));
        }
        Ok(HeaderName(s))
    }
}

impl From<HeaderName> for String {
    fn from(h: HeaderName) -> String {
        h.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(s: &str) -> Result<HostPattern, String> {
        HostPattern::try_from(s.to_string())
    }

    #[test]
    fn host_patterns_follow_the_egress_spelling() {
        assert_eq!(
            host("API.Anthropic.com.").unwrap(),
            HostPattern::Exact("api.anthropic.com".into())
        );
        let aws = host("*.amazonaws.com").unwrap();
        assert!(aws.matches("s3.us-east-1.amazonaws.com"));
        assert!(!aws.matches("amazonaws.com"));
        assert!(!aws.matches("evilamazonaws.com"));
        for bad in [
            "",
            "*",
            "*.com.",
            "localhost",
            "1.2.3.4",
            "a..b",
            "-a.b",
            "a b.c",
            "*.*.x.y",
        ] {
            assert!(host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn entries_need_one_slot_and_hosts() {
        let b = |toml: &str| toml::from_str::<Bind>(toml).map_err(|e| e.to_string());
        let ok = b("name = \"K\"\nhosts = [\"a.b\"]\nheader = \"x-api-key\"").unwrap();
        assert!(ok.check().is_ok());
        assert_eq!(ok.names(), ["K"]);
        assert!(b("name = \"K\"\nhosts = [\"a.b\"]\nheader = \"Host\"").is_err());
        assert!(b("name = \"K\"\nhosts = [\"a.b\"]\nheader = \"a:b\"").is_err());
        let two = b("name = \"K\"\nhosts = [\"a.b\"]\nheader = \"x\"\nquery = \"k\"").unwrap();
        assert!(two.check().unwrap_err().contains("exactly one"));
        let none = b("name = \"K\"\nhosts = [\"a.b\"]").unwrap();
        assert!(none.check().is_err());
        let aws = b("kind = \"aws-sigv4\"\nhosts = [\"*.amazonaws.com\"]").unwrap();
        assert!(aws.check().is_ok());
        assert_eq!(aws.names(), [AWS_KEY_ID, AWS_SECRET, AWS_TOKEN]);
        let aws_named = b("kind = \"aws-sigv4\"\nname = \"K\"\nhosts = [\"a.b\"]").unwrap();
        assert!(aws_named.check().is_err());
        let empty = b("name = \"K\"\nhosts = []\nheader = \"x\"").unwrap();
        assert!(empty.check().is_err());
        assert!(b("name = \"K\"\nhosts = [\"a.b\"]\nheader = \"x\"\ncolor = 1").is_err());
    }

    #[test]
    fn policy_rules_for_bound_secrets() {
        let policy = |ns: &str, allow: &str, extra: &str, bind: &str| {
            let text = format!("version = 1\n[context.a]\nnamespaces = [{ns}]\nnet = {{ mode = \"private\", allow = [\"api.anthropic.com\"] }}\n[context.a.secrets]\nallow = [{allow}]\n{extra}\n{bind}");
            crate::model::Policy::parse(&text, "t.toml").map_err(|e| e.to_string())
        };
        let key = "[[context.a.secrets.bind]]\nname = \"ANTHROPIC_API_KEY\"\nhosts = [\"api.anthropic.com\"]\nheader = \"x-api-key\"\n";
        let aws =
            "[[context.a.secrets.bind]]\nkind = \"aws-sigv4\"\nhosts = [\"*.amazonaws.com\"]\n";
        let both = format!("{key}{aws}");
        let p = policy("\"mount\"", "\"ANTHROPIC_*\", \"AWS_*\"", "", &both).unwrap();
        assert_eq!(p.context.values().next().unwrap().secrets.bind.len(), 2);
        let err = policy("", "\"ANTHROPIC_*\"", "", key).unwrap_err();
        assert!(err.contains("\"mount\""), "{err}");
        let err = policy("\"mount\"", "\"OTHER\"", "", key).unwrap_err();
        assert!(
            err.contains("ANTHROPIC_API_KEY, which secrets.allow does not admit"),
            "{err}"
        );
        let err = policy("\"mount\"", "\"AWS_ACCESS_KEY_ID\"", "", aws).unwrap_err();
        assert!(err.contains("AWS_SECRET_ACCESS_KEY"), "{err}");
        let err = policy(
            "\"mount\"",
            "\"ANTHROPIC_*\"",
            "files = [\"ANTHROPIC_API_KEY\"]",
            key,
        )
        .unwrap_err();
        assert!(err.contains("both in secrets.files"), "{err}");
        let err = policy("\"mount\"", "\"ANTHROPIC_*\"", "", &format!("{key}{key}")).unwrap_err();
        assert!(err.contains("bound twice"), "{err}");
        // Without the egress proxy a bound secret could not work: refused.
        let text = format!("version = 1\n[context.a]\nnamespaces = [\"mount\"]\n[context.a.secrets]\nallow = [\"ANTHROPIC_*\"]\n{key}");
        let err = crate::model::Policy::parse(&text, "t.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("egress proxy"), "{err}");
    }
}
