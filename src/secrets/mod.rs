//! Secrets read from a file descriptor (`--secrets-fd N`).
//!
//! The caller writes either a JSON object of strings (`{"NAME":"value"}`, what programs send) or
//! `NAME=value` lines (what people type) into a pipe and passes its read end. The format is
//! detected from the first non-blank byte. Values live in [`SecretString`]s and every buffer that
//! held them is zeroized; no error message ever contains a value (only line numbers and, for names
//! that are well-formed, the name).

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use anyhow::{bail, Result};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::model::env_names::is_denied;
use crate::model::{is_env_name, EnvName, EnvPattern};

pub mod json;
pub mod mask;
pub mod placeholder;

/// Most bytes read from the secrets fd.
pub const MAX_BYTES: usize = 1 << 20;
/// Most secrets in one call.
pub const MAX_COUNT: usize = 256;

/// One named secret.
pub struct Secret {
    pub name: String,
    pub value: SecretString,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({}, <redacted>)", self.name)
    }
}

/// The secrets handed to one invocation, in the order given.
#[derive(Debug, Default)]
pub struct SecretSet(Vec<Secret>);

impl SecretSet {
    pub fn iter(&self) -> impl Iterator<Item = &Secret> {
        self.0.iter()
    }

    /// Refuse any secret whose name is one the environment filter drops from the caller
    /// (`LD_PRELOAD`, `BASH_ENV`, `NODE_OPTIONS`, `GIT_CONFIG_*`, ...: [`is_denied`]), naming the
    /// variable, never its value; the same injection must not come in through `--secrets-fd`. A
    /// name the context delivers as a file (`secrets.files`) passes: its variable then holds
    /// sbx-exec's own path, not the caller's text.
    pub fn check_injection(&self, as_files: &[EnvName]) -> Result<()> {
        for s in &self.0 {
            if is_denied(&s.name) && !as_files.iter().any(|f| f.0 == s.name) {
                bail!(
                    "secret {} is refused: {} makes programs load code or configuration from its value \
                     (the same names are dropped from the environment); hand the value under another name, \
                     or list it in [context.NAME.secrets] files to deliver it as a file",
                    s.name,
                    s.name
                );
            }
        }
        Ok(())
    }

    /// Refuse any secret this context's `secrets.allow` does not admit (naming it, never its value).
    pub fn check_allowed(&self, ctx: &str, allow: &[EnvPattern]) -> Result<()> {
        for s in &self.0 {
            if !allow.iter().any(|p| p.matches(&s.name)) {
                bail!(
                    "secret {} is not allowed in context {ctx:?}; add it to [context.{ctx}.secrets] allow to hand it over",
                    s.name
                );
            }
        }
        Ok(())
    }
}

