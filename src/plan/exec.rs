//! The command: resolved to a path before anything is created (so "not found" is 127 and "not
//! executable" is 126 with a clear message) and checked against the context's `[exec]` rules. The
//! target executes it after its last privilege changes ([`crate::run::target`]).

use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::error::Refusal;
use crate::model::ExecPolicy;

/// Find `name` as `execvp` would, in the target's `PATH`.
pub fn resolve(name: &OsStr, path_var: &OsStr) -> std::result::Result<PathBuf, Refusal> {
    let show = |p: &Path| p.display().to_string();
    if name.as_bytes().contains(&b'/') {
        let p = PathBuf::from(name);
        return match check_executable(&p) {
            Ok(()) => Ok(p),
            Err(Some(why)) => Err(Refusal::NotExecutable {
                path: show(&p),
                why,
            }),
            Err(None) => Err(Refusal::NotFound {
                name: show(&p),
                path: "(not searched: the name has a '/')".into(),
            }),
        };
    }
    let mut not_executable = None;
    for dir in path_var
        .as_bytes()
        .split(|&b| b == b':')
        .filter(|d| !d.is_empty())
    {
        let candidate = Path::new(OsStr::from_bytes(dir)).join(name);
        match check_executable(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(Some(why)) if not_executable.is_none() => not_executable = Some((candidate, why)),
            Err(_) => {}
        }
    }
    match not_executable {
        Some((p, why)) => Err(Refusal::NotExecutable {
            path: show(&p),
            why,
        }),
        None => Err(Refusal::NotFound {
            name: name.to_string_lossy().into_owned(),
            path: path_var.to_string_lossy().into_owned(),
        }),
    }
}

/// `Ok` if `p` is an executable file; `Err(Some(why))` if it exists but cannot be run; `Err(None)`
/// if it does not exist.
fn check_executable(p: &Path) -> std::result::Result<(), Option<String>> {
    let meta = match std::fs::metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(None),
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => return Err(None),
        Err(e) => return Err(Some(e.to_string())),
    };
    if meta.is_dir() {
        return Err(Some("it is a directory".into()));
    }
    if !meta.is_file() {
        return Err(Some("it is not a regular file".into()));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(Some("it has no execute permission (chmod +x)".into()));
    }
    Ok(())
}

/// Apply the context's `[exec]` rules to the resolved program: the allowlist (compared after
/// resolving symlinks), `deny_under`, and the ownership check. Returns the real path to exec.
pub fn check_allowed(ctx: &str, path: &Path, rules: &ExecPolicy) -> Result<PathBuf> {
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    if !rules.allow.is_empty() && !rules.allow.iter().any(|a| a.as_path() == real) {
        bail!(
            "{} is not allowed in context {ctx:?}; add it to [context.{ctx}.exec] allow, or run an allowed program",
            real.display()
        );
    }
    if let Some(dir) = rules.deny_under.iter().find(|d| d.contains(&real)) {
        bail!(
            "{} is under {dir}, where untrusted code can write, so context {ctx:?} will not run it \
             ([context.{ctx}.exec] deny_under); install the program in a root-owned system directory",
            real.display()
        );
    }
    if rules.verify_owner && !rules.trusted.iter().any(|t| t.contains(&real)) {
        verify_owner(ctx, &real)?;
        verify_links(ctx, path)?;
    }
    // Exec the path as found, not the resolved one: a script reached through a symlink (psql ->
    // pg_wrapper, busybox-style tools) learns its name from the path the kernel passes it.
    Ok(path.to_path_buf())
}

/// With `verify_owner`, each symlink on the way from `path` to the program must be owned by root
/// and sit in a directory that passes the ownership check, so nobody but root can redirect it
/// between this check and the exec.
fn verify_links(ctx: &str, path: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            return Ok(());
        };
        let parent = p.parent().unwrap_or(Path::new("/"));
        let dir = std::fs::canonicalize(parent).unwrap_or_else(|_| parent.to_path_buf());
        verify_owner(ctx, &dir)?;
        if !meta.file_type().is_symlink() {
            return Ok(());
        }
        if meta.uid() != 0 {
            bail!(
                "refusing to run {} in context {ctx:?}: the symbolic link {} is owned by uid {}, not root ([context.{ctx}.exec] verify_owner)",
                path.display(),
                p.display(),
                meta.uid()
            );
        }
        let target = std::fs::read_link(&p)?;
        p = dir.join(target);
    }
    bail!("{}: too many levels of symbolic links", path.display())
}

