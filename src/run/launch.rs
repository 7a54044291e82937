//! One launch, top to bottom. Like nsjail's `containProc`, the whole sequence reads as one ordered
//! list; each step is a call into the module named after its facility.
//!
//! Outer process (`run_in`): privilege mode and policy (`privilege`) → context and caller checks
//! → named fds taken over (`--secrets-fd`, `--status-fd`, the kept fds of `--keep-fd` and
//! `--listen-fd`, checked by [`crate::plan::fds`]) → environment → command resolved, checked
//! against `[exec]` and opened once as the caller (126/127 early; the target runs that handle) →
//! secrets (refused when the context takes none; split into variables and `secrets.files`) →
//! plans ([`crate::plan::launch`]: mounts, caps, seccomp, Landlock, user namespace in rootless
//! mode, the caller's identity in setuid mode) → block signals → control mode (`control`), or a
//! persistent context's keeper joined (`persist`), or a one-shot sandbox (`one_shot`: output
//! masking, then [`crate::run::init`] in fresh namespaces) → supervise → status → audit records.
//!
//! Sandbox pid 1 ([`crate::run::init`], after joining the call's cgroup): id maps (rootless) → die
//! with the outer process → oom_score_adj → non-dumpable → new session → close fds → mounts,
//! private /dev and /proc → secret files → loopback, and the private network's sockets handed
//! out → working directory → fork the target (`identity`: map its user namespace) → reap and
//! forward.
//!
//! Target ([`crate::run::target`]): new session → (`identity`) its own user namespace → kept fds
//! onto 3.. → close the others → caps (and the setuid caller's identity) → no_new_privs → working
//! directory (joins) → Landlock → seccomp → LISTEN_PID → exec of the checked handle.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};

use crate::cli::RunArgs;
use crate::model::{self, Context};
use crate::plan::env::TargetEnv;
use crate::plan::launch::{self, Sandbox, Target};
use crate::plan::request;
use crate::plan::secret_files::Files;
use crate::privilege::{self, Mode, SetuidLaunch};
use crate::run::apply::cgroup;
use crate::run::inherited::{check_passed, named_fds, passed_fds, Inherited};
use crate::run::reaper;
use crate::run::status::{
    children_cpu_ms, refused_json, report, started_json, End, SetupErrors, StatusFd,
};
use crate::secrets::{self, SecretSet};

/// Run `args.cmd` in context `args.ctx`; returns the exit status for sbx-exec.
pub fn run(args: RunArgs) -> Result<i32> {
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
    let r = proc_mounted().and_then(|()| audited(&args, ctx_name, fds, status.as_ref()));
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

/// What every step of one launch reads.
struct Call<'a> {
    args: &'a RunArgs,
    ctx_name: &'a str,
    mode: &'a Mode,
    loaded: &'a model::Loaded,
    status: Option<&'a StatusFd>,
}

