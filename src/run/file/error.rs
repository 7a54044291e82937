//! The typed errors of file operations: a kind a program can branch on, the errno behind it, and
//! the one JSON line that says so on stderr.

use std::ffi::OsStr;

use serde::Serialize;

/// What went wrong, as a program calling `sbx-exec file` branches on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    NotFound,
    PermissionDenied,
    IsADirectory,
    NotADirectory,
    Exists,
    NotEmpty,
    /// A symbolic link where none is followed (the last component of write), a link loop, or a
    /// magic /proc link.
    Symlink,
    /// A FIFO, socket or device where a regular file is read or written.
    NotRegular,
    /// No space, a quota, or a file size limit.
    TooLarge,
    /// The context's walls (a read-only mount), or sbx-exec refused the call (125).
    Refused,
    Usage,
    Io,
}

impl Kind {
    /// The kind of an errno.
    pub fn of_errno(errno: i32) -> Kind {
        match errno {
            libc::ENOENT => Kind::NotFound,
            libc::EACCES | libc::EPERM => Kind::PermissionDenied,
            libc::EISDIR => Kind::IsADirectory,
            libc::ENOTDIR => Kind::NotADirectory,
            libc::EEXIST => Kind::Exists,
            libc::ENOTEMPTY => Kind::NotEmpty,
            libc::ELOOP => Kind::Symlink,
            libc::ENXIO | libc::ENODEV => Kind::NotRegular,
            libc::EFBIG | libc::ENOSPC | libc::EDQUOT => Kind::TooLarge,
            libc::EROFS => Kind::Refused,
            _ => Kind::Io,
        }
    }
}

/// A failed operation: its kind, the errno when there is one, and what to tell a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: Kind,
    pub errno: Option<i32>,
    pub message: String,
}

impl Failure {
    pub fn new(kind: Kind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            errno: None,
            message: message.into(),
        }
    }

    /// `what` failed with `errno` (its kind from the errno).
    pub fn errno(errno: i32, what: impl std::fmt::Display) -> Failure {
        let e = nix::errno::Errno::from_raw(errno);
        Failure {
            kind: Kind::of_errno(errno),
            errno: Some(errno),
            message: format!("{what}: {}", e.desc()),
        }
    }

    /// [`Failure::errno`] from a `std::io::Error` (no errno: `io`).
    pub fn io(e: &std::io::Error, what: impl std::fmt::Display) -> Failure {
        match e.raw_os_error() {
            Some(n) => Failure::errno(n, what),
            None => Failure::new(Kind::Io, format!("{what}: {e}")),
        }
    }
}

/// The one JSON line (no newline) of a failure: `{"error":KIND,"op":OP,"path":PATH,
/// "errno":"ENOENT","message":TEXT}` (`errno` only when there is one; a path that is not UTF-8 is
/// shown with U+FFFD).
pub fn json_line(op: &str, path: &OsStr, f: &Failure) -> String {
    #[derive(Serialize)]
    struct Line<'a> {
        error: Kind,
        op: &'a str,
        path: std::borrow::Cow<'a, str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        errno: Option<String>,
        message: &'a str,
    }
    let line = Line {
        error: f.kind,
        op,
        path: path.to_string_lossy(),
        errno: f
            .errno
            .map(|n| format!("{:?}", nix::errno::Errno::from_raw(n))),
        message: &f.message,
    };
    serde_json::to_string(&line).unwrap_or_else(|_| {
        String::from("{\"error\":\"io\",\"message\":\"cannot encode the error\"}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errnos_map_to_the_documented_kinds() {
        for (errno, kind) in [
            (libc::ENOENT, "not_found"),
            (libc::EACCES, "permission_denied"),
            (libc::EPERM, "permission_denied"),
            (libc::EISDIR, "is_a_directory"),
            (libc::ENOTDIR, "not_a_directory"),
            (libc::EEXIST, "exists"),
            (libc::ENOTEMPTY, "not_empty"),
            (libc::ELOOP, "symlink"),
            (libc::ENXIO, "not_regular"),
            (libc::EFBIG, "too_large"),
            (libc::ENOSPC, "too_large"),
            (libc::EDQUOT, "too_large"),
            (libc::EROFS, "refused"),
            (libc::EIO, "io"),
            (libc::EMFILE, "io"),
        ] {
            let got = serde_json::to_value(Kind::of_errno(errno)).unwrap();
            assert_eq!(got, serde_json::json!(kind), "errno {errno}");
        }
    }

    #[test]
    fn the_json_line_is_one_object_on_one_line() {
        let f = Failure::errno(libc::ELOOP, "/w/x");
        let line = json_line("write", OsStr::new("/w/x\n"), &f);
        assert!(!line.contains('\n'), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["error"], "symlink");
        assert_eq!(v["op"], "write");
        assert_eq!(v["path"], "/w/x\n");
        assert_eq!(v["errno"], "ELOOP");
        let bare = json_line("rm", OsStr::new("a"), &Failure::new(Kind::Usage, "no"));
        let v: serde_json::Value = serde_json::from_str(&bare).unwrap();
        assert!(v.get("errno").is_none(), "{bare}");
    }
}
