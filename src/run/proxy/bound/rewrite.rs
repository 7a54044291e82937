//! The request of an intercepted connection: the swaps of placeholders for real values for the
//! host it goes to, exactly where the binding says and nowhere else, and the search for
//! placeholders going where they are not bound.
//!
//! A bound slot must hold exactly the placeholder: the header's whole value (`x-api-key: PH`),
//! `Authorization: SCHEME PH`, the query parameter's whole value (`key=PH`). A placeholder
//! anywhere else in the head (inside a longer value, in the path, in another header) is refused
//! with 400, never substituted: a substitution there is how an echo or a smuggled request would
//! carry the real value back. SigV4 is re-signed only for the binding's services, regions and
//! operations, never for one that issues credentials, and never for a presigned URL. A request
//! outside the binding's `methods` and `paths` ([`crate::model::bind::requests`]; SigV4 too: a
//! re-signature adds the key as surely as a header does) keeps its placeholder as it is, and is
//! reported as withheld.

use super::sigv4::{self, Authorization, Signable};
use crate::model::bind::{NEVER_SIGNED, NEVER_SIGNED_ACTIONS};
use crate::plan::bound::{Binding, Bound, Scope, Swap, Use};
use crate::run::proxy::http::{Bad, Head};

/// What [`apply`] did to a request: the labels of the bindings whose value it added, and of
/// those whose placeholder it carries in its slot but left as it is, the request being outside
/// the binding's `methods` or `paths` (with why, naming the key, never request data).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub added: Vec<String>,
    pub withheld: Vec<(String, String)>,
}

/// Put the real values of the bindings covering `host:port` and this request's method and path
/// into `head`. `body` is the request's whole body when it was read (SigV4 without
/// `x-amz-content-sha256`, or to find a query-protocol operation).
pub fn apply(
    head: &mut Head,
    host: &str,
    port: u16,
    bound: &Bound,
    body: Option<&[u8]>,
) -> Result<Applied, Bad> {
    let mine: Vec<&Binding> = bound
        .bindings
        .iter()
        .filter(|b| b.covers_at(host, port))
        .collect();
    // Every placeholder of these bindings must sit in its slot; checked before anything changes,
    // whether or not the request is within the binding's methods and paths.
    for b in &mine {
        if let Use::Sigv4 { key_id, .. } = &b.how {
            presigned(head, key_id)?;
        }
        for s in b.swaps() {
            stray(head, b, s)?;
        }
    }
    let mut done = Applied::default();
    for b in mine {
        if let Err(why) = b.requests.admits(&head.method, &head.target, &head.headers) {
            if carries(head, b) {
                let why = b.requests.explain(why);
                done.withheld.push((b.label().to_string(), why));
            }
            continue;
        }
        let hit = match &b.how {
            Use::Header { header, value } => swap_header(head, header, value),
            Use::Authorization { scheme, value } => swap_scheme(head, scheme, value),
            Use::Query { param, value } => swap_query(head, param, value),
            Use::Sigv4 {
                key_id,
                secret,
                token,
                scope,
            } => resign(head, (key_id, secret, token.as_ref()), scope, body)?,
        };
        if hit {
            done.added.push(b.label().to_string());
        }
    }
    Ok(done)
}

/// Does `head` hold `b`'s placeholder in `b`'s slot (where it would be replaced)?
fn carries(head: &Head, b: &Binding) -> bool {
    let header_is = |name: &str, hit: &dyn Fn(&str) -> bool| {
        head.headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case(name) && hit(v))
    };
    match &b.how {
        Use::Header { header, value } => header_is(header, &|v| v == value.placeholder),
        Use::Authorization { scheme, value } => header_is("authorization", &|v| {
            is_scheme(v, scheme, &value.placeholder)
        }),
        Use::Query { param, value } => head.target.split_once('?').is_some_and(|(_, q)| {
            q.split('&')
                .any(|p| p.split_once('=') == Some((param.as_str(), value.placeholder.as_str())))
        }),
        Use::Sigv4 { key_id, .. } => head
            .get("authorization")
            .and_then(Authorization::parse)
            .is_some_and(|a| a.key_id == key_id.placeholder),
    }
}

/// Refuse `s`'s placeholder anywhere but in `b`'s slot.
fn stray(head: &Head, b: &Binding, s: &Swap) -> Result<(), Bad> {
    let ph = s.placeholder.as_str();
    let refuse = |place: &str| {
        Err((
            400,
            format!(
                "the placeholder of {} is {place}; it is replaced only as the whole value of its bound slot",
                s.name
            ),
        ))
    };
    let in_slot = |name: &str, value: &str| -> bool {
        match &b.how {
            Use::Header { header, .. } => name.eq_ignore_ascii_case(header) && value == ph,
            Use::Authorization { scheme, .. } => {
                name.eq_ignore_ascii_case("authorization") && is_scheme(value, scheme, ph)
            }
            // SigV4's placeholders go in its Authorization and token headers, checked there.
            Use::Sigv4 { .. } => {
                name.eq_ignore_ascii_case("authorization")
                    || name.eq_ignore_ascii_case("x-amz-security-token")
            }
            Use::Query { .. } => false,
        }
    };
    for (name, value) in &head.headers {
        if value.contains(ph) && !in_slot(name, value) {
            return refuse(&format!("inside header {name}"));
        }
    }
    let in_target = match &b.how {
        Use::Query { param, .. } => {
            let (path, query) = head.target.split_once('?').unwrap_or((&head.target, ""));
            path.contains(ph)
                || query
                    .split('&')
                    .any(|p| p.contains(ph) && p != format!("{param}={ph}"))
        }
        _ => head.target.contains(ph),
    };
    if in_target {
        return refuse("in the request target");
    }
    Ok(())
}