/// The steps of one launch after the policy is loaded.
fn run_in(call: &Call, fds: Inherited, audit: &mut crate::run::audit::Audit) -> Result<i32> {
    let Call {
        args,
        ctx_name,
        mode,
        loaded,
        status,
    } = *call;
    let mut ctx = loaded.policy.context(ctx_name)?.clone();
    ctx.timeout = request::timeout(ctx_name, &ctx, args.timeout)?;
    let ctx = &ctx;
    let setuid = SetuidLaunch::plan(mode, ctx_name, ctx)?;
    check_passed(ctx_name, ctx, loaded, &fds.passed, &fds.kept)?;
    let (mut env, program) = command(args, ctx_name, ctx, mode, setuid.is_some())?;
    let secret_set = read_secrets(ctx_name, ctx, args.secrets_fd, fds.secrets)?;
    audit.secrets = secret_set.iter().map(|s| s.name.clone()).collect();
    let userns =
        privilege::userns::userns_plan(mode, ctx, !crate::plan::namespaces::wanted(ctx).is_empty());
    let identity = privilege::userns::identity_plan(mode, ctx);
    let owner = launch::files_owner(setuid.as_ref(), userns.as_ref(), identity.as_ref(), ctx);
    let (creds, bound) = deliver_secrets(&mut env, &secret_set, ctx, owner)?;
    let (mut sandbox, mut target) = launch::prepare(ctx_name, ctx, &loaded.source, program, env)?;
    if args.cwd.is_some() || args.in_workdir {
        let here = std::env::current_dir().context("cannot read the current directory")?;
        let asked = args.cwd.as_deref().map(|d| request::cwd(d, &here));
        sandbox.cwd = Some(launch::Workdir::plan(ctx, asked, None));
    }
    sandbox.creds = creds;
    launch::add_passed_fds(&mut sandbox, &mut target, &fds.passed)
        .context("cannot keep the program's handle above the passed fds")?;
    launch::add_userns(&mut sandbox, userns);
    launch::add_identity(&mut sandbox, &mut target, identity);
    if let Some(s) = setuid {
        launch::add_setuid(&mut sandbox, &mut target, s)?;
    }
    grant_work_areas(ctx_name, ctx, mode);
    harden_outer()?;
    target.sigmask = block_forwarded_signals()?;
    // Every check has passed: the start record goes out before anything runs.
    audit.begin().map_err(|e| match mode.caller() {
        Some(_) => anyhow::anyhow!("the audit log cannot be written, so nothing is run; tell root"),
        None => e.context("the audit log cannot be written, so nothing is run"),
    })?;

    if let Some(sup) = &ctx.supervise {
        return control(ctx_name, sup, target, &loaded.source, status);
    }
    // Where the sandbox's own set-up says why it gave up (a refusal, reported as one).
    let errors = SetupErrors::new(target.program.as_raw_fd() + 1)?;
    target.set_errors(errors.write_fd());
    let limit = match args.timeout {
        Some(_) => reaper::TimeoutSource::Call,
        None => reaper::TimeoutSource::Policy,
    };
    if ctx.persist {
        let rep = |line: &str| report(status, line);
        let call = crate::run::persist::Call {
            ctx_name,
            ctx,
            report: &rep,
            errors,
            limit,
        };
        return crate::run::persist::run(call, &sandbox, target, audit.egress_log());
    }
    let proxying = crate::run::net::Proxying {
        log: audit.egress_log(),
        bound: bound.map(|b| b.interceptor),
    };
    let call = OneShot {
        ctx_name,
        ctx,
        status,
        errors,
        limit,
    };
    one_shot(call, sandbox, &target, secret_set, proxying)
}

/// What a one-shot call reports to, besides its plans.
struct OneShot<'a> {
    ctx_name: &'a str,
    ctx: &'a Context,
    status: Option<&'a StatusFd>,
    errors: SetupErrors,
    limit: reaper::TimeoutSource,
}

/// The secrets into the environment: each as its variable, or as a file (`secrets.files`, the
/// variable holds the path), or bound (`secrets.bind`: a placeholder inside, the real value kept
/// for the proxy's interceptor). Returns the files to write and the bound call.
fn deliver_secrets(
    env: &mut TargetEnv,
    secret_set: &SecretSet,
    ctx: &Context,
    owner: Option<model::RunAs>,
) -> Result<(Option<Files>, Option<crate::run::proxy::bound::BoundCall>)> {
    let files = Files::split(secret_set, &ctx.secrets.files, owner);
    let bound = crate::run::proxy::bound::prepare_call(secret_set, ctx, owner, files.clone())?;
    let is_bound = |n: &str| {
        bound
            .as_ref()
            .is_some_and(|b| b.variables.iter().any(|(v, _)| v == n))
    };
    let creds = match &bound {
        Some(b) => Some(b.files.clone()),
        None => files,
    };
    env.add_secrets_except(secret_set, |name| {
        Files::is_file(&creds, name) || is_bound(name)
    });
    for (name, value) in bound.iter().flat_map(|b| &b.variables) {
        env.set_var(name, value);
    }
    for (name, path) in creds.iter().flat_map(Files::variables) {
        env.set_var(&name, &path);
    }
    Ok((creds, bound))
}

