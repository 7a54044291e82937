//! Output masking (`[context.NAME.secrets] redact = true`): a streaming filter that replaces each
//! secret value, and its standard base64 form, with `<redacted:NAME>` in the target's output.
//!
//! Pure and unit-tested: [`Filter::push`] takes bytes as they arrive and returns what can already
//! be written; it holds back only the shortest tail that could still be the start of a value (so
//! output is never delayed longer than needed to decide a match, and a value split across reads
//! is still found). At each position the longest value that matches wins, and a longer value that
//! may still match is waited for before a shorter one is replaced. [`Filter::finish`] flushes the
//! rest at end of stream.
//!
//! Values shorter than [`MIN_LEN`] bytes are not masked (masking "1" or "a" would garble all
//! output and tell the reader the value anyway); [`Filter::new`] returns their names so the
//! caller can warn.

use zeroize::Zeroizing;

/// Shortest value that is masked.
pub const MIN_LEN: usize = 4;

/// One thing to look for, and what replaces it.
struct Pattern {
    needle: Zeroizing<Vec<u8>>,
    replacement: Vec<u8>,
}

/// The filter state for one output stream.
pub struct Filter {
    /// Longest first, so the first full match found at a position is the longest.
    patterns: Vec<Pattern>,
    /// Bytes received but not yet decided (a possible start of a value).
    pending: Zeroizing<Vec<u8>>,
    /// `starts[b]`: some value begins with byte `b` (other bytes are passed on in bulk).
    starts: [bool; 256],
}

impl Filter {
    /// A filter for these `(name, value)` pairs; also returns the names of values too short to
    /// be masked.
    pub fn new<'a>(
        secrets: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> (Filter, Vec<String>) {
        let mut patterns = Vec::new();
        let mut too_short = Vec::new();
        for (name, value) in secrets {
            if value.len() < MIN_LEN {
                too_short.push(name.to_string());
                continue;
            }
            let replacement = format!("<redacted:{name}>").into_bytes();
            patterns.push(Pattern {
                needle: Zeroizing::new(value.to_vec()),
                replacement: replacement.clone(),
            });
            patterns.push(Pattern {
                needle: base64(value),
                replacement,
            });
        }
        patterns.sort_by(|a, b| {
            (b.needle.len().cmp(&a.needle.len())).then_with(|| a.needle.cmp(&b.needle))
        });
        patterns.dedup_by(|a, b| a.needle == b.needle);
        let mut starts = [false; 256];
        for p in &patterns {
            starts[usize::from(p.needle[0])] = true;
        }
        let filter = Filter {
            patterns,
            pending: Zeroizing::new(Vec::new()),
            starts,
        };
        (filter, too_short)
    }

    /// Feed `input`; returns the bytes that are safe to write now.
    pub fn push(&mut self, input: &[u8]) -> Vec<u8> {
        super::extend_zeroizing(&mut self.pending, input);
        self.drain(false)
    }

    /// End of stream: returns everything still held, masked.
    pub fn finish(&mut self) -> Vec<u8> {
        self.drain(true)
    }

    fn drain(&mut self, eof: bool) -> Vec<u8> {
        let buf = &self.pending[..];
        let mut out = Vec::with_capacity(buf.len());
        let mut i = 0;
        while i < buf.len() {
            match self.decide(&buf[i..], eof) {
                Decision::Replace(p) => {
                    out.extend_from_slice(&self.patterns[p].replacement);
                    i += self.patterns[p].needle.len();
                }
                Decision::Wait => break,
                Decision::Pass => {
                    // Up to the next byte that can start a value, nothing can match.
                    let next = buf[i + 1..]
                        .iter()
                        .position(|&b| self.starts[usize::from(b)])
                        .map_or(buf.len(), |n| i + 1 + n);
                    out.extend_from_slice(&buf[i..next]);
                    i = next;
                }
            }
        }
        let rest = Zeroizing::new(buf[i..].to_vec());
        self.pending = rest;
        out
    }

    /// What to do with the byte at the start of `rest`.
    fn decide(&self, rest: &[u8], eof: bool) -> Decision {
        let first = rest[0];
        for (idx, p) in self.patterns.iter().enumerate() {
            if p.needle[0] != first {
                continue;
            }
            if rest.len() >= p.needle.len() {
                if rest[..p.needle.len()] == p.needle[..] {
                    // Longest first: any longer pattern has already been ruled out.
                    return Decision::Replace(idx);
                }
            } else if !eof && p.needle.starts_with(rest) {
                // A longer value may still match here: wait for more bytes.
                return Decision::Wait;
            }
        }
        Decision::Pass
    }
}

enum Decision {
    Replace(usize),
    Wait,
    Pass,
}

