//! One launch, top to bottom. Like nsjail's `containProc`, the whole sequence reads as one ordered
//! list; each step is a call into the module named after its facility.
//!
//! Outer process: privilege mode and policy (`privilege`) → context and caller checks → environment
//! → command resolved and checked against `[exec]` as the caller (126/127 early) → secrets (refused
//! when the context takes none; split into variables and `secrets.files`) → plans (mounts, caps,
//! seccomp, user namespace in rootless mode, the caller's identity in setuid mode) → block signals
//! → control mode (`control`), or a persistent context's keeper joined (`persist`), or output
//! masking (`redactor`) and a clone into fresh namespaces → supervise → status → audit line.
//!
//! Sandbox pid 1: id maps (rootless) → die with the outer process → non-dumpable → new session →
//! close fds → mounts and private /proc → secret files → loopback → working directory → fork the
//! target → reap and forward.
//!
//! Target: new session → close fds → caps (and the setuid caller's identity) → no_new_privs →
//! Landlock → seccomp → exec.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};
use nix::unistd::{ForkResult, Pid};

use crate::cli::RunArgs;
use crate::creds::Files;
use crate::error::EXIT_TIMEOUT;
use crate::exec::Target;
use crate::mounts;
use crate::namespaces::{self, Kind};
use crate::policy::{self, Context, Namespace, Net, SeccompMode};
use crate::privilege;
use crate::reaper::{self, Outcome};
use crate::secrets::{self, SecretSet};
use crate::sys;

/// Everything pid 1 of the sandbox does before it forks the target.
pub(crate) struct Sandbox {
    pub(crate) kinds: Vec<Kind>,
    pub(crate) mounts: Option<mounts::Plan>,
    pub(crate) loopback: bool,
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) degrade: bool,
    /// Secrets written as files on a private tmpfs (`secrets.files`).
    pub(crate) creds: Option<Files>,
    /// Rootless mode: the user namespace's id map, written first by pid 1.
    pub(crate) userns: Option<crate::privilege::IdMap>,
}

/// Run `args.cmd` in context `args.ctx`; returns the exit status for sbx-exec.
pub fn run(args: RunArgs) -> Result<i32> {
    let ctx_name = args.ctx.as_deref().context("--ctx NAME is required")?;
    let mode = privilege::mode();
    let loaded = privilege::load_policy(mode, args.policy.as_deref())?;
    // Audit (policy key `audit`): one line per invocation, refusals included, names only.
    let started = crate::audit::Start::now();
    let mut secret_names = Vec::new();
    let result = run_in(&args, ctx_name, mode, &loaded, &mut secret_names);
    if let Some(to) = &loaded.policy.audit {
        let (code, error) = match &result {
            Ok(code) => (*code, None),
            Err(e) => (crate::error::exit_code_of(e), Some(format!("{e:#}"))),
        };
        let names = secret_names.iter().map(String::as_str).collect();
        let record = started.record(ctx_name, &args.cmd, names, code, error);
        if let Err(e) = crate::audit::write(to, &record) {
            eprintln!("sbx-exec: warning: {e:#}");
        }
    }
    result
}

