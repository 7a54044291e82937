//! The rules across keys of one context, in the order they are checked ([`RULES`]).

use std::path::Path;

use super::Violation;
use crate::model::*;

/// A rule across keys of one context: `Err` says what is wrong and how to fix it.
type Rule = fn(&Context) -> Result<(), Violation>;

/// Every cross-key rule, in the order they are checked.
pub(super) const RULES: &[Rule] = &[
    pid_needs_mount,
    fs_needs_mount,
    dev_rules,
    all_caps_alone,
    seccomp_needs_no_new_privs,
    confined_caps,
    supervise_rules,
    landlock_needs_no_new_privs,
    run_as_keeps_no_caps,
    no_port_zero,
    secret_files_rules,
    secrets_require_rules,
    bind_rules,
    ptrace_needs_seccomp,
    persist_rules,
    pool_rules,
    limits_rules,
    identity_rules,
    net_rules,
    ops_rules,
];

/// Where persistent contexts keep their state; a persistent context must hide it.
pub const RUNTIME_DIR: &str = "/run/sbx";

/// Where the control plane listens for platform operations (`ops`, docs/ops.md): in
/// [`RUNTIME_DIR`], which only root can enter; the outer sbx-exec connects for the gate.
pub const OPS_SOCKET: &str = "/run/sbx/ops.sock";

/// Capabilities no confined context may keep: each one can undo the sandbox or read past it.
pub const NEVER_FOR_CONFINED: &[&str] = &[
    "CAP_SYS_ADMIN",
    "CAP_SYS_PTRACE",
    "CAP_DAC_READ_SEARCH",
    "CAP_NET_ADMIN",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_BPF",
    "CAP_PERFMON",
    "CAP_SYSLOG",
    "CAP_MAC_ADMIN",
    "CAP_MAC_OVERRIDE",
    "CAP_SYS_BOOT",
    "CAP_SYS_TIME",
];

fn pid_needs_mount(ctx: &Context) -> Result<(), Violation> {
    if ctx.has(Namespace::Pid) && !ctx.has(Namespace::Mount) {
        return Err(Violation::PidNeedsMount);
    }
    Ok(())
}

fn fs_needs_mount(ctx: &Context) -> Result<(), Violation> {
    if !ctx.fs.is_empty() && !ctx.has(Namespace::Mount) {
        return Err(Violation::FsNeedsMount);
    }
    Ok(())
}

/// `fs.devices` go into the private /dev, below /dev, and not where the private /dev already
/// puts its own (its devpts and /dev/shm).
fn dev_rules(ctx: &Context) -> Result<(), Violation> {
    if ctx.fs.devices.is_empty() {
        return Ok(());
    }
    if !ctx.private_dev() {
        return Err(Violation::DevicesNeedPrivateDev);
    }
    for d in &ctx.fs.devices {
        let p = d.as_path();
        let rel = p.strip_prefix("/dev").unwrap_or(Path::new(""));
        let first = rel.components().next().map(|c| c.as_os_str().to_owned());
        if rel.as_os_str().is_empty()
            || matches!(
                first.as_deref().and_then(|f| f.to_str()),
                Some("pts" | "shm")
            )
        {
            return Err(Violation::NotADevicePath {
                path: p.to_path_buf(),
            });
        }
    }
    Ok(())
}

fn all_caps_alone(ctx: &Context) -> Result<(), Violation> {
    if ctx.security.keeps_all_caps() && ctx.security.caps.len() > 1 {
        return Err(Violation::AllCapsAlone);
    }
    Ok(())
}

fn seccomp_needs_no_new_privs(ctx: &Context) -> Result<(), Violation> {
    if ctx.security.seccomp == SeccompMode::Default && !ctx.security.no_new_privs {
        return Err(Violation::SeccompNeedsNoNewPrivs);
    }
    Ok(())
}

fn confined_caps(ctx: &Context) -> Result<(), Violation> {
    if !ctx.has(Namespace::Pid) {
        return Ok(());
    }
    if ctx.security.keeps_all_caps() {
        return Err(Violation::ConfinedKeepsAllCaps);
    }
    match ctx.security.caps.iter().find(|c| {
        c.canonical()
            .is_some_and(|name| NEVER_FOR_CONFINED.contains(&name.as_str()))
    }) {
        Some(c) => Err(Violation::ConfinedKeepsCap { cap: c.to_string() }),
        None => Ok(()),
    }
}

