//! The rules across keys of one context, in the order they are checked ([`RULES`]).

use std::path::Path;

use crate::model::*;

/// A rule across keys of one context: `Err` says what is wrong and how to fix it.
type Rule = fn(&Context) -> std::result::Result<(), String>;

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
    limits_rules,
    identity_rules,
    net::check_context,
];

/// Where persistent contexts keep their state; a persistent context must hide it.
pub const RUNTIME_DIR: &str = "/run/sbx";

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

fn pid_needs_mount(ctx: &Context) -> std::result::Result<(), String> {
    if ctx.has(Namespace::Pid) && !ctx.has(Namespace::Mount) {
        return Err("namespace \"pid\" needs \"mount\" too, so that a private /proc showing only the context's processes can be mounted; add \"mount\" to namespaces".into());
    }
    Ok(())
}

fn fs_needs_mount(ctx: &Context) -> std::result::Result<(), String> {
    if !ctx.fs.is_empty() && !ctx.has(Namespace::Mount) {
        return Err(
            "[fs] settings need the \"mount\" namespace; add \"mount\" to namespaces".into(),
        );
    }
    Ok(())
}

/// `fs.devices` go into the private /dev, below /dev, and not where the private /dev already
/// puts its own (its devpts and /dev/shm).
fn dev_rules(ctx: &Context) -> std::result::Result<(), String> {
    if ctx.fs.devices.is_empty() {
        return Ok(());
    }
    if !ctx.private_dev() {
        return Err("fs.devices adds devices to the private /dev; set fs.dev = \"private\" (with the \"pid\" and \"mount\" namespaces it is the default)".into());
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
            return Err(format!(
                "fs.devices: {} is not a device path the private /dev can add; give a node below /dev such as \"/dev/fuse\" or \"/dev/net/tun\" (not /dev/pts or /dev/shm, which it makes itself)",
                p.display()
            ));
        }
    }
    Ok(())
}

fn all_caps_alone(ctx: &Context) -> std::result::Result<(), String> {
    if ctx.security.keeps_all_caps() && ctx.security.caps.len() > 1 {
        return Err("security.caps = [\"ALL\"] keeps every capability and cannot be combined with other names".into());
    }
    Ok(())
}

fn seccomp_needs_no_new_privs(ctx: &Context) -> std::result::Result<(), String> {
    if ctx.security.seccomp == SeccompMode::Default && !ctx.security.no_new_privs {
        return Err("seccomp = \"default\" needs no_new_privs = true (the kernel installs filters only then)".into());
    }
    Ok(())
}

fn confined_caps(ctx: &Context) -> std::result::Result<(), String> {
    if !ctx.has(Namespace::Pid) {
        return Ok(());
    }
    if ctx.security.keeps_all_caps() {
        return Err("a context with its own pid namespace is confined and cannot keep all capabilities (caps = [\"ALL\"]); list the ones it needs".into());
    }
    match ctx.security.caps.iter().find(|c| {
        c.canonical()
            .is_some_and(|name| NEVER_FOR_CONFINED.contains(&name.as_str()))
    }) {
        Some(c) => Err(format!("a confined context (own pid namespace) cannot keep {c} because it can undo the sandbox; remove it from security.caps")),
        None => Ok(()),
    }
}

fn supervise_rules(ctx: &Context) -> std::result::Result<(), String> {
    let Some(sup) = &ctx.supervise else {
        return Ok(());
    };
    if !ctx.namespaces.is_empty() || ctx.net.own_namespace() {
        return Err("[supervise] (control mode) runs the control plane in the container's own namespaces, where it is not hidden from what it supervises; remove namespaces/net from this context".into());
    }
    if sup.ports.contains(&0) {
        return Err("supervise.ports cannot contain 0".into());
    }
    let mut seen = sup.ports.clone();
    seen.sort_unstable();
    seen.dedup();
    if seen.len() != sup.ports.len() {
        return Err("supervise.ports lists a port twice".into());
    }
    Ok(())
}

fn landlock_needs_no_new_privs(ctx: &Context) -> std::result::Result<(), String> {
    let sec = &ctx.security;
    let landlock = !sec.deny_bind.is_empty()
        || !sec.deny_connect.is_empty()
        || sec.scope
        || !sec.exec_only_under.is_empty();
    if landlock && !sec.no_new_privs {
        return Err(
            "Landlock settings (deny_bind, deny_connect, scope, exec_only_under) need no_new_privs = true"
                .into(),
        );
    }
    Ok(())
}

