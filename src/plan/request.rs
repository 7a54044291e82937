//! One call as asked ([`Request`]): what a caller may change for it (`--env`, `--cwd`,
//! `--timeout`), checked against the context (pure), who may make it (setuid mode's stage 4),
//! and the command search path as the sandbox will see it.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::cli::RunArgs;
use crate::model::{is_env_name, Context, FsPolicy, Namespace};
use crate::plan::env::is_denied;
use crate::privilege::{Mode, SetuidLaunch};

/// One call, checked before anything is read for it: the context and caller checks that need no
/// host fact (a caller a setuid context does not admit is refused before its command is looked
/// up or its secrets read).
#[derive(Debug)]
pub struct Request<'a> {
    pub ctx_name: &'a str,
    pub cmd: &'a [OsString],
    /// `--env NAME=VALUE` as given (checked when the environment is planned).
    pub env: &'a [String],
    /// `--cwd DIR` as given.
    pub cwd: Option<&'a Path>,
    pub in_workdir: bool,
    /// The call's timeout in seconds: `--timeout` (at most the context's), else the context's.
    pub timeout: Option<u64>,
    /// The timeout is the caller's `--timeout` (a 124 names it), not the policy's.
    pub timeout_asked: bool,
    /// Setuid mode: whom the target becomes (stage 4 passed).
    pub setuid: Option<SetuidLaunch>,
}

impl<'a> Request<'a> {
    /// Check `args` against context `ctx_name`: the timeout, then (setuid mode) the caller.
    pub fn new(
        args: &'a RunArgs,
        ctx_name: &'a str,
        ctx: &Context,
        mode: &Mode,
    ) -> Result<Request<'a>> {
        let timeout = timeout(ctx_name, ctx, args.timeout)?;
        let setuid = SetuidLaunch::plan(mode, ctx_name, ctx)?;
        Ok(Request {
            ctx_name,
            cmd: &args.cmd,
            env: &args.env,
            cwd: args.cwd.as_deref(),
            in_workdir: args.in_workdir,
            timeout,
            timeout_asked: args.timeout.is_some(),
            setuid,
        })
    }
}

/// `--env NAME=VALUE` pairs, each admitted by `env.caller`, never an injection variable or a
/// name the context takes as a secret. Errors name the variable, never the value.
pub fn caller_env(
    ctx_name: &str,
    ctx: &Context,
    pairs: &[String],
) -> Result<Vec<(String, String)>> {
    let mut out = Vec::with_capacity(pairs.len());
    for pair in pairs {
        let Some((name, value)) = pair.split_once('=') else {
            bail!("--env takes NAME=VALUE; one argument has no '='");
        };
        if !is_env_name(name) {
            bail!("--env: {name:?} is not a variable name (letters, digits and '_', not starting with a digit)");
        }
        if value.contains('\0') {
            bail!("--env {name}: the value contains a NUL byte");
        }
        if is_denied(name) {
            bail!("--env {name} is refused: it injects code or configuration into programs (LD_*, NODE_OPTIONS, BASH_ENV, ...), so no caller may set it");
        }
        if ctx.secrets.allow.iter().any(|p| p.matches(name)) {
            bail!("--env {name} is refused: context {ctx_name:?} takes {name} as a secret ([context.{ctx_name}.secrets] allow); pass it on --secrets-fd");
        }
        if !ctx.env.caller.iter().any(|p| p.matches(name)) {
            bail!("--env {name} is refused: context {ctx_name:?} lets callers set only {:?}; add it to [context.{ctx_name}.env] caller",
                ctx.env.caller.iter().map(|p| p.0.as_str()).collect::<Vec<_>>());
        }
        out.push((name.to_string(), value.to_string()));
    }
    Ok(out)
}

/// The call's timeout: `--timeout` if given (at most the context's own), else the context's.
pub fn timeout(ctx_name: &str, ctx: &Context, requested: Option<u64>) -> Result<Option<u64>> {
    let policy = ctx.timeout.filter(|t| *t > 0);
    match (requested, policy) {
        (Some(r), Some(p)) if r > p => bail!(
            "--timeout {r} is refused: context {ctx_name:?} allows at most {p} seconds (timeout in [context.{ctx_name}])"
        ),
        (Some(r), _) => Ok(Some(r)),
        (None, p) => Ok(p),
    }
}

