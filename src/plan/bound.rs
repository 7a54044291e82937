//! Bound secrets of one call (`[[context.NAME.secrets.bind]]`, see [`crate::model::bind`]): which
//! handed secrets are bound, the placeholder each gets in the target's environment, and what the
//! egress proxy does with the real value for the bound hosts. Pure: the randomness for the
//! placeholders comes from the caller.
//!
//! The real values stay in [`SecretString`]s held by the proxy (outside the sandbox); the target
//! gets [`Bound::variables`] (placeholders) and a CA bundle ([`CA_VARIABLES`]) that trusts the
//! per-call CA with which the proxy intercepts TLS to bound hosts only.

use anyhow::{bail, Result};
use secrecy::{ExposeSecret, SecretString};

use crate::model::bind::{Bind, BindKind, BoundHost, Requests, AWS_KEY_ID, AWS_SECRET, AWS_TOKEN};
use crate::secrets::placeholder::placeholder;
use crate::secrets::{expose, SecretSet};

/// The variables naming the CA bundle (system CAs + the per-call CA), for OpenSSL and curl,
/// Node, Python requests, the AWS CLI/SDKs and git.
pub const CA_VARIABLES: &[&str] = &[
    "SSL_CERT_FILE",
    "NODE_EXTRA_CA_CERTS",
    "REQUESTS_CA_BUNDLE",
    "AWS_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "CURL_CA_BUNDLE",
];

/// A real value and the placeholder standing for it.
pub struct Swap {
    pub name: String,
    pub placeholder: String,
    pub real: SecretString,
}

impl std::fmt::Debug for Swap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Swap({}, placeholder {:?})", self.name, self.placeholder)
    }
}

impl Swap {
    pub fn real(&self) -> &str {
        self.real.expose_secret()
    }
}

/// How the proxy uses a bound secret on a request to one of its hosts.
#[derive(Debug)]
pub enum Use {
    /// The placeholder in this header's value is replaced.
    Header { header: String, value: Swap },
    /// `Authorization: SCHEME placeholder` becomes `SCHEME real`.
    Authorization { scheme: String, value: Swap },
    /// The query parameter whose value is the placeholder gets the real value.
    Query { param: String, value: Swap },
    /// A request signed (SigV4) with the placeholder key id is re-signed with the real key, when
    /// its credential scope and operation are within `scope`.
    Sigv4 {
        key_id: Swap,
        secret: Swap,
        token: Option<Swap>,
        scope: Scope,
    },
}

/// What an `aws-sigv4` binding may sign for (`services`, `regions`, `actions` of the policy).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    pub services: Vec<String>,
    /// Empty: any region.
    pub regions: Vec<String>,
    /// Empty: any operation but the credential-issuing ones.
    pub actions: Vec<String>,
}

/// One bound secret (or AWS key) and its hosts.
#[derive(Debug)]
pub struct Binding {
    pub hosts: Vec<BoundHost>,
    pub how: Use,
    /// The requests to those hosts that get the value (`methods`, `paths`).
    pub requests: Requests,
}

impl Binding {
    /// The name audit records give this binding (never a value).
    pub fn label(&self) -> &str {
        self.swaps()[0].name.as_str()
    }

    /// Is `host` (lowercase, no trailing dot) one of the binding's names, on any port? (Where a
    /// placeholder may go without being reported as exfiltration.)
    pub fn covers(&self, host: &str) -> bool {
        self.hosts.iter().any(|h| h.pattern.matches(host))
    }

    /// Is `host:port` where the real value is added?
    pub fn covers_at(&self, host: &str, port: u16) -> bool {
        self.hosts.iter().any(|h| h.matches(host, port))
    }

    pub fn swaps(&self) -> Vec<&Swap> {
        match &self.how {
            Use::Header { value, .. }
            | Use::Authorization { value, .. }
            | Use::Query { value, .. } => {
                vec![value]
            }
            Use::Sigv4 {
                key_id,
                secret,
                token,
                ..
            } => {
                let mut v = vec![key_id, secret];
                v.extend(token);
                v
            }
        }
    }
}

