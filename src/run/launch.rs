//! One launch, top to bottom. Like nsjail's `containProc`, the whole sequence reads as one ordered
//! list; each step is a call into the module named after its facility.
//!
//! Outer process ([`run_in`]): privilege mode and policy (`privilege`) → context and caller checks
//! → environment → command resolved and checked against `[exec]` as the caller (126/127 early) →
//! secrets (refused when the context takes none; split into variables and `secrets.files`) →
//! plans ([`crate::plan::launch`]: mounts, caps, seccomp, Landlock, user namespace in rootless
//! mode, the caller's identity in setuid mode) → block signals → control mode (`control`), or a
//! persistent context's keeper joined (`persist`), or a one-shot sandbox ([`one_shot`]: output
//! masking, then [`crate::run::init`] in fresh namespaces) → supervise → status → audit line.
//!
//! Sandbox pid 1 ([`crate::run::init`]): id maps (rootless) → die with the outer process →
//! non-dumpable → new session → close fds → mounts and private /proc → secret files → loopback →
//! working directory → fork the target → reap and forward.
//!
//! Target ([`crate::run::target`]): new session → close fds → caps (and the setuid caller's
//! identity) → no_new_privs → Landlock → seccomp → exec.

use std::ffi::OsString;
use std::os::fd::{OwnedFd, RawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};

use crate::cli::RunArgs;
use crate::model::{self, Context};
use crate::plan::env::TargetEnv;
use crate::plan::launch::{self, Sandbox, Target};
use crate::plan::secret_files::Files;
use crate::privilege::{self, Mode, SetuidLaunch};
use crate::run::apply::cgroup;
use crate::run::reaper;
use crate::run::status::{children_cpu_ms, refused_json, report, End, StatusFd};
use crate::secrets::{self, SecretSet};

/// Run `args.cmd` in context `args.ctx`; returns the exit status for sbx-exec.
pub fn run(args: RunArgs) -> Result<i32> {
    let ctx_name = args.ctx.as_deref().context("--ctx NAME is required")?;
    // The status stream first, so that every later refusal (a bad policy, an unknown context)
    // is recorded there too.
    let status = args.status_fd.map(StatusFd::open).transpose()?;
    let r = audited(&args, ctx_name, status.as_ref());
    if let Err(e) = &r {
        let code = crate::error::exit_code_of(e);
        report(status.as_ref(), &refused_json(code, &format!("{e:#}")));
    }
    r
}

/// Load the policy, launch, and write the audit line (policy key `audit`).
fn audited(args: &RunArgs, ctx_name: &str, status: Option<&StatusFd>) -> Result<i32> {
    let mode = privilege::mode();
    let loaded = privilege::load_policy(mode, args.policy.as_deref())?;
    // Audit (policy key `audit`): one line per invocation, refusals included, names only.
    let started = crate::run::audit::Start::now();
    let mut secret_names = Vec::new();
    let result = run_in(args, ctx_name, mode, &loaded, status, &mut secret_names);
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
    status: Option<&StatusFd>,
    secret_names: &mut Vec<String>,
) -> Result<i32> {
    let ctx = loaded.policy.context(ctx_name)?;
    let setuid = SetuidLaunch::plan(mode, ctx_name, ctx)?;
    let (mut env, program) = command(args, ctx_name, ctx, mode, setuid.is_some())?;
    let secret_set = read_secrets(ctx_name, ctx, args.secrets_fd)?;
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
    sandbox.creds = creds;
    launch::add_userns(&mut sandbox, userns);
    if let Some(s) = setuid {
        launch::add_setuid(&mut sandbox, &mut target, s)?;
    }
    harden_outer()?;
    target.sigmask = block_forwarded_signals()?;

    if let Some(sup) = &ctx.supervise {
        let on_start =
            |pid: nix::unistd::Pid| report(status, &format!("{{\"child-pid\":{}}}", pid.as_raw()));
        let started = Instant::now();
        let code = crate::run::control::run(ctx_name, sup, target, on_start)?;
        let end = End {
            code,
            wall_ms: started.elapsed().as_millis() as u64,
            cpu_ms: children_cpu_ms(),
            ..End::default()
        };
        report(status, &end.json());
        return Ok(code);
    }
    if ctx.persist {
        let rep = |line: &str| report(status, line);
        return crate::run::persist::run(ctx_name, ctx, &sandbox, &target, &rep);
    }
    one_shot(ctx_name, ctx, sandbox, &target, secret_set, status)
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
    let path_var = env.get("PATH").map(OsString::from).unwrap_or_default();
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
    let cgroup = CallCgroup::create(ctx_name, ctx)?;
    let wall = Instant::now();
    let cpu_before = children_cpu_ms();
    let started = crate::run::init::start(ctx_name, sandbox, target, cgroup.procs());
    if let Some(m) = &masking {
        m.detach();
    }
    let child = match started {
        Ok(child) => child,
        Err(e) => {
            if let Some(m) = masking {
                m.wait();
            }
            cgroup.remove();
            return Err(e);
        }
    };
    report(status, &format!("{{\"child-pid\":{}}}", child.as_raw()));
    let timeout = ctx.timeout.filter(|t| *t > 0).map(Duration::from_secs);
    let outcome = reaper::supervise(child, timeout);
    let code = reaper::exit_code(ctx_name, ctx, outcome, "");
    let mut end = End {
        code,
        timed_out: outcome == reaper::Outcome::TimedOut,
        wall_ms: wall.elapsed().as_millis() as u64,
        cpu_ms: children_cpu_ms().saturating_sub(cpu_before),
        ..End::default()
    };
    cgroup.finish(&mut end);
    if let Some(m) = masking {
        m.wait();
    }
    report(status, &end.json());
    Ok(code)
}