fn run_in(
    args: &RunArgs,
    ctx_name: &str,
    mode: &privilege::Mode,
    loaded: &policy::Loaded,
    secret_names: &mut Vec<String>,
) -> Result<i32> {
    let ctx = loaded.policy.context(ctx_name)?;
    let setuid = privilege::SetuidLaunch::plan(mode, ctx_name, ctx)?;
    let status = args.status_fd.map(StatusFd::open).transpose()?;

    // The environment, and the command resolved in its PATH (127 / 126 before anything starts),
    // checked against exec.allow before a byte of the secrets is read.
    let mut env = crate::env::build(
        privilege::caller_env(),
        &privilege::env_policy(mode, &ctx.env),
    );
    if setuid.is_some() {
        env.set_var("PATH", &privilege::policy_path(&ctx.env));
    }
    let path_var = env.get("PATH").map(OsString::from).unwrap_or_default();
    let program = privilege::as_caller(mode, || {
        let found = crate::exec::resolve(&args.cmd[0], &path_var)?;
        crate::exec::check_allowed(ctx_name, &found, &ctx.exec)
    })?;

    // Secrets: a context that takes none refuses the fd before reading a byte of it.
    let secret_set = read_secrets(ctx_name, ctx, args.secrets_fd)?;
    secret_names.extend(secret_set.iter().map(|s| s.name.clone()));
    // Secret files belong to whoever the target runs as: the setuid caller, the rootless caller
    // (mapped to itself; uid 0 does not exist in its user namespace), or security.run_as.
    let userns = privilege::userns_plan(mode, ctx, !namespaces::wanted(ctx).is_empty());
    let files_owner = match (&setuid, &userns) {
        (Some(s), _) => Some(policy::RunAs {
            uid: s.identity.uid,
            gid: s.identity.gid,
        }),
        (None, Some(map)) => Some(policy::RunAs {
            uid: map.uid,
            gid: map.gid,
        }),
        (None, None) => ctx.security.run_as,
    };
    let creds = Files::split(&secret_set, &ctx.secrets.files, files_owner);
    env.add_secrets_except(&secret_set, |name| Files::is_file(&creds, name));
    for (name, path) in creds.iter().flat_map(Files::variables) {
        env.set_var(&name, &path);
    }

    let (mut sandbox, mut target) = prepare(ctx, &loaded.source, &program, &args.cmd, env)?;
    sandbox.creds = creds;
    if let Some(map) = userns {
        sandbox.kinds.insert(0, namespaces::USER);
        sandbox.userns = Some(map);
    }
    if let Some(s) = setuid {
        // The target becomes the caller for good, with no capabilities; it enters the working
        // directory only afterwards, so root's access never resolves a path the caller chose.
        if let Some(m) = &mut sandbox.mounts {
            m.tmpfs_owner = Some((s.identity.uid, s.identity.gid));
        }
        target.drop_to = Some(s.identity);
        target.caps = Some(Default::default());
        target.run_as = None;
        target.no_new_privs = true;
        target.chdir_after_drop = sandbox
            .cwd
            .take()
            .map(|d| privilege::c_path(&d))
            .transpose()?;
    }
    harden_outer()?;

    // Block the forwarded signals now: from here on none is lost, and the children inherit the mask.
    let mut caller_mask = SigSet::empty();
    sigprocmask(
        SigmaskHow::SIG_BLOCK,
        Some(&reaper::blocked_set()),
        Some(&mut caller_mask),
    )
    .context("cannot block signals")?;
    let target = Target {
        sigmask: caller_mask,
        ..target
    };

    if let Some(sup) = &ctx.supervise {
        let on_start = |pid: Pid| {
            if let Some(s) = &status {
                s.line(&format!("{{\"child-pid\":{}}}", pid.as_raw()));
            }
        };
        let code = crate::control::run(ctx_name, sup, target, on_start)?;
        if let Some(s) = &status {
            s.line(&format!("{{\"exit-code\":{code}}}"));
        }
        return Ok(code);
    }

    if ctx.persist {
        let report = |line: &str| {
            if let Some(s) = &status {
                s.line(line);
            }
        };
        return crate::persist::run(ctx_name, ctx, &sandbox, &target, &report);
    }

    // Output masking: the sandbox gets pipes to a masking process as stdout/stderr.
    let redactor = match ctx.secrets.redact && secret_set.iter().next().is_some() {
        true => Some(crate::redactor::start(&secret_set)?),
        false => None,
    };
    drop(secret_set);
    let started = start(ctx_name, sandbox, &target);
    if let Some(r) = &redactor {
        r.detach();
    }
    let child = match started {
        Ok(child) => child,
        Err(e) => {
            if let Some(r) = redactor {
                r.wait();
            }
            return Err(e);
        }
    };
    if let Some(s) = &status {
        s.line(&format!("{{\"child-pid\":{}}}", child.as_raw()));
    }
    let outcome = reaper::supervise(
        child,
        ctx.timeout.filter(|t| *t > 0).map(Duration::from_secs),
    );
    let code = match outcome {
        Outcome::Exited(code) => code,
        Outcome::TimedOut => {
            eprintln!(
                "sbx-exec: context {ctx_name:?} timed out after {}s; the command was stopped (timeout in the policy)",
                ctx.timeout.unwrap_or(0)
            );
            EXIT_TIMEOUT
        }
    };
    if let Some(r) = redactor {
        r.wait();
    }
    if let Some(s) = &status {
        s.line(&format!("{{\"exit-code\":{code}}}"));
    }
    Ok(code)
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

/// Turn the context into plans: what pid 1 mounts, and what the target drops before exec.
fn prepare(
    ctx: &Context,
    source: &policy::Source,
    program: &Path,
    cmd: &[OsString],
    env: crate::env::TargetEnv,
) -> Result<(Sandbox, Target)> {
    let kinds = namespaces::wanted(ctx);
    let mounts = ctx.has(Namespace::Mount).then(|| {
        let exe = std::env::current_exe().ok();
        let protect: Vec<&Path> = exe.as_deref().into_iter().chain(source.path()).collect();
        mounts::plan(&ctx.fs, &protect, ctx.has(Namespace::Pid))
    });
    let seccomp = match ctx.security.seccomp {
        SeccompMode::Default => Some(crate::seccomp::build(&ctx.security)?),
        SeccompMode::None => None,
    };
    let cwd = match ctx.has(Namespace::Mount) {
        true => Some(std::env::current_dir().context("cannot read the current directory")?),
        false => None,
    };
    let sandbox = Sandbox {
        kinds,
        mounts,
        loopback: ctx.net == Net::None,
        cwd,
        degrade: ctx.degrade,
        creds: None,
        userns: None,
    };
    let target = Target {
        path: CString::new(program.as_os_str().as_bytes()).context("program path contains NUL")?,
        argv: crate::exec::argv(cmd)?,
        env,
        caps: crate::caps::kept(&ctx.security),
        no_new_privs: ctx.security.no_new_privs,
        run_as: ctx.security.run_as,
        landlock: crate::landlock::plan(&ctx.security, ctx.degrade),
        seccomp,
        sigmask: SigSet::empty(),
        keep_fds: Vec::new(),
        drop_to: None,
        chdir_after_drop: None,
    };
    Ok((sandbox, target))
}

/// The outer process holds secrets in memory: no core dumps, no ptrace by non-privileged peers.
fn harden_outer() -> Result<()> {
    nix::sys::prctl::set_dumpable(false).context("cannot make sbx-exec non-dumpable")?;
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0)
        .context("cannot disable core dumps")?;
    Ok(())
}

