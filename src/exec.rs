//! The command: resolved to a path before anything is created (so "not found" is 127 and "not
//! executable" is 126 with a clear message), checked against `exec.allow`, and finally executed by
//! the target process after its last privilege changes.

use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use caps::CapsHashSet;
use nix::sys::signal::{signal, sigprocmask, SigHandler, SigSet, SigmaskHow, Signal};
use seccompiler::BpfProgram;

use crate::env::TargetEnv;
use crate::error::{Refusal, EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND};
use crate::policy::AbsPath;
use crate::sys;

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

/// Refuse a program `exec.allow` does not list (compared after resolving symlinks).
pub fn check_allowed(ctx: &str, path: &Path, allow: &[AbsPath]) -> Result<PathBuf> {
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    if allow.is_empty() || allow.iter().any(|a| a.as_path() == real) {
        return Ok(real);
    }
    bail!(
        "{} is not allowed in context {ctx:?}; add it to [context.{ctx}.exec] allow, or run an allowed program",
        real.display()
    );
}

/// Everything the target does between fork and exec, prepared in advance.
pub struct Target {
    pub path: CString,
    pub argv: Vec<CString>,
    pub env: TargetEnv,
    /// Capabilities kept; `None` leaves them as they are.
    pub caps: Option<CapsHashSet>,
    pub no_new_privs: bool,
    pub seccomp: Option<BpfProgram>,
    /// Signal mask to restore (the caller's), since sbx-exec blocks signals it forwards.
    pub sigmask: SigSet,
}

impl Target {
    /// Drop to the target's privileges and exec it. Never returns: on failure it reports and exits
    /// 125 (setup), 126 or 127 (exec).
    pub fn exec(&self) -> ! {
        if let Err(e) = self.prepare() {
            eprintln!("sbx-exec: {e:#}");
            sys::exit_now(crate::error::EXIT_SBX);
        }
        let argv: Vec<*const libc::c_char> = self
            .argv
            .iter()
            .map(|a| a.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        let envp = self.env.as_ptrs();
        let err = sys::execve(&self.path, &argv, &envp);
        let code = match err.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => EXIT_NOT_FOUND,
            _ => EXIT_NOT_EXECUTABLE,
        };
        eprintln!(
            "sbx-exec: cannot execute {}: {err}",
            self.path.to_string_lossy()
        );
        sys::exit_now(code)
    }

    fn prepare(&self) -> Result<()> {
        use anyhow::Context as _;
        // A new session: no controlling terminal to push keystrokes into (TIOCSTI).
        nix::unistd::setsid().context("cannot start a new session")?;
        // Only fds 0, 1 and 2 reach the target.
        sys::close_fds_from(3, &[], false).context("cannot close inherited file descriptors")?;
        // Rust ignores SIGPIPE for itself; the target gets the default back.
        // SAFETY (of the call): setting SIG_DFL installs no handler code.
        unsafe_signal_default(Signal::SIGPIPE)?;
        sigprocmask(SigmaskHow::SIG_SETMASK, Some(&self.sigmask), None)
            .context("cannot restore the signal mask")?;
        if let Some(keep) = &self.caps {
            crate::caps::drop_to(keep, self.no_new_privs)?;
        }
        if self.no_new_privs {
            crate::caps::set_no_new_privs()?;
        }
        if let Some(prog) = &self.seccomp {
            crate::seccomp::install(prog)?;
        }
        Ok(())
    }
}

fn unsafe_signal_default(sig: Signal) -> Result<()> {
    // SAFETY: SIG_DFL is not a Rust function, so no handler can run with broken invariants.
    unsafe { signal(sig, SigHandler::SigDfl) }
        .map(drop)
        .map_err(|e| anyhow::anyhow!("cannot reset {sig}: {e}"))
}

/// The command line as C strings, for `execve`.
pub fn argv(cmd: &[OsString]) -> Result<Vec<CString>> {
    crate::env::c_args(cmd)
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

    #[test]
    fn allowlist_compares_real_paths() {
        let sh = std::fs::canonicalize("/bin/sh").unwrap();
        let allow = vec![AbsPath(sh.display().to_string())];
        assert!(check_allowed("p", Path::new("/bin/sh"), &allow).is_ok());
        let err = check_allowed("p", Path::new("/bin/true"), &allow)
            .unwrap_err()
            .to_string();
        assert!(err.contains("exec] allow"), "{err}");
        assert!(check_allowed("p", Path::new("/bin/true"), &[]).is_ok());
    }
}
