//! One launch, top to bottom. Like nsjail's `containProc`, the whole sequence reads as one ordered
//! list; each step is a call into the module named after its facility.
//!
//! Outer process ([`run_in`]): privilege mode and policy (`privilege`) → context and caller checks
//! → named fds taken over (`--secrets-fd`, `--status-fd`, the kept fds of `--keep-fd` and
//! `--listen-fd`, checked by [`crate::plan::fds`]) → environment → command resolved and checked
//! against `[exec]` as the caller (126/127 early) → secrets (refused when the context takes none;
//! split into variables and `secrets.files`) → plans ([`crate::plan::launch`]: mounts, caps,
//! seccomp, Landlock, user namespace in rootless mode, the caller's identity in setuid mode) →
//! block signals → control mode (`control`), or a persistent context's keeper joined (`persist`),
//! or a one-shot sandbox ([`one_shot`]: output masking, then [`crate::run::init`] in fresh
//! namespaces) → supervise → status → audit line.
//!
//! Sandbox pid 1 ([`crate::run::init`]): id maps (rootless) → die with the outer process →
//! non-dumpable → new session → close fds → mounts and private /proc → secret files → loopback →
//! working directory → fork the target → reap and forward.
//!
//! Target ([`crate::run::target`]): new session → kept fds onto 3.. → close the others → caps
//! (and the setuid caller's identity) → no_new_privs → Landlock → seccomp → LISTEN_PID → exec.

use std::ffi::OsString;
use std::os::fd::{OwnedFd, RawFd};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};

use crate::cli::RunArgs;
use crate::model::{self, Context};
use crate::plan::env::TargetEnv;
use crate::plan::fds::{self, Activation, Passed};
use crate::plan::launch::{self, Sandbox, Target};
use crate::plan::request;
use crate::plan::secret_files::Files;
use crate::privilege::{self, Mode, SetuidLaunch};
use crate::run::reaper;
use crate::run::status::{report, StatusFd};
use crate::secrets::{self, SecretSet};

/// Run `args.cmd` in context `args.ctx`; returns the exit status for sbx-exec.
pub fn run(args: RunArgs) -> Result<i32> {
    let ctx_name = args.ctx.as_deref().context("--ctx NAME is required")?;
    let mode = privilege::mode();
    let loaded = privilege::load_policy(mode, args.policy.as_deref())?;
    // Audit (policy key `audit`): one line per invocation, refusals included, names only.
    let started = crate::run::audit::Start::now();
    let mut secret_names = Vec::new();
    let result = run_in(&args, ctx_name, mode, &loaded, &mut secret_names);
    if let Some(to) = &loaded.policy.audit {
        let (code, error) = match &result {
            Ok(code) => (*code, None),
            Err(e) => (crate::error::exit_code_of(e), Some(format!("{e:#}"))),
        };
        let names = secret_names.iter().map(String::as_str).collect();
        let record = started.record(ctx_name, &args.cmd, names, code, error);
        if let Err(e) = crate::run::audit::write(to, &record) {
            eprintln!("sbx-exec: warning: {e:#}");
        }
    }
    result
}

