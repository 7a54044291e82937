//! `[context.NAME.limits]`: resource limits (cgroups), as the policy writes them. One-shot calls
//! get a cgroup of their own for the call; a persistent context one for all its processes.

use std::fmt;

use serde::{Deserialize, Serialize};

/// `[context.NAME.limits]`: limits for every process of one call (one-shot) or of the whole
/// context (persistent, keeper included).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Most processes (and threads) at once, keeper included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_max: Option<u64>,
    /// Most memory in bytes: an integer, or a string with a K/M/G/T suffix ("512M", "2G").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_max: Option<Bytes>,
    /// Swap the processes may use beyond `memory_max` (needs `memory_max`); "0" forbids swap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_swap_max: Option<SwapBytes>,
    /// CPU time as a number of CPUs (0.5 = half of one CPU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_max: Option<Cpus>,
    /// true (the default): refuse (125) where the limits cannot be applied, unless the context
    /// has `degrade = true`. false: apply them where the host lets sbx-exec (root with a
    /// writable cgroup tree), run without them elsewhere (`probe` says which).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<bool>,
}

/// A swap size: like [`Bytes`], but 0 is allowed (no swap at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "u64")]
pub struct SwapBytes(pub u64);

impl From<SwapBytes> for u64 {
    fn from(b: SwapBytes) -> u64 {
        b.0
    }
}

impl<'de> Deserialize<'de> for SwapBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = SwapBytes;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size in bytes (integer, 0 for no swap) or a string such as \"512M\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<SwapBytes, E> {
                u64::try_from(v)
                    .map(SwapBytes)
                    .map_err(|_| E::custom(format!("invalid size {v}: must be 0 or more")))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<SwapBytes, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<SwapBytes, E> {
                if v.trim() == "0" {
                    return Ok(SwapBytes(0));
                }
                parse_size(v).map(SwapBytes).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        self.pids_max.is_none()
            && self.memory_max.is_none()
            && self.memory_swap_max.is_none()
            && self.cpu_max.is_none()
    }

    /// `required` as it applies (absent = true: fail closed).
    pub fn is_required(&self) -> bool {
        self.required.unwrap_or(true)
    }

    /// The v1 controllers these limits need.
    pub fn controllers(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.pids_max.is_some() {
            v.push("pids");
        }
        if self.memory_max.is_some() || self.memory_swap_max.is_some() {
            v.push("memory");
        }
        if self.cpu_max.is_some() {
            v.push("cpu");
        }
        v
    }
}

/// A size in bytes; written in the policy as an integer or a string such as "512M".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "u64")]
pub struct Bytes(pub u64);

impl From<Bytes> for u64 {
    fn from(b: Bytes) -> u64 {
        b.0
    }
}

/// Parse "4096", "64K", "512M", "2G", "1T" (powers of 1024; a trailing "B"/"iB" is accepted).
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let bad = || {
        format!("invalid size {s:?}: use bytes as an integer, or a number with K, M, G or T (\"512M\", \"2G\")")
    };
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (num, shift) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 10),
        Some('M' | 'm') => (&t[..t.len() - 1], 20),
        Some('G' | 'g') => (&t[..t.len() - 1], 30),
        Some('T' | 't') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = num.parse().map_err(|_| bad())?;
    let v = n.checked_mul(1u64 << shift).ok_or_else(bad)?;
    if v == 0 {
        return Err(format!("invalid size {s:?}: must be more than 0"));
    }
    Ok(v)
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size in bytes (integer) or a string such as \"512M\" or \"2G\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<Bytes, E> {
                match u64::try_from(v) {
                    Ok(n) if n > 0 => Ok(Bytes(n)),
                    _ => Err(E::custom(format!("invalid size {v}: must be more than 0"))),
                }
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<Bytes, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<Bytes, E> {
                parse_size(v).map(Bytes).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A number of CPUs, more than 0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(into = "f64")]
pub struct Cpus(pub f64);

impl From<Cpus> for f64 {
    fn from(c: Cpus) -> f64 {
        c.0
    }
}

impl<'de> Deserialize<'de> for Cpus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        if (0.01..=4096.0).contains(&v) {
            Ok(Cpus(v))
        } else {
            Err(serde::de::Error::custom(format!(
                "invalid cpu_max {v}: give a number of CPUs from 0.01 up (0.5 = half a CPU)"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        for bad in ["", "M", "1.5G", "-1", "12X", "0", "99999999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_deserialize_from_integer_or_string() {
        let l: Limits =
            toml::from_str("pids_max = 32\nmemory_max = \"512M\"\ncpu_max = 0.5\n").unwrap();
        assert_eq!(l.pids_max, Some(32));
        assert_eq!(l.memory_max, Some(Bytes(512 << 20)));
        assert_eq!(l.cpu_max, Some(Cpus(0.5)));
        let l: Limits = toml::from_str("memory_max = 1048576\n").unwrap();
        assert_eq!(l.memory_max, Some(Bytes(1 << 20)));
        assert!(toml::from_str::<Limits>("memory_max = \"lots\"\n").is_err());
        assert!(toml::from_str::<Limits>("cpu_max = 0.0\n").is_err());
        assert!(toml::from_str::<Limits>("cpus = 1.0\n").is_err());
        let l: Limits =
            toml::from_str("memory_max = \"64M\"\nmemory_swap_max = 0\nrequired = false\n")
                .unwrap();
        assert_eq!(l.memory_swap_max, Some(SwapBytes(0)));
        assert!(!l.is_required());
        assert!(toml::from_str::<Limits>("memory_swap_max = -1\n").is_err());
    }
}
