//! The command: resolved to a path before anything is created (so "not found" is 127 and "not
//! executable" is 126 with a clear message) and checked against the context's `[exec]` rules on
//! the path as found and every link on the way; then opened once (`O_PATH`) and checked again on
//! that handle. A `#!` script is run through its interpreter, checked the same way. The target
//! executes the handle (`execveat`) after its last privilege changes
//! ([`crate::run::confine::target`]), so a path swapped after the check runs nothing else.

use std::ffi::{CString, OsStr, OsString};
use std::os::fd::OwnedFd;
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

/// The `[exec]` rules with the context's `fs.noexec` paths added to `deny_under`: a script there
/// would otherwise still run, through its interpreter (the kernel's `noexec` only stops `execve`).
pub fn with_noexec(exec: &ExecPolicy, fs: &crate::model::FsPolicy) -> ExecPolicy {
    let mut rules = exec.clone();
    for p in &fs.noexec {
        if !rules.deny_under.contains(p) {
            rules.deny_under.push(p.clone());
        }
    }
    rules
}

/// `path_var` without the entries at or below a `deny_under` directory (compared as written and
/// after resolving links); `None` when nothing is dropped.
pub fn path_without(path_var: &OsStr, deny_under: &[crate::model::AbsPath]) -> Option<String> {
    let all: Vec<&[u8]> = path_var.as_bytes().split(|&b| b == b':').collect();
    let kept: Vec<&[u8]> = all
        .iter()
        .copied()
        .filter(|dir| {
            let p = Path::new(OsStr::from_bytes(dir));
            let real = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
            !dir.is_empty()
                && p.is_absolute()
                && !deny_under
                    .iter()
                    .any(|d| d.contains(p) || d.contains(&real))
        })
        .collect();
    (kept.len() != all.len()).then(|| String::from_utf8_lossy(&kept.join(&b':')).into_owned())
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

/// The program a target executes: opened once, after the checks, as an `O_PATH` handle that the
/// target runs with `execveat` (so a path swapped after the check runs nothing else), and the
/// argument vector it gets (the caller's, or for a `#!` script the interpreter's).
#[derive(Debug)]
pub struct Program {
    pub fd: OwnedFd,
    pub argv: Vec<OsString>,
    /// The path as found, for messages.
    pub shown: PathBuf,
    /// sbx-exec's own binary, started in a role the launcher chose (the file tool), not a
    /// program the caller named: Landlock's `exec_only_under` admits this one handle too.
    pub own: bool,
}

/// How deep `#!` interpreters may nest (the kernel's own limit is 4 too).
const MAX_INTERPRETERS: usize = 4;

/// Check `found` (the command as resolved in `path_var`) against the context's `[exec]` rules,
/// open it once and check that handle too; a `#!` script is run through its interpreter, which
/// passes the same checks (for `#!/usr/bin/env NAME`: what NAME is on `path_var`).
pub fn open_checked(
    ctx: &str,
    found: &Path,
    cmd: &[OsString],
    rules: &ExecPolicy,
    path_var: &OsStr,
) -> Result<Program> {
    let mut found = found.to_path_buf();
    let mut argv = cmd.to_vec();
    for depth in 0..=MAX_INTERPRETERS {
        let real = check_path(ctx, &found, rules, depth == 0)?;
        let fd = open_real(ctx, &real, rules)?;
        let Some((interp, opt)) = shebang(&fd)? else {
            return Ok(Program {
                fd,
                argv,
                shown: found,
                own: false,
            });
        };
        // The script is passed by the path found when nobody but root can re-point its links, as
        // the kernel would (pg_wrapper learns which tool it is from it), else by its real path.
        let script = match verify_links(ctx, &found).is_ok() {
            true => found.clone(),
            false => real.clone(),
        };
        let mut next: Vec<OsString> = Vec::new();
        let is_env = interp.file_name() == Some(OsStr::new("env"));
        match (is_env, &opt) {
            (true, Some(name)) if !name.as_bytes().starts_with(b"-") => {
                // `#!/usr/bin/env NAME`: run what env would find, checked like any program.
                check_path(ctx, &interp, rules, false)?;
                found = resolve(name, path_var).map_err(anyhow::Error::from)?;
                next.push(name.clone());
            }
            (true, Some(_)) => bail!(
                "{}: a `#!{} {}` line runs a program sbx-exec cannot check, so context {ctx:?} will not run it; \
                 name the interpreter by its absolute path in the script",
                found.display(),
                interp.display(),
                opt.as_deref().unwrap_or_default().to_string_lossy()
            ),
            _ => {
                next.push(interp.clone().into_os_string());
                next.extend(opt.clone());
                found = interp;
            }
        }
        next.push(script.into_os_string());
        next.extend(argv.into_iter().skip(1));
        argv = next;
    }
    bail!(
        "{}: more than {MAX_INTERPRETERS} levels of #! interpreters",
        found.display()
    )
}

/// The interpreter line of a script: `#!INTERP [ARG]` (split as the kernel does: one optional
/// argument, the rest of the line); `None` for anything else. Read through the checked handle.
fn shebang(fd: &OwnedFd) -> Result<Option<(PathBuf, Option<OsString>)>> {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let mut file = match std::fs::File::open(format!("/proc/self/fd/{}", fd.as_raw_fd())) {
        Ok(f) => f,
        // Execute-only: no interpreter could read it either, so it is not a script.
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => return Ok(None),
        Err(e) => bail!("cannot read the program to see whether it is a script: {e}"),
    };
    let mut head = [0u8; 256];
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(parse_shebang(&head[..n]))
}

fn parse_shebang(head: &[u8]) -> Option<(PathBuf, Option<OsString>)> {
    let line = head.strip_prefix(b"#!")?;
    let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())];
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let line = {
        let start = line.iter().position(|b| !blank(b))?;
        let end = line.iter().rposition(|b| !blank(b))? + 1;
        &line[start..end]
    };
    let (interp, rest) = match line.iter().position(blank) {
        Some(i) => (&line[..i], Some(&line[i..])),
        None => (line, None),
    };
    let opt = rest
        .map(|r| &r[r.iter().position(|b| !blank(b)).unwrap_or(r.len())..])
        .filter(|r| !r.is_empty())
        .map(|r| OsStr::from_bytes(r).to_os_string());
    Some((PathBuf::from(OsStr::from_bytes(interp)), opt))
}

