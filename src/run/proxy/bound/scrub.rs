//! Nothing comes back: every byte a bound host answers is searched for the real values of the
//! call's bound secrets, as they are and in the encodings an echo uses, and each is replaced by
//! the same encoding of its placeholder before the sandbox sees it.
//!
//! Encodings: as is; base64 and base64url at each of the three alignments a value can have
//! inside a longer encoded text (only the characters that depend on the value's bytes alone);
//! lowercase and uppercase hex; percent-encoding (RFC 3986 unreserved characters as they are,
//! hex digits in either case); JSON's `\/`. A placeholder has the value's length and keeps its
//! non-alphanumeric characters in place, so every encoded form has the same length as the real
//! one's and the replacement never changes a length (`Content-Length`, chunk sizes stay true);
//! where it would (a value with non-ASCII characters), the replacement is padded or cut with a
//! character of that encoding's alphabet.
//!
//! Streaming: [`Scrubber::feed`] holds back the last `longest - 1` bytes of what it was given, so a
//! value split across reads, TLS records or chunks is still found whole; [`Scrubber::finish`]
//! releases the rest. Not covered (SECURITY.md): compressed bodies (the proxy asks for identity
//! encoding and refuses any other), base64 broken into lines, other escapes (`\u0041`), a value
//! echoed in pieces.

use zeroize::Zeroizing;

/// The search: each real form with the placeholder form that replaces it.
pub struct Needles {
    pairs: Vec<(Zeroizing<Vec<u8>>, Vec<u8>)>,
    /// For each first byte, the pairs that start with it.
    by_first: Vec<Vec<usize>>,
    longest: usize,
}

impl std::fmt::Debug for Needles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Needles({} forms)", self.pairs.len())
    }
}

/// The shortest form searched for: shorter encoded fragments (of a very short value) would match
/// by chance and are left out.
const MIN_FORM: usize = 6;

impl Needles {
    /// The forms of each `(real, placeholder)` pair.
    pub fn new<'a>(values: impl IntoIterator<Item = (&'a str, &'a str)>) -> Needles {
        let mut pairs: Vec<(Zeroizing<Vec<u8>>, Vec<u8>)> = Vec::new();
        for (real, ph) in values {
            for (r, p) in forms(real.as_bytes(), ph.as_bytes()) {
                if r.len() >= MIN_FORM && *r != p && !pairs.iter().any(|(x, _)| **x == *r) {
                    pairs.push((r, p));
                }
            }
        }
        let mut by_first = vec![Vec::new(); 256];
        for (i, (r, _)) in pairs.iter().enumerate() {
            by_first[usize::from(r[0])].push(i);
        }
        let longest = pairs.iter().map(|(r, _)| r.len()).max().unwrap_or(1);
        Needles {
            pairs,
            by_first,
            longest,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Replace every form in `buf`, in place; returns how many were replaced.
    pub fn replace_all(&self, buf: &mut [u8]) -> usize {
        let mut hits = 0;
        let mut i = 0;
        while i < buf.len() {
            let mut matched = 0;
            for &k in &self.by_first[usize::from(buf[i])] {
                let (r, p) = &self.pairs[k];
                if buf[i..].starts_with(r) {
                    buf[i..i + r.len()].copy_from_slice(p);
                    matched = r.len();
                    hits += 1;
                    break;
                }
            }
            i += matched.max(1);
        }
        hits
    }
}

/// A stream being scrubbed.
pub struct Scrubber<'a> {
    needles: &'a Needles,
    held: Zeroizing<Vec<u8>>,
    /// How many forms were replaced so far.
    pub replaced: usize,
}

impl<'a> Scrubber<'a> {
    pub fn new(needles: &'a Needles) -> Scrubber<'a> {
        Scrubber {
            needles,
            held: Zeroizing::new(Vec::new()),
            replaced: 0,
        }
    }

    /// Take `data`; append to `out` what is safe to pass on now (everything but the tail a form
    /// could still be completing).
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if self.needles.is_empty() {
            out.extend_from_slice(data);
            return;
        }
        self.held.extend_from_slice(data);
        self.replaced += self.needles.replace_all(&mut self.held);
        let keep = self.needles.longest - 1;
        if self.held.len() > keep {
            let cut = self.held.len() - keep;
            out.extend_from_slice(&self.held[..cut]);
            self.held.drain(..cut);
        }
    }

    /// The end of the stream: the held tail, scrubbed.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.replaced += self.needles.replace_all(&mut self.held);
        out.extend_from_slice(&self.held);
        self.held.clear();
    }

    /// Scrub a whole buffer at once (a response head).
    pub fn all(needles: &Needles, data: &[u8]) -> (Vec<u8>, usize) {
        let mut s = Scrubber::new(needles);
        let mut out = Vec::with_capacity(data.len());
        s.feed(data, &mut out);
        s.finish(&mut out);
        (out, s.replaced)
    }
}

/// Every (real form, placeholder form) pair of one value.
fn forms(real: &[u8], ph: &[u8]) -> Vec<(Zeroizing<Vec<u8>>, Vec<u8>)> {
    let mut out: Vec<(Zeroizing<Vec<u8>>, Vec<u8>)> = Vec::new();
    let mut add = |r: Vec<u8>, p: Vec<u8>, filler: u8| {
        let p = fit(p, r.len(), filler);
        out.push((Zeroizing::new(r), p));
    };
    add(real.to_vec(), ph.to_vec(), b'x');
    for k in 0..3 {
        let (r, p) = (b64_core(real, k, STD), b64_core(ph, k, STD));
        add(r, p, b'A');
        let (r, p) = (b64_core(real, k, URL), b64_core(ph, k, URL));
        add(r, p, b'A');
    }
    for upper in [false, true] {
        add(hex(real, upper), hex(ph, upper), b'0');
        add(percent(real, upper), percent(ph, upper), b'x');
    }
    add(json_slash(real), json_slash(ph), b'x');
    out
}

