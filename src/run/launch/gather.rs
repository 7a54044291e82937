//! Gather: the host facts of one launch, read once, before it is planned
//! ([`crate::plan::launch::Facts`]). In this order, each refusing before the next is read: the
//! kept fds checked; the command resolved and checked against `[exec]` as the caller, before a
//! byte of the secrets is read; the secrets; bound secrets' placeholders and CA; then what the
//! plan reads of the host (directory, binary, cgroup layout, signal mask). A role of sbx-exec's
//! own (the file tool, [`super::Runs::Own`]) has its binary as the program ([`own`]) and no
//! secrets.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;

use anyhow::{bail, Context as _, Result};

use crate::model::{Context, Namespace};
use crate::plan::host::exec::{self, Program};
use crate::plan::launch::{BoundSecrets, Facts};
use crate::plan::request::Request;
use crate::privilege::{self, Mode};
use crate::run::audit::Audit;
use crate::run::inherited::{check_passed, Inherited};
use crate::run::proxy::bound::BoundCall;
use crate::secrets::{self, SecretSet};

use super::Call;

/// The facts of this call, and its bound secrets when it has some (they hold the real values:
/// they go to the gate, never into the plan).
/// `audit` gets the names of the secrets as soon as they are read: a refusal after that names
/// them in its record.
pub(super) fn facts(
    call: &Call,
    req: &Request,
    ctx: &Context,
    fds: &mut Inherited,
    audit: &mut Audit,
) -> Result<(Facts, Option<BoundCall>)> {
    check_passed(req.ctx_name, ctx, call.loaded, &fds.passed, &fds.kept)?;
    if let Some(range) = privilege::userns::identity_plan(call.mode, ctx) {
        if let Some(why) = crate::plan::host::idmap::unmapped(&range) {
            bail!("context {:?} cannot run here: {why}", req.ctx_name);
        }
    }
    let caller_env = privilege::caller_env();
    let passed = fds.passed.fds.len();
    let (program, path_kept) = match call.runs {
        super::Runs::Command => command(req, ctx, call.mode, &caller_env, passed)?,
        super::Runs::Own(argv) => (own(argv, passed)?, None),
    };
    // sbx-exec's own roles take no secrets (`secrets.require` is for the commands a context runs).
    let secrets = match call.runs {
        super::Runs::Command => {
            read_secrets(req.ctx_name, ctx, call.args.secrets_fd, fds.secrets.take())?
        }
        super::Runs::Own(_) => SecretSet::default(),
    };
    audit.secrets = secrets.iter().map(|s| s.name.clone()).collect();
    let bound_call = crate::run::proxy::bound::prepare_call(&secrets, ctx)?;
    let bound = bound_call.as_ref().map(|b| BoundSecrets {
        variables: b.variables.clone(),
        ca: b.ca.clone(),
    });
    let mounts = ctx.has(Namespace::Mount);
    let cwd = match mounts || req.cwd.is_some() || req.in_workdir {
        true => Some(crate::plan::host::current_dir()?),
        false => None,
    };
    let limits = ctx.limits.as_ref().is_some_and(|l| !l.is_empty());
    let facts = Facts {
        caller_env,
        program,
        path_kept,
        passed: fds.passed.clone(),
        secrets,
        bound,
        cwd,
        exe: mounts.then(crate::plan::host::current_exe).flatten(),
        policy_file: call.loaded.source.path().map(Path::to_path_buf),
        euid: nix::unistd::geteuid().as_raw(),
        egid: nix::unistd::getegid().as_raw(),
        pid: std::process::id(),
        cgroups: limits.then(crate::plan::host::cgroup::layout),
        sigmask: nix::sys::signal::SigSet::thread_get_mask()
            .context("cannot read the signal mask")?,
    };
    Ok((facts, bound_call))
}

/// The command resolved in the PATH the plan gives (127 / 126 before anything starts), checked
/// against `exec.allow` as the caller and opened once, its handle kept above the `passed` fds
/// (which the target places on 3, 4, ...); and, for a context that takes secrets, that PATH
/// without its entries where untrusted code writes (what the tool itself runs by name is not
/// found there either; the command and a `#!/usr/bin/env NAME` were looked up in the whole PATH,
/// so a hit there is refused with 125, not skipped).
fn command(
    req: &Request,
    ctx: &Context,
    mode: &Mode,
    caller_env: &[(std::ffi::OsString, std::ffi::OsString)],
    passed: usize,
) -> Result<(Program, Option<String>)> {
    let (_, path_var) = crate::plan::launch::environment(req, ctx, mode, caller_env)?;
    let rules = exec::with_noexec(&ctx.exec, &ctx.fs);
    let mut program = privilege::as_caller(mode, || {
        let found = exec::resolve(&req.cmd[0], &path_var)?;
        exec::open_checked(req.ctx_name, &found, req.cmd, &rules, &path_var)
    })?;
    let top = 3 + passed as RawFd;
    if program.fd.as_raw_fd() < top {
        program.fd = crate::sys::dup_cloexec_above(program.fd.as_raw_fd(), top)
            .context("cannot keep the program's handle above the passed fds")?;
    }
    let kept = match ctx.secrets.allow.is_empty() {
        true => None,
        false => exec::path_without(&path_var, &rules.deny_under),
    };
    Ok((program, kept))
}

/// sbx-exec's own binary (`/proc/self/exe`: the file that runs, whatever its path names now) as
/// the program, with `argv`; its handle above the `passed` fds, as [`command`] places the caller's.
fn own(argv: &[std::ffi::OsString], passed: usize) -> Result<Program> {
    let exe = crate::sys::open_self_exe().context("cannot open sbx-exec's own binary")?;
    let top = 3 + passed as RawFd;
    let fd = crate::sys::dup_cloexec_above(exe.as_raw_fd(), top)
        .context("cannot keep sbx-exec's handle above the passed fds")?;
    Ok(Program {
        fd,
        argv: argv.to_vec(),
        shown: "sbx-exec".into(),
        own: true,
    })
}

/// The secrets handed on `--secrets-fd`, checked against the context (names it takes, names it
/// requires). A context that requires secrets (`secrets.require`) refuses a call without the fd,
/// or whose stream lacks one of them, naming the missing names (never a value): nothing runs.
fn read_secrets(
    ctx_name: &str,
    ctx: &Context,
    fd: Option<RawFd>,
    owned: Option<OwnedFd>,
) -> Result<SecretSet> {
    let required = &ctx.secrets.require;
    let Some(fd) = fd else {
        if !required.is_empty() {
            let names: Vec<&str> = required.iter().map(|n| n.0.as_str()).collect();
            bail!(
                "context {ctx_name:?} requires the secrets {} ([context.{ctx_name}.secrets] require), but no --secrets-fd \
                 was given; nothing was run. Hand them on a pipe, e.g. --secrets-fd 3 3<<<\"{}=...\"",
                names.join(", "),
                names[0]
            );
        }
        return Ok(SecretSet::default());
    };
    if ctx.secrets.allow.is_empty() {
        bail!(
            "context {ctx_name:?} takes no secrets, so --secrets-fd is refused (nothing was read); \
             run trusted tools that need secrets in a context with [context.NAME.secrets] allow, e.g. --ctx platform"
        );
    }
    let set = secrets::read_fd(fd, owned, ctx.secrets.read_timeout())?;
    set.check_injection(&ctx.secrets.files)?;
    set.check_allowed(ctx_name, &ctx.secrets.allow)?;
    set.check_required(ctx_name, required)?;
    Ok(set)
}
