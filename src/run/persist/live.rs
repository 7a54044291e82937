//! `sbx-exec ctx net NAME`: show or change the egress rules of a running persistent context
//! (root only), e.g. open the package registries for `npm install`, close them before untrusted
//! code runs.
//!
//! Under the context's lock: the new list is worked out ([`crate::plan::live_rules`]) from the
//! live one (the record's), recorded first (a replacement net helper starts with it), then sent
//! to the net helper ([`super::netctl`]), which ends its gate and starts a new one with it, then
//! audited (one `net-change` line). Ending the gate ends every connection through it: a denied
//! host's open tunnel ends at once, and so does every other connection in flight.
//!
//! If the helper refuses or cannot be reached, the record is put back and nothing changed (125).
//! If it was sent the rules and did not answer in time (a stopped helper), the record keeps them:
//! the helper applies them when it runs again, or the next call replaces it with one that starts
//! with them.

use std::path::Path;

use anyhow::{anyhow, bail, Result};

use super::ctl::{checked_name, require_root, EXIT_NOT_RUNNING};
use super::lifecycle::{verify, verify_net};
use super::netctl::{self, Reply, Request};
use super::state::{self, Phase, State};
use crate::plan::live_rules::{self, Change, Outcome};
use crate::run::audit::NetChangeRecord;

/// `sbx-exec ctx net NAME [--reset] [--deny RULE]... [--allow RULE]...`: print the live rules
/// (after the change, if one was asked for). 0: done; 1: the context is not running; 125: refused.
pub fn net(name: &str, change: &Change, policy: Option<&Path>) -> Result<i32> {
    require_root("net")?;
    let name = checked_name(name)?;
    let loaded = crate::model::load(policy)?;
    let plan = gated_plan(name, loaded.policy.context(name)?)?;
    let not_running = |why: &str| {
        eprintln!("sbx-exec: context {name:?} is not running{why} (nothing to change: the next call starts it with the policy's rules)");
        Ok(EXIT_NOT_RUNNING)
    };
    let Some(dir) = state::dir(false)? else {
        return not_running("");
    };
    let _lock = state::lock(&dir, name)?;
    let Some(mut st) = state::read(&dir, name)? else {
        return not_running("");
    };
    if st.phase != Phase::Running {
        return not_running(&format!(" (its record says {})", st.phase.name()));
    }
    if verify(&st)?.is_none() {
        return not_running(" (its keeper is gone)");
    }
    let live = st
        .net_allow
        .clone()
        .unwrap_or_else(|| plan.allow_text.clone());
    if change.is_empty() {
        show(&live);
        return Ok(0);
    }
    let out = live_rules::apply(name, &live, &plan.allow_text, &plan.capture, change)
        .map_err(|e| anyhow!("{e}; nothing was changed"))?;
    if out.unchanged() {
        eprintln!("sbx-exec: context {name:?}: its rules are already these; nothing was changed");
        show(&out.rules);
        return Ok(0);
    }
    warn_uncaptured(name, &out);
    let note = record_and_send(&dir, name, &mut st, &out, &loaded.policy)?;
    let list = |v: &[String]| match v.is_empty() {
        true => "-".to_string(),
        false => v.join(" "),
    };
    eprintln!(
        "sbx-exec: context {name:?}: added {}; removed {}; {note}",
        list(&out.added),
        list(&out.removed)
    );
    show(&out.rules);
    Ok(0)
}

/// The net plan of context `name` (`ctx`), if it is persistent and has an egress gate whose rules
/// can change; else why not, and what to do.
fn gated_plan(name: &str, ctx: &crate::model::Context) -> Result<crate::plan::net::Plan> {
    if !ctx.persist {
        bail!(
            "context {name:?} is not persistent (persist = true): each of its calls has a gate of its own with the \
             policy's rules; change its net.allow in the policy instead"
        );
    }
    let Some(plan) = crate::plan::net::plan(name, ctx).filter(|p| p.egress.is_some()) else {
        bail!(
            "context {name:?} has no egress gate (net = \"private\" with net.allow rules), so it has no rules to change; \
             give [context.{name}.net] an allow list in the policy (a rule for a host it may always reach), then \
             `sbx-exec ctx stop {name}` so the next call starts it with a gate"
        );
    };
    Ok(plan)
}