/// `--cwd DIR` made absolute against the current directory.
pub fn cwd(requested: &Path, current: &Path) -> PathBuf {
    if requested.is_absolute() {
        requested.to_path_buf()
    } else {
        current.join(requested)
    }
}

/// The `PATH` entries a bare command is searched in, as the sandbox sees them: entries the
/// context hides or covers with a private tmpfs (an empty directory inside) are skipped, so a
/// shim in the caller's home (`~/.pyenv/shims`) does not shadow the system's program.
pub fn visible_path(path_var: &OsStr, ctx: &Context) -> OsString {
    if !ctx.has(Namespace::Mount) {
        return path_var.to_os_string();
    }
    let kept: Vec<&[u8]> = path_var
        .as_bytes()
        .split(|&b| b == b':')
        .filter(|d| !d.is_empty() && !covered(Path::new(OsStr::from_bytes(d)), &ctx.fs))
        .collect();
    OsString::from(OsStr::from_bytes(&kept.join(&b':')))
}

/// Is `dir` at or below a hidden path or a private tmpfs?
fn covered(dir: &Path, fs: &FsPolicy) -> bool {
    fs.hide
        .iter()
        .chain(&fs.tmpfs)
        .any(|p| p.0 != "/" && dir.starts_with(p.as_path()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AbsPath, EnvPattern};

    fn ctx() -> Context {
        let mut c = Context::default();
        c.env.caller = vec![EnvPattern("NODE_ENV".into()), EnvPattern("APP_*".into())];
        c.secrets.allow = vec![EnvPattern("APP_TOKEN".into())];
        c.namespaces = vec![Namespace::Pid, Namespace::Mount];
        c.fs.tmpfs = vec![AbsPath("/root".into()), AbsPath("/tmp".into())];
        c.fs.hide = vec![AbsPath("/run/sbx".into())];
        c
    }

    #[test]
    fn caller_env_admits_only_listed_safe_names() {
        let c = ctx();
        let ok = caller_env(
            "u",
            &c,
            &["NODE_ENV=production".into(), "APP_PORT=3000".into()],
        )
        .unwrap();
        assert_eq!(ok[1], ("APP_PORT".into(), "3000".into()));
        for (bad, why) in [
            ("PORT=1", "caller"),
            ("LD_PRELOAD=/x.so", "injects"),
            ("NODE_OPTIONS=--require=/x", "injects"),
            ("APP_TOKEN=s3cr3t", "secret"),
            ("NOEQUALS", "no '='"),
            ("9X=1", "not a variable name"),
        ] {
            let e = caller_env("u", &c, &[bad.into()]).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(
                !e.contains("s3cr3t") && !e.contains("/x.so"),
                "value leaked: {e}"
            );
        }
    }

    #[test]
    fn timeout_is_at_most_the_contexts() {
        let mut c = ctx();
        assert_eq!(timeout("u", &c, None).unwrap(), None);
        assert_eq!(timeout("u", &c, Some(30)).unwrap(), Some(30));
        c.timeout = Some(60);
        assert_eq!(timeout("u", &c, None).unwrap(), Some(60));
        assert_eq!(timeout("u", &c, Some(30)).unwrap(), Some(30));
        assert!(timeout("u", &c, Some(61))
            .unwrap_err()
            .to_string()
            .contains("at most 60"));
    }

    #[test]
    fn search_path_skips_what_the_sandbox_covers() {
        let c = ctx();
        let p = visible_path(
            OsStr::new("/root/.pyenv/shims:/usr/local/bin::/tmp/x:/usr/bin"),
            &c,
        );
        assert_eq!(p, OsStr::new("/usr/local/bin:/usr/bin"));
        let mut host = ctx();
        host.namespaces.clear();
        let all = OsStr::new("/root/.pyenv/shims:/usr/bin");
        assert_eq!(visible_path(all, &host), all);
        assert_eq!(
            cwd(Path::new("proj"), Path::new("/workspace")),
            Path::new("/workspace/proj")
        );
        assert_eq!(cwd(Path::new("/w"), Path::new("/x")), Path::new("/w"));
    }
}
