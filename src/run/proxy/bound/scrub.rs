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
//! Streaming: [`Scrubber::feed`] holds back the last `longest + 2 * EVIDENCE + 1` bytes of what it
//! was given, so a value split across reads, TLS records or chunks is still found whole, with the
//! same text around it as when the whole is scrubbed at once (the same bytes come out however the
//! stream is cut); [`Scrubber::finish`] releases the rest. Not covered (SECURITY.md): compressed bodies (the proxy asks for identity
//! encoding and refuses any other), base64 broken into lines, other escapes (`\u0041`), a value
//! echoed in pieces.

use zeroize::Zeroizing;

/// The search: each real form with the placeholder form that replaces it.
pub struct Needles {
    pairs: Vec<Form>,
    /// For each first byte, the pairs that start with it.
    by_first: Vec<Vec<usize>>,
    /// Which two-byte beginnings some form has (bit `b0 << 8 | b1`): most positions of a body
    /// are passed over with one lookup (every form is at least [`MIN_FORM`] bytes).
    pairs2: Vec<u64>,
    longest: usize,
}

/// One form of one value: its text, its placeholder's, and for base64 the partial characters on
/// either side, which hold a few bits of the value's first and last bytes mixed with the
/// neighbours' (those bits are replaced too, so not even a byte's worth of the value comes back).
struct Form {
    real: Zeroizing<Vec<u8>>,
    ph: Vec<u8>,
    lead: Option<Edge>,
    trail: Option<Edge>,
}

/// The value's bits in a partial base64 character: how many, the value's and the placeholder's.
#[derive(Clone, Copy)]
struct Edge {
    bits: u8,
    real: u8,
    ph: u8,
    alphabet: &'static [u8; 64],
    /// The form's own characters hold one of the alphabet's two particular ones (62 or 63).
    specific: bool,
}

impl Edge {
    /// Swap the value's bits of character `c` (low bits for a leading character, high bits for
    /// a trailing one); `None` if `c` is not of the alphabet or does not hold the value's bits.
    fn fix(&self, c: u8, leading: bool, text: &[u8]) -> Option<u8> {
        // Which alphabet the text uses: the edge character says so when it is one of the pairs
        // that differ (+/ or -_); else the form's own characters, when they hold one; else the
        // text around it, if it shows one alphabet and not the other.
        let in_std = STD.iter().position(|&a| a == c);
        let in_url = URL.iter().position(|&a| a == c);
        let shows = |pair: &[u8]| text.iter().any(|b| pair.contains(b));
        let alphabet = match (in_std, in_url) {
            (Some(_), None) => STD,
            (None, Some(_)) => URL,
            (Some(_), Some(_)) if self.specific => self.alphabet,
            (Some(_), Some(_)) if shows(b"-_") && !shows(b"+/") => URL,
            (Some(_), Some(_)) => STD,
            (None, None) => return None,
        };
        let v = alphabet.iter().position(|&a| a == c)? as u8;
        let (shift, mask) = match leading {
            true => (0, (1u8 << self.bits) - 1),
            false => (6 - self.bits, ((1u8 << self.bits) - 1) << (6 - self.bits)),
        };
        if (v & mask) >> shift != self.real {
            return None;
        }
        Some(alphabet[usize::from((v & !mask) | (self.ph << shift))])
    }
}

impl std::fmt::Debug for Needles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Needles({} forms)", self.pairs.len())
    }
}

/// The shortest form searched for: shorter encoded fragments (of a very short value) would match
/// by chance and are left out.
const MIN_FORM: usize = 6;

/// How far on either side of a form its base64 text is read for which alphabet it uses: a
/// bounded window, so that a stream cut anywhere shows a form the same text as the whole does.
const EVIDENCE: usize = 16;

