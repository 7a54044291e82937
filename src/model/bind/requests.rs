//! Which requests to its hosts a bound secret is added to: `methods = ["POST"]` and
//! `paths = ["/v1/messages"]` narrow a binding to some methods and path prefixes. Without them,
//! every request to a bound host gets the value (as before they existed).
//!
//! The rule, for a request the gate parsed strictly (origin-form, one `Host`):
//! - **methods**: the request's method is byte-equal to one listed (methods are case-sensitive;
//!   `GET` does not admit `HEAD`), and the request names no other method beside it: no
//!   [`METHOD_OVERRIDES`] header, no `_method` query parameter (however percent-encoded).
//! - **paths**: the request's path (its target up to the first `?`; the query is not part of it)
//!   must be *plain* ([`plain_path`]), and equal to a listed prefix or continue it with `/`
//!   (segment-aligned): `/v1/messages` covers `/v1/messages`, `/v1/messages/` and
//!   `/v1/messages/batches` (and `/v1/messages?beta=1`), not `/v1/messagesX`, `/v1/messages;x`
//!   nor `/v1/models`; `/` covers every plain path. Compared byte for byte, case-sensitive.
//! - A path that is not plain is never covered: a `.` or `..` segment (also before a `;`, as
//!   `..;`), an empty segment (`//`, `/;/`) but a final `/`, any byte but RFC 3986's path
//!   characters (so no `\`, space, `#` or non-ASCII), a `%XX` that decodes to `/`, `\`, `%`, `;`,
//!   an unreserved character (`A-Z a-z 0-9 - . _ ~`, which is never encoded but to dodge a
//!   match: `%2e%2e`) or a control byte, or a decoded path that is not UTF-8 (overlong forms
//!   such as `%c0%af`). Those are the spellings a host may read as another path than the one
//!   written (`/v1/messages/../models` is `/v1/models` to it), so the gate does not try to read
//!   them as the host would.
//!
//! A request outside these limits is still sent, with the placeholder left as it is: refusing it
//! would protect nothing more (the key is not added either way, and the placeholder is worth
//! nothing to the host it is bound to), and would break a client calling an endpoint that needs
//! no key. The gate's audit log says which secret was withheld and why (`secret-withheld`), never
//! the request's path.

use serde::{Deserialize, Serialize};

/// Most bytes of a method in `methods`.
const MAX_METHOD: usize = 32;
/// Most bytes of a prefix in `paths`.
const MAX_PATH: usize = 1024;

/// An HTTP method a binding is limited to: capital letters, digits, `-` and `_`, starting with
/// a letter (`POST`, `GET`, `VERSION-CONTROL`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Method(pub String);

impl TryFrom<String> for Method {
    type Error = LimitError;
    fn try_from(s: String) -> Result<Method, LimitError> {
        let ok = |b: u8| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'_';
        let token = !s.is_empty()
            && s.len() <= MAX_METHOD
            && s.as_bytes()[0].is_ascii_alphabetic()
            && s.bytes().all(|b| ok(b.to_ascii_uppercase()));
        match token {
            true if s.bytes().any(|b| b.is_ascii_lowercase()) => {
                Err(LimitError::MethodCase { given: s })
            }
            true => Ok(Method(s)),
            false => Err(LimitError::Method { given: s }),
        }
    }
}

impl From<Method> for String {
    fn from(m: Method) -> String {
        m.0
    }
}

/// A path prefix a binding is limited to: starts with `/`, plain characters only, no empty, `.`
/// or `..` segment, no trailing `/` (but `/` itself).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct PathPrefix(String);

impl PathPrefix {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Does this prefix cover `path` (a [`plain_path`]): the same path, or one below it?
    pub fn covers(&self, path: &str) -> bool {
        let p = self.0.as_str();
        p == "/" || path == p || path.strip_prefix(p).is_some_and(|r| r.starts_with('/'))
    }
}