/// A warning for each new rule naming a port the context did not capture when it started.
fn warn_uncaptured(name: &str, out: &Outcome) {
    for (rule, port) in &out.uncaptured {
        eprintln!(
            "sbx-exec: warning: {rule:?} names port {port}, which was not captured when context {name:?} started: its \
             clients reach it through the proxy variables (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY) only, and a connection \
             made straight to the address is refused; to capture it, put the rule in net.allow and restart the \
             context (sbx-exec ctx stop {name})"
        );
    }
}

/// Record the new rules in `st` (the context's record, under its lock), send them to the net
/// helper and audit the change; the note to print. If the helper refused or was not reached, the
/// record is put back; if it did not confirm, the record keeps the rules and the change is
/// audited.
fn record_and_send(
    dir: &Path,
    name: &str,
    st: &mut State,
    out: &Outcome,
    policy: &crate::model::Policy,
) -> Result<String> {
    let before = st.clone();
    st.net_allow = Some(out.rules.clone());
    state::write(dir, name, st)?;
    let note = match tell_helper(dir, name, st, out) {
        Ok(note) => note,
        Err(Sent::Not(e)) => {
            if let Err(w) = state::write(dir, name, &before) {
                eprintln!(
                    "sbx-exec: warning: cannot put back the record of context {name:?}: {w:#}"
                );
            }
            return Err(e.context(format!("context {name:?}: the rules were not changed")));
        }
        Err(Sent::Unconfirmed(e)) => {
            audit(policy, name, out)?;
            return Err(e.context(format!(
                "context {name:?}: the new rules are recorded but their gate is not confirmed (the helper takes them \
                 when it runs again, or the next call replaces it with one that starts with them)"
            )));
        }
    };
    audit(policy, name, out)?;
    Ok(note)
}

/// The rules, one a line on stdout; none: a note on stderr.
fn show(rules: &[String]) {
    if rules.is_empty() {
        eprintln!("sbx-exec: no egress rules: every destination is refused");
    }
    for r in rules {
        println!("{r}");
    }
}

/// Why the helper did not confirm the change.
enum Sent {
    /// Nothing changed (the helper refused, or was not reached).
    Not(anyhow::Error),
    /// The rules were sent; no answer came.
    Unconfirmed(anyhow::Error),
}

/// Send the new rules to the context's net helper; the note to print when it is done.
fn tell_helper(dir: &Path, name: &str, st: &State, out: &Outcome) -> Result<String, Sent> {
    if verify_net(st).map_err(Sent::Not)?.is_none() {
        return Ok("its net helper is not running (it was killed), so it has no egress now; the next call starts one with \
             these rules (see `sbx-exec ctx list`)"
            .to_string());
    }
    let path = netctl::path(dir, name);
    let request = Request {
        allow: out.rules.clone(),
    };
    match netctl::ask(&path, &request) {
        Ok(Reply::Applied { allow }) if allow == out.rules => Ok(
            "its gate was restarted with these rules: every connection open through it was ended"
                .to_string(),
        ),
        Ok(Reply::Applied { allow }) => Err(Sent::Unconfirmed(anyhow!(
            "the net helper applied other rules than sent: {allow:?}"
        ))),
        Ok(Reply::Refused { error }) => Err(Sent::Not(anyhow!("the net helper refused: {error}"))),
        Err(e) if e.downcast_ref::<netctl::NotReached>().is_some() => Err(Sent::Not(e)),
        Err(e) => Err(Sent::Unconfirmed(e)),
    }
}

/// The change's line in the policy's audit log, if it has one.
fn audit(policy: &crate::model::Policy, name: &str, out: &Outcome) -> Result<()> {
    let Some(to) = &policy.audit else {
        return Ok(());
    };
    NetChangeRecord::now(name, &out.added, &out.removed)
        .write(to)
        .map_err(|e| {
            e.context(format!(
                "context {name:?}: its rules were changed, but the audit record of the change was not written"
            ))
        })
}
