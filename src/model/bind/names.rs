//! The names a binding gives: AWS services, regions and operations, and the header, scheme or
//! query parameter that holds a placeholder.

use serde::{Deserialize, Serialize};

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
