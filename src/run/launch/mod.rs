//! One launch, top to bottom, as nsjail's `containProc` reads: gather → plan → audit → apply.
//!
//! 1. The named fds are taken over first (`--secrets-fd`, `--status-fd`, the kept fds of
//!    `--keep-fd`/`--listen-fd`); the privilege mode and the policy are loaded; the call is
//!    checked against its context ([`Request`]: the timeout, and in setuid mode the caller).
//! 2. **Gather** ([`gather`]): the host facts, read once: the kept fds checked, the command
//!    resolved, checked against `[exec]` and opened once as the caller (126/127 early), the
//!    secrets read (refused when the context takes none) and bound ones given placeholders, the
//!    current directory, the binary, the cgroup layout, the signal mask.
//! 3. **Plan** ([`crate::plan::launch::plan`]): pure, facts in, one [`Launch`] out: the sandbox
//!    (namespaces, mounts, network, secret files), the target (environment, fds, identity,
//!    capabilities, Landlock, seccomp), the cgroup, how it runs.
//! 4. The outer process's own walls (work areas granted, non-dumpable, forwarded signals
//!    blocked), then the audit start record: nothing runs unless it is written.
//! 5. **Apply**: control mode ([`crate::run::control`]), a persistent context's keeper joined
//!    ([`crate::run::persist`]), or a one-shot sandbox ([`one_shot`]: output masking, the call's
//!    cgroup, [`crate::run::init`] in fresh namespaces, supervise, status). Pid 1's and the
//!    target's steps, in order: [`crate::run::confine`].

mod gather;
mod one_shot;
mod pooled;

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use nix::sys::signal::{sigprocmask, SigmaskHow};

use crate::cli::RunArgs;
use crate::model::{self, Context};
use crate::plan::cgroup::Decision;
use crate::plan::launch::{How, Launch, Sandbox, Target};
use crate::plan::request::Request;
use crate::privilege::{self, Mode};
use crate::run::inherited::{named_fds, passed_fds, Inherited};
use crate::run::reaper;
use crate::run::status::{
    children_cpu_ms, refused_json, report, started_json, End, SetupErrors, StatusFd,
};

/// What the target runs.
#[derive(Debug, Clone, Copy)]
pub enum Runs<'a> {
    /// The caller's command (`args.cmd`): resolved, checked against `[exec]`, opened once.
    Command,
    /// sbx-exec's own binary with this argument vector (its argv[0] names the role: the file
    /// tool, [`crate::run::file`]). The launcher chose it, not the caller, so no `[exec]` rule
    /// applies and it need not be visible inside; `args.cmd` only names the call in the audit.
    Own(&'a [std::ffi::OsString]),
}

/// Run `args.cmd` in context `args.ctx`; returns the exit status for sbx-exec.
pub fn run(args: RunArgs) -> Result<i32> {
    run_program(args, Runs::Command)
}

/// [`run`], the target running `runs`.
pub fn run_program(args: RunArgs, runs: Runs) -> Result<i32> {
    let ctx_name = args.ctx.as_deref().context("--ctx NAME is required")?;
    // The named fds are taken over first, before anything else opens an fd; the status stream
    // is then open, so every later refusal (a bad policy, an unknown context) is recorded there.
    let passed = passed_fds(&args)?;
    let (secrets, status, kept) = named_fds(&args, &passed.fds)?;
    let fds = Inherited {
        secrets,
        passed,
        kept,
    };
    let r = proc_mounted().and_then(|()| audited(&args, runs, ctx_name, fds, status.as_ref()));
    if let Err(e) = &r {
        let code = crate::error::exit_code_of(e);
        report(status.as_ref(), &refused_json(code, &format!("{e:#}")));
    }
    r
}

