//! Prepared sandboxes (`pool = N`): the kernel work of a one-shot sandbox done before the call.
//!
//! ```text
//! control mode ─> sbx-exec pool serve (root, one thread)
//!                   keeps N per context: cgroup leaf, net bridge, clone(NEW*) ─> pid 1
//!                   (mounts, /dev, /proc, /sys, lo, the gate's listeners; sends its namespaces,
//!                   then only reaps, until the socket `ctl` it holds reaches end of file)
//! a call:  sbx-exec --ctx user -- CMD: gather, plan, audit as always, then
//!          connect /run/sbx/pool-user-KEY.sock ─ "claim" ─> ctl, pidfd, namespaces, bridge, cgroup
//!          setns(pid) ─fork─> target: cgroup, setns(net, ipc, uts, mnt), the target's own steps
//!          (identity, capabilities, no_new_privs, cwd in the root, Landlock, seccomp), exec
//!          the caller starts the gate, supervises, reports; closes ctl: pid 1 ends, the kernel
//!          kills what is left (the call waits for that only when its cgroup counts more than
//!          pid 1) and tears the namespaces down as pid 1 exits; the server reaps it and
//!          removes its cgroup, off the call's path
//! ```
//!
//! A call claims only a sandbox made from the same plan (its [`key`]: the namespaces, mounts,
//! network, limits, bound hosts, binary version) and only in root mode, without secret files
//! (those are written by pid 1 per call); anything else, a missing or slow server, or an empty
//! pool builds its sandbox inline as before. With bound secrets, the server makes a CA for each
//! sandbox (its pid 1 writes the CA bundle ahead) and hands its key to the call that claims it,
//! for that call's gate. Each prepared sandbox serves one call. Nothing in
//! it ran before the call: its pid 1 is sbx-exec's, and the call's process enters it only
//! from outside its pid namespace (the target is the first process the sandbox's code can see).

mod claim;
mod prepared;
pub mod serve;

pub use claim::{claim, Claimed};

use crate::model::Context;
use crate::plan::launch::{Sandbox, Target};
use crate::plan::namespaces;
use crate::privilege::Mode;

/// The server's socket for the sandboxes of context `ctx_name` made from the plan whose [`key`]
/// is `key`, in the root-only runtime directory (`/run/sbx`): a call whose plan no server
/// prepares finds no socket (a failed `connect`; nothing waits for an answer).
pub fn socket(dir: &std::path::Path, ctx_name: &str, key: u64) -> std::path::PathBuf {
    dir.join(format!("pool-{ctx_name}-{key:016x}.sock"))
}

/// What a prepared sandbox must share with a call that claims it: a stable hash of its
/// namespaces, mounts (the binary and policy file they protect included), network plan, the
/// context's limits, identity and degrade flag, and sbx-exec's version.
pub fn key(sandbox: &Sandbox, ctx: &Context) -> u64 {
    // Bound secrets: the hosts their CA is for, and who owns its bundle.
    let ca = sandbox
        .creds
        .as_ref()
        .and_then(|f| Some((f.ca.as_ref()?, f.uid, f.gid)))
        .map(|(ca, uid, gid)| format!("|ca {:?} {uid}:{gid}", ca.hosts));
    let text = format!(
        "{}|{:016x}|{:?}|{:?}|{}{}",
        env!("CARGO_PKG_VERSION"),
        sandbox.fingerprint(),
        ctx.limits,
        ctx.identity,
        sandbox.degrade,
        ca.unwrap_or_default()
    );
    crate::plan::launch::fnv1a(text.as_bytes())
}

/// Can this call run in a prepared sandbox? Root mode; a context with a pool, pid and mount
/// namespaces; nothing pid 1 would set up for this call alone (secret files, a rootless user
/// namespace). Bound secrets' CA bundle is no obstacle: the server writes it ahead, with a CA
/// of the sandbox's own.
pub fn claimable(mode: &Mode, ctx: &Context, sandbox: &Sandbox, target: &Target) -> bool {
    ctx.pool > 0
        && matches!(mode, Mode::Root)
        && sandbox.kinds.contains(&namespaces::PID)
        && sandbox.kinds.contains(&namespaces::MOUNT)
        && sandbox.creds.as_ref().is_none_or(|f| f.entries.is_empty())
        && sandbox.userns.is_none()
        && sandbox.net.as_ref().is_none_or(|n| n.publish.is_empty())
        && target.drop_to.is_none()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::bind::HostPattern;
    use crate::model::RunAs;
    use crate::plan::secret_files::{CaBundle, Files};

    fn plain() -> Sandbox {
        Sandbox::for_tests(None, false)
    }

    /// A sandbox whose CA bundle is for `hosts`, owned by `uid`.
    fn bound(hosts: &[&str], uid: u32) -> Sandbox {
        let null = std::fs::File::open("/dev/null").unwrap();
        let hosts = hosts.iter().map(|h| HostPattern::Exact(h.to_string()));
        let ca = CaBundle::new(Arc::new(null.into()), hosts.collect());
        let owner = Some(RunAs { uid, gid: uid });
        let mut s = plain();
        s.creds = Some(Files::with_ca_bundle(None, owner, ca));
        s
    }

    #[test]
    fn a_prepared_bundle_serves_only_calls_with_the_same_hosts_and_owner() {
        let ctx = Context::default();
        let k = |s: &Sandbox| key(s, &ctx);
        // A call with bound secrets never claims a sandbox without a bundle, nor the reverse.
        assert_ne!(k(&plain()), k(&bound(&["api.example.com"], 0)));
        // Another host, another owner: another plan.
        assert_ne!(
            k(&bound(&["a.example.com"], 0)),
            k(&bound(&["b.example.com"], 0))
        );
        assert_ne!(
            k(&bound(&["a.example.com"], 0)),
            k(&bound(&["a.example.com"], 7))
        );
        // The same hosts in any order, repeated or not: the same CA constraints, the same plan.
        assert_eq!(
            k(&bound(&["a.example.com", "b.example.com"], 0)),
            k(&bound(
                &["b.example.com", "a.example.com", "a.example.com"],
                0
            ))
        );
        // The CA's certificate differs per sandbox (the server's, or the call's own) and is not
        // part of the plan.
        let s = bound(&["a.example.com"], 0);
        assert_eq!(k(&s), k(&s.with_ca_pem(b"-----BEGIN CERTIFICATE-----")));
    }
}
