//! The whole launch as one value ([`Launch`]), made by one pure function ([`plan`]) from the call
//! ([`Request`]), its context, the privilege mode and the host facts gathered before
//! ([`Facts`]); nothing changes it afterwards. What pid 1 sets up is its [`Sandbox`], what the
//! target does between fork and exec its [`Target`]: one-shot calls, joins of persistent contexts
//! and control mode all run from these. The kernel may still give less than planned; then the
//! launch runs a plan derived from this one by a pure function ([`Sandbox::without`],
//! [`Sandbox::without_cgroups`]), never this one changed.

use std::ffi::{CString, OsString};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use nix::sys::signal::SigSet;

use crate::model::{self, Context, Namespace, RunAs, SeccompMode};
use crate::plan::cgroup::{Decision, Layout};
use crate::plan::env::TargetEnv;
use crate::plan::fds::Passed;
use crate::plan::host::exec::Program;
use crate::plan::request::{self, Request};
use crate::plan::secret_files::Files;
use crate::plan::{mounts, namespaces};
use crate::privilege::userns::{identity_plan, userns_plan};
use crate::privilege::{self, IdMap, Mode};
use crate::secrets::SecretSet;

mod sandbox;
mod target;

pub use sandbox::{fnv1a, Sandbox};
pub use target::{files_owner, Mapped, Target, Workdir};

/// What a launch learns from the host before it plans, read once ([`crate::run::launch`]
/// gathers them, with [`crate::plan::host`]): the only inputs of [`plan`] besides the call, the
/// context and the mode.
#[derive(Debug)]
pub struct Facts {
    /// The caller's environment (setuid mode: the copy taken at start-up).
    pub caller_env: Vec<(OsString, OsString)>,
    /// The command: resolved in the PATH [`environment`] gives, checked against `[exec]` as the
    /// caller, opened once, above the fds passed on.
    pub program: Program,
    /// That PATH without its entries under `exec.deny_under` (links resolved), when it has some.
    pub path_kept: Option<String>,
    /// The fds the caller passes on (`--keep-fd`, `--listen-fd`), checked.
    pub passed: Passed,
    /// The secrets handed on `--secrets-fd`, checked against the context.
    pub secrets: SecretSet,
    /// Bound secrets (`secrets.bind`): their placeholders, and the CA bundle the sandbox trusts.
    pub bound: Option<BoundSecrets>,
    /// The current directory; read when the plan needs it (a mount namespace, `--cwd`,
    /// `--in-workdir`).
    pub cwd: Option<PathBuf>,
    /// The sbx-exec binary and the policy file in use: read-only in every sandbox.
    pub exe: Option<PathBuf>,
    pub policy_file: Option<PathBuf>,
    /// This process's effective uid and gid (rootless mode maps them to themselves) and pid (the
    /// call's cgroup leaf and, in a persistent context, its proxy address).
    pub euid: u32,
    pub egid: u32,
    pub pid: u32,
    /// The cgroup layout, read only for a context with `[limits]`.
    pub cgroups: Option<Layout>,
    /// The caller's signal mask, which the target gets back.
    pub sigmask: SigSet,
}

/// Bound secrets as the plan sees them: the placeholder variables the target gets, and the CA
/// bundle (the system's and the call's own CA) written next to the secret files.
#[derive(Debug)]
pub struct BoundSecrets {
    pub variables: Vec<(String, String)>,
    pub ca: crate::plan::secret_files::CaBundle,
}

/// How the call runs.
#[derive(Debug, Clone)]
pub enum How {
    /// A sandbox of its own, gone when the command ends.
    OneShot,
    /// A persistent context's keeper, found or started, joined.
    Persistent,
    /// Control mode: supervise the control plane (and its services).
    Control(model::Supervise),
}

/// The whole launch ([`plan`]).
#[derive(Debug)]
pub struct Launch {
    pub how: How,
    pub sandbox: Sandbox,
    pub target: Target,
    /// `[limits]`: the call's cgroup (one-shot), or the context's (a persistent context's keeper,
    /// made when one is started).
    pub cgroup: Decision,
    /// Root mode, code that is not host root: its existing `fs.writable` areas get the ACL grant
    /// for these host ids ([`crate::plan::workareas`]).
    pub grant: Option<(Vec<model::AbsPath>, RunAs)>,
    /// The call's timeout in seconds, and whether the caller asked for it (`--timeout`).
    pub timeout: Option<u64>,
    pub timeout_asked: bool,
    /// Output masking (`secrets.redact` with secrets handed): the values to mask.
    pub redact: Option<SecretSet>,
}