fn supervise_rules(ctx: &Context) -> Result<(), Violation> {
    let Some(sup) = &ctx.supervise else {
        return Ok(());
    };
    if !ctx.namespaces.is_empty() || ctx.net.own_namespace() {
        return Err(Violation::SuperviseInNamespaces);
    }
    if sup.ports.contains(&0) {
        return Err(Violation::SupervisePortZero);
    }
    let mut seen = sup.ports.clone();
    seen.sort_unstable();
    seen.dedup();
    if seen.len() != sup.ports.len() {
        return Err(Violation::SupervisePortTwice);
    }
    Ok(())
}

fn landlock_needs_no_new_privs(ctx: &Context) -> Result<(), Violation> {
    let sec = &ctx.security;
    let landlock = !sec.deny_bind.is_empty()
        || !sec.deny_connect.is_empty()
        || sec.scope
        || !sec.exec_only_under.is_empty();
    if landlock && !sec.no_new_privs {
        return Err(Violation::LandlockNeedsNoNewPrivs);
    }
    Ok(())
}

fn run_as_keeps_no_caps(ctx: &Context) -> Result<(), Violation> {
    if ctx.security.run_as.is_some() && !ctx.security.caps.is_empty() {
        return Err(Violation::RunAsKeepsNoCaps);
    }
    Ok(())
}

fn no_port_zero(ctx: &Context) -> Result<(), Violation> {
    let sec = &ctx.security;
    if sec.deny_bind.contains(&0) || sec.deny_connect.contains(&0) {
        return Err(Violation::DeniedPortZero);
    }
    if ctx.listen.contains(&0) {
        return Err(Violation::ListenPortZero);
    }
    Ok(())
}

fn secret_files_rules(ctx: &Context) -> Result<(), Violation> {
    if !ctx.secrets.files.is_empty() && !ctx.has(Namespace::Mount) {
        return Err(Violation::SecretFilesNeedMount);
    }
    match ctx
        .secrets
        .files
        .iter()
        .find(|f| !ctx.secrets.allow.iter().any(|a| a.matches(&f.0)))
    {
        Some(f) => Err(Violation::SecretFileNotAllowed {
            name: f.to_string(),
        }),
        None => Ok(()),
    }
}

/// `secrets.require`: each a name `secrets.allow` admits (a call could never hand it otherwise),
/// listed once, and not one the injection filter refuses as a secret (unless it is a file).
fn secrets_require_rules(ctx: &Context) -> Result<(), Violation> {
    let s = &ctx.secrets;
    for (i, r) in s.require.iter().enumerate() {
        if !s.allow.iter().any(|a| a.matches(&r.0)) {
            return Err(Violation::RequiredNotAllowed {
                name: r.to_string(),
            });
        }
        if s.require[..i].contains(r) {
            return Err(Violation::RequiredTwice {
                name: r.to_string(),
            });
        }
        if env_names::is_denied(&r.0) && !s.files.contains(r) {
            return Err(Violation::RequiredRefused {
                name: r.to_string(),
            });
        }
    }
    Ok(())
}

/// Bound secrets: each entry well-formed, every name admitted by `secrets.allow`, none also a
/// file or bound twice, the mount namespace for the per-call CA's file, and the egress proxy of
/// `net = "private"` (a bound secret only works through it).
fn bind_rules(ctx: &Context) -> Result<(), Violation> {
    let binds = &ctx.secrets.bind;
    if !binds.is_empty() && !ctx.net.proxied() {
        return Err(Violation::BindNeedsProxy);
    }
    if !binds.is_empty() && !ctx.has(Namespace::Mount) {
        return Err(Violation::BindNeedsMount);
    }
    let mut seen = std::collections::BTreeSet::new();
    for b in binds {
        b.check().map_err(Violation::Bind)?;
        let names = b.names();
        // The session token is optional; the key pair and a value's name must be admitted.
        for n in names.iter().filter(|n| **n != bind::AWS_TOKEN) {
            if !ctx.secrets.allow.iter().any(|p| p.matches(n)) {
                return Err(Violation::BoundNotAllowed {
                    name: n.to_string(),
                });
            }
        }
        for n in names {
            if ctx.secrets.files.iter().any(|f| f.0 == n) {
                return Err(Violation::BoundAndFile {
                    name: n.to_string(),
                });
            }
            if !seen.insert(n) {
                return Err(Violation::BoundTwice {
                    name: n.to_string(),
                });
            }
        }
    }
    Ok(())
}

fn ptrace_needs_seccomp(ctx: &Context) -> Result<(), Violation> {
    if ctx.security.seccomp == SeccompMode::None && ctx.security.allow_ptrace {
        return Err(Violation::PtraceNeedsSeccomp);
    }
    Ok(())
}