/// Control mode: supervise the control plane (and its services) as the container's PID 1.
fn control(
    ctx_name: &str,
    sup: &model::Supervise,
    target: Target,
    source: &model::Source,
    status: Option<&StatusFd>,
) -> Result<i32> {
    let on_start = |pid: nix::unistd::Pid| report(status, &started_json(pid.as_raw()));
    // Services are launched with the same --policy file (absolute: control's cwd may differ
    // from theirs); the system file or the embedded default they find themselves.
    let policy = match source {
        model::Source::Flag(path) => Some(std::path::absolute(path).unwrap_or(path.clone())),
        _ => None,
    };
    let started = Instant::now();
    let code = crate::run::control::run(ctx_name, sup, target, policy.as_deref(), on_start)?;
    let end = End {
        code,
        wall_ms: started.elapsed().as_millis() as u64,
        cpu_ms: children_cpu_ms(),
        ..End::default()
    };
    report(status, &end.json());
    Ok(code)
}

/// The environment, and the command resolved in its PATH (127 / 126 before anything starts),
/// checked against `exec.allow` as the caller, before a byte of the secrets is read.
fn command(
    args: &RunArgs,
    ctx_name: &str,
    ctx: &Context,
    mode: &Mode,
    setuid: bool,
) -> Result<(TargetEnv, crate::plan::exec::Program)> {
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
    // Searched as the sandbox will see it: entries it hides or covers are skipped.
    let path_var = request::visible_path(&path_var, ctx);
    let rules = crate::plan::exec::with_noexec(&ctx.exec, &ctx.fs);
    let program = privilege::as_caller(mode, || {
        let found = crate::plan::exec::resolve(&args.cmd[0], &path_var)?;
        crate::plan::exec::open_checked(ctx_name, &found, &args.cmd, &rules, &path_var)
    })?;
    // A target holding secrets gets no PATH entry where untrusted code writes: what the tool
    // itself runs by name is not found there either. (The command and a `#!/usr/bin/env NAME`
    // were looked up in the whole PATH above, so a hit there is refused with 125, not skipped.)
    if !ctx.secrets.allow.is_empty() {
        if let Some(kept) = crate::plan::exec::path_without(&path_var, &rules.deny_under) {
            env.set_var("PATH", &kept);
        }
    }
    Ok((env, program))
}

/// A one-shot sandbox: output masking if asked, fresh namespaces, supervise, report. Whatever
/// fails once the masking process or the call's cgroup exists, they are ended before the error
/// is returned: the masking process waited for (what it holds is written out) and the cgroup
/// removed ([`CallCgroup`]'s drop), so a refused call leaves nothing behind.
fn one_shot(
    call: OneShot,
    sandbox: Sandbox,
    target: &Target,
    secret_set: SecretSet,
    proxying: crate::run::net::Proxying,
) -> Result<i32> {
    // Output masking: the sandbox gets pipes to a masking process as stdout/stderr.
    let mut masking = match call.ctx.secrets.redact && secret_set.iter().next().is_some() {
        true => Some(crate::run::masking::start(&secret_set)?),
        false => None,
    };
    drop(secret_set);
    let r = one_shot_masked(call, sandbox, target, proxying, &mut masking);
    if let Some(m) = masking {
        m.wait();
    }
    r
}

/// [`one_shot`] once its output masking runs (`masking`, detached once the sandbox exists).
fn one_shot_masked(
    call: OneShot,
    mut sandbox: Sandbox,
    target: &Target,
    proxying: crate::run::net::Proxying,
    masking: &mut Option<crate::run::masking::Redactor>,
) -> Result<i32> {
    let OneShot {
        ctx_name,
        ctx,
        status,
        mut errors,
        limit,
    } = call;
    // From here on every return, an error included, removes the cgroup (when it is empty).
    let cgroup = CallCgroup::create(ctx_name, ctx)?;
    if let Some(m) = sandbox.mounts.as_mut() {
        m.show_cgroups(&cgroup.paths());
    }
    let wall = Instant::now();
    let cpu_before = children_cpu_ms();
    // After the masking fork (which must not hold pid 1's socket), before the clone.
    let bridge = sandbox
        .net
        .as_ref()
        .map(crate::run::net::Bridge::prepare)
        .transpose()?;
    let inner = bridge.as_ref().map(crate::run::net::Bridge::inner);
    let started = crate::run::init::start(ctx_name, sandbox, target, cgroup.procs(), inner);
    errors.close_write();
    if let Some(m) = masking {
        m.detach();
    }
    let child = started?;
    // Threads start only now, after the clone: the published ports' forwarders, and the proxy on
    // its first connection (SIGIO, taken while waiting below).
    let mut net = match bridge {
        Some(b) => Some(b.start(proxying, true).inspect_err(|_| {
            // Nothing runs without its network: the sandbox goes (its pid 1 dies with it).
            let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(child, None);
        })?),
        None => None,
    };
    report(status, &started_json(child.as_raw()));
    let timeout = ctx.timeout.filter(|t| *t > 0).map(Duration::from_secs);
    // SIGIO (blocked since start-up) starts the proxy; without one waiting it does nothing.
    let mut start_proxy = || {
        if let Some(Err(e)) = net.as_mut().map(crate::run::net::Running::start_proxy) {
            eprintln!("sbx-exec: the egress proxy did not start; the sandbox has no egress: {e:#}");
        }
    };
    let outcome = reaper::supervise(child, timeout, Some(&mut start_proxy));
    drop(net);
    let code = reaper::exit_code(ctx_name, ctx, outcome, limit, "");
    let mut end = End {
        code,
        timed_out: outcome == reaper::Outcome::TimedOut,
        wall_ms: wall.elapsed().as_millis() as u64,
        cpu_ms: children_cpu_ms().saturating_sub(cpu_before),
        ..End::default()
    };
    // The counters go only to the status stream: without one, they are not read.
    cgroup.finish(status.is_some().then_some(&mut end));
    if let Some(m) = masking.take() {
        m.wait();
    }
    report(status, &errors.end_json(&end));
    Ok(code)
}