/// `p` at length `len`: cut, or padded with `filler` (only when the placeholder's encoding is not
/// as long as the value's: a value with non-ASCII characters).
fn fit(mut p: Vec<u8>, len: usize, filler: u8) -> Vec<u8> {
    p.resize(len, filler);
    p
}

const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The base64 characters that depend only on `v`'s bytes when `v` starts `k` bytes (mod 3) into
/// an encoded text.
fn b64_core(v: &[u8], k: usize, alphabet: &[u8; 64]) -> Vec<u8> {
    let mut bytes = vec![0u8; k];
    bytes.extend_from_slice(v);
    let bits = bytes.len() * 8;
    let first = (8 * k).div_ceil(6);
    let last = bits / 6; // characters wholly inside the bytes
    (first..last)
        .map(|j| {
            let bit = j * 6;
            let (byte, off) = (bit / 8, bit % 8);
            let word =
                (u16::from(bytes[byte]) << 8) | u16::from(*bytes.get(byte + 1).unwrap_or(&0));
            alphabet[usize::from((word >> (10 - off)) & 0x3f)]
        })
        .collect()
}

fn hex(v: &[u8], upper: bool) -> Vec<u8> {
    let digits: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    v.iter()
        .flat_map(|b| [digits[usize::from(b >> 4)], digits[usize::from(b & 15)]])
        .collect()
}

fn percent(v: &[u8], upper: bool) -> Vec<u8> {
    let digits: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let mut out = Vec::with_capacity(v.len() * 3);
    for &b in v {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b);
        } else {
            out.extend_from_slice(&[
                b'%',
                digits[usize::from(b >> 4)],
                digits[usize::from(b & 15)],
            ]);
        }
    }
    out
}

fn json_slash(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() + 4);
    for &b in v {
        if b == b'/' {
            out.extend_from_slice(b"\\/");
        } else {
            out.push(b);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    const REAL: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const PH: &str = "aBcdeFGhijKLM/N8OPQRS+tUvWxyZaBCDEFGHIJK";

    fn scrub_in_pieces(n: &Needles, data: &[u8], piece: usize) -> Vec<u8> {
        let mut s = Scrubber::new(n);
        let mut out = Vec::new();
        for c in data.chunks(piece) {
            s.feed(c, &mut out);
        }
        s.finish(&mut out);
        out
    }

    #[test]
    fn every_encoding_of_the_value_becomes_the_placeholders() {
        let n = Needles::new([(REAL, PH)]);
        let b64 = base64::engine::general_purpose::STANDARD;
        let b64u = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let echoes: Vec<Vec<u8>> = vec![
            format!("{{\"echo\":\"{REAL}\"}}").into_bytes(),
            b64.encode(format!("Authorization: Bearer {REAL}"))
                .into_bytes(),
            b64.encode(format!("x{REAL}")).into_bytes(),
            b64.encode(format!("xy{REAL}")).into_bytes(),
            b64u.encode(format!("xy{REAL}z")).into_bytes(),
            hex(format!("k={REAL}").as_bytes(), false),
            hex(REAL.as_bytes(), true),
            percent(format!("/?key={REAL}").as_bytes(), true),
            percent(REAL.as_bytes(), false),
            json_slash(REAL.as_bytes()),
            format!("Location: https://x/?key={REAL}\r\n").into_bytes(),
        ];
        let needle_bits: Vec<Vec<u8>> = forms(REAL.as_bytes(), PH.as_bytes())
            .into_iter()
            .map(|(r, _)| r.to_vec())
            .collect();
        for echo in echoes {
            for piece in [1, 3, 7, 4096] {
                let out = scrub_in_pieces(&n, &echo, piece);
                assert_eq!(out.len(), echo.len(), "length kept");
                for form in needle_bits.iter().filter(|f| f.len() >= MIN_FORM) {
                    assert!(
                        !out.windows(form.len()).any(|w| w == &form[..]),
                        "a form survived in {:?}",
                        String::from_utf8_lossy(&out)
                    );
                }
                assert_ne!(
                    out,
                    echo,
                    "nothing replaced in {:?}",
                    String::from_utf8_lossy(&echo)
                );
            }
        }
        // The same encodings of the placeholder decode back to text holding the placeholder.
        let echo = b64.encode(format!("Bearer {REAL}"));
        let out = scrub_in_pieces(&n, echo.as_bytes(), 5);
        let back = b64.decode(&out).unwrap();
        assert!(String::from_utf8_lossy(&back).contains(&PH[1..PH.len() - 1]));
        // Control: text without the value passes unchanged.
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(scrub_in_pieces(&n, plain, 2), plain);
    }

    #[test]
    fn base64_cores_match_the_real_encoding_at_each_alignment() {
        let b64 = base64::engine::general_purpose::STANDARD;
        for k in 0..3 {
            let text = format!("{}{REAL}tail", "p".repeat(k));
            let enc = b64.encode(&text);
            let core = b64_core(REAL.as_bytes(), k, STD);
            assert!(
                enc.as_bytes().windows(core.len()).any(|w| w == &core[..]),
                "k={k}"
            );
            assert_eq!(core.len(), b64_core(PH.as_bytes(), k, STD).len());
        }
    }
}
