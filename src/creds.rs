//! Secrets delivered as files (`[context.NAME.secrets] files = ["PGPASSFILE", ...]`), like
//! systemd's `LoadCredential=`: each listed secret is written to `/run/credentials/sbx/NAME`
//! (mode 0400, owned by the target's uid; the directory 0500) on a tmpfs that the sandbox's pid 1
//! mounts inside the invocation's private mount namespace. The variable NAME holds the file's path
//! and `CREDENTIALS_DIRECTORY` the directory. The tmpfs dies with the mount namespace, so nothing
//! of it exists outside the invocation.
//!
//! Planning ([`Files::split`]) happens in the outer process; [`prepare_mount_point`] and
//! [`install`] run in pid 1. Every path is opened without following symlinks.

use std::ffi::CStr;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};

use anyhow::{bail, Context as _, Result};
use nix::fcntl::OFlag;
use nix::sys::stat::{fchmod, fstat, mkdirat, Mode, SFlag};
use nix::unistd::{fchown, Gid, Uid};
use zeroize::Zeroizing;

use crate::policy::{EnvName, RunAs};
use crate::secrets::{expose, SecretSet};
use crate::sys::{self, MountFlag};

/// Where the private tmpfs is mounted (created, empty, if missing).
const MOUNT_AT: &CStr = c"/run/credentials";
const PARENT: &CStr = c"/run";
const LEAF: &CStr = c"credentials";
/// The directory `CREDENTIALS_DIRECTORY` names.
pub const DIR: &str = "/run/credentials/sbx";

/// The secrets to write as files, and who owns them.
pub struct Files {
    entries: Vec<(String, Zeroizing<Vec<u8>>)>,
    uid: u32,
    gid: u32,
}

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.entries.iter().map(|(n, _)| n.as_str()).collect();
        write!(f, "Files({names:?}, uid {})", self.uid)
    }
}

impl Files {
    /// The handed secrets whose names `files` lists (copied into zeroizing buffers); `None` when
    /// there are none. The caller leaves these out of the environment (see [`Files::is_file`]).
    pub fn split(set: &SecretSet, files: &[EnvName], run_as: Option<RunAs>) -> Option<Files> {
        let entries: Vec<_> = set
            .iter()
            .filter(|s| files.iter().any(|f| f.0 == s.name))
            .map(|s| {
                (
                    s.name.clone(),
                    Zeroizing::new(expose(s).as_bytes().to_vec()),
                )
            })
            .collect();
        if entries.is_empty() {
            return None;
        }
        let (uid, gid) = run_as.map_or((0, 0), |r| (r.uid, r.gid));
        Some(Files { entries, uid, gid })
    }

    /// Is `name` delivered as a file (so its value must stay out of the environment)?
    pub fn is_file(files: &Option<Files>, name: &str) -> bool {
        files
            .as_ref()
            .is_some_and(|f| f.entries.iter().any(|(n, _)| n == name))
    }

    /// The variables the target gets: NAME=path for each file, and CREDENTIALS_DIRECTORY.
    pub fn variables(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .entries
            .iter()
            .map(|(n, _)| (n.clone(), format!("{DIR}/{n}")))
            .collect();
        v.push(("CREDENTIALS_DIRECTORY".into(), DIR.into()));
        v
    }
}

/// In pid 1, before the policy's mounts (which may make `/run` read-only): make sure the mount
/// point `/run/credentials` exists as a real directory. Creating it is the only trace outside.
pub fn prepare_mount_point() -> Result<()> {
    let run = crate::mounts::open(PARENT)?
        .context("/run does not exist; secrets.files needs it for /run/credentials")?;
    match mkdirat(Some(run.as_raw_fd()), LEAF, Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
        Err(e) => bail!("cannot create /run/credentials for secrets.files: {e}"),
    }
    let at = crate::mounts::open(MOUNT_AT)?.context("/run/credentials vanished")?;
    if !is_dir(&at)? {
        bail!("/run/credentials is not a directory; remove it so secrets.files can mount its private tmpfs there");
    }
    Ok(())
}

