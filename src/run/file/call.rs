//! One file operation as data: what the launcher checks before anything starts (pure), the
//! argument vector it hands the tool, and how the tool reads it back (the same clap definition
//! as the command line, so both read an operation the same way).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use clap::Parser;

use crate::cli::FileOp;

/// The tool's program name (argv[0]): `sbx-exec` started so runs one file operation.
pub const ROLE: &str = "sbx-file";

/// The operation's name, as in `sbx-exec file NAME`.
pub fn name(op: &FileOp) -> &'static str {
    match op {
        FileOp::Read { .. } => "read",
        FileOp::Write { .. } => "write",
        FileOp::Stat { .. } => "stat",
        FileOp::Ls { .. } => "ls",
        FileOp::Exists { .. } => "exists",
        FileOp::Rm { .. } => "rm",
        FileOp::Mkdir { .. } => "mkdir",
    }
}

/// The one path it names.
pub fn path(op: &FileOp) -> &Path {
    match op {
        FileOp::Read { path }
        | FileOp::Write { path, .. }
        | FileOp::Stat { path }
        | FileOp::Ls { path }
        | FileOp::Exists { path }
        | FileOp::Rm { path, .. }
        | FileOp::Mkdir { path, .. } => path,
    }
}

/// Refused before anything starts (exit 2): an empty path, and for write, rm and mkdir a path
/// that names no entry of a directory (`/`, or ending in `.` or `..`). Pure: nothing is opened.
pub fn check(op: &FileOp) -> Result<(), String> {
    let p = path(op).as_os_str();
    if p.is_empty() {
        return Err("the path is empty".into());
    }
    if let FileOp::Write { .. } | FileOp::Rm { .. } | FileOp::Mkdir { .. } = op {
        if split(p).is_none() {
            return Err(format!(
                "{}: {} needs a path that ends in a name (not /, . or ..)",
                p.to_string_lossy(),
                name(op)
            ));
        }
    }
    Ok(())
}

/// A path as its directory and last name, and whether it ended in `/` (then it names a
/// directory). Byte-wise, as the kernel reads it: `a/.` is not `a`. `None` when the last
/// component is `.` or `..`, or there is none (`/`, empty).
pub fn split(path: &OsStr) -> Option<(&OsStr, &OsStr, bool)> {
    let b = path.as_bytes();
    let trimmed = match b.iter().rposition(|&c| c != b'/') {
        Some(end) => &b[..=end],
        None => return None,
    };
    let slash = trimmed.len() != b.len();
    let (dir, name) = match trimmed.iter().rposition(|&c| c == b'/') {
        Some(0) => (&b"/"[..], &trimmed[1..]),
        Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
        None => (&b"."[..], trimmed),
    };
    if name == b"." || name == b".." {
        return None;
    }
    Some((OsStr::from_bytes(dir), OsStr::from_bytes(name), slash))
}

/// The tool's argument vector: `sbx-file OP [FLAGS] -- PATH`.
pub fn argv(op: &FileOp) -> Vec<OsString> {
    let mut v: Vec<OsString> = vec![ROLE.into(), name(op).into()];
    match op {
        FileOp::Write { append, mode, .. } => {
            if *append {
                v.push("--append".into());
            }
            if let Some(m) = mode {
                v.push(format!("--mode={m:o}").into());
            }
        }
        FileOp::Rm {
            recursive: true, ..
        } => v.push("--recursive".into()),
        FileOp::Mkdir { parents: true, .. } => v.push("--parents".into()),
        _ => {}
    }
    v.push("--".into());
    v.push(path(op).as_os_str().to_os_string());
    v
}

/// The tool's command line: the operation, parsed as `sbx-exec file` parses it.
#[derive(Debug, Parser)]
#[command(name = ROLE, disable_help_flag = true, disable_version_flag = true)]
struct ToolArgs {
    #[command(subcommand)]
    op: FileOp,
}

/// Read the operation back from the tool's argument vector.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<FileOp, String> {
    ToolArgs::try_parse_from(args)
        .map(|t| t.op)
        .map_err(|e| e.to_string().lines().next().unwrap_or_default().to_string())
}

/// What the audit log records as the call's command: `sbx-exec file OP PATH`.
pub fn audit_cmd(op: &FileOp) -> Vec<OsString> {
    let p: PathBuf = path(op).to_path_buf();
    vec!["sbx-exec".into(), "file".into(), name(op).into(), p.into()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn every_operation_reaches_the_tool_as_it_was_asked() {
        let ops = [
            FileOp::Read { path: p("/w/a") },
            FileOp::Write {
                path: p("-rf"),
                append: true,
                mode: Some(0o600),
            },
            FileOp::Write {
                path: p("/w/--mode=7777"),
                append: false,
                mode: None,
            },
            FileOp::Stat { path: p("x y") },
            FileOp::Ls { path: p("/") },
            FileOp::Exists { path: p("--help") },
            FileOp::Rm {
                path: p("/w/t"),
                recursive: true,
            },
            FileOp::Rm {
                path: p("t"),
                recursive: false,
            },
            FileOp::Mkdir {
                path: p("/w/a/b"),
                parents: true,
            },
        ];
        for op in ops {
            let v = argv(&op);
            assert_eq!(v[0], ROLE);
            assert_eq!(parse(v.clone()).as_ref(), Ok(&op), "{v:?}");
        }
        assert!(parse(["sbx-file".into(), "chmod".into(), "x".into()]).is_err());
        let bad_mode = ["sbx-file", "write", "--mode=4755", "--", "x"].map(OsString::from);
        assert!(parse(bad_mode).unwrap_err().contains("setuid"));
    }

    #[test]
    fn split_reads_the_last_component_as_the_kernel_does() {
        let s = |x: &str| {
            split(OsStr::new(x)).map(|(d, n, sl)| {
                (
                    d.to_str().unwrap().to_string(),
                    n.to_str().unwrap().to_string(),
                    sl,
                )
            })
        };
        let t = |d: &str, n: &str, sl: bool| Some((d.to_string(), n.to_string(), sl));
        assert_eq!(s("/w/x"), t("/w", "x", false));
        assert_eq!(s("/x"), t("/", "x", false));
        assert_eq!(s("x"), t(".", "x", false));
        assert_eq!(s("a/b//"), t("a", "b", true));
        assert_eq!(s("//x"), t("/", "x", false));
        assert_eq!(s("a/./b"), t("a/.", "b", false));
        for none in ["/", "//", "", ".", "..", "a/.", "a/..", "a/./", "/w/../"] {
            assert_eq!(s(none), None, "{none:?}");
        }
    }

    #[test]
    fn paths_that_name_no_entry_are_usage_errors_where_one_is_made_or_removed() {
        let rm = |x: &str| FileOp::Rm {
            path: p(x),
            recursive: true,
        };
        assert!(check(&rm("/")).is_err());
        assert!(check(&rm("/w/..")).is_err());
        assert!(check(&rm(".")).is_err());
        assert!(check(&rm("")).is_err());
        assert!(check(&rm("/w/x")).is_ok());
        assert!(check(&FileOp::Ls { path: p(".") }).is_ok());
        assert!(check(&FileOp::Read { path: p("") }).is_err());
    }
}
