//! The system policy as setuid mode reads it: `/etc/sbx/policy.toml` only if root alone can have
//! written it. The file and every directory above it must be owned by root and not writable by
//! group or others; nothing is followed through a symlink. A missing file (in trusted
//! directories) means the embedded default.
//!
//! The judgement on one file's owner and mode is pure ([`judge`]) and unit-tested on fake facts.

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{anyhow, bail, Context as _, Result};
use nix::sys::stat::{fstat, SFlag};

use crate::model::{self, Loaded, Policy, Source};
use crate::sys;

/// What [`judge`] needs to know about a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    pub uid: u32,
    /// `st_mode`, type bits included.
    pub mode: u32,
}

/// Is a file with these facts safe to trust in setuid mode? `Err` says why not.
pub fn judge(facts: Facts, want_dir: bool) -> std::result::Result<(), String> {
    let kind = SFlag::from_bits_truncate(facts.mode) & SFlag::S_IFMT;
    let want = if want_dir {
        SFlag::S_IFDIR
    } else {
        SFlag::S_IFREG
    };
    if kind != want {
        return Err(format!(
            "is not a {}",
            if want_dir {
                "directory"
            } else {
                "regular file"
            }
        ));
    }
    super::only_root_can_change(facts.uid, facts.mode)
}

fn facts(fd: &OwnedFd) -> Result<Facts> {
    let st = fstat(fd.as_raw_fd())?;
    Ok(Facts {
        uid: st.st_uid,
        mode: st.st_mode,
    })
}

fn refuse(path: &Path, shown: &Path, why: &str) -> anyhow::Error {
    anyhow!(
        "refusing the system policy {} in setuid mode: {} {why}, so someone other than root could have written it; \
         fix it as root (chown root:root {}; chmod go-w {}) or remove the setuid bit",
        path.display(),
        shown.display(),
        shown.display(),
        shown.display()
    )
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("a fixed path has no NUL")
}

/// Read `path` (the system policy) for setuid mode, or fall back to the embedded default when it
/// does not exist.
pub fn load_trusted(path: &Path) -> Result<Loaded> {
    let embedded = || -> Result<Loaded> {
        Ok(Loaded {
            policy: Policy::parse(model::EMBEDDED_DEFAULT, "embedded default policy")?,
            source: Source::Embedded,
            text: model::EMBEDDED_DEFAULT.to_string(),
        })
    };
    // Directories first, from / down: once one is trusted, only root can change what it holds.
    let mut dirs: Vec<&Path> = path.ancestors().skip(1).collect();
    dirs.reverse();
    for dir in dirs {
        match sys::open_path_nofollow(&cpath(dir)) {
            Ok(fd) => judge(facts(&fd)?, true).map_err(|why| refuse(path, dir, &why))?,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return embedded(),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(refuse(path, dir, "is a symbolic link"))
            }
            Err(e) => return Err(e).with_context(|| format!("cannot open {}", dir.display())),
        }
    }
    let fd = match sys::open_read_nofollow(&cpath(path)) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return embedded(),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(refuse(path, path, "is a symbolic link"))
        }
        Err(e) => return Err(e).with_context(|| format!("cannot open policy {}", path.display())),
    };
    judge(facts(&fd)?, false).map_err(|why| refuse(path, path, &why))?;
    // Root's file, but read like any other policy: at most MAX_POLICY_BYTES.
    let mut text = String::new();
    std::fs::File::from(fd)
        .take(model::load::MAX_POLICY_BYTES + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read policy {}", path.display()))?;
    if text.len() as u64 > model::load::MAX_POLICY_BYTES {
        bail!(
            "the system policy {} is larger than {} MiB; a policy is TOML text of at most that",
            path.display(),
            model::load::MAX_POLICY_BYTES >> 20
        );
    }
    let source = Source::System(path.to_path_buf());
    let policy = Policy::parse(&text, &source.to_string())?;
    if policy.context.is_empty() {
        bail!("the system policy {} defines no context", path.display());
    }
    Ok(Loaded {
        policy,
        source,
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REG: u32 = libc::S_IFREG;
    const DIR: u32 = libc::S_IFDIR;

    #[test]
    fn only_root_owned_unwritable_files_are_trusted() {
        assert!(judge(
            Facts {
                uid: 0,
                mode: REG | 0o644
            },
            false
        )
        .is_ok());
        assert!(judge(
            Facts {
                uid: 0,
                mode: REG | 0o600
            },
            false
        )
        .is_ok());
        let e = judge(
            Facts {
                uid: 0,
                mode: REG | 0o666,
            },
            false,
        )
        .unwrap_err();
        assert!(
            e.contains("writable by group or others") && e.contains("666"),
            "{e}"
        );
        assert!(judge(
            Facts {
                uid: 0,
                mode: REG | 0o664
            },
            false
        )
        .is_err());
        let e = judge(
            Facts {
                uid: 1000,
                mode: REG | 0o644,
            },
            false,
        )
        .unwrap_err();
        assert!(e.contains("uid 1000"), "{e}");
        // A directory where the file should be, and the other way round.
        assert!(judge(
            Facts {
                uid: 0,
                mode: DIR | 0o755
            },
            false
        )
        .is_err());
        assert!(judge(
            Facts {
                uid: 0,
                mode: REG | 0o755
            },
            true
        )
        .is_err());
    }

    #[test]
    fn directories_must_not_be_writable_by_others_even_sticky() {
        assert!(judge(
            Facts {
                uid: 0,
                mode: DIR | 0o755
            },
            true
        )
        .is_ok());
        assert!(judge(
            Facts {
                uid: 0,
                mode: DIR | 0o1777
            },
            true
        )
        .is_err());
        assert!(judge(
            Facts {
                uid: 0,
                mode: DIR | 0o775
            },
            true
        )
        .is_err());
        assert!(judge(
            Facts {
                uid: 5,
                mode: DIR | 0o755
            },
            true
        )
        .is_err());
    }

    #[test]
    fn missing_file_means_the_embedded_default() {
        let l = load_trusted(Path::new("/nonexistent-sbx-dir/policy.toml")).unwrap();
        assert_eq!(l.source, Source::Embedded);
    }

    #[test]
    fn a_file_in_a_world_writable_directory_is_refused() {
        // The temp dir (mode 1777) is writable by others: refused before the file is even read.
        let dir = std::env::temp_dir().join(format!("sbx-sysp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .unwrap();
        let e = load_trusted(&dir.join("policy.toml"))
            .unwrap_err()
            .to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            e.contains("writable by group or others") || e.contains("not root"),
            "{e}"
        );
    }
}