/// The steps of one launch after the policy is loaded.
fn run_in(
    args: &RunArgs,
    ctx_name: &str,
    mode: &Mode,
    loaded: &model::Loaded,
    secret_names: &mut Vec<String>,
) -> Result<i32> {
    let mut ctx = loaded.policy.context(ctx_name)?.clone();
    ctx.timeout = request::timeout(ctx_name, &ctx, args.timeout)?;
    let ctx = &ctx;
    let setuid = SetuidLaunch::plan(mode, ctx_name, ctx)?;
    let passed = passed_fds(args)?;
    let (secrets_fd, status, kept) = named_fds(args, &passed.fds)?;
    check_passed(ctx_name, ctx, loaded, &passed, &kept)?;
    let (mut env, program) = command(args, ctx_name, ctx, mode, setuid.is_some())?;
    let secret_set = read_secrets(ctx_name, ctx, args.secrets_fd, secrets_fd)?;
    secret_names.extend(secret_set.iter().map(|s| s.name.clone()));
    let userns =
        privilege::userns::userns_plan(mode, ctx, !crate::plan::namespaces::wanted(ctx).is_empty());
    let owner = launch::files_owner(setuid.as_ref(), userns.as_ref(), ctx);
    let creds = Files::split(&secret_set, &ctx.secrets.files, owner);
    env.add_secrets_except(&secret_set, |name| Files::is_file(&creds, name));
    for (name, path) in creds.iter().flat_map(Files::variables) {
        env.set_var(&name, &path);
    }
    let (mut sandbox, mut target) = launch::prepare(ctx, &loaded.source, &program, &args.cmd, env)?;
    if let Some(dir) = &args.cwd {
        let here = std::env::current_dir().context("cannot read the current directory")?;
        sandbox.cwd = Some(request::cwd(dir, &here));
    }
    sandbox.creds = creds;
    launch::add_passed_fds(&mut sandbox, &mut target, &passed);
    launch::add_userns(&mut sandbox, userns);
    if let Some(s) = setuid {
        launch::add_setuid(&mut sandbox, &mut target, s)?;
    }
    harden_outer()?;
    target.sigmask = block_forwarded_signals()?;

    if let Some(sup) = &ctx.supervise {
        let on_start = |pid: nix::unistd::Pid| {
            report(
                status.as_ref(),
                &format!("{{\"child-pid\":{}}}", pid.as_raw()),
            )
        };
        // Services are launched with the same --policy file (absolute: control's cwd may differ
        // from theirs); the system file or the embedded default they find themselves.
        let policy = match &loaded.source {
            model::Source::Flag(path) => Some(std::path::absolute(path).unwrap_or(path.clone())),
            _ => None,
        };
        let code = crate::run::control::run(ctx_name, sup, target, policy.as_deref(), on_start)?;
        report(status.as_ref(), &format!("{{\"exit-code\":{code}}}"));
        return Ok(code);
    }
    if ctx.persist {
        let rep = |line: &str| report(status.as_ref(), line);
        return crate::run::persist::run(ctx_name, ctx, &sandbox, &target, &rep);
    }
    one_shot(ctx_name, ctx, sandbox, &target, secret_set, status.as_ref())
}

/// The environment, and the command resolved in its PATH (127 / 126 before anything starts),
/// checked against `exec.allow` as the caller, before a byte of the secrets is read.
fn command(
    args: &RunArgs,
    ctx_name: &str,
    ctx: &Context,
    mode: &Mode,
    setuid: bool,
) -> Result<(TargetEnv, PathBuf)> {
    let mut env = crate::plan::env::build(
        privilege::caller_env(),
        &privilege::env_policy(mode, &ctx.env),
    );
    if setuid {
        env.set_var("PATH", &privilege::policy_path(&ctx.env));
    }
    for (name, value) in request::caller_env(ctx_name, ctx, &args.env)? {
        env.set_var(&name, &value);
    }
    let path_var = env.get("PATH").map(OsString::from).unwrap_or_default();
    let path_var = request::visible_path(&path_var, ctx);
    let program = privilege::as_caller(mode, || {
        let found = crate::plan::exec::resolve(&args.cmd[0], &path_var)?;
        crate::plan::exec::check_allowed(ctx_name, &found, &ctx.exec)
    })?;
    Ok((env, program))
}

/// A one-shot sandbox: output masking if asked, fresh namespaces, supervise, report.
fn one_shot(
    ctx_name: &str,
    ctx: &Context,
    sandbox: Sandbox,
    target: &Target,
    secret_set: SecretSet,
    status: Option<&StatusFd>,
) -> Result<i32> {
    // Output masking: the sandbox gets pipes to a masking process as stdout/stderr.
    let masking = match ctx.secrets.redact && secret_set.iter().next().is_some() {
        true => Some(crate::run::masking::start(&secret_set)?),
        false => None,
    };
    drop(secret_set);
    let started = crate::run::init::start(ctx_name, sandbox, target);
    if let Some(m) = &masking {
        m.detach();
    }
    let child = match started {
        Ok(child) => child,
        Err(e) => {
            if let Some(m) = masking {
                m.wait();
            }
            return Err(e);
        }
    };
    report(status, &format!("{{\"child-pid\":{}}}", child.as_raw()));
    let timeout = ctx.timeout.filter(|t| *t > 0).map(Duration::from_secs);
    let code = reaper::exit_code(ctx_name, ctx, reaper::supervise(child, timeout), "");
    if let Some(m) = masking {
        m.wait();
    }
    report(status, &format!("{{\"exit-code\":{code}}}"));
    Ok(code)
}