/// Plan the launch (pure: facts in, plan out). Errors are refusals (a bad `--env`, a seccomp
/// program that cannot be built, a working directory with a NUL byte).
pub fn plan(req: &Request, ctx: &Context, mode: &Mode, facts: Facts) -> Result<Launch> {
    let (mut env, _) = environment(req, ctx, mode, &facts.caller_env)?;
    if !ctx.secrets.allow.is_empty() {
        if let Some(kept) = &facts.path_kept {
            env.set_var("PATH", kept);
        }
    }
    let wants = !namespaces::wanted(ctx).is_empty();
    let userns = userns_plan(mode, ctx, wants, (facts.euid, facts.egid));
    let identity = identity_plan(mode, ctx);
    let owner = files_owner(req.setuid.as_ref(), userns.as_ref(), identity.as_ref(), ctx);
    let creds = deliver_secrets(&mut env, ctx, &facts, owner);
    let cgroup = Decision::new(
        req.ctx_name,
        ctx.limits.as_ref(),
        facts.cgroups.as_ref(),
        facts.pid,
    );
    let mut sandbox = sandbox(req, ctx, &facts, &mut env, &cgroup)?;
    sandbox.creds = creds;
    sandbox.keep_fds = facts.passed.fds.clone();
    sandbox.keep_fds.sort_unstable();
    let mut target = target(ctx, facts.program, env, facts.sigmask)?.passing(&facts.passed);
    if let Some(map) = userns {
        sandbox.kinds.insert(0, namespaces::USER);
        sandbox.userns = Some(map);
    }
    if let Some(range) = identity {
        owns_tmpfs(&mut sandbox, range.uid, range.gid);
        target.identity = Some(Mapped {
            range,
            degrade: ctx.degrade,
        });
    }
    if let Some(s) = &req.setuid {
        // Setuid mode: the target becomes the caller for good, with no capabilities; it enters
        // the working directory only afterwards, so root's access never resolves a path the
        // caller chose. Private tmpfs mounts (HOME) are given to the caller.
        owns_tmpfs(&mut sandbox, s.identity.uid, s.identity.gid);
        target.drop_to = Some(s.identity.clone());
        target.caps = Some(Default::default());
        target.run_as = None;
        target.no_new_privs = true;
        target.chdir_after_drop = sandbox.cwd.take().map(|d| d.to_c()).transpose()?;
    }
    let how = match (&ctx.supervise, ctx.persist) {
        (Some(sup), _) => How::Control(sup.clone()),
        (None, true) => How::Persistent,
        (None, false) => How::OneShot,
    };
    if let How::Persistent = how {
        joins(&sandbox, &mut target, facts.pid)?;
    }
    let redact = (ctx.secrets.redact && facts.secrets.iter().next().is_some()).then_some(());
    Ok(Launch {
        how,
        sandbox,
        target,
        cgroup,
        grant: crate::plan::workareas::grantee(ctx, matches!(mode, Mode::Root))
            .map(|who| (ctx.fs.writable.clone(), who)),
        timeout: req.timeout,
        timeout_asked: req.timeout_asked,
        redact: redact.map(|()| facts.secrets),
    })
}

/// The environment before secrets, and the PATH the command is searched in: the caller's
/// variables through the context's allowlist (setuid mode: always without injection variables),
/// `env.set`, the policy's PATH in setuid mode, then `--env`. The search PATH is that PATH as the
/// sandbox sees it (entries it hides or covers skipped). The gathering asks this for the PATH;
/// [`plan`] for the environment.
pub fn environment(
    req: &Request,
    ctx: &Context,
    mode: &Mode,
    caller_env: &[(OsString, OsString)],
) -> Result<(TargetEnv, OsString)> {
    let policy = privilege::env_policy(mode, &ctx.env);
    let mut env = crate::plan::env::build(caller_env.iter().cloned(), &policy);
    if req.setuid.is_some() {
        env.set_var("PATH", &privilege::policy_path(&ctx.env));
    }
    for (name, value) in request::caller_env(req.ctx_name, ctx, req.env)? {
        env.set_var(&name, &value);
    }
    let path_var = env.get("PATH").map(OsString::from).unwrap_or_default();
    let search = request::visible_path(&path_var, ctx);
    Ok((env, search))
}

/// The secrets into the environment: each as its variable, or as a file (`secrets.files`, the
/// variable holds the path), or bound (`secrets.bind`: a placeholder inside, the real value kept
/// for the egress gate). Returns the files to write.
fn deliver_secrets(
    env: &mut TargetEnv,
    ctx: &Context,
    facts: &Facts,
    owner: Option<RunAs>,
) -> Option<Files> {
    let files = Files::split(&facts.secrets, &ctx.secrets.files, owner);
    let bound = facts.bound.as_ref();
    let creds = match bound {
        Some(b) => Some(Files::with_ca_bundle(files, owner, b.ca.clone())),
        None => files,
    };
    let is_bound = |n: &str| bound.is_some_and(|b| b.variables.iter().any(|(v, _)| v == n));
    env.add_secrets_except(&facts.secrets, |name| {
        Files::is_file(&creds, name) || is_bound(name)
    });
    for (name, value) in bound.iter().flat_map(|b| &b.variables) {
        env.set_var(name, value);
    }
    for (name, path) in creds.iter().flat_map(Files::variables) {
        env.set_var(&name, &path);
    }
    creds
}

