//! Where the effective policy comes from: `--policy FILE`, else the system file, else the
//! embedded default.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::Policy;

/// The policy built into the binary, identical to `policies/default.toml`.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../policies/default.toml");
/// Where the system-wide policy lives.
pub const SYSTEM_POLICY: &str = "/etc/sbx/policy.toml";

/// Where the effective policy was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `--policy FILE`
    Flag(PathBuf),
    /// `/etc/sbx/policy.toml`
    System(PathBuf),
    /// The embedded default.
    Embedded,
}

impl Source {
    /// The policy file on disk, if any (so it can be bound read-only in confined contexts).
    pub fn path(&self) -> Option<&Path> {
        match self {
            Source::Flag(p) | Source::System(p) => Some(p),
            Source::Embedded => None,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag(p) => write!(f, "{} (from --policy)", p.display()),
            Source::System(p) => write!(f, "{} (system policy)", p.display()),
            Source::Embedded => f.write_str("embedded default policy"),
        }
    }
}

/// A parsed and validated policy, with where it came from.
#[derive(Debug)]
pub struct Loaded {
    pub policy: Policy,
    pub source: Source,
    /// The exact text that was parsed (for `policy show`).
    pub text: String,
}

/// The largest policy file sbx-exec reads: 4 MiB (the shipped policies are a few KiB). A larger
/// file is refused before it is read, so a wrong path (a disk image, a log) costs a clear 125,
/// not the memory to hold it.
pub const MAX_POLICY_BYTES: u64 = 4 << 20;

/// Find, read, parse and validate the effective policy: `--policy FILE`, else the system file, else
/// the embedded default.
pub fn load(flag: Option<&Path>) -> Result<Loaded> {
    let (source, text) = match flag {
        Some(path) => {
            let source = Source::Flag(path.to_path_buf());
            let text = read_policy_file(path, &source.to_string())?;
            (source, text)
        }
        None => {
            let system = Path::new(SYSTEM_POLICY);
            match read_policy(system, &Source::System(system.to_path_buf()).to_string()) {
                Ok(text) => (Source::System(system.to_path_buf()), text),
                Err(Unread::Open(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                    (Source::Embedded, EMBEDDED_DEFAULT.to_string())
                }
                Err(e) => return Err(e.into_error(system, SYSTEM_FIX)),
            }
        }
    };
    let policy = Policy::parse(&text, &source.to_string())?;
    Ok(Loaded {
        policy,
        source,
        text,
    })
}

/// What to do about a `--policy` (or `policy check`) file that cannot be read.
const FLAG_FIX: &str =
    "give the path of a policy file (TOML text of at most 4 MiB), e.g. --policy ./policy.toml";
/// What to do about a system policy that cannot be read.
const SYSTEM_FIX: &str =
    "make it a policy file (TOML text of at most 4 MiB), or remove it to use the embedded default";

/// `origin` names the file in a message about its text.
fn read_policy_file(path: &Path, origin: &str) -> Result<String> {
    read_policy(path, origin).map_err(|e| e.into_error(path, FLAG_FIX))
}

/// Why a policy file was not read.
enum Unread {
    /// It could not be opened (or inspected, or read).
    Open(std::io::Error),
    /// It is not a regular file: what it is.
    NotRegular(&'static str),
    /// It is larger than [`MAX_POLICY_BYTES`]: its size (at least).
    TooLarge(u64),
    /// Its bytes are not a policy's text (not UTF-8).
    Text(super::PolicyError),
}

impl Unread {
    /// The error: what is wrong with `path`, then `fix`.
    fn into_error(self, path: &Path, fix: &str) -> anyhow::Error {
        let p = path.display();
        let problem = match self {
            Unread::Open(e) => crate::error::cause(&e),
            Unread::NotRegular(what) => format!("it is {what}, not a regular file"),
            Unread::TooLarge(n) => format!(
                "it is {n} bytes, more than the {} MiB a policy file may have",
                MAX_POLICY_BYTES >> 20
            ),
            Unread::Text(e) => return e.into(),
        };
        anyhow::anyhow!("cannot read policy {p}: {problem}; {fix}")
    }
}

/// What a file of this type is, unless it is a regular file.
fn not_regular(ft: std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    Some(match () {
        _ if ft.is_file() => return None,
        _ if ft.is_dir() => "a directory",
        _ if ft.is_fifo() => "a FIFO (named pipe)",
        _ if ft.is_char_device() => "a character device",
        _ if ft.is_block_device() => "a block device",
        _ if ft.is_socket() => "a socket",
        _ => "not a file",
    })
}

/// Read a policy file that never blocks and never holds more than [`MAX_POLICY_BYTES`]: only a
/// regular file (its type checked before it is opened, and again on the open file, which is opened
/// `O_NONBLOCK`, so a FIFO without a writer or a device does not hang the call), at most the cap
/// plus one byte (a file that grows while it is read is refused too). `origin` names it in a
/// message about its text.
fn read_policy(path: &Path, origin: &str) -> std::result::Result<String, Unread> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let meta = std::fs::metadata(path).map_err(Unread::Open)?;
    if let Some(what) = not_regular(meta.file_type()) {
        return Err(Unread::NotRegular(what));
    }
    if meta.len() > MAX_POLICY_BYTES {
        return Err(Unread::TooLarge(meta.len()));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
        .map_err(Unread::Open)?;
    let meta = file.metadata().map_err(Unread::Open)?;
    if let Some(what) = not_regular(meta.file_type()) {
        return Err(Unread::NotRegular(what));
    }
    let mut bytes = Vec::with_capacity(meta.len().min(MAX_POLICY_BYTES) as usize + 1);
    file.take(MAX_POLICY_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(Unread::Open)?;
    if bytes.len() as u64 > MAX_POLICY_BYTES {
        return Err(Unread::TooLarge(meta.len().max(MAX_POLICY_BYTES + 1)));
    }
    Policy::text_from(bytes, origin).map_err(Unread::Text)
}

/// Read and validate a policy file without running anything (`sbx-exec policy check`); the
/// policy and its text (for the lines of warnings).
pub fn check_file(path: &Path) -> Result<(Policy, String)> {
    let origin = path.display().to_string();
    let text = read_policy_file(path, &origin)?;
    let p = Policy::parse(&text, &origin)?;
    Ok((p, text))
}