/// The cgroup of one one-shot call (`[limits]`): a leaf `sbx-CTX-PID` under sbx-exec's `sbx`
/// directory, created before the sandbox exists, joined by its pid 1 first thing, read when the
/// call ends, and removed when dropped: at the end of the call, and on every error once it exists
/// (a published port in use, a clone or a network that failed), so no refusal leaves it behind.
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

    /// Add the cgroup's counters to the end record (if there is one to report); the cgroup is
    /// removed as this returns.
    fn finish(self, end: Option<&mut End>) {
        if let (Some((plan, _)), Some(end)) = (&self.0, end) {
            let s = cgroup::stats(&cgroup::Host, plan);
            end.oom_kills = s.oom_kills;
            end.pids_refused = s.pids_refused;
            end.peak_memory = s.peak_memory;
            if let Some(ns) = s.cpu_ns {
                end.cpu_ms = ns / 1_000_000;
            }
        }
    }
}

impl Drop for CallCgroup {
    fn drop(&mut self) {
        if let Some((_, procs)) = self.0.as_mut() {
            procs.clear();
            cgroup::remove_when_empty(&self.paths());
        }
    }
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

/// Root mode, code that is not host root: its existing `fs.writable` areas get the ACL grant
/// for its host ids ([`crate::plan::workareas`]); an area that cannot take it is named on stderr
/// and stays as it is (the launch goes on: it is a convenience, not a wall).
fn grant_work_areas(ctx_name: &str, ctx: &Context, mode: &Mode) {
    let Some(who) = crate::plan::workareas::grantee(ctx, matches!(mode, Mode::Root)) else {
        return;
    };
    for (area, got) in crate::run::apply::workareas::ensure(&ctx.fs.writable, who, false) {
        if let crate::run::apply::workareas::Area::Refused(why) = got {
            eprintln!(
                "sbx-exec: warning: context {ctx_name:?}: work area {} is not writable inside: {why}",
                area.as_path().display()
            );
        }
    }
}

/// The outer process holds secrets in memory: no core dumps, no ptrace by non-privileged peers.
fn harden_outer() -> Result<()> {
    nix::sys::prctl::set_dumpable(false).context("cannot make sbx-exec non-dumpable")?;
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0)
        .context("cannot disable core dumps")?;
    Ok(())
}

/// Block the forwarded signals now: from here on none is lost, and the children inherit the
/// mask. Returns the caller's mask, which the target restores. SIGIO too: it tells of the egress
/// proxy's first connection ([`crate::run::net::Running`]); its default action would end sbx-exec.
fn block_forwarded_signals() -> Result<SigSet> {
    let mut caller_mask = SigSet::empty();
    let mut set = reaper::blocked_set();
    set.add(nix::sys::signal::Signal::SIGIO);
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut caller_mask))
        .context("cannot block signals")?;
    Ok(caller_mask)
}