impl SecretSet {
    /// Refuse a set that lacks any of the names this context requires (`secrets.require`),
    /// naming every missing one and never a value.
    pub fn check_required(&self, ctx: &str, required: &[EnvName]) -> Result<()> {
        let missing: Vec<&str> = required
            .iter()
            .map(|r| r.0.as_str())
            .filter(|r| !self.0.iter().any(|s| s.name == *r))
            .collect();
        if !missing.is_empty() {
            let handed = match self.0.is_empty() {
                true => "the secrets stream is empty".to_string(),
                false => format!(
                    "the secrets stream has only {}",
                    self.0
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            bail!(
                "context {ctx:?} requires the secret{} {} ([context.{ctx}.secrets] require), but {handed}; \
                 nothing was run. Hand every required secret on --secrets-fd",
                if missing.len() == 1 { "" } else { "s" },
                missing.join(", ")
            );
        }
        Ok(())
    }
}

/// Read every byte of the secrets fd numbered `fd` (taken over by [`crate::sys::claim_named_fds`];
/// closed on return, before any child exists, so it never reaches the target) and parse it.
/// The writer has `timeout` to send everything and close its end: each read waits (`poll`) only
/// until that deadline, so a writer that never closes (or a copy of the write end left open
/// somewhere) costs a 125, not a hang.
pub fn read_fd(fd: RawFd, owned: Option<OwnedFd>, timeout: Duration) -> Result<SecretSet> {
    let Some(owned) = owned else {
        bail!("--secrets-fd {fd}: file descriptor {fd} is not open; pass the read end of a pipe, e.g. `3<<<\"$SECRETS\"` in a shell");
    };
    let deadline = Instant::now() + timeout;
    let file = File::from(owned);
    let mut wait = || -> std::io::Result<()> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, ms) {
                Ok(0) => return Err(std::io::ErrorKind::TimedOut.into()),
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    };
    let buf = match read_zeroizing(&mut &file, MAX_BYTES, &mut wait) {
        Ok(buf) => buf,
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => bail!(
            "the secrets writer did not close --secrets-fd {fd} within {} s (secrets.read_timeout); \
             write everything, then close the write end (and pass no copy of it to sbx-exec); nothing was run",
            timeout.as_secs()
        ),
        Err(e) => bail!("--secrets-fd {fd}: cannot read: {}", crate::error::cause(&e)),
    };
    let Some(buf) = buf else {
        bail!("--secrets-fd {fd}: more than {MAX_BYTES} bytes of secrets; send fewer or smaller secrets");
    };
    parse(&buf)
}

/// Read everything from `r` into a zeroizing buffer; `None` if there is more than `max` bytes.
/// The buffer grows by doubling into a fresh zeroizing allocation, so every outgrown copy is
/// wiped when dropped (a plain `Vec` reallocation would leave copies behind), and memory stays
/// proportional to what was sent.
/// `wait` runs before each read (a deadline; tests pass a no-op).
fn read_zeroizing(
    r: &mut impl Read,
    max: usize,
    wait: &mut dyn FnMut() -> std::io::Result<()>,
) -> std::io::Result<Option<Zeroizing<Vec<u8>>>> {
    let mut buf = Zeroizing::new(Vec::with_capacity(4096));
    let mut chunk = Zeroizing::new([0u8; 4096]);
    loop {
        wait()?;
        let n = match r.read(&mut chunk[..]) {
            Ok(0) => return Ok(Some(buf)),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.len() + n > max {
            return Ok(None);
        }
        extend_zeroizing(&mut buf, &chunk[..n]);
    }
}

/// Append to a zeroizing buffer; when it must grow, copy into a fresh zeroizing allocation so the
/// outgrown one is wiped (a plain `Vec` reallocation would leave a copy behind).
pub fn extend_zeroizing(out: &mut Zeroizing<Vec<u8>>, bytes: &[u8]) {
    if out.len() + bytes.len() > out.capacity() {
        let mut bigger = Zeroizing::new(Vec::with_capacity(
            (out.capacity() * 2).max(out.len() + bytes.len()).max(16),
        ));
        bigger.extend_from_slice(out);
        *out = bigger;
    }
    out.extend_from_slice(bytes);
}

/// Parse secrets text, JSON object or `NAME=value` lines.
pub fn parse(input: &[u8]) -> Result<SecretSet> {
    let first = input.iter().find(|b| !b.is_ascii_whitespace());
    let set = match first {
        None => SecretSet::default(),
        Some(b'{') => parse_json(input)?,
        Some(_) => parse_lines(input)?,
    };
    Ok(set)
}

fn parse_json(input: &[u8]) -> Result<SecretSet> {
    let pairs = json::parse(input).map_err(|e| {
        anyhow::anyhow!(
            "secrets: {} (at line {}, column {}); send {{\"NAME\": \"value\", ...}} or NAME=value lines",
            e.what,
            e.line,
            e.column
        )
    })?;
    let mut set = Vec::with_capacity(pairs.len());
    for (i, (name, value)) in pairs.into_iter().enumerate() {
        check_name(&name, &format!("JSON key #{}", i + 1))?;
        check_value(&value, &name)?;
        set.push(Secret {
            name,
            value: SecretString::from(value.as_str()),
        });
    }
    finish(set)
}

fn parse_lines(input: &[u8]) -> Result<SecretSet> {
    let mut set = Vec::new();
    for (i, raw) in input.split(|&b| b == b'\n').enumerate() {
        let lineno = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let Ok(line) = std::str::from_utf8(raw) else {
            bail!("secrets: line {lineno} is not valid UTF-8");
        };
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let Some((name, value)) = trimmed.split_once('=') else {
            bail!("secrets: line {lineno} has no '=': write NAME=value, one per line");
        };
        let name = name.trim_end();
        check_name(name, &format!("line {lineno}"))?;
        check_value(value, name)?;
        set.push(Secret {
            name: name.to_string(),
            value: SecretString::from(value),
        });
    }
    finish(set)
}

fn check_name(name: &str, at: &str) -> Result<()> {
    if !is_env_name(name) {
        // The "name" may be a value pasted in the wrong place: never echo it.
        bail!("secrets: {at} has an invalid name (use letters, digits and '_', not starting with a digit, at most 128 bytes)");
    }
    Ok(())
}

fn check_value(value: &str, name: &str) -> Result<()> {
    if value.contains('\0') {
        bail!("secrets: the value of {name} contains a NUL byte, which cannot be passed in an environment variable");
    }
    Ok(())
}

fn finish(set: Vec<Secret>) -> Result<SecretSet> {
    if set.len() > MAX_COUNT {
        bail!(
            "secrets: {} secrets given; at most {MAX_COUNT} are accepted",
            set.len()
        );
    }
    let mut seen = BTreeSet::new();
    for s in &set {
        if !seen.insert(s.name.as_str()) {
            bail!(
                "secrets: {} is given more than once; send each name once",
                s.name
            );
        }
    }
    Ok(SecretSet(set))
}

/// Expose a value only where it is needed (building the target's environment).
pub fn expose(s: &Secret) -> &str {
    s.value.expose_secret()
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALUE: &str = "s3cr3t-VALUE-xyz";

    fn values(set: &SecretSet) -> Vec<(String, String)> {
        set.iter()
            .map(|s| (s.name.clone(), expose(s).to_string()))
            .collect()
    }

    #[test]
    fn json_and_lines_are_detected() {
        let j = parse(br#"  {"A": "1", "B_2": "x=y"}"#).unwrap();
        assert_eq!(
            values(&j),
            vec![("A".into(), "1".into()), ("B_2".into(), "x=y".into())]
        );
        let l = parse(b"# comment\nA=1\n\nB_2=x=y\r\n").unwrap();
        assert_eq!(
            values(&l),
            vec![("A".into(), "1".into()), ("B_2".into(), "x=y".into())]
        );
        assert_eq!(parse(b"").unwrap().iter().count(), 0);
    }

    #[test]
    fn json_values_keep_newlines_quotes_and_unicode() {
        let v = "line1\nline2 \"q\" = 'x' ünïcødé 🔑";
        let json = serde_json::to_string(&serde_json::json!({ "K": v })).unwrap();
        let set = parse(json.as_bytes()).unwrap();
        assert_eq!(expose(set.iter().next().unwrap()), v);
    }

    #[test]
    fn errors_never_contain_the_value() {
        let cases: Vec<Vec<u8>> = vec![
            format!("{{\"A\": 5, \"B\": \"{VALUE}\"}}").into_bytes(),
            format!("{{\"A\": [\"{VALUE}\"]}}").into_bytes(),
            format!("{{\"A\": \"{VALUE}\"").into_bytes(),
            format!("{{\"{VALUE}-bad name\": \"x\"}}").into_bytes(),
            format!("{{\"A\": \"{VALUE}\", \"A\": \"{VALUE}\"}}").into_bytes(),
            format!("{{\"A\": \"{VALUE}\\u0000\"}}").into_bytes(),
            format!("{VALUE}\n").into_bytes(),
            format!("bad name={VALUE}\n").into_bytes(),
            format!("{VALUE} = x\n").into_bytes(),
            format!("A={VALUE}\nA={VALUE}\n").into_bytes(),
            [b"A=".as_slice(), VALUE.as_bytes(), b"\xff\xfe\n"].concat(),
            [b"{\"A\": \"".as_slice(), VALUE.as_bytes(), b"\xff\"}"].concat(),
        ];
        for input in cases {
            let err = format!("{:#}", parse(&input).unwrap_err());
            assert!(!err.contains(VALUE), "value leaked in: {err}");
            assert!(!err.contains("xyz"), "part of value leaked in: {err}");
            assert!(err.starts_with("secrets:"), "{err}");
        }
    }

    #[test]
    fn duplicates_and_limits() {
        assert!(parse(b"{\"A\":\"1\",\"A\":\"2\"}").is_err());
        assert!(
            parse(b"{\"A\":\"1\",\"B\":{\"A\":\"x\"}}").is_err(),
            "nested objects are not strings"
        );
        let many: String = (0..=MAX_COUNT).map(|i| format!("S{i}=v\n")).collect();
        assert!(format!("{:#}", parse(many.as_bytes()).unwrap_err()).contains("at most"));
        let ok: String = (0..MAX_COUNT).map(|i| format!("S{i}=v\n")).collect();
        assert_eq!(parse(ok.as_bytes()).unwrap().iter().count(), MAX_COUNT);
    }

    #[test]
    fn reads_exactly_and_stops_past_the_limit() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let got = read_zeroizing(&mut &data[..], 200_000, &mut || Ok(()))
            .unwrap()
            .unwrap();
        assert_eq!(&got[..], &data[..]);
        assert!(read_zeroizing(&mut &data[..], 99_999, &mut || Ok(()))
            .unwrap()
            .is_none());
    }

    #[test]
    fn debug_output_hides_values() {
        let set = parse(format!("A={VALUE}").as_bytes()).unwrap();
        assert!(!format!("{set:?}").contains(VALUE));
    }

    #[test]
    fn injection_names_are_refused_naming_only_the_variable() {
        for name in [
            "LD_PRELOAD",
            "BASH_ENV",
            "NODE_OPTIONS",
            "GIT_CONFIG_KEY_0",
            "PERL5OPT",
        ] {
            let set = parse(format!("OK=1\n{name}={VALUE}").as_bytes()).unwrap();
            let err = format!("{:#}", set.check_injection(&[]).unwrap_err());
            assert!(err.contains(name) && !err.contains(VALUE), "{err}");
        }
        let ok = parse(format!("TOKEN={VALUE}\nPGPASSWORD=x").as_bytes()).unwrap();
        ok.check_injection(&[]).unwrap();
        // Delivered as a file, the variable holds sbx-exec's path: allowed.
        let file = parse(b"PGPASSFILE=host:5432:*:u:p").unwrap();
        assert!(file.check_injection(&[]).is_err());
        file.check_injection(&[EnvName("PGPASSFILE".into())])
            .unwrap();
    }

    #[test]
    fn allowlist_names_the_secret_only() {
        let set = parse(format!("AWS_KEY={VALUE}\nPGPASSWORD={VALUE}").as_bytes()).unwrap();
        set.check_allowed(
            "p",
            &[EnvPattern("AWS_*".into()), EnvPattern("PGPASSWORD".into())],
        )
        .unwrap();
        let err = set
            .check_allowed("p", &[EnvPattern("AWS_*".into())])
            .unwrap_err()
            .to_string();
        assert!(err.contains("PGPASSWORD") && !err.contains(VALUE), "{err}");
    }

    #[test]
    fn required_names_are_checked_naming_only_the_missing() {
        let req = |names: &[&str]| -> Vec<EnvName> {
            names.iter().map(|n| EnvName(n.to_string())).collect()
        };
        let set = parse(format!("PGPASSWORD={VALUE}\nTOKEN={VALUE}").as_bytes()).unwrap();
        set.check_required("p", &req(&["PGPASSWORD", "TOKEN"]))
            .unwrap();
        set.check_required("p", &[]).unwrap();
        let err = set
            .check_required("p", &req(&["PGPASSWORD", "AWS_KEY", "PGUSER"]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("requires the secrets AWS_KEY, PGUSER")
                && err.contains("has only PGPASSWORD, TOKEN")
                && !err.contains(VALUE),
            "{err}"
        );
        let err = SecretSet::default()
            .check_required("p", &req(&["PGPASSWORD"]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("requires the secret PGPASSWORD") && err.contains("empty"),
            "{err}"
        );
    }
}
