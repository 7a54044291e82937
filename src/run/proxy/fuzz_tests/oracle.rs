//! An independent oracle for request and response heads, written from RFC 9112, and the
//! smuggling shapes found without parsing.

use crate::run::proxy::http::{Framing, MAX_HEADERS};

pub(super) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 9112's bytes: CR only before LF, LF only after CR, else HT, SP and visible ASCII.
pub(super) fn clean(b: &[u8]) -> bool {
    b.iter().enumerate().all(|(i, &c)| match c {
        b'\r' => b.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && b[i - 1] == b'\r',
        b'\t' | 0x20..=0x7e => true,
        _ => false,
    })
}

pub(super) type Fields = Vec<(String, String)>;

/// A head by the grammar, line by line in the order a parser meets them: empty lines before the
/// first line skipped, `first` judging the first line, then `name ":" OWS value OWS` lines (a line
/// starting with whitespace is obs-fold: refused), a 101st well-formed header is 431, and the
/// blank line must end the input. Every other refusal is 400.
pub(super) fn oracle_head<T>(
    b: &[u8],
    first: impl Fn(&str) -> Option<T>,
) -> Result<(T, Fields), u16> {
    oracle_head_max(b, first, MAX_HEADERS)
}

/// [`oracle_head`] with another limit on the number of headers.
pub(super) fn oracle_head_max<T>(
    b: &[u8],
    first: impl Fn(&str) -> Option<T>,
    max: usize,
) -> Result<(T, Fields), u16> {
    if !clean(b) {
        return Err(400);
    }
    let mut rest = std::str::from_utf8(b).map_err(|_| 400u16)?;
    while let Some(r) = rest.strip_prefix("\r\n") {
        rest = r;
    }
    let (line, r) = rest.split_once("\r\n").ok_or(400u16)?;
    let start = first(line).ok_or(400u16)?;
    rest = r;
    let mut fields = Vec::new();
    loop {
        let (line, r) = rest.split_once("\r\n").ok_or(400u16)?;
        rest = r;
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').ok_or(400u16)?;
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Err(400);
        }
        if fields.len() == max {
            return Err(431);
        }
        fields.push((
            name.to_string(),
            value.trim_matches([' ', '\t']).to_string(),
        ));
    }
    if !rest.is_empty() {
        return Err(400);
    }
    Ok((start, fields))
}

/// `method SP target SP HTTP/1.x`.
pub(super) fn request_line(l: &str) -> Option<(String, String, u8)> {
    let parts: Vec<&str> = l.split(' ').collect();
    let [m, t, v] = parts[..] else { return None };
    let target_ok = !t.is_empty() && t.bytes().all(|c| (0x21..=0x7e).contains(&c));
    if m.is_empty() || !m.bytes().all(is_tchar) || !target_ok {
        return None;
    }
    let minor = match v {
        "HTTP/1.0" => 0,
        "HTTP/1.1" => 1,
        _ => return None,
    };
    Some((m.to_string(), t.to_string(), minor))
}

/// `HTTP/1.x SP 3DIGIT [SP reason]`.
pub(super) fn status_line(l: &str) -> Option<u16> {
    let rest = l
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| l.strip_prefix("HTTP/1.0 "))?;
    let code = rest
        .get(..3)
        .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))?;
    let after = &rest[3..];
    (after.is_empty() || after.starts_with(' ')).then(|| code.parse().unwrap())
}

pub(super) fn values<'a>(fields: &'a Fields, name: &str) -> Vec<&'a str> {
    fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The framing the headers declare (`minor` for a request): one `Transfer-Encoding: chunked`
/// (not in HTTP/1.0), or one `Content-Length` of 1 to 18 digits, or neither; both is 400, any
/// other coding 501.
pub(super) fn oracle_framing(fields: &Fields, minor: Option<u8>) -> Result<Option<Framing>, u16> {
    let (te, cl) = (
        values(fields, "transfer-encoding"),
        values(fields, "content-length"),
    );
    if !te.is_empty() && !cl.is_empty() {
        return Err(400);
    }
    if !te.is_empty() {
        return match te[..] {
            [t] if t.eq_ignore_ascii_case("chunked") && minor == Some(0) => Err(400),
            [t] if t.eq_ignore_ascii_case("chunked") => Ok(Some(Framing::Chunked)),
            _ => Err(501),
        };
    }
    match cl[..] {
        [] => Ok(None),
        [v] if (1..=18).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(Some(Framing::Length(v.parse().unwrap())))
        }
        _ => Err(400),
    }
}

#[derive(Debug, PartialEq)]
pub(super) struct Want {
    pub(super) method: String,
    pub(super) target: String,
    pub(super) minor: u8,
    pub(super) fields: Fields,
    pub(super) framing: Framing,
}

pub(super) fn oracle_request(b: &[u8]) -> Result<Want, u16> {
    oracle_request_max(b, MAX_HEADERS)
}

/// The head the proxy sends on has up to two headers more than it was given (`Host`,
/// `Connection: close`): the origin and the checks of what reaches it allow for them.
pub(super) const SENT_ON_MAX: usize = MAX_HEADERS + 2;

pub(super) fn oracle_request_max(b: &[u8], max: usize) -> Result<Want, u16> {
    let ((method, target, minor), fields) = oracle_head_max(b, request_line, max)?;
    let framing = oracle_framing(&fields, Some(minor))?.unwrap_or(Framing::None);
    Ok(Want {
        method,
        target,
        minor,
        fields,
        framing,
    })
}

/// The smuggling shapes the brief names, found without parsing: any one means a refusal.
pub(super) fn smuggling_shape(b: &[u8]) -> Option<&'static str> {
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'\n' if i == 0 || b[i - 1] != b'\r' => return Some("bare LF"),
            b'\r' if b.get(i + 1) != Some(&b'\n') => return Some("bare CR"),
            0 => return Some("NUL"),
            0x80.. => return Some("non-ASCII"),
            b'\t' | b'\r' | b'\n' | 0x20..=0x7e => {}
            _ => return Some("control byte"),
        }
    }
    let text = std::str::from_utf8(b).ok()?;
    let mut lines = text.split("\r\n").skip_while(|l| l.is_empty());
    lines.next()?;
    let mut fields = Vec::new();
    for l in lines.take_while(|l| !l.is_empty()) {
        if l.starts_with([' ', '\t']) {
            return Some("obs-fold");
        }
        let (n, v) = l.split_once(':').unwrap_or((l, ""));
        fields.push((n.to_string(), v.trim_matches([' ', '\t']).to_string()));
    }
    let (te, cl) = (
        values(&fields, "transfer-encoding"),
        values(&fields, "content-length"),
    );
    if fields.len() > MAX_HEADERS {
        Some("more than 100 headers")
    } else if cl.len() > 1 {
        Some("repeated Content-Length")
    } else if cl.iter().any(|v| v.starts_with(['+', '-'])) {
        Some("signed Content-Length")
    } else if !cl.is_empty() && !te.is_empty() {
        Some("Content-Length with Transfer-Encoding")
    } else if !te.is_empty() && !matches!(te[..], [t] if t.eq_ignore_ascii_case("chunked")) {
        Some("Transfer-Encoding other than one chunked")
    } else {
        None
    }
}

pub(super) fn owned(h: &[httparse::Header<'_>]) -> Fields {
    h.iter()
        .map(|h| {
            let v = String::from_utf8(h.value.to_vec()).unwrap();
            (h.name.to_string(), v)
        })
        .collect()
}