impl TryFrom<String> for PathPrefix {
    type Error = LimitError;
    fn try_from(s: String) -> Result<PathPrefix, LimitError> {
        let bad = |e: fn(String) -> LimitError| Err(e(s.clone()));
        if !s.starts_with('/') {
            return bad(|given| LimitError::PathStart { given });
        }
        if s.len() > MAX_PATH {
            return bad(|given| LimitError::PathLong { given });
        }
        if s.contains(['?', '#']) {
            return bad(|given| LimitError::PathQuery { given });
        }
        if s.contains('%') {
            return bad(|given| LimitError::PathEncoded { given });
        }
        // Path characters but `;` (parameters are not matched) and `%` (above).
        if !s.bytes().all(|b| b != b';' && (b == b'/' || pchar(b))) {
            return bad(|given| LimitError::PathChar { given });
        }
        if s != "/" && s[1..].split('/').any(|seg| seg.bytes().all(|b| b == b'.')) {
            return bad(|given| LimitError::PathSegment { given });
        }
        Ok(PathPrefix(s))
    }
}

impl From<PathPrefix> for String {
    fn from(p: PathPrefix) -> String {
        p.0
    }
}

/// RFC 3986 unreserved: `A-Z a-z 0-9 - . _ ~`.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~".contains(&b)
}

/// RFC 3986 `pchar` but `%`: unreserved, sub-delims, `:` and `@`.
fn pchar(b: u8) -> bool {
    unreserved(b) || b"!$&'()*+,;=:@".contains(&b)
}

/// The path of an origin-form request target (up to the first `?`) when it is plain, else
/// `None` (the rule is in the module's doc).
pub fn plain_path(target: &str) -> Option<&str> {
    if target.contains('#') {
        return None;
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    let rest = path.strip_prefix('/')?;
    let b = path.as_bytes();
    let mut decoded = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = |c: Option<&u8>| c.and_then(|c| (*c as char).to_digit(16));
                let (Some(hi), Some(lo)) = (hex(b.get(i + 1)), hex(b.get(i + 2))) else {
                    return None;
                };
                let byte = (hi * 16 + lo) as u8;
                if unreserved(byte) || b"/\\%;".contains(&byte) || byte < 0x20 || byte == 0x7f {
                    return None;
                }
                decoded.push(byte);
                i += 3;
            }
            c if c == b'/' || pchar(c) => {
                decoded.push(c);
                i += 1;
            }
            _ => return None,
        }
    }
    std::str::from_utf8(&decoded).ok()?;
    let segments: Vec<&str> = rest.split('/').collect();
    let last = segments.len() - 1;
    for (n, seg) in segments.iter().enumerate() {
        let name = seg.split(';').next().unwrap_or("");
        // Dots only (`.`, `..`, also `..;x`), or empty (`//`, `/;x/`); a final `/` is fine.
        if name.bytes().all(|b| b == b'.') && !(n == last && seg.is_empty()) {
            return None;
        }
    }
    Some(path)
}

/// Headers that some frameworks take for the request's method over its request line.
pub const METHOD_OVERRIDES: &[&str] = &[
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Does the request name another method than its request line's, in a header
/// ([`METHOD_OVERRIDES`]) or a `_method` query parameter (`%5F` spellings too)?
fn overrides_method(target: &str, headers: &[(String, String)]) -> bool {
    let header = headers
        .iter()
        .any(|(n, _)| METHOD_OVERRIDES.iter().any(|o| n.eq_ignore_ascii_case(o)));
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let param = query.split('&').any(|p| {
        let key = p.split('=').next().unwrap_or("");
        percent_decoded(key).eq_ignore_ascii_case(b"_method")
    });
    header || param
}

/// `s` with every `%XX` decoded (a `%` not followed by two hex digits kept as is).
fn percent_decoded(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let hex = |c: Option<&u8>| c.and_then(|c| (*c as char).to_digit(16));
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (b[i], hex(b.get(i + 1)), hex(b.get(i + 2))) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// A binding's limits on requests (`methods`, `paths`); `None`: any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requests {
    pub methods: Option<Vec<Method>>,
    pub paths: Option<Vec<PathPrefix>>,
}

/// Why a request is outside a binding's limits. Names the policy key, never request data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outside {
    /// Its method is not one of `methods`.
    Method,
    /// It names another method in a header or `_method` parameter (with `methods`).
    MethodOverride,
    /// Its path is plain but under none of `paths`.
    Path,
    /// Its path is not plain ([`plain_path`]): never covered by `paths`.
    NotPlain,
}