impl Needles {
    /// The forms of each `(real, placeholder)` pair.
    pub fn new<'a>(values: impl IntoIterator<Item = (&'a str, &'a str)>) -> Needles {
        let mut pairs: Vec<Form> = Vec::new();
        for (real, ph) in values {
            for f in forms(real.as_bytes(), ph.as_bytes()) {
                let differs = *f.real != f.ph || f.lead.is_some() || f.trail.is_some();
                if f.real.len() >= MIN_FORM && differs && !pairs.iter().any(|x| *x.real == *f.real)
                {
                    pairs.push(f);
                }
            }
        }
        let mut pairs2 = vec![0u64; 65536 / 64];
        for f in &pairs {
            let k = usize::from(f.real[0]) << 8 | usize::from(f.real[1]);
            pairs2[k / 64] |= 1 << (k % 64);
        }
        let mut by_first = vec![Vec::new(); 256];
        for (i, f) in pairs.iter().enumerate() {
            by_first[usize::from(f.real[0])].push(i);
        }
        let longest = pairs.iter().map(|f| f.real.len()).max().unwrap_or(1);
        Needles {
            pairs,
            by_first,
            pairs2,
            longest,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Replace every form in `buf`, in place; returns how many were replaced. Unless `last`, a
    /// form ending within [`EVIDENCE`] bytes of the end of `buf` is left for later (its trailing
    /// partial character, or the text that says its alphabet, may not have arrived).
    pub fn replace_all(&self, buf: &mut [u8], last: bool) -> usize {
        let mut hits = 0;
        let mut i = 0;
        let maybe = |w: &[u8]| {
            let k = usize::from(w[0]) << 8 | usize::from(w[1]);
            self.pairs2[k >> 6] & (1 << (k & 63)) != 0
        };
        while i < buf.len() {
            // Pass over what no form can begin at (the last byte is looked at whole below).
            match buf[i..].windows(2).position(maybe) {
                Some(skip) => i += skip,
                None => i = buf.len() - 1,
            }
            let mut matched = 0;
            for &k in &self.by_first[usize::from(buf[i])] {
                let f = &self.pairs[k];
                let end = i + f.real.len();
                if !buf[i..].starts_with(&f.real) || (!last && end + EVIDENCE >= buf.len()) {
                    continue;
                }
                buf[i..end].copy_from_slice(&f.ph);
                // The base64 text the form is part of (the run of base64 characters around it,
                // at most EVIDENCE bytes on either side): which alphabet it uses, when the edge
                // does not say.
                let b64 = |c: &u8| c.is_ascii_alphanumeric() || b"+/-_".contains(c);
                let lo = i.saturating_sub(EVIDENCE);
                let hi = (end + EVIDENCE).min(buf.len());
                let from = buf[lo..i]
                    .iter()
                    .rposition(|c| !b64(c))
                    .map_or(lo, |p| lo + p + 1);
                let to = buf[end..hi]
                    .iter()
                    .position(|c| !b64(c))
                    .map_or(hi, |p| end + p);
                let around = buf[from..to].to_vec();
                if let (Some(e), Some(at)) = (f.lead, i.checked_sub(1)) {
                    if let Some(c) = e.fix(buf[at], true, &around) {
                        buf[at] = c;
                    }
                }
                if let (Some(e), Some(c)) = (f.trail, buf.get(end).copied()) {
                    if let Some(c) = e.fix(c, false, &around) {
                        buf[end] = c;
                    }
                }
                matched = f.real.len();
                hits += 1;
                break;
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
        self.replaced += self.needles.replace_all(&mut self.held, false);
        // A form still completing or left for later, with the partial characters and the
        // EVIDENCE bytes on either side of it.
        let keep = self.needles.longest + 2 * EVIDENCE + 1;
        if self.held.len() > keep {
            let cut = self.held.len() - keep;
            out.extend_from_slice(&self.held[..cut]);
            self.held.drain(..cut);
        }
    }

    /// The end of the stream: the held tail, scrubbed.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.replaced += self.needles.replace_all(&mut self.held, true);
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

/// Every form of one value.
fn forms(real: &[u8], ph: &[u8]) -> Vec<Form> {
    let mut out: Vec<Form> = Vec::new();
    let mut add = |r: Vec<u8>, p: Vec<u8>, filler: u8| {
        let p = fit(p, r.len(), filler);
        out.push(Form {
            real: Zeroizing::new(r),
            ph: p,
            lead: None,
            trail: None,
        });
    };
    add(real.to_vec(), ph.to_vec(), b'x');
    for upper in [false, true] {
        add(hex(real, upper), hex(ph, upper), b'0');
        add(percent(real, upper), percent(ph, upper), b'x');
    }
    add(json_slash(real), json_slash(ph), b'x');
    if real.len() == ph.len() && !real.is_empty() {
        for k in 0..3 {
            for alphabet in [STD, URL] {
                let core = b64_core(real, k, alphabet);
                let specific = core.iter().any(|c| alphabet[62..].contains(c));
                let edge = |e: Option<Edge>| e.map(|e| Edge { specific, ..e });
                out.push(Form {
                    ph: b64_core(ph, k, alphabet),
                    real: Zeroizing::new(core),
                    lead: edge(lead_edge(real, ph, k, alphabet)),
                    trail: edge(trail_edge(real, ph, k, alphabet)),
                });
            }
        }
    }
    out
}

/// The leading partial character of `v` at alignment `k`: the top bits of its first byte.
fn lead_edge(real: &[u8], ph: &[u8], k: usize, alphabet: &'static [u8; 64]) -> Option<Edge> {
    let bits = match (8 * k) % 6 {
        0 => return None,
        r => (6 - r) as u8,
    };
    Some(Edge {
        bits,
        real: real[0] >> (8 - bits),
        ph: ph[0] >> (8 - bits),
        alphabet,
        specific: false,
    })
}

/// The trailing partial character: the low bits of the last byte.
fn trail_edge(real: &[u8], ph: &[u8], k: usize, alphabet: &'static [u8; 64]) -> Option<Edge> {
    let bits = match (8 * (k + real.len())) % 6 {
        0 => return None,
        r => r as u8,
    };
    let low = |b: u8| b & ((1u8 << bits) - 1);
    Some(Edge {
        bits,
        real: low(real[real.len() - 1]),
        ph: low(ph[ph.len() - 1]),
        alphabet,
        specific: false,
    })
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
            .map(|f| f.real.to_vec())
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
        // Decoded, every alignment gives back the whole placeholder: the partial characters at
        // the edges carry the placeholder's bits too, not the value's.
        for prefix in ["Bearer ", "Bearer  ", "Bearer   "] {
            for suffix in ["", "x", "xy"] {
                let text = format!("{prefix}{REAL}{suffix}");
                for engine in [&b64, &base64::engine::general_purpose::URL_SAFE] {
                    let echo = engine.encode(&text);
                    let out = scrub_in_pieces(&n, echo.as_bytes(), 5);
                    let back = engine.decode(&out).unwrap();
                    assert_eq!(back, format!("{prefix}{PH}{suffix}").as_bytes(), "{text:?}");
                }
            }
        }
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