/// sbx-exec reads /proc/self (the checked program's handle, its own status) and gives each sandbox
/// a /proc of its own: without procfs on /proc, say so first, not what fails later for lack of it.
fn proc_mounted() -> Result<()> {
    match std::fs::metadata("/proc/self/stat") {
        Ok(_) => Ok(()),
        Err(e) => bail!(
            "/proc is not mounted (or is empty) in sbx-exec's mount namespace: /proc/self/stat: {}; \
             sbx-exec needs procfs there (mount -t proc proc /proc); nothing was run",
            crate::error::cause(&e)
        ),
    }
}

/// Load the policy, launch, and write the audit records (policy key `audit`): a start record
/// before the command runs, an end record after; a refusal gets one record. Names only.
fn audited(
    args: &RunArgs,
    runs: Runs,
    ctx_name: &str,
    fds: Inherited,
    status: Option<&StatusFd>,
) -> Result<i32> {
    let mode = privilege::mode();
    let loaded = privilege::load_policy(mode, args.policy.as_deref())?;
    let mut audit =
        crate::run::audit::Audit::new(loaded.policy.audit.as_ref(), ctx_name, &args.cmd);
    let call = Call {
        args,
        runs,
        ctx_name,
        mode,
        loaded: &loaded,
        status,
    };
    let result = run_in(&call, fds, &mut audit);
    let (code, error) = match &result {
        Ok(code) => (*code, None),
        Err(e) => (crate::error::exit_code_of(e), Some(format!("{e:#}"))),
    };
    audit.finish(code, error, mode.caller().is_some());
    result
}

/// What a one-shot call reports to, besides its plans.
struct OneShot<'a> {
    pub ctx_name: &'a str,
    pub ctx: &'a Context,
    pub status: Option<&'a StatusFd>,
    pub errors: SetupErrors,
    pub limit: reaper::TimeoutSource,
    pub timeout: Option<u64>,
    pub cgroup: &'a Decision,
}

/// Wait for the sandbox (at most `timeout` seconds), forwarding signals; the egress proxy starts
/// on its first connection (SIGIO, blocked since start-up; without a proxy waiting it does
/// nothing). The network ends with it.
fn supervise(
    child: nix::unistd::Pid,
    timeout: Option<u64>,
    mut net: Option<crate::run::net::Running>,
) -> reaper::Outcome {
    let limit = timeout.filter(|t| *t > 0).map(Duration::from_secs);
    let mut start_proxy = || {
        if let Some(Err(e)) = net.as_mut().map(crate::run::net::Running::on_input) {
            eprintln!("sbx-exec: the egress proxy did not start; the sandbox has no egress: {e:#}");
        }
    };
    reaper::supervise(child, limit, Some(&mut start_proxy))
}

/// What supervising a one-shot call's sandbox reads: the context's name, the status stream, where
/// the timeout came from and the timeout.
type Watch<'a> = (
    &'a str,
    Option<&'a StatusFd>,
    reaper::TimeoutSource,
    Option<u64>,
);

/// A sandbox's first process started (`child`, with its network `net`): report it, supervise it
/// (forwarding signals, at most `timeout` seconds), and the exit code and end record it ends with
/// (`wall`, `cpu_before`: when the call began, and the children's CPU time then).
fn supervised(
    (ctx_name, status, limit, timeout): Watch,
    child: nix::unistd::Pid,
    net: Option<crate::run::net::Running>,
    (wall, cpu_before): (Instant, u64),
) -> (i32, crate::run::status::End) {
    report(status, &crate::run::status::started_json(child.as_raw()));
    let outcome = supervise(child, timeout, net);
    let code = reaper::exit_code(ctx_name, timeout, outcome, limit, "");
    let end = crate::run::status::End {
        code,
        timed_out: outcome == reaper::Outcome::TimedOut,
        wall_ms: wall.elapsed().as_millis() as u64,
        cpu_ms: children_cpu_ms().saturating_sub(cpu_before),
        ..Default::default()
    };
    (code, end)
}

/// Nothing runs without its network: the sandbox's first process `child` is killed and reaped.
fn kill_started(child: nix::unistd::Pid) {
    let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(child, None);
}