fn run_as_keeps_no_caps(ctx: &Context) -> std::result::Result<(), String> {
    if ctx.security.run_as.is_some() && !ctx.security.caps.is_empty() {
        return Err("security.run_as switches to a non-root user, which keeps no capabilities; remove security.caps".into());
    }
    Ok(())
}

fn no_port_zero(ctx: &Context) -> std::result::Result<(), String> {
    let sec = &ctx.security;
    if sec.deny_bind.contains(&0) || sec.deny_connect.contains(&0) {
        return Err("port 0 cannot be denied (it means \"any free port\"); list real ports".into());
    }
    if ctx.listen.contains(&0) {
        return Err(
            "listen cannot contain port 0; list the reserved ports this context may be handed"
                .into(),
        );
    }
    Ok(())
}

fn secret_files_rules(ctx: &Context) -> std::result::Result<(), String> {
    if !ctx.secrets.files.is_empty() && !ctx.has(Namespace::Mount) {
        return Err("secrets.files puts secrets on a private tmpfs, which needs the \"mount\" namespace; add \"mount\" to namespaces".into());
    }
    match ctx
        .secrets
        .files
        .iter()
        .find(|f| !ctx.secrets.allow.iter().any(|a| a.matches(&f.0)))
    {
        Some(f) => Err(format!("secrets.files lists {f}, which secrets.allow does not admit; add it to secrets.allow or remove it from files")),
        None => Ok(()),
    }
}

/// `secrets.require`: each a name `secrets.allow` admits (a call could never hand it otherwise),
/// listed once, and not one the injection filter refuses as a secret (unless it is a file).
fn secrets_require_rules(ctx: &Context) -> std::result::Result<(), String> {
    let s = &ctx.secrets;
    for (i, r) in s.require.iter().enumerate() {
        if !s.allow.iter().any(|a| a.matches(&r.0)) {
            return Err(format!("secrets.require lists {r}, which secrets.allow does not admit, so no call could hand it; add it to secrets.allow or remove it from require"));
        }
        if s.require[..i].contains(r) {
            return Err(format!(
                "secrets.require lists {r} twice; list each name once"
            ));
        }
        if env_names::is_denied(&r.0) && !s.files.contains(r) {
            return Err(format!("secrets.require lists {r}, which is refused as a secret (it makes programs load code from its value); deliver it as a file (secrets.files) or require another name"));
        }
    }
    Ok(())
}

/// Bound secrets: each entry well-formed, every name admitted by `secrets.allow`, none also a
/// file or bound twice, the mount namespace for the per-call CA's file, and the egress proxy of
/// `net = "private"` (a bound secret only works through it).
fn bind_rules(ctx: &Context) -> std::result::Result<(), String> {
    let binds = &ctx.secrets.bind;
    if !binds.is_empty() && !ctx.net.proxied() {
        return Err("secrets.bind works only through the egress proxy: set [context.NAME.net] mode = \"private\" with the bound hosts in net.allow".into());
    }
    if !binds.is_empty() && !ctx.has(Namespace::Mount) {
        return Err("secrets.bind installs a per-call CA certificate on a private tmpfs, which needs the \"mount\" namespace; add \"mount\" to namespaces".into());
    }
    let mut seen = std::collections::BTreeSet::new();
    for b in binds {
        b.check()?;
        let names = b.names();
        // The session token is optional; the key pair and a value's name must be admitted.
        for n in names.iter().filter(|n| **n != bind::AWS_TOKEN) {
            if !ctx.secrets.allow.iter().any(|p| p.matches(n)) {
                return Err(format!("secrets.bind names {n}, which secrets.allow does not admit; add it to secrets.allow"));
            }
        }
        for n in names {
            if ctx.secrets.files.iter().any(|f| f.0 == n) {
                return Err(format!("{n} is both in secrets.files and secrets.bind; a bound secret never enters the sandbox, so remove it from files"));
            }
            if !seen.insert(n) {
                return Err(format!(
                    "{n} is bound twice in secrets.bind; list all its hosts in one entry"
                ));
            }
        }
    }
    Ok(())
}