impl Requests {
    /// Is a request with `method`, origin-form `target` and `headers` within the limits?
    pub fn admits(
        &self,
        method: &str,
        target: &str,
        headers: &[(String, String)],
    ) -> Result<(), Outside> {
        if let Some(methods) = &self.methods {
            if !methods.iter().any(|m| m.0 == method) {
                return Err(Outside::Method);
            }
            if overrides_method(target, headers) {
                return Err(Outside::MethodOverride);
            }
        }
        if let Some(paths) = &self.paths {
            let path = plain_path(target).ok_or(Outside::NotPlain)?;
            if !paths.iter().any(|p| p.covers(path)) {
                return Err(Outside::Path);
            }
        }
        Ok(())
    }

    /// Why a request is outside (for the audit log): the key and what it lists.
    pub fn explain(&self, why: Outside) -> String {
        let list = |items: Vec<&str>| items.join(", ");
        match why {
            Outside::Method => format!(
                "its method is not in the binding's methods ({})",
                list(self.methods.iter().flatten().map(|m| m.0.as_str()).collect())
            ),
            Outside::MethodOverride => "it names another method in a method-override header or a _method parameter, which the binding's methods never admit".to_string(),
            Outside::Path => format!(
                "its path is under none of the binding's paths ({})",
                list(self.paths.iter().flatten().map(|p| p.as_str()).collect())
            ),
            Outside::NotPlain => "its path has a dot or empty segment, or percent-encodes '/', '.', '\\', '%', ';', a letter, digit or control byte, which the binding's paths never match".to_string(),
        }
    }
}

/// A value of `methods` or `paths` that is not well-formed (each names the key and the fix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitError {
    Method { given: String },
    MethodCase { given: String },
    PathStart { given: String },
    PathLong { given: String },
    PathQuery { given: String },
    PathEncoded { given: String },
    PathChar { given: String },
    PathSegment { given: String },
}

impl std::fmt::Display for LimitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use LimitError as L;
        match self {
            L::Method { given } => write!(f, "secrets.bind methods: {given:?} is not an HTTP method; write it in capitals (letters, digits, '-' and '_', at most {MAX_METHOD}), e.g. methods = [\"POST\"]"),
            L::MethodCase { given } => write!(f, "secrets.bind methods: {given:?} is not in capitals; write {:?} (methods are case-sensitive and matched exactly)", given.to_ascii_uppercase()),
            L::PathStart { given } => write!(f, "secrets.bind paths: {given:?} does not start with '/'; write the path as requested, e.g. paths = [\"/v1/messages\"]"),
            L::PathLong { given } => write!(f, "secrets.bind paths: {:?}... is longer than {MAX_PATH} bytes; give a shorter prefix", given.chars().take(40).collect::<String>()),
            L::PathQuery { given } => write!(f, "secrets.bind paths: {given:?} holds '?' or '#'; paths match the path only, never the query: remove everything from the '?'"),
            L::PathEncoded { given } => write!(f, "secrets.bind paths: {given:?} holds '%'; write the characters themselves, not percent-encoded (a request whose path percent-encodes '/', '.', '\\', '%', ';', a letter or digit never matches)"),
            L::PathChar { given } => write!(f, "secrets.bind paths: {given:?} holds a character a plain path does not (only letters, digits, '/' and -._~!$&'()*+,=:@; no ';' parameters, no spaces, no '\\'); write the path as the host serves it"),
            L::PathSegment { given } => write!(f, "secrets.bind paths: {given:?} has an empty, '.' or '..' segment, or ends with '/'; write the prefix without them, e.g. \"/v1/messages\" (it covers \"/v1/messages/...\" too)"),
        }
    }
}

#[cfg(test)]
#[path = "requests_tests.rs"]
mod tests;