/// In pid 1, after the policy's mounts: mount the private tmpfs, write the files, then make the
/// tmpfs read-only.
pub fn install(files: &Files) -> Result<()> {
    let at = crate::mounts::open(MOUNT_AT)?.context(
        "/run/credentials is covered by the context's [fs] settings (a tmpfs or hide on /run); \
         secrets.files mounts its private tmpfs there, so leave /run/credentials visible",
    )?;
    crate::mounts::tmpfs(&at, 0o755, nix::mount::MsFlags::MS_NOEXEC)
        .context("cannot mount the private tmpfs on /run/credentials (secrets.files)")?;
    drop(at);
    // Reopen: the handle must name the new tmpfs, not the directory under it.
    let root = crate::mounts::open(MOUNT_AT)?.context("/run/credentials vanished")?;
    mkdirat(
        Some(root.as_raw_fd()),
        c"sbx",
        Mode::from_bits_truncate(0o700),
    )
    .context("cannot create /run/credentials/sbx")?;
    let dir = openat(&root, c"sbx", OFlag::O_DIRECTORY | OFlag::O_RDONLY, 0)?;
    for (name, value) in &files.entries {
        let cname = std::ffi::CString::new(name.as_str()).expect("names have no NUL");
        let fd = openat(
            &dir,
            &cname,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
            0o400,
        )
        .with_context(|| format!("cannot create the credential file for {name}"))?;
        fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(0o400))?;
        fchown(
            fd.as_raw_fd(),
            Some(Uid::from_raw(files.uid)),
            Some(Gid::from_raw(files.gid)),
        )?;
        let mut f = std::fs::File::from(fd);
        f.write_all(value)
            .with_context(|| format!("cannot write the credential file for {name}"))?;
    }
    fchown(
        dir.as_raw_fd(),
        Some(Uid::from_raw(files.uid)),
        Some(Gid::from_raw(files.gid)),
    )?;
    fchmod(dir.as_raw_fd(), Mode::from_bits_truncate(0o500))?;
    drop(dir);
    sys::mount_setattr(&root, MountFlag::ReadOnly)
        .context("cannot make /run/credentials read-only")?;
    Ok(())
}

fn is_dir(fd: &OwnedFd) -> Result<bool> {
    let st = fstat(fd.as_raw_fd())?;
    Ok(SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
}

/// `openat(dir, name, flags | O_NOFOLLOW | O_CLOEXEC, mode)`, owned.
fn openat(dir: &OwnedFd, name: &CStr, flags: OFlag, mode: u32) -> Result<OwnedFd> {
    let fd = nix::fcntl::openat(
        Some(dir.as_raw_fd()),
        name,
        flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(mode),
    )
    .with_context(|| format!("cannot open {}", name.to_string_lossy()))?;
    Ok(sys::own_fd(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_takes_only_listed_names_and_owner_follows_run_as() {
        let set = crate::secrets::parse(b"PGPASSFILE=h:5432:*:u:pw\nTOKEN=abc\n").unwrap();
        let files = [EnvName("PGPASSFILE".into())];
        let f = Files::split(
            &set,
            &files,
            Some(RunAs {
                uid: 1000,
                gid: 100,
            }),
        )
        .unwrap();
        assert_eq!(f.uid, 1000);
        assert_eq!(f.gid, 100);
        assert_eq!(
            f.variables(),
            vec![
                ("PGPASSFILE".to_string(), format!("{DIR}/PGPASSFILE")),
                ("CREDENTIALS_DIRECTORY".to_string(), DIR.to_string()),
            ]
        );
        let some = Some(f);
        assert!(Files::is_file(&some, "PGPASSFILE"));
        assert!(!Files::is_file(&some, "TOKEN"));
        assert!(!format!("{some:?}").contains("pw"));
        assert!(Files::split(&set, &[EnvName("OTHER".into())], None).is_none());
        let f = Files::split(&set, &files, None).unwrap();
        assert_eq!((f.uid, f.gid), (0, 0));
    }
}
