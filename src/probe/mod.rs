//! `sbx-exec probe`: what this host can isolate, and for each context of the effective policy
//! whether it runs as written ("full"), only because it says `degrade = true` ("degraded", with
//! what is missing) or not at all ("unavailable"). The seeds' `hasSecureExecution()`.
//!
//! Each check asks the kernel the same way a launch would (a throwaway `clone` with the very flags
//! the launch would use), so the answer and the launch agree. Exit 0 when every context runs as
//! written, 1 otherwise.

use std::path::Path;

use anyhow::Result;

use crate::model::{Context, SeccompMode};
use crate::plan::namespaces::{self, Kind};
use crate::privilege::userns::identity_plan;
use crate::privilege::{self, Mode};

mod report;
use report::Report;

/// What the host offers, independent of any policy.
struct Host {
    mode: &'static Mode,
    namespaces: Vec<(&'static str, bool)>,
    userns: bool,
    max_user_namespaces: Option<u64>,
    landlock_abi: i32,
    seccomp: bool,
    /// Is procfs mounted on /proc (sbx-exec reads /proc/self, and mounts a private /proc)?
    proc: bool,
    cgroup: crate::plan::cgroup::CgroupInfo,
    legacy_tiocsti: Option<bool>,
    /// A private /dev (tmpfs, device binds, devpts newinstance) can be mounted.
    private_dev: bool,
    /// A private /sys (a fresh sysfs in a new network namespace) can be mounted.
    private_sys: bool,
    /// `lo` can be brought up in a new network namespace (CAP_NET_ADMIN, rootless mode's user
    /// namespace, or one made to own it).
    net_admin: bool,
}

/// One context's verdict.
struct Verdict {
    /// Missing isolation a `degrade = true` context runs without.
    missing: Vec<String>,
    /// Reasons the context cannot run at all here.
    blocked: Vec<String>,
    /// What a context runs without by its own choice (`limits.required = false`).
    skipped: Vec<String>,
    /// Work areas (`fs.writable`) its code cannot write, each with the fix: it runs, but not
    /// fully ([`crate::plan::workareas`]).
    unwritable: Vec<String>,
    degrade: bool,
    /// How its `identity` applies here (absent: it has none).
    identity: Option<String>,
}

impl Verdict {
    fn status(&self) -> &'static str {
        match (
            self.blocked.is_empty(),
            self.missing.is_empty(),
            self.degrade,
        ) {
            (false, _, _) => "unavailable",
            (true, true, _) if !self.unwritable.is_empty() => "degraded",
            (true, true, _) => "full",
            (true, false, true) => "degraded",
            (true, false, false) => "unavailable",
        }
    }
}

fn clone_ok(flags: libc::c_int) -> bool {
    crate::run::apply::namespaces::can_create(Kind {
        flag: flags,
        name: "",
    })
}

fn host() -> Host {
    let mode = privilege::mode();
    let userns = clone_ok(libc::CLONE_NEWUSER);
    let rootless = *mode == Mode::Rootless;
    let kinds = [
        namespaces::PID,
        namespaces::MOUNT,
        namespaces::IPC,
        namespaces::UTS,
        namespaces::NET,
    ];
    let mut ns: Vec<(&'static str, bool)> = kinds
        .iter()
        .map(|k| {
            let ok = clone_ok(k.flag) || (rootless && clone_ok(k.flag | libc::CLONE_NEWUSER));
            (k.name, ok)
        })
        .collect();
    ns.push(("user", userns));
    // Rootless launches map the caller's own ids in a user namespace: the mount trials do too.
    let map = (rootless && userns).then(|| crate::privilege::userns::IdMap {
        uid: nix::unistd::geteuid().as_raw(),
        gid: nix::unistd::getegid().as_raw(),
    });
    Host {
        mode,
        namespaces: ns,
        userns,
        max_user_namespaces: read_trimmed("/proc/sys/user/max_user_namespaces")
            .and_then(|s| s.parse().ok()),
        landlock_abi: crate::plan::host::landlock_abi(),
        seccomp: crate::sys::seccomp_supported(),
        proc: std::fs::metadata("/proc/self/stat").is_ok(),
        cgroup: crate::plan::host::cgroup::detect(),
        legacy_tiocsti: read_trimmed("/proc/sys/dev/tty/legacy_tiocsti").map(|s| s != "0"),
        net_admin: rootless
            || crate::sys::capget()
                .is_ok_and(|c| c.effective & caps::Capability::CAP_NET_ADMIN.bitmask() != 0)
            || crate::run::apply::namespaces::can_own_network(),
        private_dev: crate::run::apply::dev::can_mount_private(map.as_ref()),
        private_sys: crate::run::apply::sysfs::can_mount_private(map.as_ref()),
    }
}

fn read_trimmed(p: &str) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Can control mode lower its `oom_score_adj` (CAP_SYS_RESOURCE in the effective set)?
fn can_lower_oom_score() -> bool {
    read_trimmed("/proc/self/status")
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << 24) != 0) // CAP_SYS_RESOURCE
}