/// Create the sandbox. Returns the pid of its first process (pid 1 inside, if it has a pid
/// namespace; otherwise the target itself).
fn start(ctx_name: &str, mut sandbox: Sandbox, target: &Target) -> Result<Pid> {
    let (alive_r, alive_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe")?;
    let child = match namespaces::enter(&sandbox.kinds) {
        Ok(c) => c,
        Err(_) if !sandbox.kinds.is_empty() => {
            let (ok, missing) = namespaces::available(ctx_name, &sandbox.kinds, sandbox.degrade)?;
            let names: Vec<&str> = missing.iter().map(|k| k.name).collect();
            eprintln!(
                "sbx-exec: warning: context {ctx_name:?} runs degraded (degrade = true): no {} namespace",
                names.join(", ")
            );
            if missing.contains(&namespaces::MOUNT) {
                sandbox.mounts = None;
            }
            if missing.contains(&namespaces::USER) {
                sandbox.userns = None;
            }
            sandbox.kinds = ok;
            namespaces::enter(&sandbox.kinds).context("cannot create the sandbox")?
        }
        Err(e) => return Err(anyhow!(e).context("cannot start the command")),
    };
    match child {
        Some(pid) => {
            drop(alive_r);
            // alive_w stays open in this process until it exits: the sandbox watches it.
            std::mem::forget(alive_w);
            Ok(pid)
        }
        None => {
            drop(alive_w);
            in_sandbox(&sandbox, target, alive_r)
        }
    }
}

/// The first process of the sandbox. Never returns.
fn in_sandbox(sandbox: &Sandbox, target: &Target, alive: OwnedFd) -> ! {
    let has_pidns = sandbox.kinds.contains(&namespaces::PID);
    if let Err(e) = setup_sandbox(sandbox, has_pidns, alive) {
        eprintln!("sbx-exec: {e:#}");
        sys::exit_now(crate::error::EXIT_SBX);
    }
    if !has_pidns {
        target.exec();
    }
    match sys::fork() {
        Ok(ForkResult::Child) => target.exec(),
        Ok(ForkResult::Parent { child }) => reaper::pid1(child),
        Err(e) => {
            eprintln!("sbx-exec: cannot fork the command: {e}");
            sys::exit_now(crate::error::EXIT_SBX)
        }
    }
}

fn setup_sandbox(sandbox: &Sandbox, has_pidns: bool, alive: OwnedFd) -> Result<()> {
    if let Some(map) = &sandbox.userns {
        crate::privilege::write_id_maps(map).context("cannot map ids in the user namespace")?;
    }
    if has_pidns {
        // Die with the outer process; if it is already gone, stop here.
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
            .context("cannot set the parent-death signal")?;
        let mut fds = [PollFd::new(alive.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::ZERO).unwrap_or(0) > 0 {
            sys::exit_now(crate::error::EXIT_SBX);
        }
        // Nobody in the sandbox may ptrace pid 1 or read its memory, environ or exe.
        nix::sys::prctl::set_dumpable(false).context("cannot make pid 1 non-dumpable")?;
        nix::unistd::setsid().context("cannot start a new session")?;
    }
    drop(alive);
    sys::close_fds_from(3, &[], false).context("cannot close inherited file descriptors")?;
    if sandbox.creds.is_some() {
        if sandbox.mounts.is_none() {
            bail!("secrets.files needs the mount namespace, which the kernel refused; the secrets were not delivered");
        }
        crate::creds::prepare_mount_point()?;
    }
    if let Some(plan) = &sandbox.mounts {
        mounts::apply(plan, sandbox.degrade)?;
    }
    if let Some(files) = &sandbox.creds {
        crate::creds::install(files)?;
    }
    if sandbox.loopback {
        sys::loopback_up().context("cannot bring up loopback in the new network namespace (net = \"none\"); use net = \"host\" if the context needs no network isolation")?;
    }
    if sandbox.cwd.is_none() && sandbox.mounts.is_some() {
        // Setuid mode: the target enters the caller's directory itself, as the caller; pid 1
        // must not keep a handle below a path the mounts may have covered.
        std::env::set_current_dir("/").context("cannot change to / in the sandbox")?;
    }
    if let Some(cwd) = &sandbox.cwd {
        std::env::set_current_dir(cwd).with_context(|| {
            format!(
                "the working directory {} does not exist inside the context (a private tmpfs or hidden path covers it); run sbx-exec from a directory the context shares, such as /workspace",
                cwd.display()
            )
        })?;
    }
    Ok(())
}

/// `--status-fd N`: JSON lines about the launch, as bubblewrap's `--json-status-fd`.
struct StatusFd(File);

impl StatusFd {
    fn open(fd: RawFd) -> Result<StatusFd> {
        if nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).is_err() {
            bail!("--status-fd {fd}: file descriptor {fd} is not open; open it for writing, e.g. {fd}>status.jsonl");
        }
        let dup = sys::dup_cloexec(fd).with_context(|| format!("--status-fd {fd}"))?;
        Ok(StatusFd(File::from(dup)))
    }

    fn line(&self, json: &str) {
        let _ = (&self.0).write_all(format!("{json}\n").as_bytes());
    }
}
