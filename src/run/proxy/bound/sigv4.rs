//! AWS Signature Version 4 (header form), just what re-signing needs: the client signed the
//! request with the placeholder key; the proxy recomputes the signature over the same signed
//! headers, date and scope with the real key. Written after the AWS specification
//! ("Create a signed AWS API request", the sig-v4 test suite) with `ring`'s HMAC-SHA256 and
//! SHA-256 (already in the tree for rustls), rather than the `aws-sigv4` crate, whose tree
//! (aws-smithy-*, http 0.2 and 1.x, time, tracing...) is several times the size of this file.
//!
//! Rules followed (as botocore and the SDKs sign): canonical URI = the path as sent for S3, and
//! the path as sent URI-encoded once more for every other service; canonical query = parameters
//! decoded and re-encoded (RFC 3986 unreserved kept), sorted by name then value; canonical
//! headers = the signed ones, lowercase, values trimmed with inner runs of spaces folded, repeats
//! joined with `,`; payload hash = `x-amz-content-sha256` when sent, else SHA-256 of the body.
//! Streaming signed payloads (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`, whose chunks carry
//! signatures by the placeholder key) and presigned URLs are not re-signed.

use ring::{digest, hmac};

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub key_id: String,
    /// `20150830/us-east-1/service/aws4_request`
    pub scope: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

impl Authorization {
    pub fn parse(value: &str) -> Option<Authorization> {
        let rest = value.trim().strip_prefix(ALGORITHM)?.trim_start();
        let (mut cred, mut signed, mut sig) = (None, None, None);
        for part in rest.split(',') {
            let (k, v) = part.trim().split_once('=')?;
            match k {
                "Credential" => cred = Some(v),
                "SignedHeaders" => signed = Some(v),
                "Signature" => sig = Some(v),
                _ => return None,
            }
        }
        let (key_id, scope) = cred?.split_once('/')?;
        let parts: Vec<&str> = scope.split('/').collect();
        if parts.len() != 4 || parts[3] != "aws4_request" || parts[0].len() != 8 {
            return None;
        }
        Some(Authorization {
            key_id: key_id.to_string(),
            scope: scope.to_string(),
            signed_headers: signed?.split(';').map(str::to_string).collect(),
            signature: sig?.to_string(),
        })
    }

    fn scope_part(&self, i: usize) -> &str {
        self.scope.split('/').nth(i).unwrap_or("")
    }

    pub fn date(&self) -> &str {
        self.scope_part(0)
    }
    pub fn region(&self) -> &str {
        self.scope_part(1)
    }
    pub fn service(&self) -> &str {
        self.scope_part(2)
    }

    pub fn header_value(&self) -> String {
        format!(
            "{ALGORITHM} Credential={}/{}, SignedHeaders={}, Signature={}",
            self.key_id,
            self.scope,
            self.signed_headers.join(";"),
            self.signature
        )
    }
}

/// What is signed of one request.
pub struct Signable<'a> {
    pub method: &'a str,
    /// The request target as sent: path and optional `?query`.
    pub target: &'a str,
    /// Every header as sent (names in any case); only the signed ones are used.
    pub headers: &'a [(String, String)],
    pub payload_hash: &'a str,
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, data).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac(key: &[u8], data: &[u8]) -> hmac::Tag {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
}

/// The signature of `req` under `auth`'s scope and signed headers, with `secret`; `amz_date` is
/// the request's `x-amz-date`.
pub fn signature(req: &Signable<'_>, auth: &Authorization, amz_date: &str, secret: &str) -> String {
    let creq = canonical_request(req, &auth.signed_headers, auth.service() == "s3");
    let sts = format!(
        "{ALGORITHM}\n{amz_date}\n{}\n{}",
        auth.scope,
        sha256_hex(creq.as_bytes())
    );
    let mut k = zeroize::Zeroizing::new(format!("AWS4{secret}").into_bytes());
    let mut tag = hmac(&k, auth.date().as_bytes());
    for part in [auth.region(), auth.service(), "aws4_request"] {
        k = zeroize::Zeroizing::new(tag.as_ref().to_vec());
        tag = hmac(&k, part.as_bytes());
    }
    hex(hmac(tag.as_ref(), sts.as_bytes()).as_ref())
}