/// What rootless mode cannot give, whatever the policy says.
pub const ROOTLESS_LOSES: &[&str] = &[
    "cgroup limits (the cgroup tree belongs to root)",
    "security.run_as (only your own uid is mapped)",
    "capabilities outside the user namespace (the bounding set is cut only inside it)",
    "ownership of other users' files (root's files appear as nobody)",
];

/// Judge one context as a launch in this mode would treat it.
fn assess(host: &Host, name: &str, ctx: &Context) -> Verdict {
    let mut v = Verdict {
        missing: identity_gap(host, ctx).into_iter().collect(),
        blocked: Vec::new(),
        skipped: Vec::new(),
        unwritable: Vec::new(),
        degrade: ctx.degrade,
        identity: identity_status(host, ctx),
    };
    let mode = host.mode;
    // Host ids the identity names that this user namespace lacks: refused, degrade or not.
    if let Some(range) = identity_plan(mode, ctx) {
        v.blocked.extend(crate::plan::host::idmap::unmapped(&range));
    }
    if let Mode::Setuid { .. } = mode {
        if let Err(e) = privilege::SetuidLaunch::plan(mode, name, ctx) {
            v.blocked.push(format!("{e}"));
        }
    }
    let mut kinds = namespaces::wanted(ctx);
    let ids = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    let userns = privilege::userns::userns_plan(mode, ctx, !kinds.is_empty(), ids).is_some();
    if userns {
        kinds.insert(0, namespaces::USER);
    }
    // Without its mount namespace a context has no mounts at all: nothing more to say about /dev.
    let mut mounts_missing = false;
    if !kinds.is_empty() && !clone_ok(namespaces::flags(&kinds)) {
        let extra = if userns { libc::CLONE_NEWUSER } else { 0 };
        let mut any = false;
        for k in &kinds {
            if !clone_ok(k.flag | extra) {
                v.missing.push(format!("{} namespace", k.name));
                any = true;
                mounts_missing |= *k == namespaces::MOUNT;
            }
        }
        if !any {
            v.missing.push("namespaces together".into());
            mounts_missing = true;
        }
    }
    if ctx.private_dev() && !host.private_dev && !mounts_missing {
        v.missing.push(
            "a private /dev (tmpfs, device binds, devpts newinstance); or fs.dev = \"host\"".into(),
        );
    }
    if ctx.private_sys() && !host.private_sys && !mounts_missing {
        v.missing
            .push("a private /sys (a sysfs mount); or fs.sys = \"host\"".into());
    }
    kernel_gaps(host, name, ctx, userns, &mut v);
    if let Some(who) = crate::plan::workareas::grantee(ctx, *mode == Mode::Root) {
        for (area, got) in crate::run::apply::workareas::ensure(&ctx.fs.writable, who, true) {
            if let crate::run::apply::workareas::Area::Refused(why) = got {
                v.unwritable.push(format!(
                    "work area {} not writable inside: {why}",
                    area.as_path().display()
                ));
            }
        }
    }
    if let Some(ids) = ctx.security.run_as {
        let me = nix::unistd::geteuid().as_raw();
        if !matches!(mode, Mode::Root | Mode::Setuid { .. }) && ids.uid != me {
            v.blocked
                .push(format!("security.run_as uid {} (needs root)", ids.uid));
        }
    }
    v
}

