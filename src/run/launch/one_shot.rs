//! A one-shot sandbox: output masking if asked, the call's cgroup, fresh namespaces
//! ([`crate::run::init`]), the network started, supervise, report. Whatever fails once the
//! masking process or the call's cgroup exists, they are ended before the error is returned: the
//! masking process waited for (what it holds is written out) and the cgroup removed
//! ([`CallCgroup`]'s drop), so a refused call leaves nothing behind.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;

use super::{kill_started, supervised, OneShot};
use crate::model::Context;
use crate::plan::cgroup::Decision;
use crate::plan::launch::{Sandbox, Target};
use crate::run::apply::cgroup;
use crate::run::gate::config::BoundWire;
use crate::run::proxy::bound::{BoundCall, CaParts};
use crate::run::status::{children_cpu_ms, report, End};
use crate::secrets::SecretSet;

/// Run it: output masking first (`redact`: the values to mask), then the sandbox: a prepared
/// one claimed from the pool ([`super::pooled`]) when the context has one ready, else its own.
///
/// A call with bound secrets (`bound`) gets its per-call CA with a prepared sandbox (the pool's
/// server made it, and wrote its bundle ahead), or makes it now for a sandbox of its own.
pub(super) fn run(
    call: OneShot,
    sandbox: &Sandbox,
    target: &mut Target,
    redact: Option<SecretSet>,
    (mut proxying, bound): (crate::run::net::Proxying, Option<BoundCall>),
) -> Result<i32> {
    // Output masking: the sandbox gets pipes to a masking process as stdout/stderr.
    let mut masking = match &redact {
        Some(secrets) => Some(crate::run::masking::start(secrets)?),
        None => None,
    };
    drop(redact);
    let r = match super::pooled::claim(&call, sandbox, target) {
        Some(mut c) => {
            proxying.bound = bound.as_ref().zip(c.ca.take()).map(|(b, ca)| b.wire(&ca));
            super::pooled::masked(call, c, sandbox, target, proxying, &mut masking)
        }
        None => own_ca(sandbox, bound.as_ref()).and_then(|(own, wire)| {
            proxying.bound = wire;
            masked(
                call,
                own.as_ref().unwrap_or(sandbox),
                target,
                proxying,
                &mut masking,
            )
        }),
    };
    if let Some(m) = masking {
        m.wait();
    }
    r
}

/// The per-call CA of a call with bound secrets that builds its own sandbox: the sandbox with
/// the CA's certificate in its bundle, and the gate's part.
fn own_ca(
    sandbox: &Sandbox,
    bound: Option<&BoundCall>,
) -> Result<(Option<Sandbox>, Option<BoundWire>)> {
    let Some(b) = bound else {
        return Ok((None, None));
    };
    let ca = CaParts::new(&b.ca.hosts)?;
    Ok((Some(sandbox.with_ca_pem(&ca.pem)), Some(b.wire(&ca))))
}

/// [`run`] once its output masking runs (`masking`, detached once the sandbox exists).
fn masked(
    call: OneShot,
    sandbox: &Sandbox,
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
        timeout,
        cgroup,
    } = call;
    // From here on every return, an error included, removes the cgroup (when it is empty).
    let made = CallCgroup::create(ctx_name, ctx, cgroup)?;
    // Planned cgroups that could not be made are not shown in the sandbox's /sys.
    let fallback;
    let sandbox = match (cgroup, made.exists()) {
        (Decision::Make(_), false) => {
            fallback = sandbox.without_cgroups();
            &fallback
        }
        _ => sandbox,
    };
    let wall = Instant::now();
    let cpu_before = children_cpu_ms();
    // After the masking fork (which must not hold pid 1's socket), before the clone.
    let bridge = sandbox
        .net
        .as_ref()
        .map(crate::run::net::Bridge::prepare)
        .transpose()?;
    let inner = bridge.as_ref().map(crate::run::net::Bridge::inner);
    let started = crate::run::init::start(
        ctx_name,
        sandbox,
        target,
        made.procs(),
        inner,
        errors.write_fd(),
    );
    errors.close_write();
    if let Some(m) = masking {
        m.detach();
    }
    let child = started?;
    // Threads start only now, after the clone: the published ports' forwarders, and the proxy on
    // its first connection (SIGIO, taken while waiting below).
    let net = match bridge {
        // Nothing runs without its network: the sandbox goes (its pid 1 dies with it).
        Some(b) => Some(
            b.start(proxying, true)
                .inspect_err(|_| kill_started(child))?,
        ),
        None => None,
    };
    let watch = (ctx_name, status, limit, timeout);
    let (code, mut end) = supervised(watch, child, net, (wall, cpu_before));
    // The counters go only to the status stream: without one, they are not read.
    made.finish(status.is_some().then_some(&mut end));
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
    /// Carry out the plan's decision: make the cgroup, or refuse, or go on without.
    fn create(ctx_name: &str, ctx: &Context, decision: &Decision) -> Result<CallCgroup> {
        let Some(limits) = ctx.limits.as_ref() else {
            return Ok(CallCgroup(None));
        };
        match decision {
            Decision::None => Ok(CallCgroup(None)),
            Decision::Unavailable(why) => {
                cgroup::go_without(ctx_name, limits, ctx.degrade, why)?;
                Ok(CallCgroup(None))
            }
            Decision::Make(plan) => match cgroup::create(&cgroup::Host, plan) {
                Ok(procs) => Ok(CallCgroup(Some((plan.clone(), procs)))),
                Err(e) => {
                    cgroup::go_without(ctx_name, limits, ctx.degrade, &format!("{e:#}"))?;
                    Ok(CallCgroup(None))
                }
            },
        }
    }

    fn exists(&self) -> bool {
        self.0.is_some()
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
