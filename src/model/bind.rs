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
//! hosts = ["bedrock-runtime.us-east-1.amazonaws.com"]
//! services = ["bedrock"]             # the credential scopes it re-signs (regions, actions: optional)
//! ```
//!
//! Host patterns are written like the egress domain rules: `api.example.com` (that name only),
//! `*.example.com` (its subdomains, not the name itself), with `:PORT` when it is not 443. Names
//! only: a secret is never bound to an address, since the proxy must prove the upstream's name by
//! its TLS certificate. A wildcard over a suffix many owners share (the Public Suffix List:
//! `*.amazonaws.com`, `*.execute-api.us-east-1.amazonaws.com`, `*.workers.dev`...) is refused:
//! anyone could own a name under it. `aws-sigv4` never re-signs for a service that issues
//! credentials ([`NEVER_SIGNED`]).

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
    /// Where the secret works: `api.example.com` or `*.example.com`, `:PORT` when not 443.
    pub hosts: Vec<BoundHost>,
    /// The header whose value holds the placeholder (`x-api-key`).
    #[serde(default)]
    pub header: Option<HeaderName>,
    /// The scheme of an `Authorization: SCHEME VALUE` header (`Bearer`).
    #[serde(default)]
    pub authorization: Option<HeaderName>,
    /// The query parameter holding the placeholder (`key`).
    #[serde(default)]
    pub query: Option<HeaderName>,
    /// `aws-sigv4`: the services whose credential scope is re-signed (`s3`, `bedrock`...);
    /// required, never one of [`NEVER_SIGNED`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<AwsName>,
    /// `aws-sigv4`: the regions a credential scope may name (empty: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<AwsName>,
    /// `aws-sigv4`: the operations re-signed (`GetObject`... as `X-Amz-Target` or `Action=`
    /// names them; empty: any but [`NEVER_SIGNED_ACTIONS`]). A request naming no operation (a
    /// REST path) is then refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<AwsName>,
}

/// AWS services whose every operation can issue or reach credentials: never re-signed, whatever
/// the policy says (STS, IAM, SSO and its OIDC, Cognito, the console sign-in).
pub const NEVER_SIGNED: &[&str] = &[
    "sts",
    "iam",
    "sso",
    "sso-oauth",
    "awsssoportal",
    "identitystore",
    "cognito-identity",
    "cognito-idp",
    "signin",
];