/// `persist = true`: the keeper is pid 1 of a pid and mount namespace, its state is hidden, and
/// nothing that a later call must not inherit (secrets, a per-call Landlock scope) is allowed.
fn persist_rules(ctx: &Context) -> Result<(), Violation> {
    if !ctx.persist {
        return Ok(());
    }
    if ctx.supervise.is_some() {
        return Err(Violation::PersistWithSupervise);
    }
    if !(ctx.has(Namespace::Pid) && ctx.has(Namespace::Mount)) {
        return Err(Violation::PersistNeedsPidMount);
    }
    if !hides_runtime_dir(ctx) {
        return Err(Violation::PersistMustHideState);
    }
    if !ctx.secrets.bind.is_empty() {
        return Err(Violation::PersistWithBind);
    }
    if !ctx.secrets.allow.is_empty() {
        return Err(Violation::PersistWithSecrets);
    }
    if ctx.security.scope {
        return Err(Violation::PersistWithScope);
    }
    Ok(())
}

/// `pool = N`: prepared single-use sandboxes of a one-shot context with its own pid and mount
/// namespaces.
fn pool_rules(ctx: &Context) -> Result<(), Violation> {
    if ctx.pool == 0 {
        return Ok(());
    }
    // With persist, supervise or net.publish it has no effect (no one-shot call to serve, or
    // ports every prepared sandbox would hold): the server says so, the calls run as before.
    if ctx.persist || ctx.supervise.is_some() || !ctx.net.publish.is_empty() {
        return Ok(());
    }
    if !(ctx.has(Namespace::Pid) && ctx.has(Namespace::Mount)) {
        return Err(Violation::PoolNeedsPidMount);
    }
    if ctx.pool > 32 {
        return Err(Violation::PoolTooLarge);
    }
    Ok(())
}

fn limits_rules(ctx: &Context) -> Result<(), Violation> {
    let Some(l) = &ctx.limits else {
        return Ok(());
    };
    if l.memory_swap_max.is_some() && l.memory_max.is_none() {
        return Err(Violation::SwapNeedsMemory);
    }
    if l.pids_max == Some(0) {
        return Err(Violation::PidsMaxZero);
    }
    Ok(())
}

/// `identity`: a non-empty range of host ids other than root's, for a confined context that runs
/// no control plane; `run_as` inside it.
fn identity_rules(ctx: &Context) -> Result<(), Violation> {
    let Some(ids) = ctx.identity else {
        return Ok(());
    };
    if ids.count == 0 {
        return Err(Violation::IdentityCountZero);
    }
    if ids.uid == 0 || ids.gid == 0 {
        return Err(Violation::IdentityRoot);
    }
    if ids.uid.checked_add(ids.count).is_none() || ids.gid.checked_add(ids.count).is_none() {
        return Err(Violation::IdentityOverflow);
    }
    if !ctx.has(Namespace::Pid) {
        return Err(Violation::IdentityNeedsPid);
    }
    if ctx.supervise.is_some() {
        return Err(Violation::IdentityWithSupervise);
    }
    if let Some(r) = ctx.security.run_as {
        if r.uid >= ids.count || r.gid >= ids.count {
            return Err(Violation::RunAsOutsideIdentity);
        }
    }
    Ok(())
}

/// The context's `net` ([`net::check_context`]).
fn net_rules(ctx: &Context) -> Result<(), Violation> {
    net::check_context(ctx).map_err(Violation::Net)
}

/// Does the context hide [`RUNTIME_DIR`] (an `fs.hide` entry at or above it, but not `/`)?
fn hides_runtime_dir(ctx: &Context) -> bool {
    ctx.fs
        .hide
        .iter()
        .any(|h| std::path::Path::new(RUNTIME_DIR).starts_with(h.as_path()) && h.0 != "/")
}

/// `ops`: each name once, called through the egress gate (which must exist), and the control
/// plane's socket below [`RUNTIME_DIR`] out of the context's sight.
fn ops_rules(ctx: &Context) -> Result<(), Violation> {
    if ctx.ops.is_empty() {
        return Ok(());
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some(twice) = ctx.ops.iter().find(|o| !seen.insert(o.0.as_str())) {
        return Err(Violation::OpTwice {
            name: twice.0.clone(),
        });
    }
    if !ctx.net.proxied() {
        return Err(Violation::OpsNeedProxy);
    }
    if !hides_runtime_dir(ctx) {
        return Err(Violation::OpsMustHideState);
    }
    Ok(())
}