/// Every place the path passes through on its way to the program: the path as found, each link
/// of its chain (where it lives and what it says) and the real path at the end.
fn hops(path: &Path) -> (Vec<PathBuf>, PathBuf) {
    let abs = match path.is_absolute() {
        true => path.to_path_buf(),
        false => std::env::current_dir().unwrap_or_default().join(path),
    };
    let mut seen = vec![normalize(&abs)];
    let mut p = abs;
    for _ in 0..40 {
        let parent = p.parent().unwrap_or(Path::new("/"));
        let dir = std::fs::canonicalize(parent).unwrap_or_else(|_| normalize(parent));
        let here = match p.file_name() {
            Some(name) => dir.join(name),
            None => dir.clone(),
        };
        seen.push(here.clone());
        match std::fs::read_link(&here) {
            Ok(target) => {
                let next = normalize(&dir.join(target));
                seen.push(next.clone());
                p = next;
            }
            Err(_) => break,
        }
    }
    let real =
        std::fs::canonicalize(path).unwrap_or_else(|_| seen.last().cloned().unwrap_or_default());
    seen.push(real.clone());
    (seen, real)
}

/// `a/./b/../c` → `a/c`, without touching the filesystem.
fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// The `[exec]` rules on the path as found and every hop of its link chain: `deny_under` refuses
/// if any of them lies below a listed directory; `allow` (checked for the command itself, not its
/// interpreters) admits it when the path as found or the real path is listed; `verify_owner` checks
/// each link. Returns the real path.
fn check_path(ctx: &str, path: &Path, rules: &ExecPolicy, apply_allow: bool) -> Result<PathBuf> {
    let (seen, real) = hops(path);
    let listed = |p: &Path| rules.allow.iter().any(|a| a.as_path() == p);
    if apply_allow && !rules.allow.is_empty() && !listed(&seen[0]) && !listed(&real) {
        bail!(
            "{} is not allowed in context {ctx:?}; add it to [context.{ctx}.exec] allow, or run an allowed program",
            real.display()
        );
    }
    for hop in &seen {
        if let Some(dir) = rules.deny_under.iter().find(|d| d.contains(hop)) {
            let via = match hop == &real || hop == &seen[0] {
                true => String::new(),
                false => format!(" (through {})", hop.display()),
            };
            bail!(
                "{}{via} is under {dir}, where untrusted code can write, so context {ctx:?} will not run it \
                 ([context.{ctx}.exec] deny_under); install the program in a root-owned system directory",
                path.display()
            );
        }
    }
    if rules.verify_owner && !is_trusted(rules, &real) {
        verify_links(ctx, path)?;
    }
    Ok(real)
}

fn is_trusted(rules: &ExecPolicy, real: &Path) -> bool {
    rules.trusted.iter().any(|t| t.contains(real))
}

/// Open the real path once (no symlink may appear in it now: a swap since the check fails), and
/// check the handle: a regular, executable file; with `verify_owner`, its owner and mode and those
/// of every directory above it.
fn open_real(ctx: &str, real: &Path, rules: &ExecPolicy) -> Result<OwnedFd> {
    use nix::sys::stat::{fstat, SFlag};
    use std::os::fd::AsRawFd;
    let c = CString::new(real.as_os_str().as_bytes())
        .map_err(|_| anyhow::anyhow!("{} contains a NUL byte", real.display()))?;
    let fd = crate::sys::open_program(&c).map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) | Some(libc::EXDEV) => anyhow::anyhow!(
            "{} changed while it was checked (a symbolic link appeared in its path); refusing to run it in context {ctx:?}",
            real.display()
        ),
        _ => anyhow::anyhow!("cannot open {}: {e}", real.display()),
    })?;
    let st = fstat(fd.as_raw_fd())?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        bail!("{} is not a regular file", real.display());
    }
    if st.st_mode & 0o111 == 0 {
        bail!("{} has no execute permission", real.display());
    }
    if rules.verify_owner && !is_trusted(rules, real) {
        if let Err(why) = crate::privilege::only_root_can_change(st.st_uid, st.st_mode) {
            bail!(
                "refusing to run {} in context {ctx:?}: it {why}, so it could have been tampered with \
                 ([context.{ctx}.exec] verify_owner); fix the ownership/permissions or list the path in exec.trusted",
                real.display()
            );
        }
        verify_owner(ctx, real)?;
    }
    Ok(fd)
}

/// Apply the context's `[exec]` rules to a path (the checks of [`open_checked`] without opening
/// it). Returns the real path.
pub fn check_allowed(ctx: &str, path: &Path, rules: &ExecPolicy) -> Result<PathBuf> {
    let real = check_path(ctx, path, rules, true)?;
    if rules.verify_owner && !is_trusted(rules, &real) {
        verify_owner(ctx, &real)?;
    }
    Ok(real)
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
#[path = "exec_tests.rs"]
mod tests;