/// Operations of other services that hand out credentials or tokens usable elsewhere (service,
/// operation): never re-signed.
pub const NEVER_SIGNED_ACTIONS: &[(&str, &str)] = &[
    ("ecr", "GetAuthorizationToken"),
    ("ecr-public", "GetAuthorizationToken"),
    ("codeartifact", "GetAuthorizationToken"),
    ("redshift", "GetClusterCredentials"),
    ("redshift", "GetClusterCredentialsWithIAM"),
    ("redshift-serverless", "GetCredentials"),
    ("lightsail", "GetRelationalDatabaseMasterUserPassword"),
    ("lightsail", "CreateBucketAccessKey"),
    ("rds", "GenerateDbAuthToken"),
    ("eks", "GetToken"),
];

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

    /// Does this entry bind the secret to `host` (lowercase, no trailing dot), on any port?
    pub fn covers(&self, host: &str) -> bool {
        self.hosts.iter().any(|h| h.pattern.matches(host))
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
        for h in &self.hosts {
            h.check_exclusive()?;
        }
        let aws_only =
            !self.services.is_empty() || !self.regions.is_empty() || !self.actions.is_empty();
        match self.kind {
            BindKind::Value => {
                let Some(name) = &self.name else {
                    return Err("secrets.bind: name is missing; write name = \"SECRET_NAME\" (or kind = \"aws-sigv4\")".into());
                };
                if slots != 1 {
                    return Err(format!("secrets.bind for {}: give exactly one of header = \"x-api-key\", authorization = \"Bearer\" or query = \"key\"", name.0));
                }
                if aws_only {
                    return Err(format!("secrets.bind for {}: services, regions and actions belong to kind = \"aws-sigv4\"; remove them", name.0));
                }
            }
            BindKind::AwsSigv4 => {
                if self.name.is_some() || slots != 0 {
                    return Err("secrets.bind with kind = \"aws-sigv4\" binds AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN and re-signs requests: remove name, header, authorization and query".into());
                }
                if self.services.is_empty() {
                    return Err("secrets.bind with kind = \"aws-sigv4\": name the services it may sign for, e.g. services = [\"s3\"] (a key re-signed for any service could mint other credentials)".into());
                }
                if let Some(s) = self
                    .services
                    .iter()
                    .find(|s| NEVER_SIGNED.contains(&s.0.as_str()))
                {
                    return Err(format!("secrets.bind with kind = \"aws-sigv4\": {:?} issues credentials and is never re-signed (a placeholder would be traded for real, unbound keys); remove it from services and give the tool that needs it its own credentials in a trusted context", s.0));
                }
                for a in &self.actions {
                    if NEVER_SIGNED_ACTIONS.iter().any(|(_, op)| *op == a.0) {
                        return Err(format!("secrets.bind with kind = \"aws-sigv4\": action {:?} issues credentials and is never re-signed; remove it", a.0));
                    }
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
    fn check_exclusive(&self) -> Result<(), String> {
        let HostPattern::Subdomains(d) = &self.pattern else {
            return Ok(());
        };
        match super::public_suffix::shared_under(d) {
            Some(rule) => Err(format!(
                "secrets.bind: *.{d} covers {rule:?}, a suffix under which anyone can have a name (Public Suffix List), so the secret could be sent to a stranger's host; bind exact names instead, e.g. hosts = [\"bedrock-runtime.us-east-1.amazonaws.com\"]"
            )),
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

/// An AWS service, region or operation name: letters, digits and `-`, at most 64.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct AwsName(pub String);

impl TryFrom<String> for AwsName {
    type Error = String;
    fn try_from(s: String) -> Result<AwsName, String> {
        if s.is_empty()
            || s.len() > 64
            || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(format!(
                "invalid AWS name {s:?}: letters, digits and '-' (s3, us-east-1, GetObject)"
            ));
        }
        Ok(AwsName(s))
    }
}

impl From<AwsName> for String {
    fn from(a: AwsName) -> String {
        a.0
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
    fn bound_hosts_pin_the_port() {
        let h = |s: &str| BoundHost::try_from(s.to_string());
        let plain = h("api.example.com").unwrap();
        assert!(plain.matches("api.example.com", 443) && !plain.matches("api.example.com", 8443));
        let other = h("api.example.com:8443").unwrap();
        assert!(other.matches("api.example.com", 8443) && !other.matches("api.example.com", 443));
        assert_eq!(String::from(other), "api.example.com:8443");
        assert_eq!(String::from(plain), "api.example.com");
        for bad in [
            "a.example:0",
            "a.example:+1",
            "a.example:99999",
            "a.example:",
            "a.example: 1",
        ] {
            assert!(h(bad).is_err(), "{bad}");
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
        let aws = b(
            "kind = \"aws-sigv4\"\nhosts = [\"s3.us-east-1.amazonaws.com\"]\nservices = [\"s3\"]",
        )
        .unwrap();
        assert!(aws.check().is_ok());
        assert_eq!(aws.names(), [AWS_KEY_ID, AWS_SECRET, AWS_TOKEN]);
        // Services are required, never an issuer of credentials, and only for aws-sigv4.
        let no_svc = b("kind = \"aws-sigv4\"\nhosts = [\"s3.us-east-1.amazonaws.com\"]").unwrap();
        assert!(no_svc.check().unwrap_err().contains("services"));
        for issuer in ["sts", "iam", "sso", "cognito-identity"] {
            let e = b(&format!("kind = \"aws-sigv4\"\nhosts = [\"{issuer}.amazonaws.com\"]\nservices = [\"{issuer}\"]"))
                .unwrap()
                .check()
                .unwrap_err();
            assert!(e.contains("never re-signed"), "{e}");
        }
        let minting = b("kind = \"aws-sigv4\"\nhosts = [\"api.ecr.us-east-1.amazonaws.com\"]\nservices = [\"ecr\"]\nactions = [\"GetAuthorizationToken\"]").unwrap();
        assert!(minting.check().unwrap_err().contains("never re-signed"));
        let value_svc =
            b("name = \"K\"\nhosts = [\"a.b\"]\nheader = \"x\"\nservices = [\"s3\"]").unwrap();
        assert!(value_svc.check().unwrap_err().contains("aws-sigv4"));
        // A wildcard over a shared suffix is refused; over one owner's domain it is fine.
        for shared in [
            "*.amazonaws.com",
            "*.execute-api.us-east-1.amazonaws.com",
            "*.workers.dev",
            "*.herokuapp.com",
            "*.cloudfront.net",
        ] {
            let e = b(&format!(
                "name = \"K\"\nhosts = [\"{shared}\"]\nheader = \"x\""
            ))
            .unwrap()
            .check()
            .unwrap_err();
            assert!(e.contains("Public Suffix List"), "{shared}: {e}");
        }
        assert!(
            b("name = \"K\"\nhosts = [\"*.anthropic.com\"]\nheader = \"x\"")
                .unwrap()
                .check()
                .is_ok()
        );
        let aws_named =
            b("kind = \"aws-sigv4\"\nname = \"K\"\nhosts = [\"a.b\"]\nservices = [\"s3\"]")
                .unwrap();
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
            "[[context.a.secrets.bind]]\nkind = \"aws-sigv4\"\nhosts = [\"s3.us-east-1.amazonaws.com\"]\nservices = [\"s3\"]\n";
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