/// The cgroup of one one-shot call (`[limits]`): a leaf `sbx-CTX-PID` under sbx-exec's `sbx`
/// directory, created before the sandbox exists, joined by its pid 1 first thing, read and
/// removed when the call ends.
struct CallCgroup(Option<(crate::plan::cgroup::Plan, Vec<OwnedFd>)>);

impl CallCgroup {
    fn create(ctx_name: &str, ctx: &Context) -> Result<CallCgroup> {
        let Some(limits) = ctx.limits.as_ref().filter(|l| !l.is_empty()) else {
            return Ok(CallCgroup(None));
        };
        let Some(plan) = crate::plan::cgroup::plan_for(ctx_name, limits, ctx.degrade)? else {
            return Ok(CallCgroup(None));
        };
        match cgroup::create(&cgroup::Host, &plan) {
            Ok(procs) => Ok(CallCgroup(Some((plan, procs)))),
            Err(e) => {
                crate::plan::cgroup::unavailable(ctx_name, limits, ctx.degrade, &format!("{e:#}"))?;
                Ok(CallCgroup(None))
            }
        }
    }

    fn procs(&self) -> &[OwnedFd] {
        self.0.as_ref().map_or(&[], |(_, p)| p.as_slice())
    }

    fn paths(&self) -> Vec<PathBuf> {
        self.0
            .iter()
            .flat_map(|(p, _)| p.dirs.iter().map(|d| d.path.clone()))
            .collect()
    }

    /// Add the cgroup's counters to the end record, then remove the cgroup.
    fn finish(self, end: &mut End) {
        if let Some((plan, _)) = &self.0 {
            let s = cgroup::stats(&cgroup::Host, plan);
            end.oom_kills = s.oom_kills;
            end.pids_refused = s.pids_refused;
            end.peak_memory = s.peak_memory;
            if let Some(ns) = s.cpu_ns {
                end.cpu_ms = ns / 1_000_000;
            }
        }
        self.remove();
    }

    fn remove(self) {
        cgroup::remove_when_empty(&self.paths());
    }
}

fn read_secrets(ctx_name: &str, ctx: &Context, fd: Option<RawFd>) -> Result<SecretSet> {
    let Some(fd) = fd else {
        return Ok(SecretSet::default());
    };
    if ctx.secrets.allow.is_empty() {
        bail!(
            "context {ctx_name:?} takes no secrets, so --secrets-fd is refused (nothing was read); \
             run trusted tools that need secrets in a context with [context.NAME.secrets] allow, e.g. --ctx platform"
        );
    }
    let set = secrets::read_fd(fd)?;
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