/// The bound secrets of one call.
#[derive(Debug, Default)]
pub struct Bound {
    pub bindings: Vec<Binding>,
}

impl Bound {
    /// The handed secrets that `binds` binds, each with a fresh placeholder; `None` when none is
    /// handed (no CA, no interception: a context without bound secrets pays nothing). An AWS key
    /// pair must be handed whole.
    pub fn split(
        set: &SecretSet,
        binds: &[Bind],
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> Result<Option<Bound>> {
        let mut swap = |name: &str| -> Option<Swap> {
            let s = set.iter().find(|s| s.name == name)?;
            Some(Swap {
                name: name.to_string(),
                placeholder: placeholder(expose(s), fill),
                real: SecretString::from(expose(s)),
            })
        };
        Bound::assemble(binds, &mut swap)
    }

    /// The bound secrets again, from their names, real values and placeholders (the gate process
    /// rebuilds the launch's [`Bound`] this way).
    pub fn rebuild(
        binds: &[Bind],
        values: &[(String, SecretString, String)],
    ) -> Result<Option<Bound>> {
        let mut swap = |name: &str| -> Option<Swap> {
            let (n, real, ph) = values.iter().find(|(n, _, _)| n == name)?;
            Some(Swap {
                name: n.clone(),
                placeholder: ph.clone(),
                real: real.clone(),
            })
        };
        Bound::assemble(binds, &mut swap)
    }

    fn assemble(
        binds: &[Bind],
        swap: &mut dyn FnMut(&str) -> Option<Swap>,
    ) -> Result<Option<Bound>> {
        let mut bindings = Vec::new();
        for b in binds {
            let how = match b.kind {
                BindKind::AwsSigv4 => match (swap(AWS_KEY_ID), swap(AWS_SECRET)) {
                    (Some(key_id), Some(secret)) => Use::Sigv4 {
                        key_id,
                        secret,
                        token: swap(AWS_TOKEN),
                        scope: Scope {
                            services: b.services.iter().map(|s| s.0.clone()).collect(),
                            regions: b.regions.iter().map(|s| s.0.clone()).collect(),
                            actions: b.actions.iter().map(|s| s.0.clone()).collect(),
                        },
                    },
                    (None, None) => continue,
                    _ => bail!("secrets.bind (aws-sigv4): hand both {AWS_KEY_ID} and {AWS_SECRET}, or neither"),
                },
                BindKind::Value => {
                    let Some(value) = b.name.as_ref().and_then(|n| swap(&n.0)) else {
                        continue;
                    };
                    match (&b.header, &b.authorization, &b.query) {
                        (Some(h), _, _) => Use::Header { header: h.0.clone(), value },
                        (_, Some(s), _) => Use::Authorization { scheme: s.0.clone(), value },
                        (_, _, Some(q)) => Use::Query { param: q.0.clone(), value },
                        _ => bail!("secrets.bind for {}: no header, authorization or query", value.name),
                    }
                }
            };
            bindings.push(Binding {
                hosts: b.hosts.clone(),
                how,
                requests: b.requests(),
            });
        }
        Ok((!bindings.is_empty()).then_some(Bound { bindings }))
    }

    /// Every bound value: name, real value, placeholder (for the gate process).
    pub fn values(&self) -> Vec<(String, SecretString, String)> {
        self.swaps()
            .map(|(_, s)| (s.name.clone(), s.real.clone(), s.placeholder.clone()))
            .collect()
    }

    /// Is the secret `name` bound (so its real value must stay out of the environment)?
    pub fn is_bound(bound: &Option<Bound>, name: &str) -> bool {
        bound
            .iter()
            .flat_map(|b| b.swaps())
            .any(|(_, s)| s.name == name)
    }

    /// Every swap of every binding, with its binding.
    pub fn swaps(&self) -> impl Iterator<Item = (&Binding, &Swap)> {
        self.bindings
            .iter()
            .flat_map(|b| b.swaps().into_iter().map(move |s| (b, s)))
    }

    /// The target's variables: NAME=placeholder for each bound secret.
    pub fn variables(&self) -> Vec<(String, String)> {
        self.swaps()
            .map(|(_, s)| (s.name.clone(), s.placeholder.clone()))
            .collect()
    }

    /// Is `host:port` (lowercase, no trailing dot) bound by any secret? Only those are
    /// intercepted.
    pub fn binds_host(&self, host: &str, port: u16) -> bool {
        self.bindings.iter().any(|b| b.covers_at(host, port))
    }
}

/// The `[[bind]]` tables of `toml_text` (for tests).
#[cfg(test)]
pub(crate) fn test_binds(toml_text: &str) -> Vec<Bind> {
    #[derive(serde::Deserialize)]
    struct T {
        bind: Vec<Bind>,
    }
    toml::from_str::<T>(toml_text).unwrap().bind
}

/// `secrets` (KEY=VALUE lines) split by the `[[bind]]` tables of `binds`, with random
/// placeholders (for tests; at least one secret must be bound).
#[cfg(test)]
pub(crate) fn test_bound(secrets: &str, binds: &str) -> Bound {
    let set = crate::secrets::parse(secrets.as_bytes()).unwrap();
    let mut fill = |b: &mut [u8]| getrandom::getrandom(b).unwrap();
    Bound::split(&set, &test_binds(binds), &mut fill)
        .unwrap()
        .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::test_binds as binds;

    const BINDS: &str = "[[bind]]\nname = \"ANTHROPIC_API_KEY\"\nhosts = [\"api.anthropic.com\"]\nheader = \"x-api-key\"\n[[bind]]\nkind = \"aws-sigv4\"\nhosts = [\"s3.amazonaws.com\", \"*.s3.us-east-1.sbx-test.example\"]\nservices = [\"s3\"]\n[[bind]]\nname = \"UNUSED\"\nhosts = [\"x.example\"]\nquery = \"key\"\n";

    #[test]
    fn only_handed_secrets_are_bound_with_fresh_placeholders() {
        let set = crate::secrets::parse(b"ANTHROPIC_API_KEY=sk-ant-api03-0123456789abcdefghij\nAWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\nAWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY\nOTHER=x\n").unwrap();
        let mut n = 0u8;
        let mut fill = |b: &mut [u8]| {
            for x in b {
                n = n.wrapping_add(37);
                *x = n;
            }
        };
        let bound = Bound::split(&set, &binds(BINDS), &mut fill).unwrap();
        let b = bound.as_ref().unwrap();
        assert_eq!(b.bindings.len(), 2);
        let vars = b.variables();
        let names: Vec<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "ANTHROPIC_API_KEY",
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY"
            ]
        );
        assert!(
            vars[0].1.starts_with("sk-ant-api03-") && !vars[0].1.contains("0123456789abcdefghij")
        );
        assert!(vars[1].1.starts_with("AKIA") && vars[1].1 != "AKIAIOSFODNN7EXAMPLE");
        assert!(Bound::is_bound(&bound, "AWS_SECRET_ACCESS_KEY"));
        assert!(!Bound::is_bound(&bound, "OTHER"));
        assert!(b.binds_host("s3.amazonaws.com", 443) && b.binds_host("api.anthropic.com", 443));
        assert!(!b.binds_host("example.com", 443) && !b.binds_host("api.anthropic.com", 8443));
        assert!(!b.binds_host("sts.amazonaws.com", 443));
        assert_eq!(b.bindings[1].label(), "AWS_ACCESS_KEY_ID");
        assert!(!format!("{bound:?}").contains("EXAMPLEKEY"));
        let none = crate::secrets::parse(b"OTHER=x").unwrap();
        assert!(Bound::split(&none, &binds(BINDS), &mut fill)
            .unwrap()
            .is_none());
        let half = crate::secrets::parse(b"AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE").unwrap();
        assert!(Bound::split(&half, &binds(BINDS), &mut fill).is_err());
    }
}