pub fn canonical_request(req: &Signable<'_>, signed: &[String], s3: bool) -> String {
    let (path, query) = req.target.split_once('?').unwrap_or((req.target, ""));
    let path = if path.is_empty() { "/" } else { path };
    let uri = if s3 {
        path.to_string()
    } else {
        encode(path, false)
    };
    let mut out = format!("{}\n{uri}\n{}\n", req.method, canonical_query(query));
    for name in signed {
        let values: Vec<String> = req
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        out.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    out.push_str(&format!("\n{}\n{}", signed.join(";"), req.payload_hash));
    out
}

fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (encode(&decode(k), true), encode(&decode(v), true))
        })
        .collect();
    pairs.sort();
    let parts: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.join("&")
}

/// RFC 3986 encoding as SigV4 wants it: unreserved characters kept, `/` kept unless
/// `encode_slash`, everything else `%XX` (uppercase).
pub fn encode(s: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (b == b'/' && !encode_slash) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-decoding (no `+` as space: SigV4 does not treat it so).
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hexval = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hexval(b[i + 1]), hexval(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUITE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn headers(h: &[(&str, &str)]) -> Vec<(String, String)> {
        h.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn suite(method: &str, target: &str, extra: &[(&str, &str)], signed: &str) -> String {
        let mut h = headers(&[
            ("Host", "example.amazonaws.com"),
            ("X-Amz-Date", "20150830T123600Z"),
        ]);
        h.extend(headers(extra));
        let auth = Authorization::parse(&format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders={signed}, Signature=x"
        ))
        .unwrap();
        let req = Signable {
            method,
            target,
            headers: &h,
            payload_hash: EMPTY,
        };
        signature(&req, &auth, "20150830T123600Z", SUITE_SECRET)
    }

    /// Vectors of the AWS sig-v4 test suite (service "service", us-east-1, 20150830T123600Z).
    #[test]
    fn aws_test_suite_vectors() {
        let hd = "host;x-amz-date";
        assert_eq!(
            suite("GET", "/", &[], hd),
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
        assert_eq!(
            suite("POST", "/", &[], hd),
            "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
        );
        assert_eq!(
            suite("GET", "/?Param2=value2&Param1=value1", &[], hd),
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
        );
        assert_eq!(
            suite(
                "POST",
                "/",
                &[("My-Header1", "VALUE1")],
                "host;my-header1;x-amz-date"
            ),
            "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d"
        );
    }

    /// The S3 documentation's "GET Object" example (path kept as sent for S3).
    #[test]
    fn s3_get_object_example() {
        let h = headers(&[
            ("Host", "examplebucket.s3.amazonaws.com"),
            ("Range", "bytes=0-9"),
            ("x-amz-content-sha256", EMPTY),
            ("x-amz-date", "20130524T000000Z"),
        ]);
        let auth = Authorization::parse("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=x").unwrap();
        let req = Signable {
            method: "GET",
            target: "/test.txt",
            headers: &h,
            payload_hash: EMPTY,
        };
        assert_eq!(
            signature(
                &req,
                &auth,
                "20130524T000000Z",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
            ),
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(
            canonical_query("b=2&a=%2f&a=1&empty&x=a%20b"),
            "a=%2F&a=1&b=2&empty=&x=a%20b"
        );
        assert_eq!(encode("/a b/%41", false), "/a%20b/%2541");
        let a = Authorization::parse("AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc").unwrap();
        assert_eq!(
            (a.key_id.as_str(), a.service(), a.region()),
            ("AKID", "s3", "us-east-1")
        );
        assert_eq!(
            a.header_value(),
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc"
        );
        assert!(Authorization::parse("Bearer x").is_none());
        assert!(Authorization::parse(
            "AWS4-HMAC-SHA256 Credential=AKID/2015/x, SignedHeaders=a, Signature=b"
        )
        .is_none());
    }
}
