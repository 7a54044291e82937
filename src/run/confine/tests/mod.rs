//! The confinement order, without root: the invariants of both lists over every combination of
//! what a plan may ask for ([`order`]), and the steps run through a recording kernel, in that
//! order, with the plan's arguments ([`recorded`]). The plans they run on are made here.

mod order;
mod recorded;

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use nix::sys::signal::SigSet;

use super::fake::{Call, Recorder};
use super::target::{self, Failed};
use super::*;
use crate::model::{EnvPolicy, IdRange, RunAs};
use crate::plan::landlock_rules::Plan as Landlock;
use crate::plan::launch::{Mapped, Workdir};
use crate::plan::mounts;
use crate::privilege::{IdMap, Identity};

pub(super) fn fd() -> OwnedFd {
    let f = std::fs::File::open("/dev/null").unwrap();
    crate::sys::dup_cloexec_above(f.as_raw_fd(), 100).unwrap()
}

pub(super) fn plain() -> Target {
    let env = crate::plan::env::build(Vec::new(), &EnvPolicy::default());
    Target::plain(
        CString::new("/bin/true").unwrap(),
        fd(),
        vec![CString::new("true").unwrap()],
        env,
        SigSet::empty(),
    )
}

pub(super) fn workdir(dir: &str) -> Workdir<CString> {
    Workdir {
        candidates: vec![CString::new(dir).unwrap()],
        requested: false,
        named: false,
    }
}

pub(super) fn landlock() -> Landlock {
    Landlock {
        deny_bind: vec![],
        deny_connect: vec![],
        scope: true,
        exec_under: vec![],
        exec_handle: None,
        degrade: false,
    }
}

pub(super) const RANGE: IdRange = IdRange {
    uid: 100000,
    gid: 100000,
    count: 65536,
};

/// What a target may ask for, as bits: identity, degrade, setuid, caps, nnp, Landlock, seccomp,
/// passed fds, a join's parent pipe, a join's directory.
pub(super) const TARGET_BITS: u32 = 10;

pub(super) fn target_from(bits: u32) -> (Target, Links) {
    let on = |i: u32| bits & (1 << i) != 0;
    let mut t = plain();
    let mut links = Links::default();
    if on(0) {
        t.identity = Some(Mapped {
            range: RANGE,
            degrade: on(1),
        });
        links.handshake = Some((5, 6));
    }
    if on(2) && !on(0) {
        t.drop_to = Some(Identity {
            uid: 1000,
            gid: 1000,
            groups: vec![1000],
        });
        t.chdir_after_drop = Some(workdir("/home/me"));
    }
    if on(3) {
        t.caps = Some(caps::CapsHashSet::new());
    }
    t.no_new_privs = on(4);
    if on(5) {
        t.landlock = Some(landlock());
    }
    if on(6) {
        t.seccomp = Some(crate::plan::seccomp::build(&Default::default()).unwrap());
    }
    if on(7) {
        t.pass_fds = vec![8, 9];
    }
    if on(8) {
        links.parent_alive = Some(4);
    }
    if on(9) {
        t.cwd_in_root = Some(workdir("/workspace"));
    }
    (t, links)
}

pub(super) fn at(steps: &[TargetStep], s: TargetStep) -> Option<usize> {
    steps.iter().position(|x| *x == s)
}

/// `a` comes before `b` wherever both are in `steps`.
pub(super) fn before<T: PartialEq + Copy + std::fmt::Debug>(steps: &[T], a: T, b: T) {
    let pos = |s| steps.iter().position(|x| *x == s);
    if let (Some(i), Some(j)) = (pos(a), pos(b)) {
        assert!(i < j, "{a:?} must come before {b:?}: {steps:?}");
    }
}

/// What pid 1's plan may ask for, as bits: a pid namespace, rootless ids, secret files, mounts,
/// loopback, a private network, a cgroup (one-shot); and the role.
pub(super) const PID1_BITS: u32 = 7;

pub(super) fn sandbox_from(bits: u32) -> Sandbox {
    let on = |i: u32| bits & (1 << i) != 0;
    let mut kinds = vec![namespaces::MOUNT];
    if on(0) {
        kinds.push(namespaces::PID);
    }
    Sandbox {
        kinds,
        mounts: on(3).then(|| mounts::plan(&Default::default(), &[], on(0), false)),
        loopback: on(4),
        net: on(5).then(|| crate::plan::net::Plan {
            egress: None,
            publish: vec![3000],
            allow_text: vec![],
            limits: Default::default(),
            capture: vec![],
            ops: vec![],
        }),
        cwd: None,
        degrade: false,
        creds: on(2).then(|| {
            let null = std::fs::File::open("/dev/null").unwrap();
            let ca =
                crate::plan::secret_files::CaBundle::new(std::sync::Arc::new(null.into()), vec![]);
            crate::plan::secret_files::Files::with_ca_bundle(None, None, ca)
        }),
        userns: on(1).then_some(IdMap {
            uid: 1000,
            gid: 1000,
        }),
        keep_fds: vec![],
    }
}
