//! Placeholders for bound secrets: a string of the same shape as the real value, so that tools
//! which check a key's format (prefix, length, alphabet) accept it, but which carries nothing of
//! the value beyond that shape.
//!
//! The prefix up to the last `-` or `_` among the first 16 characters is kept (`sk-ant-api03-`,
//! `ghp_`, `xoxb-`), as are AWS key id prefixes (`AKIA`, `ASIA`); every other character is
//! replaced by a random one of its class (lowercase, uppercase, digit), punctuation stays where
//! it is, anything else becomes a random lowercase letter. The randomness comes from the caller
//! (the launch passes `getrandom`), so each call gets fresh placeholders.

/// A placeholder for `value`. `fill` supplies random bytes. Never equal to `value` (unless the
/// value has no character to replace, in which case the placeholder is the fixed `SBXPLACEHOLDER`
/// filler, still of the value's length where possible).
pub fn placeholder(value: &str, fill: &mut dyn FnMut(&mut [u8])) -> String {
    let keep = kept_prefix(value);
    let chars: Vec<char> = value.chars().collect();
    for _ in 0..8 {
        let mut random = vec![0u8; chars.len()];
        fill(&mut random);
        let out: String = chars
            .iter()
            .enumerate()
            .map(|(i, &c)| if i < keep { c } else { redraw(c, random[i]) })
            .collect();
        if out != value {
            return out;
        }
    }
    // Only reached when nothing could be replaced (all prefix and punctuation).
    "SBXPLACEHOLDER"
        .chars()
        .cycle()
        .take(chars.len().max(14))
        .collect()
}

/// How many leading characters of `value` a placeholder keeps.
fn kept_prefix(value: &str) -> usize {
    for p in ["AKIA", "ASIA"] {
        if value.starts_with(p) && value.len() > 12 {
            return p.len();
        }
    }
    let head: Vec<char> = value.chars().take(16).collect();
    match head.iter().rposition(|&c| c == '-' || c == '_') {
        // Keep only when something random remains after it (at least 16 characters).
        Some(p) if value.chars().count() >= p + 1 + 16 => p + 1,
        _ => 0,
    }
}

fn redraw(c: char, r: u8) -> char {
    // 256 is not a multiple of 26 or 10: reduce a bias-free range by rejection would need more
    // bytes; the bias (< 1%) is irrelevant for a placeholder's uniqueness.
    match c {
        'a'..='z' => (b'a' + r % 26) as char,
        'A'..='Z' => (b'A' + r % 26) as char,
        '0'..='9' => (b'0' + r % 10) as char,
        '-' | '_' | '/' | '+' | '=' | '.' | ':' | '~' => c,
        _ => (b'a' + r % 26) as char,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter() -> impl FnMut(&mut [u8]) {
        let mut n = 7u8;
        move |buf: &mut [u8]| {
            for b in buf {
                n = n.wrapping_mul(31).wrapping_add(17);
                *b = n;
            }
        }
    }

    fn class(c: char) -> u8 {
        match c {
            'a'..='z' => 1,
            'A'..='Z' => 2,
            '0'..='9' => 3,
            _ => c as u8,
        }
    }

    #[test]
    fn same_shape_different_value() {
        let mut rng = counter();
        for value in [
            "sk-ant-api03-AbCdEfGh0123456789_xyzXYZ-abcdefghijkLMNOP-QRSTuv012345AA",
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "ghp_0123456789abcdefABCDEF0123456789abcd",
            "plainlowercasetoken",
        ] {
            let p = placeholder(value, &mut rng);
            assert_ne!(p, value);
            assert_eq!(p.len(), value.len(), "{value}");
            for (a, b) in p.chars().zip(value.chars()) {
                assert_eq!(class(a), class(b), "{value} -> {p}");
            }
        }
        let p = placeholder("sk-ant-api03-AbCdEfGh0123456789xyz", &mut rng);
        assert!(p.starts_with("sk-ant-api03-"), "{p}");
        assert!(placeholder("AKIAIOSFODNN7EXAMPLE", &mut rng).starts_with("AKIA"));
        assert!(placeholder("ghp_0123456789abcdefABCDEF", &mut rng).starts_with("ghp_"));
        // A short value keeps no prefix (too little would be random).
        assert!(!placeholder("ab-cdef", &mut rng).starts_with("ab-"));
    }

    #[test]
    fn fresh_per_call_and_never_the_value() {
        let mut rng = counter();
        let a = placeholder("sk-ant-api03-AbCdEfGh0123456789xyz", &mut rng);
        let b = placeholder("sk-ant-api03-AbCdEfGh0123456789xyz", &mut rng);
        assert_ne!(a, b);
        let mut zero = |b: &mut [u8]| b.fill(0);
        assert_ne!(placeholder("aaaa", &mut zero), "aaaa");
        assert_eq!(placeholder("----", &mut zero), "SBXPLACEHOLDER");
    }
}
