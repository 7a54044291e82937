//! Placeholders for bound secrets: a string of the same shape as the real value, so that tools
//! which check a key's format (prefix, length, alphabet) accept it, and which holds nothing of
//! the value beyond that shape.
//!
//! Kept: a public prefix from [`PUBLIC_PREFIXES`] (`sk-ant-api03-`, `AKIA`, `ghp_`...: the
//! provider's documented marker, the same for every key of its kind) and the place of every
//! character that is not a letter or digit (`-` in a UUID, `/` and `+` in base64: structure, not
//! secret; keeping them keeps every encoding of the placeholder as long as the value's, which the
//! proxy's scrubbing of responses relies on). Every letter and digit is drawn at random from its
//! class: from the hex digits when the value is hex (so a UUID stays a UUID), else lowercase,
//! uppercase or digit as it was. Nothing else of the value is kept: no prefix guessed from the
//! value itself. The randomness comes from the caller (the launch passes `getrandom`).

/// Documented public prefixes of common keys, longest first where one extends another.
pub const PUBLIC_PREFIXES: &[&str] = &[
    "sk-ant-admin01-",
    "sk-ant-api03-",
    "sk-ant-oat01-",
    "sk-ant-",
    "sk-proj-",
    "sk-svcacct-",
    "sk_live_",
    "sk_test_",
    "rk_live_",
    "rk_test_",
    "sk-",
    "github_pat_",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "glpat-",
    "xoxb-",
    "xoxp-",
    "xoxa-",
    "xapp-",
    "hf_",
    "npm_",
    "pypi-",
    "dop_v1_",
    "shpat_",
    "AKIA",
    "ASIA",
    "AIza",
    "ya29.",
    "SG.",
];

/// A placeholder for `value`. `fill` supplies random bytes. Never equal to `value`; a value with
/// no letter or digit to replace gets the fixed `SBXPLACEHOLDER` filler, cut or repeated to the
/// value's length in bytes (every encoding of a placeholder must be as long as the value's).
pub fn placeholder(value: &str, fill: &mut dyn FnMut(&mut [u8])) -> String {
    let keep = public_prefix(value).len();
    let (head, rest) = value.split_at(keep);
    let hex = is_hex(rest);
    for _ in 0..8 {
        let mut random = vec![0u8; rest.len()];
        fill(&mut random);
        let mut out = String::with_capacity(value.len());
        out.push_str(head);
        for (i, c) in rest.char_indices() {
            redraw(c, random[i], hex, &mut out);
        }
        if out != value {
            return out;
        }
    }
    let filler: String = "SBXPLACEHOLDER".chars().cycle().take(value.len()).collect();
    match filler == value {
        true => "x".repeat(value.len()),
        false => filler,
    }
}

/// The public prefix a placeholder keeps: a known one, and only when some random part follows.
fn public_prefix(value: &str) -> &'static str {
    PUBLIC_PREFIXES
        .iter()
        .find(|p| value.starts_with(**p) && value.len() >= p.len() + 8)
        .copied()
        .unwrap_or("")
}

/// Are the letters and digits of `s` hex digits of one case (with at least one letter among them
/// or only digits)?
fn is_hex(s: &str) -> bool {
    let alnum: Vec<char> = s.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    !alnum.is_empty()
        && (alnum
            .iter()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(c))
            || alnum
                .iter()
                .all(|c| c.is_ascii_digit() || ('A'..='F').contains(c)))
}

fn redraw(c: char, r: u8, hex: bool, out: &mut String) {
    const HEX: &[u8] = b"0123456789abcdef";
    let drawn = match c {
        _ if hex && (c.is_ascii_digit() || c.is_ascii_lowercase()) => {
            HEX[usize::from(r % 16)] as char
        }
        _ if hex && c.is_ascii_uppercase() => HEX[usize::from(r % 16)].to_ascii_uppercase() as char,
        'a'..='z' => (b'a' + r % 26) as char,
        'A'..='Z' => (b'A' + r % 26) as char,
        '0'..='9' => (b'0' + r % 10) as char,
        // Not a letter or digit: structure, kept where it is (any byte length).
        _ => c,
    };
    out.push(drawn);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng() -> impl FnMut(&mut [u8]) {
        |buf: &mut [u8]| getrandom::getrandom(buf).unwrap()
    }

    fn class(c: char) -> u8 {
        match c {
            'a'..='z' => 1,
            'A'..='Z' => 2,
            '0'..='9' => 3,
            _ => c as u8,
        }
    }

    /// The longest run the two strings share at the same place, after `skip` characters.
    fn shared_run(a: &str, b: &str, skip: usize) -> usize {
        let (mut best, mut run) = (0, 0);
        for (x, y) in a.chars().zip(b.chars()).skip(skip) {
            run = if x == y { run + 1 } else { 0 };
            best = best.max(run);
        }
        best
    }

    #[test]
    fn same_shape_different_value() {
        let mut rng = rng();
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
        assert!(placeholder("sk-ant-api03-AbCdEfGh0123456789xyz", &mut rng)
            .starts_with("sk-ant-api03-"));
        assert!(placeholder("AKIAIOSFODNN7EXAMPLE", &mut rng).starts_with("AKIA"));
        assert!(placeholder("ghp_0123456789abcdefABCDEF", &mut rng).starts_with("ghp_"));
    }

    #[test]
    fn no_part_of_the_value_is_kept_beyond_a_public_prefix() {
        let mut rng = rng();
        // Values whose first characters the old rule kept (up to 16 before a '-' or '_').
        for value in [
            "8f14e45f-ceea-467f-a9b1-0e9f5c1a2b3c",
            "Zm9vYmFyYmF6cXV4LXNlY3JldC12YWx1ZS0xMjM0NTY3ODkw_abc-def",
            "mycompany_internal_9d8c7b6a5f4e3d2c1b0a",
            "A1B2C3D4E5F6-0987654321",
        ] {
            for _ in 0..20 {
                let p = placeholder(value, &mut rng);
                assert_eq!(p.len(), value.len());
                assert!(shared_run(&p, value, 0) < 6, "{value} -> {p}");
            }
        }
        // A UUID stays a UUID (hex, dashes in place).
        let p = placeholder("8f14e45f-ceea-467f-a9b1-0e9f5c1a2b3c", &mut rng);
        assert!(
            p.chars()
                .all(|c| c == '-' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
            "{p}"
        );
        assert_eq!(
            p.match_indices('-').map(|(i, _)| i).collect::<Vec<_>>(),
            [8, 13, 18, 23]
        );
        // With a public prefix, the rest shares no run either.
        let key = "sk-ant-api03-Sentinel0Run0Check0Value0Abc";
        for _ in 0..20 {
            let p = placeholder(key, &mut rng);
            assert!(shared_run(&p, key, "sk-ant-api03-".len()) < 6, "{p}");
        }
    }

    #[test]
    fn fresh_per_call_and_never_the_value() {
        let mut rng = rng();
        let a = placeholder("sk-ant-api03-AbCdEfGh0123456789xyz", &mut rng);
        let b = placeholder("sk-ant-api03-AbCdEfGh0123456789xyz", &mut rng);
        assert_ne!(a, b);
        let mut zero = |b: &mut [u8]| b.fill(0);
        assert_ne!(placeholder("bbbb", &mut zero), "bbbb");
        assert_eq!(placeholder("----", &mut zero), "SBXP");
        assert_eq!(placeholder("!@#$%^&*()-+", &mut zero).len(), 12);
    }
}
