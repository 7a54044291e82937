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
//!
//! [[context.agent.secrets.bind]]
//! name = "OPENAI_API_KEY"
//! hosts = ["api.openai.com"]
//! authorization = "Bearer"
//! methods = ["POST"]                 # optional, any binding: only these requests get the value
//! paths = ["/v1/chat/completions"]   # (a path prefix, segment-aligned; see [`requests`])
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

mod hosts;
mod names;
pub mod requests;

pub use hosts::{BoundHost, HostPattern};
pub use names::{AwsName, HeaderName};
pub use requests::{Method, Outside, PathPrefix, Requests};

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
    /// The request methods that get the value (`["POST"]`; absent: any). Any kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<Method>>,
    /// The path prefixes that get the value (`["/v1/messages"]`, segment-aligned; absent: any
    /// path). Any kind. See [`requests`] for the rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<PathPrefix>>,
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

    /// The requests this entry's value is added to (`methods`, `paths`).
    pub fn requests(&self) -> Requests {
        Requests {
            methods: self.methods.clone(),
            paths: self.paths.clone(),
        }
    }

    /// Does this entry bind the secret to `host` (lowercase, no trailing dot), on any port?
    pub fn covers(&self, host: &str) -> bool {
        self.hosts.iter().any(|h| h.pattern.matches(host))
    }

    /// The cross-key check of one entry (`Err` says what to fix).
    pub fn check(&self) -> Result<(), BindViolation> {
        let slots = [&self.header, &self.authorization, &self.query]
            .iter()
            .filter(|s| s.is_some())
            .count();
        if self.hosts.is_empty() {
            return Err(BindViolation::NoHosts);
        }
        for h in &self.hosts {
            h.check_exclusive()?;
        }
        self.check_requests()?;
        let aws_only =
            !self.services.is_empty() || !self.regions.is_empty() || !self.actions.is_empty();
        match self.kind {
            BindKind::Value => {
                let Some(name) = &self.name else {
                    return Err(BindViolation::NoName);
                };
                if slots != 1 {
                    return Err(BindViolation::NotOneSlot {
                        name: name.0.clone(),
                    });
                }
                if aws_only {
                    return Err(BindViolation::AwsKeysOnValue {
                        name: name.0.clone(),
                    });
                }
            }
            BindKind::AwsSigv4 => {
                if self.name.is_some() || slots != 0 {
                    return Err(BindViolation::ValueKeysOnAws);
                }
                if self.services.is_empty() {
                    return Err(BindViolation::NoServices);
                }
                if let Some(s) = self
                    .services
                    .iter()
                    .find(|s| NEVER_SIGNED.contains(&s.0.as_str()))
                {
                    return Err(BindViolation::IssuerService {
                        service: s.0.clone(),
                    });
                }
                for a in &self.actions {
                    if NEVER_SIGNED_ACTIONS.iter().any(|(_, op)| *op == a.0) {
                        return Err(BindViolation::IssuerAction {
                            action: a.0.clone(),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// `methods` and `paths`, when given, list something, each item once.
    fn check_requests(&self) -> Result<(), BindViolation> {
        fn once(key: &'static str, items: Option<Vec<&str>>) -> Result<(), BindViolation> {
            let Some(items) = items else {
                return Ok(());
            };
            if items.is_empty() {
                return Err(BindViolation::EmptyLimit { key });
            }
            for (i, item) in items.iter().enumerate() {
                if items[..i].contains(item) {
                    return Err(BindViolation::RepeatedLimit {
                        key,
                        item: item.to_string(),
                    });
                }
            }
            Ok(())
        }
        let methods = self.methods.as_ref();
        once(
            "methods",
            methods.map(|m| m.iter().map(|m| m.0.as_str()).collect()),
        )?;
        let paths = self.paths.as_ref();
        once(
            "paths",
            paths.map(|p| p.iter().map(|p| p.as_str()).collect()),
        )
    }
}

/// A `[[context.NAME.secrets.bind]]` entry that is not well-formed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindViolation {
    NoHosts,
    /// `*.D` covers `rule`, a public suffix.
    SharedSuffix {
        domain: String,
        rule: String,
    },
    NoName,
    NotOneSlot {
        name: String,
    },
    AwsKeysOnValue {
        name: String,
    },
    ValueKeysOnAws,
    NoServices,
    IssuerService {
        service: String,
    },
    IssuerAction {
        action: String,
    },
    /// `methods = []` or `paths = []`: the value would never be used.
    EmptyLimit {
        key: &'static str,
    },
    RepeatedLimit {
        key: &'static str,
        item: String,
    },
}

impl std::fmt::Display for BindViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use BindViolation as B;
        match self {
            B::NoHosts => f.write_str("secrets.bind: hosts is empty; name where the secret works, e.g. hosts = [\"api.example.com\"]"),
            B::SharedSuffix { domain: d, rule } => write!(
                f,
                "secrets.bind: *.{d} covers {rule:?}, a suffix under which anyone can have a name (Public Suffix List), so the secret could be sent to a stranger's host; bind exact names instead, e.g. hosts = [\"bedrock-runtime.us-east-1.amazonaws.com\"]"
            ),
            B::NoName => f.write_str("secrets.bind: name is missing; write name = \"SECRET_NAME\" (or kind = \"aws-sigv4\")"),
            B::NotOneSlot { name } => write!(f, "secrets.bind for {}: give exactly one of header = \"x-api-key\", authorization = \"Bearer\" or query = \"key\"", name),
            B::AwsKeysOnValue { name } => write!(f, "secrets.bind for {}: services, regions and actions belong to kind = \"aws-sigv4\"; remove them", name),
            B::ValueKeysOnAws => f.write_str("secrets.bind with kind = \"aws-sigv4\" binds AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN and re-signs requests: remove name, header, authorization and query"),
            B::NoServices => f.write_str("secrets.bind with kind = \"aws-sigv4\": name the services it may sign for, e.g. services = [\"s3\"] (a key re-signed for any service could mint other credentials)"),
            B::IssuerService { service } => write!(f, "secrets.bind with kind = \"aws-sigv4\": {:?} issues credentials and is never re-signed (a placeholder would be traded for real, unbound keys); remove it from services and give the tool that needs it its own credentials in a trusted context", service),
            B::IssuerAction { action } => write!(f, "secrets.bind with kind = \"aws-sigv4\": action {:?} issues credentials and is never re-signed; remove it", action),
            B::EmptyLimit { key } => {
                let e = match *key {
                    "methods" => "methods = [\"POST\"]",
                    _ => "paths = [\"/v1/messages\"]",
                };
                write!(f, "secrets.bind: {key} = [] admits no request, so the secret would never be used; remove {key} to admit every one, or list some, e.g. {e}")
            }
            B::RepeatedLimit { key, item } => write!(f, "secrets.bind: {item:?} is listed twice in {key}; list it once"),
        }
    }
}

#[cfg(test)]
mod tests;