/// What every step of one launch reads.
struct Call<'a> {
    args: &'a RunArgs,
    runs: Runs<'a>,
    ctx_name: &'a str,
    mode: &'a Mode,
    loaded: &'a model::Loaded,
    status: Option<&'a StatusFd>,
}

/// The steps of one launch after the policy is loaded: gather, plan, audit, apply.
fn run_in(call: &Call, mut fds: Inherited, audit: &mut crate::run::audit::Audit) -> Result<i32> {
    let ctx = call.loaded.policy.context(call.ctx_name)?;
    if let (Runs::Own(_), Some(_)) = (call.runs, &ctx.supervise) {
        bail!(
            "context {:?} supervises the control plane ([context.{0}.supervise]); file operations run in a confined context (e.g. user, platform)",
            call.ctx_name
        );
    }
    let req = Request::new(call.args, call.ctx_name, ctx, call.mode)?;
    let (facts, bound) = gather::facts(call, &req, ctx, &mut fds, audit)?;
    let launch = crate::plan::launch::plan(&req, ctx, call.mode, facts)?;
    outer_walls(call.ctx_name, &launch)?;
    // Every check has passed: the start record goes out before anything runs.
    audit.begin().map_err(|e| match call.mode.caller() {
        Some(_) => anyhow::anyhow!("the audit log cannot be written, so nothing is run; tell root"),
        None => e.context("the audit log cannot be written, so nothing is run"),
    })?;
    let limit = match launch.timeout_asked {
        true => reaper::TimeoutSource::Call,
        false => reaper::TimeoutSource::Policy,
    };
    let Launch {
        how,
        sandbox,
        mut target,
        cgroup,
        timeout,
        redact,
        ..
    } = launch;
    if let How::Control(sup) = &how {
        return control(call, sup, target);
    }
    // Where the sandbox's own set-up says why it gave up (a refusal, reported as one).
    let errors = SetupErrors::new(std::os::fd::AsRawFd::as_raw_fd(&target.program) + 1)?;
    if let How::Persistent = how {
        let rep = |line: &str| report(call.status, line);
        let persistent = crate::run::persist::Call {
            ctx_name: call.ctx_name,
            ctx,
            report: &rep,
            errors,
            limit,
            timeout,
            cgroup: &cgroup,
        };
        return crate::run::persist::run(persistent, &sandbox, target, audit.egress_log());
    }
    let proxying = crate::run::net::Proxying {
        log: audit.egress_log(),
        bound: None,
        call: audit.call(),
    };
    let one = OneShot {
        ctx_name: call.ctx_name,
        ctx,
        status: call.status,
        errors,
        limit,
        timeout,
        cgroup: &cgroup,
    };
    one_shot::run(one, &sandbox, &mut target, redact, (proxying, bound))
}

/// The sandbox a call of `ctx_name` gets, planned as a call without options would be (sbx-exec's
/// own binary as its program: no command; no secrets, but the CA bundle of every bound one), for
/// the pool's server to prepare ([`crate::run::pool`]). Its working directory is not used: each
/// call enters its own.
pub fn pool_sandbox(loaded: &model::Loaded, ctx_name: &str, mode: &Mode) -> Result<Sandbox> {
    let ctx = loaded.policy.context(ctx_name)?;
    let args = RunArgs {
        policy: None,
        ctx: Some(ctx_name.to_string()),
        secrets_fd: None,
        status_fd: None,
        env: Vec::new(),
        cwd: None,
        in_workdir: false,
        timeout: None,
        keep_fd: Vec::new(),
        listen_fd: Vec::new(),
        cmd: vec!["sbx-exec".into()],
    };
    let argv = [std::ffi::OsString::from("sbx-exec")];
    let call = Call {
        args: &args,
        runs: Runs::Own(&argv),
        ctx_name,
        mode,
        loaded,
        status: None,
    };
    let req = Request::new(&args, ctx_name, ctx, mode)?;
    let mut fds = Inherited {
        secrets: None,
        passed: Default::default(),
        kept: Vec::new(),
    };
    let mut audit = crate::run::audit::Audit::new(None, ctx_name, &args.cmd);
    let (mut facts, _) = gather::facts(&call, &req, ctx, &mut fds, &mut audit)?;
    // Bound secrets: the bundle of a call handed every secret the context binds (its CA, one
    // per sandbox, is the server's to make).
    if !ctx.secrets.bind.is_empty() {
        facts.bound = Some(crate::plan::launch::BoundSecrets {
            variables: Vec::new(),
            ca: crate::run::proxy::bound::planned_bundle(ctx)?,
        });
    }
    Ok(crate::plan::launch::plan(&req, ctx, mode, facts)?.sandbox)
}