fn ptrace_needs_seccomp(ctx: &Context) -> std::result::Result<(), String> {
    if ctx.security.seccomp == SeccompMode::None && ctx.security.allow_ptrace {
        return Err("security.allow_ptrace only has a meaning with seccomp = \"default\"".into());
    }
    Ok(())
}

/// `persist = true`: the keeper is pid 1 of a pid and mount namespace, its state is hidden, and
/// nothing that a later call must not inherit (secrets, a per-call Landlock scope) is allowed.
fn persist_rules(ctx: &Context) -> std::result::Result<(), String> {
    if !ctx.persist {
        return Ok(());
    }
    if ctx.supervise.is_some() {
        return Err("persist = true cannot be combined with [supervise] (control mode runs in the container's own namespaces); remove one of them".into());
    }
    if !(ctx.has(Namespace::Pid) && ctx.has(Namespace::Mount)) {
        return Err("persist = true needs the \"pid\" and \"mount\" namespaces (the keeper is pid 1 of them); add both to namespaces".into());
    }
    let hidden = ctx
        .fs
        .hide
        .iter()
        .any(|h| std::path::Path::new(RUNTIME_DIR).starts_with(h.as_path()) && h.0 != "/");
    if !hidden {
        return Err(format!(
            "persist = true needs fs.hide to include {RUNTIME_DIR} (the keepers' state must be invisible to the context's code, which outlives each call); add it to [fs] hide"
        ));
    }
    if !ctx.secrets.bind.is_empty() {
        return Err("persist = true cannot be combined with secrets.bind: bound secrets are values of one call (the proxy adds them \
                    for that call only), while a persistent context's network helper serves every call; use a one-shot context (like `agent`) for bound secrets".into());
    }
    if !ctx.secrets.allow.is_empty() {
        return Err("persist = true cannot be combined with secrets.allow: processes of a persistent context outlive the call, \
                    so a secret handed to one call would stay reachable by every later call's code; use a one-shot context for secrets".into());
    }
    if ctx.security.scope {
        return Err("persist = true cannot be combined with security.scope = true: Landlock scopes signals and abstract sockets to one call's own domain, \
                    so a later call could not signal (kill) what an earlier call started; the context's pid namespace already keeps its signals inside it; set scope = false".into());
    }
    Ok(())
}

fn limits_rules(ctx: &Context) -> std::result::Result<(), String> {
    let Some(l) = &ctx.limits else {
        return Ok(());
    };
    if l.memory_swap_max.is_some() && l.memory_max.is_none() {
        return Err("limits.memory_swap_max is swap beyond memory_max, so it needs limits.memory_max; add memory_max or remove memory_swap_max".into());
    }
    if l.pids_max == Some(0) {
        return Err("limits.pids_max must be at least 1".into());
    }
    Ok(())
}

/// `identity`: a non-empty range of host ids other than root's, for a confined context that runs
/// no control plane; `run_as` inside it.
fn identity_rules(ctx: &Context) -> std::result::Result<(), String> {
    let Some(ids) = ctx.identity else {
        return Ok(());
    };
    if ids.count == 0 {
        return Err("identity.count must be at least 1 (65536 maps every id a system uses)".into());
    }
    if ids.uid == 0 || ids.gid == 0 {
        return Err("identity maps the sandbox's root onto a host id, which must not be 0 (root outside); pick a range no account uses, e.g. identity = { uid = 100000, gid = 100000, count = 65536 }".into());
    }
    if ids.uid.checked_add(ids.count).is_none() || ids.gid.checked_add(ids.count).is_none() {
        return Err("identity: uid + count and gid + count must stay below 4294967296".into());
    }
    if !ctx.has(Namespace::Pid) {
        return Err("identity needs the \"pid\" namespace (its pid 1 maps the target's ids); add \"pid\" and \"mount\" to namespaces".into());
    }
    if ctx.supervise.is_some() {
        return Err("identity does not apply to a control-mode context ([supervise]): the control plane is trusted; remove identity".into());
    }
    if let Some(r) = ctx.security.run_as {
        if r.uid >= ids.count || r.gid >= ids.count {
            return Err("with identity, security.run_as names ids inside the sandbox, which must be below identity.count".into());
        }
    }
    Ok(())
}