/// What the kernel, the privilege mode and the cgroup tree cannot give the context's security
/// settings and limits.
fn kernel_gaps(host: &Host, name: &str, ctx: &Context, userns: bool, v: &mut Verdict) {
    let mode = host.mode;
    // Only where the network namespace itself can be made (else that is what is missing).
    let net_missing = v
        .missing
        .iter()
        .any(|m| m == "net namespace" || m == "namespaces together");
    if ctx.net.own_namespace() && !host.net_admin && !net_missing {
        v.missing.push(
            "CAP_NET_ADMIN, or a user namespace to own its network namespace (neither here: docker run --cap-add NET_ADMIN, or allow user namespaces), to bring up lo in it"
                .into(),
        );
    }
    let sec = &ctx.security;
    let need = if sec.scope {
        6
    } else if !sec.deny_bind.is_empty() || !sec.deny_connect.is_empty() {
        4
    } else {
        0
    };
    if host.landlock_abi < need {
        v.missing.push(format!(
            "landlock ABI {need} (kernel has {})",
            host.landlock_abi
        ));
    }
    if sec.seccomp == SeccompMode::Default && !host.seccomp {
        v.blocked
            .push("seccomp (kernel without CONFIG_SECCOMP_FILTER)".into());
    }
    let root_like = matches!(mode, Mode::Root | Mode::Setuid { .. }) || userns;
    if !root_like && !sec.no_new_privs && !sec.keeps_all_caps() {
        v.blocked
            .push("capability bounding set (needs root, or no_new_privs = true)".into());
    }
    if let Some(limits) = &ctx.limits {
        // The same planning a launch does: what it would refuse, probe reports.
        let why = match mode {
            Mode::Root | Mode::Setuid { .. } => {
                crate::plan::host::cgroup::limits_available(name, limits).err()
            }
            _ => Some("the cgroup tree belongs to root".to_string()),
        };
        match why {
            Some(why) if !limits.is_required() => v
                .skipped
                .push(format!("cgroup limits (required = false: {why})")),
            Some(why) => v.missing.push(format!("cgroup limits ({why})")),
            None => {}
        }
    }
}

/// What an `identity` context misses where the kernel refuses user namespaces.
fn identity_gap(host: &Host, ctx: &Context) -> Option<String> {
    (identity_plan(host.mode, ctx).is_some() && !host.userns).then(|| {
        "user namespace for identity (with degrade: the command runs as the identity's host uid, without capabilities, not root inside)"
            .to_string()
    })
}

/// How a context's `identity` applies here: what a peer outside sees its commands as.
fn identity_status(host: &Host, ctx: &Context) -> Option<String> {
    let ids = ctx.identity?;
    Some(match host.mode {
        Mode::Root if host.userns => format!(
            "mapped: root inside is host uid {} (gid {}), {} ids",
            ids.uid, ids.gid, ids.count
        ),
        Mode::Root if ctx.degrade => format!(
            "degraded: no user namespace; runs as host uid {} without capabilities",
            ids.uid
        ),
        Mode::Root => "unavailable: no user namespace (refused, exit 125)".into(),
        Mode::Setuid { .. } => "not used: setuid mode runs the caller's own uid".into(),
        _ => "not used: rootless mode maps the caller to itself".into(),
    })
}

/// `sbx-exec probe`: what this host can isolate and, for each context, whether it runs as
/// written; exit 0 when every context does, 1 otherwise.
pub fn run(as_json: bool, policy_file: Option<&Path>) -> Result<i32> {
    let loaded = privilege::load_policy(privilege::mode(), policy_file)?;
    let h = host();
    let verdicts: Vec<(String, Verdict)> = loaded
        .policy
        .context
        .iter()
        .map(|(n, c)| (n.0.clone(), assess(&h, &n.0, c)))
        .collect();
    let all_full = verdicts.iter().all(|(_, v)| v.status() == "full");
    let report = Report {
        h: &h,
        loaded: &loaded,
        verdicts: &verdicts,
        enforceable: crate::plan::host::cgroup::enforceable(),
        secure: all_full,
    };
    if as_json {
        println!("{}", report.json());
    } else {
        report.print_text();
    }
    Ok(if all_full { 0 } else { 1 })
}

#[cfg(test)]
mod tests;
