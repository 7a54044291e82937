//! Work areas made writable for the code of a context that is not host root
//! ([`crate::plan::workareas`]): before each launch in root mode, each `fs.writable` area that
//! exists gets the ACL grant for the context's host ids, unless it already has it or belongs to
//! them. Opened without following links; a file system without POSIX ACLs is reported, not
//! fatal (the area then stays as it was: readable, not writable, inside).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;

use crate::model::{AbsPath, RunAs};
use crate::plan::workareas::{self, Entry};
use crate::sys;

/// What one area needs or got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Area {
    /// Missing: skipped (as the mount plan skips it).
    Missing,
    /// Already writable for the grantee (its owner, or the grant is there).
    Ready,
    /// The grant was (or, for `probe`, would be) written.
    Granted,
    /// Cannot be granted: why, and what to do.
    Refused(String),
}

/// Check each area and, unless `dry_run` (`probe`), grant what is missing.
pub fn ensure(areas: &[AbsPath], who: RunAs, dry_run: bool) -> Vec<(AbsPath, Area)> {
    areas
        .iter()
        .map(|a| (a.clone(), one(a, who, dry_run)))
        .collect()
}

fn one(area: &AbsPath, who: RunAs, dry_run: bool) -> Area {
    let Ok(path) = CString::new(area.as_path().as_os_str().as_bytes()) else {
        return Area::Missing;
    };
    let fd = match sys::open_dir_nofollow(&path) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Area::Missing,
        Err(e) => {
            return Area::Refused(format!(
                "cannot open it ({}); make it a directory reached without symbolic links",
                crate::error::cause(&e)
            ))
        }
    };
    let Ok(st) = nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(&fd)) else {
        return Area::Refused("cannot stat it".into());
    };
    if st.st_uid == who.uid {
        return Area::Ready;
    }
    let read = |name: &str| -> Result<Vec<Entry>, std::io::Error> {
        let n = CString::new(name).expect("no NUL in an attribute name");
        Ok(match sys::fgetxattr(&fd, &n)? {
            Some(bytes) => {
                workareas::parse(&bytes).unwrap_or_else(|| workareas::from_mode(st.st_mode))
            }
            None => workareas::from_mode(st.st_mode),
        })
    };
    let no_acl = |e: &std::io::Error| {
        Area::Refused(format!(
            "its file system does not take POSIX ACLs ({}); give it to host uid {} (chown {}:{} {}), or mount it with ACL support",
            crate::error::cause(e),
            who.uid,
            who.uid,
            who.gid,
            area.as_path().display()
        ))
    };
    let (access, default) = match (read(workareas::ACCESS), read(workareas::DEFAULT)) {
        (Ok(a), Ok(d)) => (a, d),
        (Err(e), _) | (_, Err(e)) => return no_acl(&e),
    };
    if workareas::grants(&access, who) && workareas::grants(&default, who) {
        return Area::Ready;
    }
    if dry_run {
        return Area::Granted;
    }
    for (name, acl) in [(workareas::ACCESS, &access), (workareas::DEFAULT, &default)] {
        if workareas::grants(acl, who) {
            continue;
        }
        let n = CString::new(name).expect("no NUL in an attribute name");
        if let Err(e) = sys::fsetxattr(
            &fd,
            &n,
            &workareas::encode(&workareas::with_grant(acl, who)),
        ) {
            return match e.raw_os_error() {
                Some(libc::EOPNOTSUPP) => no_acl(&e),
                _ => Area::Refused(format!("cannot set its ACL ({})", crate::error::cause(&e))),
            };
        }
    }
    Area::Granted
}