/// What pid 1 sets up: namespaces, mounts (the binary and the policy file kept read-only; the
/// call's cgroups shown in a private /sys), network, working directory. Sets the proxy variables.
fn sandbox(
    req: &Request,
    ctx: &Context,
    facts: &Facts,
    env: &mut TargetEnv,
    cgroup: &Decision,
) -> Result<Sandbox> {
    let here = || {
        facts
            .cwd
            .clone()
            .context("cannot read the current directory")
    };
    let mounts = ctx.has(Namespace::Mount).then(|| {
        let protect: Vec<&Path> = facts
            .exe
            .iter()
            .chain(&facts.policy_file)
            .map(PathBuf::as_path)
            .collect();
        let mut m = mounts::plan(
            &ctx.fs,
            &protect,
            ctx.has(Namespace::Pid),
            ctx.private_dev(),
        );
        m.show_cgroups(&cgroup.dirs());
        m
    });
    let mut cwd = match ctx.has(Namespace::Mount) {
        true => Some(Workdir::plan(ctx, None, Some(here()?))),
        false => None,
    };
    let net = crate::plan::net::plan(req.ctx_name, ctx);
    if net.as_ref().is_some_and(|n| n.egress.is_some()) {
        for (name, value) in crate::plan::net::proxy_env() {
            env.set_var(name, &value);
        }
    }
    if req.cwd.is_some() || req.in_workdir {
        let here = here()?;
        let asked = req.cwd.map(|d| request::cwd(d, &here));
        cwd = Some(Workdir::plan(ctx, asked, None));
    }
    Ok(Sandbox {
        kinds: namespaces::wanted(ctx),
        mounts,
        loopback: ctx.net.own_namespace(),
        net,
        cwd,
        degrade: ctx.degrade,
        creds: None,
        userns: None,
        keep_fds: Vec::new(),
    })
}

/// What the target drops before it execs `program`. sbx-exec's own binary (the file tool) gets
/// an empty environment (it reads none) and may be executed where `exec_only_under` limits
/// execution.
fn target(ctx: &Context, program: Program, mut env: TargetEnv, sigmask: SigSet) -> Result<Target> {
    let seccomp = match ctx.security.seccomp {
        SeccompMode::Default => Some(crate::plan::seccomp::build(&ctx.security)?),
        SeccompMode::None => None,
    };
    let mut landlock = crate::plan::landlock_rules::plan(&ctx.security, ctx.degrade);
    if program.own {
        landlock = crate::plan::landlock_rules::with_own_program(landlock, program.fd.as_raw_fd());
        for name in env.names() {
            env.remove(&name);
        }
    }
    Ok(Target {
        path: CString::new(program.shown.as_os_str().as_bytes())
            .context("program path contains NUL")?,
        argv: crate::plan::host::exec::argv(&program.argv)?,
        keep_fds: vec![program.fd.as_raw_fd()],
        program: program.fd,
        env,
        caps: crate::plan::capabilities::kept(&ctx.security),
        no_new_privs: ctx.security.no_new_privs,
        run_as: ctx.security.run_as,
        landlock,
        seccomp,
        sigmask,
        pass_fds: Vec::new(),
        listen_pid: false,
        drop_to: None,
        chdir_after_drop: None,
        cwd_in_root: None,
        identity: None,
    })
}

/// The private tmpfs mounts (HOME) belong to these host ids (`identity`, setuid mode).
fn owns_tmpfs(sandbox: &mut Sandbox, uid: u32, gid: u32) {
    if let Some(m) = &mut sandbox.mounts {
        m.tmpfs_owner = Some((uid, gid));
    }
}

/// A join of a persistent context: the target enters the working directory itself, inside the
/// context's root, after dropping its capabilities; and reaches the context's proxy on an address
/// of its own (its share of the gate), from this launcher's pid.
fn joins(sandbox: &Sandbox, target: &mut Target, pid: u32) -> Result<()> {
    target.cwd_in_root = sandbox.cwd.as_ref().map(|w| w.to_c()).transpose()?;
    if sandbox.net.as_ref().is_some_and(|n| n.egress.is_some()) {
        let at = crate::plan::net::call_address(pid);
        for (name, value) in crate::plan::net::proxy_env_at(at) {
            target.env.set_var(name, &value);
        }
    }
    Ok(())
}

/// Rootless mode's map, as [`userns_plan`] gives it (for probe's mount trials too).
pub fn rootless_map(mode: &Mode, ctx: &Context, euid: u32, egid: u32) -> Option<IdMap> {
    userns_plan(mode, ctx, !namespaces::wanted(ctx).is_empty(), (euid, egid))
}

#[cfg(test)]
mod tests;
