//! The request of an intercepted connection: its head (owned, wiped when dropped, since it may
//! hold a real value), the swaps of placeholders for real values for the host it goes to, and
//! the search for placeholders going where they are not bound.

use zeroize::{Zeroize, Zeroizing};

use super::super::request::parse_request;
use super::sigv4::{self, Authorization, Signable};
use crate::plan::bound::{Binding, Bound, Swap, Use};

/// A parsed request head.
pub struct Head {
    pub method: String,
    pub target: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
}

impl Drop for Head {
    fn drop(&mut self) {
        self.target.zeroize();
        for (_, v) in &mut self.headers {
            v.zeroize();
        }
    }
}

impl Head {
    pub fn parse(bytes: &[u8]) -> Result<Head, String> {
        let r = parse_request(bytes).map_err(|d| d.reason)?;
        Ok(Head {
            method: r.method.to_string(),
            target: r.target.to_string(),
            version: r.version.to_string(),
            headers: r
                .headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn remove(&mut self, name: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// The head as sent upstream: hop-by-hop and `Proxy-*` headers dropped,
    /// `Connection: close` (one request per connection).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let hop: Vec<String> = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
            .flat_map(|(_, v)| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .collect();
        let mut out = Zeroizing::new(Vec::with_capacity(1024));
        let mut put = |s: &str| crate::secrets::extend_zeroizing(&mut out, s.as_bytes());
        put(&self.method);
        put(" ");
        put(&self.target);
        put(" ");
        put(&self.version);
        put("\r\n");
        for (name, value) in &self.headers {
            let lower = name.to_ascii_lowercase();
            if lower.starts_with("proxy-")
                || matches!(
                    lower.as_str(),
                    "connection" | "keep-alive" | "te" | "upgrade"
                )
                || hop.contains(&lower)
            {
                continue;
            }
            put(name);
            put(": ");
            put(value);
            put("\r\n");
        }
        put("Connection: close\r\n\r\n");
        out
    }
}

/// Put the real values of the bindings covering `host` into `head`; returns the labels of the
/// bindings used. `payload_hash` is the body's SHA-256 when SigV4 needs it and the client sent
/// no `x-amz-content-sha256`.
pub fn apply(
    head: &mut Head,
    host: &str,
    bound: &Bound,
    payload_hash: Option<&str>,
) -> Result<Vec<String>, String> {
    let mut used = Vec::new();
    for b in bound.bindings.iter().filter(|b| b.covers(host)) {
        let hit = match &b.how {
            Use::Header { header, value } => swap_header(head, header, value),
            Use::Authorization { scheme, value } => swap_scheme(head, scheme, value),
            Use::Query { param, value } => swap_query(head, param, value),
            Use::Sigv4 {
                key_id,
                secret,
                token,
            } => resign(head, key_id, secret, token.as_ref(), payload_hash)?,
        };
        if hit {
            used.push(b.label().to_string());
        }
    }
    Ok(used)
}

fn swap_header(head: &mut Head, header: &str, s: &Swap) -> bool {
    let mut hit = false;
    for (n, v) in head.headers.iter_mut() {
        if n.eq_ignore_ascii_case(header) && v.contains(&s.placeholder) {
            let mut old = std::mem::take(v);
            *v = old.replace(&s.placeholder, s.real());
            old.zeroize();
            hit = true;
        }
    }
    hit
}

fn swap_scheme(head: &mut Head, scheme: &str, s: &Swap) -> bool {
    let mut hit = false;
    for (n, v) in head.headers.iter_mut() {
        let Some((sch, token)) = v.split_once(' ') else {
            continue;
        };
        if n.eq_ignore_ascii_case("authorization")
            && sch.eq_ignore_ascii_case(scheme)
            && token.trim() == s.placeholder
        {
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

/// Re-sign a request the client signed with the placeholder key id; a request signed with any
/// other key is left alone.
fn resign(
    head: &mut Head,
    key_id: &Swap,
    secret: &Swap,
    token: Option<&Swap>,
    payload_hash: Option<&str>,
) -> Result<bool, String> {
    let Some(mut auth) = head.get("authorization").and_then(Authorization::parse) else {
        return Ok(false);
    };
    if auth.key_id != key_id.placeholder {
        return Ok(false);
    }
    if let Some(t) = token {
        swap_header(head, "x-amz-security-token", t);
    }
    let hash = match (head.get("x-amz-content-sha256"), payload_hash) {
        (Some(h), _) if h.starts_with("STREAMING-AWS4-HMAC-SHA256") => {
            return Err("streaming signed payloads (STREAMING-AWS4-HMAC-SHA256-PAYLOAD) cannot be re-signed by the proxy; use UNSIGNED-PAYLOAD or a plain payload hash".into())
        }
        (Some(h), _) => h.to_string(),
        (None, Some(h)) => h.to_string(),
        (None, None) => return Err("the request has no x-amz-content-sha256 and no body hash".into()),
    };
    let amz_date = head
        .get("x-amz-date")
        .ok_or("a SigV4 request without x-amz-date cannot be re-signed")?
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

/// Does SigV4 re-signing for `host` need the body's hash (a request signed with the placeholder
/// key and no `x-amz-content-sha256`)?
pub fn needs_body_hash(head: &Head, host: &str, bound: &Bound) -> bool {
    head.get("x-amz-content-sha256").is_none()
        && head
            .get("authorization")
            .and_then(Authorization::parse)
            .is_some_and(|a| {
                bound.bindings.iter().any(|b| {
                    b.covers(host)
                        && matches!(&b.how, Use::Sigv4 { key_id, .. } if key_id.placeholder == a.key_id)
                })
            })
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