fn is_scheme(value: &str, scheme: &str, ph: &str) -> bool {
    value
        .split_once(' ')
        .is_some_and(|(sch, token)| sch.eq_ignore_ascii_case(scheme) && token == ph)
}

fn swap_header(head: &mut Head, header: &str, s: &Swap) -> bool {
    let mut hit = false;
    for (n, v) in head.headers.iter_mut() {
        if n.eq_ignore_ascii_case(header) && *v == s.placeholder {
            *v = s.real().to_string();
            hit = true;
        }
    }
    hit
}

fn swap_scheme(head: &mut Head, scheme: &str, s: &Swap) -> bool {
    let mut hit = false;
    for (n, v) in head.headers.iter_mut() {
        if n.eq_ignore_ascii_case("authorization") && is_scheme(v, scheme, &s.placeholder) {
            let sch = v.split_once(' ').map_or("", |(a, _)| a).to_string();
            *v = format!("{sch} {}", s.real());
            hit = true;
        }
    }
    hit
}

fn swap_query(head: &mut Head, param: &str, s: &Swap) -> bool {
    let Some((path, query)) = head.target.split_once('?') else {
        return false;
    };
    let mut hit = false;
    let parts: Vec<String> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, v)) if k == param && v == s.placeholder => {
                hit = true;
                format!("{k}={}", sigv4::encode(s.real(), true))
            }
            _ => p.to_string(),
        })
        .collect();
    if hit {
        head.target = format!("{path}?{}", parts.join("&"));
    }
    hit
}

/// The operation a request names: `X-Amz-Target` (JSON protocols), else `Action=` in the query
/// or a form body (query protocols). REST requests name none.
pub fn operation(head: &Head, body: Option<&[u8]>) -> Option<String> {
    if let Some(t) = head.get("x-amz-target") {
        return t.rsplit('.').next().map(str::to_string);
    }
    let action = |q: &str| {
        q.split('&')
            .find_map(|p| p.strip_prefix("Action="))
            .map(str::to_string)
    };
    let query = head.target.split_once('?').map(|(_, q)| q);
    query.and_then(action).or_else(|| {
        let form = head
            .get("content-type")
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
        body.filter(|_| form)
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(action)
    })
}

/// Does the re-signing of this request need its body (no `x-amz-content-sha256`, or a form body
/// that may name the operation)? Never for a request outside the binding's methods and paths
/// (it is not re-signed).
pub fn needs_body(head: &Head, host: &str, port: u16, bound: &Bound) -> bool {
    let signed_by_us =
        head.get("authorization")
            .and_then(Authorization::parse)
            .is_some_and(|a| {
                bound.bindings.iter().any(|b| {
                b.covers_at(host, port)
                    && b.requests.admits(&head.method, &head.target, &head.headers).is_ok()
                    && matches!(&b.how, Use::Sigv4 { key_id, .. } if key_id.placeholder == a.key_id)
            })
            });
    let form = head
        .get("content-type")
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    signed_by_us && (head.get("x-amz-content-sha256").is_none() || form)
}

/// Re-sign a request the client signed with the placeholder key id, within `scope`; a request
/// signed with any other key is left alone.
fn resign(
    head: &mut Head,
    (key_id, secret, token): (&Swap, &Swap, Option<&Swap>),
    scope: &Scope,
    body: Option<&[u8]>,
) -> Result<bool, Bad> {
    presigned(head, key_id)?;
    let Some(mut auth) = head.get("authorization").and_then(Authorization::parse) else {
        return Ok(false);
    };
    if auth.key_id != key_id.placeholder {
        return Ok(false);
    }
    within_scope(&auth, scope, head, body)?;
    if let Some(t) = token {
        swap_header(head, "x-amz-security-token", t);
    }
    let hash = match (head.get("x-amz-content-sha256"), body) {
        (Some(h), _) if h.starts_with("STREAMING-AWS4-") => {
            return Err((501, "streaming signed payloads (STREAMING-AWS4-HMAC-SHA256-PAYLOAD) carry a signature per chunk by the placeholder key and are not re-signed; use UNSIGNED-PAYLOAD or a plain payload hash".into()))
        }
        (Some(h), _) => h.to_string(),
        (None, Some(b)) => sigv4::sha256_hex(b),
        (None, None) => return Err((411, "re-signing needs x-amz-content-sha256 or a Content-Length body".into())),
    };
    let amz_date = head
        .get("x-amz-date")
        .ok_or((
            400,
            "a SigV4 request without x-amz-date cannot be re-signed".to_string(),
        ))?
        .to_string();
    let req = Signable {
        method: &head.method,
        target: &head.target,
        headers: &head.headers,
        payload_hash: &hash,
    };
    auth.signature = sigv4::signature(&req, &auth, &amz_date, secret.real());
    auth.key_id = key_id.real().to_string();
    let value = auth.header_value();
    for (n, v) in head.headers.iter_mut() {
        if n.eq_ignore_ascii_case("authorization") {
            *v = value.clone();
        }
    }
    Ok(true)
}