/// The program and each directory above it must be owned by root and not writable by group or
/// others: otherwise someone other than root may have replaced what is about to get secrets.
fn verify_owner(ctx: &str, real: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    for p in real.ancestors() {
        let meta = std::fs::symlink_metadata(p)
            .map_err(|e| anyhow::anyhow!("cannot check {}: {e}", p.display()))?;
        if let Err(why) = crate::privilege::only_root_can_change(meta.uid(), meta.mode()) {
            bail!(
                "refusing to run {} in context {ctx:?}: {} {why}, so it could have been tampered with \
                 ([context.{ctx}.exec] verify_owner); fix the ownership/permissions or list the path in exec.trusted",
                real.display(),
                p.display()
            );
        }
    }
    Ok(())
}

/// The command line as C strings, for `execve` (a NUL inside an argument is an error naming its
/// position).
pub fn argv(cmd: &[OsString]) -> Result<Vec<CString>> {
    cmd.iter()
        .enumerate()
        .map(|(i, a)| {
            CString::new(a.as_bytes())
                .map_err(|_| anyhow::anyhow!("argument {i} of the command contains a NUL byte"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_like_execvp() {
        let p = resolve(OsStr::new("sh"), OsStr::new("/nonexistent:/bin:/usr/bin")).unwrap();
        assert!(p.ends_with("sh"));
        let e = resolve(OsStr::new("no-such-cmd-xyz"), OsStr::new("/bin:/usr/bin")).unwrap_err();
        assert_eq!(e.exit_code(), 127);
        assert!(e.to_string().contains("PATH=/bin:/usr/bin"), "{e}");
        let dir = std::env::temp_dir().join(format!("sbx-exec-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let plain = dir.join("not-executable");
        std::fs::write(&plain, "data").unwrap();
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = resolve(plain.as_os_str(), OsStr::new("")).unwrap_err();
        assert_eq!(e.exit_code(), 126, "{e}");
        let e = resolve(OsStr::new("not-executable"), dir.as_os_str()).unwrap_err();
        assert_eq!(e.exit_code(), 126, "found on PATH but not executable: {e}");
        std::fs::remove_dir_all(&dir).unwrap();
        let e = resolve(OsStr::new("/etc"), OsStr::new("")).unwrap_err();
        assert_eq!(e.exit_code(), 126, "{e}");
        let e = resolve(OsStr::new("./nope/x"), OsStr::new("")).unwrap_err();
        assert_eq!(e.exit_code(), 127, "{e}");
    }

    use crate::model::AbsPath;

    #[test]
    fn allowlist_compares_real_paths() {
        let sh = std::fs::canonicalize("/bin/sh").unwrap();
        let mut rules = ExecPolicy {
            allow: vec![AbsPath(sh.display().to_string())],
            ..ExecPolicy::default()
        };
        assert!(check_allowed("p", Path::new("/bin/sh"), &rules).is_ok());
        let err = check_allowed("p", Path::new("/bin/true"), &rules)
            .unwrap_err()
            .to_string();
        assert!(err.contains("exec] allow"), "{err}");
        rules.allow.clear();
        assert!(check_allowed("p", Path::new("/bin/true"), &rules).is_ok());
        rules.deny_under.push(AbsPath("/usr".into()));
        let err = check_allowed("p", Path::new("/bin/true"), &rules)
            .unwrap_err()
            .to_string();
        assert!(err.contains("deny_under"), "{err}");
    }

    #[test]
    fn owner_check_walks_every_parent() {
        let rules = ExecPolicy {
            verify_owner: true,
            ..ExecPolicy::default()
        };
        // /usr/bin/env: root-owned all the way up on any sane system.
        assert!(check_allowed("p", Path::new("/usr/bin/env"), &rules).is_ok());
        let dir = std::env::temp_dir().join(format!("sbx-owner-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let prog = dir.join("tool");
        std::fs::write(&prog, "#!/bin/sh\n").unwrap();
        // The temp dir (mode 1777) is writable by others: refused.
        let err = check_allowed("p", &prog, &rules).unwrap_err().to_string();
        assert!(
            err.contains("writable by group or others") || err.contains("not root"),
            "{err}"
        );
        let trusting = ExecPolicy {
            trusted: vec![AbsPath(dir.display().to_string())],
            ..rules
        };
        assert!(check_allowed("p", &prog, &trusting).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn symlinks_to_programs_are_checked_and_kept_as_found() {
        let rules = ExecPolicy {
            verify_owner: true,
            ..ExecPolicy::default()
        };
        // A link in a directory others can write could be re-pointed after the check: refused,
        // although its target is a good root-owned program.
        let dir = std::env::temp_dir().join(format!("sbx-link-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let link = dir.join("env");
        std::os::unix::fs::symlink("/usr/bin/env", &link).unwrap();
        let err = check_allowed("p", &link, &rules).unwrap_err().to_string();
        assert!(err.contains("verify_owner"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
        // The program itself passes, and the path returned is the one found (argv[0] semantics).
        assert_eq!(
            check_allowed("p", Path::new("/usr/bin/env"), &rules).unwrap(),
            Path::new("/usr/bin/env")
        );
    }
}
