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
        let hop = crate::run::proxy::request::hop_by_hop(&self.headers);
        let mut out = Zeroizing::new(Vec::with_capacity(1024));
        let mut put = |s: &str| crate::secrets::extend_zeroizing(&mut out, s.as_bytes());
        put(&self.method);
        put(" ");
        put(&self.target);
        put(" ");
        put(&self.version);
        put("\r\n");
        for (name, value) in &self.headers {
            if hop(name) {
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

#[cfg(test)]
mod tests {
    use super::*;

    use crate::plan::bound::test_bound as bound;

    const AWS: &str = "[[bind]]\nkind = \"aws-sigv4\"\nhosts = [\"*.amazonaws.com\"]\n";
    const REAL_ID: &str = "AKIAIOSFODNN7EXAMPLE";
    const REAL_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    #[test]
    fn sigv4_is_re_signed_with_the_real_key_and_only_when_signed_with_the_placeholder() {
        let b = bound(
            &format!("AWS_ACCESS_KEY_ID={REAL_ID}\nAWS_SECRET_ACCESS_KEY={REAL_SECRET}\nAWS_SESSION_TOKEN=FwoGZXIvYXdzEXAMPLETOKEN0123456789\n"),
            AWS,
        );
        let vars = b.variables();
        let (ph_id, ph_secret, ph_token) = (&vars[0].1, &vars[1].1, &vars[2].1);
        let mut headers = vec![
            (
                "Host".to_string(),
                "examplebucket.s3.amazonaws.com".to_string(),
            ),
            (
                "x-amz-content-sha256".to_string(),
                "UNSIGNED-PAYLOAD".to_string(),
            ),
            ("x-amz-date".to_string(), "20130524T000000Z".to_string()),
            ("X-Amz-Security-Token".to_string(), ph_token.clone()),
        ];
        let scope = "20130524/us-east-1/s3/aws4_request";
        let signed = "host;x-amz-content-sha256;x-amz-date;x-amz-security-token";
        let mut auth = Authorization::parse(&format!(
            "AWS4-HMAC-SHA256 Credential={ph_id}/{scope}, SignedHeaders={signed}, Signature=x"
        ))
        .unwrap();
        let sign = |h: &[(String, String)], a: &Authorization, secret: &str| {
            let req = Signable {
                method: "GET",
                target: "/test.txt?x=1",
                headers: h,
                payload_hash: "UNSIGNED-PAYLOAD",
            };
            sigv4::signature(&req, a, "20130524T000000Z", secret)
        };
        auth.signature = sign(&headers, &auth, ph_secret);
        headers.push(("Authorization".into(), auth.header_value()));
        let mut head = Head {
            method: "GET".into(),
            target: "/test.txt?x=1".into(),
            version: "HTTP/1.1".into(),
            headers: headers.clone(),
        };
        // Another host: untouched.
        assert!(apply(&mut head, "example.com", &b, None)
            .unwrap()
            .is_empty());
        let used = apply(&mut head, "examplebucket.s3.amazonaws.com", &b, None).unwrap();
        assert_eq!(used, ["AWS_ACCESS_KEY_ID"]);
        let got = Authorization::parse(head.get("authorization").unwrap()).unwrap();
        assert_eq!(got.key_id, REAL_ID);
        assert_eq!(
            head.get("x-amz-security-token"),
            Some("FwoGZXIvYXdzEXAMPLETOKEN0123456789")
        );
        // What AWS would compute with the real key over what is sent.
        let mut check = got.clone();
        check.signature = String::new();
        assert_eq!(got.signature, sign(&head.headers, &check, REAL_SECRET));
        // Signed with some other key: left alone.
        let mut other = Head {
            method: "GET".into(),
            target: "/".into(),
            version: "HTTP/1.1".into(),
            headers: vec![("Authorization".into(), format!("AWS4-HMAC-SHA256 Credential=AKIAOTHER/{scope}, SignedHeaders=host, Signature=abc"))],
        };
        assert!(apply(&mut other, "s3.amazonaws.com", &b, None)
            .unwrap()
            .is_empty());
        // Streaming signed payloads are refused, not forwarded with a bad signature.
        head.headers = headers;
        for (n, v) in head.headers.iter_mut() {
            if n == "x-amz-content-sha256" {
                *v = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD".into();
            }
        }
        assert!(apply(&mut head, "s3.amazonaws.com", &b, None).is_err());
    }

    #[test]
    fn the_scanner_finds_a_placeholder_split_across_chunks_once() {
        let b = bound(
            "K=sk-ant-api03-0123456789abcdefghijklmnop\n",
            "[[bind]]\nname = \"K\"\nhosts = [\"a.example\"]\nheader = \"x-api-key\"\n",
        );
        let ph = b.variables()[0].1.clone();
        let mut s = Scanner::new(foreign(&b, "other.example"));
        let (x, y) = ph.split_at(10);
        assert!(s.feed(format!("aaa{x}").as_bytes()).is_empty());
        assert_eq!(s.feed(format!("{y}bbb").as_bytes()), ["K"]);
        assert!(s.feed(ph.as_bytes()).is_empty(), "reported once");
        assert!(Scanner::new(foreign(&b, "a.example"))
            .feed(ph.as_bytes())
            .is_empty());
        let mut head = Head::parse(b"GET / HTTP/1.1\r\nx-api-key: other\r\n\r\n").unwrap();
        assert!(apply(&mut head, "a.example", &b, None).unwrap().is_empty());
    }
}