/// The outer process's own walls before anything runs: the work areas granted to the code's host
/// ids, no core dumps or ptrace of a process holding secrets, the forwarded signals blocked (the
/// caller's mask is in the plan: the target gets it back).
fn outer_walls(ctx_name: &str, launch: &Launch) -> Result<()> {
    if let Some((areas, who)) = &launch.grant {
        grant_work_areas(ctx_name, areas, *who);
    }
    harden_outer()?;
    block_forwarded_signals()
}

/// Control mode: supervise the control plane (and its services) as the container's PID 1.
fn control(call: &Call, sup: &model::Supervise, target: Target) -> Result<i32> {
    let (ctx_name, status, source) = (call.ctx_name, call.status, &call.loaded.source);
    let pools = call.loaded.policy.context.values().any(|c| c.pool > 0);
    let on_start = |pid: nix::unistd::Pid| report(status, &started_json(pid.as_raw()));
    // Services are launched with the same --policy file (absolute: control's cwd may differ
    // from theirs); the system file or the embedded default they find themselves.
    let policy = match source {
        model::Source::Flag(path) => Some(std::path::absolute(path).unwrap_or(path.clone())),
        _ => None,
    };
    let started = Instant::now();
    let code =
        crate::run::control::run(ctx_name, sup, target, (policy.as_deref(), pools), on_start)?;
    let end = End {
        code,
        wall_ms: started.elapsed().as_millis() as u64,
        cpu_ms: children_cpu_ms(),
        ..End::default()
    };
    report(status, &end.json());
    Ok(code)
}

/// Root mode, code that is not host root: its existing `fs.writable` areas get the ACL grant
/// for its host ids ([`crate::plan::workareas`]); an area that cannot take it is named on stderr
/// and stays as it is (the launch goes on: it is a convenience, not a wall).
fn grant_work_areas(ctx_name: &str, areas: &[model::AbsPath], who: model::RunAs) {
    for (area, got) in crate::run::apply::workareas::ensure(areas, who, false) {
        if let crate::run::apply::workareas::Area::Refused(why) = got {
            eprintln!(
                "sbx-exec: warning: context {ctx_name:?}: work area {} is not writable inside: {why}",
                area.as_path().display()
            );
        }
    }
}

/// The outer process (or the pool's server) holds secrets in memory: no core dumps, no ptrace by
/// non-privileged peers.
pub(crate) fn harden_outer() -> Result<()> {
    nix::sys::prctl::set_dumpable(false).context("cannot make sbx-exec non-dumpable")?;
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0)
        .context("cannot disable core dumps")?;
    Ok(())
}

/// Block the forwarded signals now: from here on none is lost, and the children inherit the
/// mask (the target restores the caller's, gathered before). SIGIO too: it tells of the egress
/// proxy's first connection ([`crate::run::net::Running`]); its default action would end sbx-exec.
fn block_forwarded_signals() -> Result<()> {
    let mut set = reaper::blocked_set();
    set.add(nix::sys::signal::Signal::SIGIO);
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None).context("cannot block signals")
}
