//! Installing a Landlock plan ([`crate::plan::landlock_rules::Plan`]) on the target thread.

use anyhow::{bail, Context as _, Result};
use landlock::{
    AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, NetPort, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreated, RulesetCreatedAttr, RulesetStatus, Scope,
};

use crate::plan::landlock_rules::Plan;

/// Apply the plan to this thread (and everything it will exec).
pub fn install(plan: &Plan) -> Result<()> {
    let net = handled_net(plan);
    let mut created = create(plan, net)?;
    if !net.is_empty() {
        created = allow_ports(created, plan, net)?;
    }
    created = allow_exec(created, plan)?;
    let status = created
        .restrict_self()
        .context("landlock: cannot enforce the ruleset")?;
    enforced_or_degraded(plan, status.ruleset)
}

/// The network accesses the plan restricts: TCP bind if a port is denied to it, connect likewise.
fn handled_net(plan: &Plan) -> BitFlags<AccessNet> {
    let mut net = BitFlags::<AccessNet>::empty();
    if !plan.deny_bind.is_empty() {
        net |= AccessNet::BindTcp;
    }
    if !plan.deny_connect.is_empty() {
        net |= AccessNet::ConnectTcp;
    }
    net
}

/// The ruleset (best effort) handling `net`, the plan's scopes and, with exec_only_under, execution.
fn create(plan: &Plan, net: BitFlags<AccessNet>) -> Result<RulesetCreated> {
    let mut ruleset = Ruleset::default().set_compatibility(CompatLevel::BestEffort);
    if !net.is_empty() {
        ruleset = ruleset
            .handle_access(net)
            .context("landlock: network rules")?;
    }
    if plan.scope {
        ruleset = ruleset
            .scope(Scope::AbstractUnixSocket | Scope::Signal)
            .context("landlock: scoping")?;
    }
    if !plan.exec_under.is_empty() {
        ruleset = ruleset
            .handle_access(AccessFs::Execute)
            .context("landlock: execute rules")?;
    }
    ruleset
        .create()
        .context("landlock: cannot create the ruleset for security.deny_bind/deny_connect/scope/exec_only_under; boot with lsm=landlock, remove those keys, or set degrade = true")
}

/// Allow every port not denied, for each handled access in `net`.
fn allow_ports(
    mut created: RulesetCreated,
    plan: &Plan,
    net: BitFlags<AccessNet>,
) -> Result<RulesetCreated> {
    for port in 0..=u16::MAX {
        let mut allowed = BitFlags::<AccessNet>::empty();
        if net.contains(AccessNet::BindTcp) && !plan.deny_bind.contains(&port) {
            allowed |= AccessNet::BindTcp;
        }
        if net.contains(AccessNet::ConnectTcp) && !plan.deny_connect.contains(&port) {
            allowed |= AccessNet::ConnectTcp;
        }
        if !allowed.is_empty() {
            created = created
                .add_rule(NetPort::new(port, allowed))
                .context("landlock: cannot add a port rule")?;
        }
    }
    Ok(created)
}

/// Allow execution below each exec_only_under directory and, with any, of sbx-exec's own binary.
fn allow_exec(mut created: RulesetCreated, plan: &Plan) -> Result<RulesetCreated> {
    for dir in &plan.exec_under {
        // Opened in the target, inside the sandbox's mount namespace; a missing path is skipped.
        let fd = match PathFd::new(dir) {
            Ok(fd) => fd,
            Err(_) if !dir.exists() => continue,
            Err(e) => bail!("landlock: cannot open {}: {e}", dir.display()),
        };
        created = created
            .add_rule(PathBeneath::new(fd, AccessFs::Execute))
            .with_context(|| format!("landlock: cannot allow execution below {}", dir.display()))?;
    }
    if let (Some(fd), false) = (plan.exec_handle, plan.exec_under.is_empty()) {
        // sbx-exec's own binary, which the launcher runs in a role (the file tool): this one file.
        created = created
            .add_rule(PathBeneath::new(
                crate::sys::borrow_raw(fd),
                AccessFs::Execute,
            ))
            .context("landlock: cannot allow executing sbx-exec's own binary")?;
    }
    Ok(created)
}

/// A ruleset the kernel did not fully enforce is refused, unless the plan may degrade (then a
/// warning says so).
fn enforced_or_degraded(plan: &Plan, ruleset: RulesetStatus) -> Result<()> {
    if ruleset != RulesetStatus::FullyEnforced {
        let abi = crate::plan::host::landlock_abi();
        let need = match (plan.scope, plan.deny_bind.len() + plan.deny_connect.len()) {
            (true, _) => 6,
            (false, 0) => 1,
            (false, _) => 4,
        };
        let msg = format!(
            "this kernel's Landlock (ABI {abi}) cannot fully enforce the context's rules (exec_only_under needs ABI 1, deny_bind/deny_connect ABI 4, \
             scope ABI 6; status {:?})",
            ruleset
        );
        if !plan.degrade {
            bail!("{msg}; use a kernel with Landlock ABI >= {need} (lsm=landlock), or remove those keys, or set degrade = true");
        }
        eprintln!("sbx-exec: warning: degraded: {msg}");
    }
    Ok(())
}

/// The egress gate's and its dialer's Landlock domain: no file access but reading `readable`
/// (the resolver's files; missing ones skipped), no TCP bind (ABI 4), and no abstract unix socket
/// or signal outside the process (ABI 6). Best effort: where the kernel has less of Landlock, the
/// rest still holds (the gate's uid, no_new_privs and seccomp filter are its first walls);
/// [`crate::probe`] reports the ABI.
pub fn confine_gate(readable: &[&str]) -> Result<()> {
    let abi = landlock::ABI::V6;
    let mut created = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(<AccessFs as landlock::Access>::from_all(abi))
        .context("landlock: file rules")?
        .handle_access(AccessNet::BindTcp)
        .context("landlock: network rules")?
        .scope(Scope::AbstractUnixSocket | Scope::Signal)
        .context("landlock: scoping")?
        .create()
        .context("landlock: cannot create the gate's ruleset")?;
    for path in readable {
        let Ok(fd) = PathFd::new(path) else {
            continue;
        };
        created = created
            .add_rule(PathBeneath::new(fd, AccessFs::ReadFile))
            .with_context(|| format!("landlock: cannot allow reading {path}"))?;
    }
    created
        .restrict_self()
        .context("landlock: cannot enforce the gate's ruleset")?;
    Ok(())
}