/// The fds `--listen-fd` and `--keep-fd` pass to the target, resolved against the caller's
/// socket activation (LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES meant for this process).
pub fn passed_fds(args: &RunArgs) -> Result<Passed> {
    let activation = Activation::from_env(&privilege::caller_env(), std::process::id());
    fds::select(activation.as_ref(), &args.keep_fd, &args.listen_fd).map_err(|e| anyhow!(e))
}

/// Take over `--secrets-fd`, `--status-fd` and the kept fds before anything else opens an fd.
fn named_fds(
    args: &RunArgs,
    kept: &[RawFd],
) -> Result<(Option<OwnedFd>, Option<StatusFd>, Vec<OwnedFd>)> {
    let names: Vec<RawFd> = args
        .secrets_fd
        .into_iter()
        .chain(args.status_fd)
        .chain(kept.iter().copied())
        .collect();
    let mut owned = crate::sys::claim_named_fds(&names)
        .map_err(|e| anyhow!(e))?
        .into_iter();
    let secrets = args.secrets_fd.and_then(|_| owned.next().flatten());
    let status = match args.status_fd {
        Some(fd) => Some(StatusFd::open(fd, owned.next().flatten())?),
        None => None,
    };
    let mut fds = Vec::new();
    for (&fd, got) in kept.iter().zip(owned) {
        let got = got
            .with_context(|| format!("--keep-fd/--listen-fd: file descriptor {fd} is not open"))?;
        // Only the target gets it (placed on 3.. without close-on-exec); nothing else execs it.
        nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )
        .with_context(|| format!("cannot mark file descriptor {fd} close-on-exec"))?;
        fds.push(got);
    }
    Ok((secrets, status, fds))
}

/// Kept fds: socket activation passes on listening sockets only; a socket on a reserved port goes
/// only to a context whose `listen` names it; control mode passes its own ports and none else.
fn check_passed(
    ctx_name: &str,
    ctx: &Context,
    loaded: &model::Loaded,
    passed: &Passed,
    kept: &[OwnedFd],
) -> Result<()> {
    if ctx.supervise.is_some() && !kept.is_empty() {
        bail!("--keep-fd/--listen-fd cannot be used with control mode ([supervise]), which hands the control plane its own reserved ports");
    }
    let reserved = fds::reserved_ports(&loaded.policy);
    for (&fd, owned) in passed.fds.iter().zip(kept) {
        let facts = crate::sys::fd_facts(owned);
        let as_listen = passed.listen_names.is_some();
        fds::check(fd, facts, as_listen, &reserved, ctx_name, &ctx.listen)
            .map_err(|e| anyhow!(e))?;
    }
    Ok(())
}

fn read_secrets(
    ctx_name: &str,
    ctx: &Context,
    fd: Option<RawFd>,
    owned: Option<OwnedFd>,
) -> Result<SecretSet> {
    let Some(fd) = fd else {
        return Ok(SecretSet::default());
    };
    if ctx.secrets.allow.is_empty() {
        bail!(
            "context {ctx_name:?} takes no secrets, so --secrets-fd is refused (nothing was read); \
             run trusted tools that need secrets in a context with [context.NAME.secrets] allow, e.g. --ctx platform"
        );
    }
    let set = secrets::read_fd(fd, owned)?;
    set.check_allowed(ctx_name, &ctx.secrets.allow)?;
    Ok(set)
}

/// The outer process holds secrets in memory: no core dumps, no ptrace by non-privileged peers.
fn harden_outer() -> Result<()> {
    nix::sys::prctl::set_dumpable(false).context("cannot make sbx-exec non-dumpable")?;
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0)
        .context("cannot disable core dumps")?;
    Ok(())
}

/// Block the forwarded signals now: from here on none is lost, and the children inherit the
/// mask. Returns the caller's mask, which the target restores.
fn block_forwarded_signals() -> Result<SigSet> {
    let mut caller_mask = SigSet::empty();
    sigprocmask(
        SigmaskHow::SIG_BLOCK,
        Some(&reaper::blocked_set()),
        Some(&mut caller_mask),
    )
    .context("cannot block signals")?;
    Ok(caller_mask)
}