/// Refuse a presigned URL made with the placeholder key: its signature would be in the URL.
fn presigned(head: &Head, key_id: &Swap) -> Result<(), Bad> {
    let made_here = head.target.split_once('?').is_some_and(|(_, q)| {
        q.split('&')
            .any(|p| p.starts_with("X-Amz-Credential=") && p.contains(key_id.placeholder.as_str()))
    });
    match made_here {
        true => Err((403, "a presigned URL made with the placeholder key is not re-signed (its signature would sit in the URL, where it is handed back)".into())),
        false => Ok(()),
    }
}

/// The credential scope's service and region, and the operation, within what the binding names;
/// never a credential issuer.
fn within_scope(
    auth: &Authorization,
    scope: &Scope,
    head: &Head,
    body: Option<&[u8]>,
) -> Result<(), Bad> {
    let service = auth.service();
    let op = operation(head, body);
    let refuse = |why: String| Err((403, format!("not re-signed: {why}")));
    if NEVER_SIGNED.contains(&service) {
        return refuse(format!(
            "{service} issues credentials; a bound key is never used to mint others"
        ));
    }
    if let Some(op) = &op {
        if NEVER_SIGNED_ACTIONS
            .iter()
            .any(|(s, a)| *s == service && a == op)
        {
            return refuse(format!(
                "{service} {op} issues credentials; a bound key is never used to mint others"
            ));
        }
    }
    if service == "codeartifact" && head.target.starts_with("/v1/authorization-token") {
        return refuse("codeartifact GetAuthorizationToken issues credentials".into());
    }
    if !scope.services.iter().any(|s| s == service) {
        return refuse(format!(
            "the binding signs for {:?}, not {service:?} (secrets.bind services)",
            scope.services
        ));
    }
    if !scope.regions.is_empty() && !scope.regions.iter().any(|r| r == auth.region()) {
        return refuse(format!(
            "region {:?} is not in the binding's regions",
            auth.region()
        ));
    }
    if !scope.actions.is_empty() {
        match &op {
            Some(op) if scope.actions.iter().any(|a| a == op) => {}
            Some(op) => return refuse(format!("operation {op} is not in the binding's actions")),
            None => {
                return refuse(
                    "the binding lists actions, and this request names none (a REST path)".into(),
                )
            }
        }
    }
    Ok(())
}

/// The placeholders to look for on the way to `host`: every swap of a binding not covering it.
pub fn foreign<'a>(bound: &'a Bound, host: &str) -> Vec<(&'a Binding, &'a Swap)> {
    bound.swaps().filter(|(b, _)| !b.covers(host)).collect()
}

/// Finds placeholders in a stream of bytes, across chunk boundaries; each one reported once.
pub struct Scanner<'a> {
    needles: Vec<(&'a Binding, &'a Swap)>,
    tail: Vec<u8>,
    found: Vec<&'a str>,
}

impl<'a> Scanner<'a> {
    pub fn new(needles: Vec<(&'a Binding, &'a Swap)>) -> Scanner<'a> {
        Scanner {
            needles,
            tail: Vec::new(),
            found: Vec::new(),
        }
    }

    /// Look through `data`; returns the names of the secrets whose placeholder first shows up
    /// in it.
    pub fn feed(&mut self, data: &[u8]) -> Vec<&'a str> {
        if self.needles.is_empty() {
            return Vec::new();
        }
        let mut window = std::mem::take(&mut self.tail);
        window.extend_from_slice(data);
        let mut new = Vec::new();
        for (_, s) in &self.needles {
            let p = s.placeholder.as_bytes();
            let name = s.name.as_str();
            if !p.is_empty()
                && !self.found.contains(&name)
                && window.windows(p.len()).any(|w| w.eq_ignore_ascii_case(p))
            {
                self.found.push(name);
                new.push(name);
            }
        }
        let keep = self
            .needles
            .iter()
            .map(|(_, s)| s.placeholder.len())
            .max()
            .unwrap_or(1)
            - 1;
        self.tail = window[window.len().saturating_sub(keep)..].to_vec();
        new
    }
}

#[cfg(test)]
#[path = "rewrite_tests.rs"]
mod tests;