/// Standard base64 with padding (RFC 4648 section 4), into zeroizing memory.
fn base64(input: &[u8]) -> Zeroizing<Vec<u8>> {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Zeroizing::new(Vec::with_capacity(input.len().div_ceil(3) * 4));
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(ABC[(n >> 18) as usize & 63]);
        out.push(ABC[(n >> 12) as usize & 63]);
        out.push(if chunk.len() > 1 {
            ABC[(n >> 6) as usize & 63]
        } else {
            b'='
        });
        out.push(if chunk.len() > 2 {
            ABC[n as usize & 63]
        } else {
            b'='
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(secrets: &[(&str, &str)]) -> Filter {
        Filter::new(secrets.iter().map(|(n, v)| (*n, v.as_bytes()))).0
    }

    /// Run `input` through a fresh filter in pieces cut at `cuts`.
    fn run(secrets: &[(&str, &str)], input: &[u8], cuts: &[usize]) -> String {
        let mut f = filter(secrets);
        let mut out = Vec::new();
        let mut at = 0;
        for &c in cuts {
            out.extend(f.push(&input[at..c]));
            at = c;
        }
        out.extend(f.push(&input[at..]));
        out.extend(f.finish());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(&base64(i.as_bytes())[..], o.as_bytes());
        }
    }

    #[test]
    fn masks_value_and_base64_split_at_every_position() {
        let s = [("TOKEN", "hunter2-secret")];
        let b64 = String::from_utf8(base64(b"hunter2-secret").to_vec()).unwrap();
        let input = format!("a hunter2-secret b {b64} c hunter2-secre d");
        let want = "a <redacted:TOKEN> b <redacted:TOKEN> c hunter2-secre d";
        for cut in 0..=input.len() {
            assert_eq!(run(&s, input.as_bytes(), &[cut]), want, "cut at {cut}");
        }
        for a in 0..=input.len() {
            for b in a..=input.len() {
                assert_eq!(run(&s, input.as_bytes(), &[a, b]), want, "cuts {a},{b}");
            }
        }
        // One byte at a time.
        let cuts: Vec<usize> = (1..input.len()).collect();
        assert_eq!(run(&s, input.as_bytes(), &cuts), want);
    }

    #[test]
    fn longest_match_first_and_overlaps() {
        let s = [("SHORT", "abcd"), ("LONG", "abcdefgh")];
        assert_eq!(
            run(&s, b"xabcdefghx abcdx abcdefx", &[]),
            "x<redacted:LONG>x <redacted:SHORT>x <redacted:SHORT>efx"
        );
        for cut in 0..=10 {
            assert_eq!(
                run(&s, b"xabcdefghx", &[cut]),
                "x<redacted:LONG>x",
                "cut {cut}"
            );
        }
        // Overlapping values: the leftmost match wins, then scanning goes on after it.
        let s = [("A", "1234"), ("B", "3456")];
        assert_eq!(run(&s, b"123456", &[]), "<redacted:A>56");
        assert_eq!(run(&s, b"x3456", &[2]), "x<redacted:B>");
        // A value whose prefix repeats: a failed partial match does not swallow a real one.
        let s = [("R", "aaab")];
        assert_eq!(run(&s, b"aaaab", &[1, 2, 3]), "a<redacted:R>");
        assert_eq!(run(&s, b"aaaab", &[]), "a<redacted:R>");
    }

    #[test]
    fn output_is_held_only_while_a_match_is_possible() {
        let mut f = filter(&[("T", "secretvalue")]);
        assert_eq!(f.push(b"hello "), b"hello ");
        assert_eq!(f.push(b"sec"), b"", "could be the start of the value");
        assert_eq!(f.push(b"ond"), b"second");
        assert_eq!(f.push(b"\n"), b"\n");
        assert_eq!(f.push(b"secretval"), b"");
        assert_eq!(
            f.finish(),
            b"secretval",
            "end of stream flushes a partial value"
        );
    }

    #[test]
    fn short_and_empty_values_are_not_masked_and_reported() {
        let (f, short) = Filter::new([("A", &b""[..]), ("B", &b"abc"[..]), ("C", &b"abcd"[..])]);
        assert_eq!(short, vec!["A".to_string(), "B".to_string()]);
        assert_eq!(f.patterns.len(), 2, "C and its base64 form");
        assert_eq!(
            run(&[("B", "abc"), ("C", "abcd")], b"abc abcd", &[]),
            "abc <redacted:C>"
        );
        let (f, _) = Filter::new([("A", &b"x"[..])]);
        assert!(f.patterns.is_empty());
    }

    #[test]
    fn binary_and_multibyte_values() {
        let v = "pä\u{1F511}\nss=\"q\"";
        let input = format!("[{v}]");
        for cut in 0..=input.len() {
            assert_eq!(
                run(&[("K", v)], input.as_bytes(), &[cut]),
                "[<redacted:K>]",
                "cut {cut}"
            );
        }
    }
}
