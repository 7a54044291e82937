//! The steps run through the recording kernel: in the order of the lists, with the plan's
//! arguments, and nothing after a refusal.

use super::*;

/// The steps a recorded call belongs to.
fn step_of(call: &Call) -> TargetStep {
    use TargetStep::*;
    match call {
        Call::NewSession => NewSession,
        Call::DupAbove(..) => LiftLinks,
        Call::ArrangeFds(..) => PassFds,
        Call::CloseFdsFrom(..) => CloseFds,
        Call::ResetSignals => ResetSignals,
        Call::UserNamespace { .. } => UserNamespace,
        Call::BecomeForGood(..) => BecomeCaller,
        Call::Chdir(_) => CallerWorkdir,
        Call::Capabilities { .. } => Capabilities,
        Call::NoNewPrivs => NoNewPrivs,
        Call::DieWithParent(_) => ParentDeath,
        Call::ChdirInRoot(_) => WorkdirInRoot,
        Call::Landlock => Landlock,
        Call::Seccomp(_) => Seccomp,
        Call::Execveat(..) => Exec,
        other => panic!("not a target call: {other:?}"),
    }
}

#[test]
fn the_target_runs_its_list_through_the_kernel() {
    for bits in 0..(1 << TARGET_BITS) {
        let (t, links) = target_from(bits);
        let k = Recorder::default();
        assert!(matches!(target::run(&k, &t, links), Failed::Exec(_)));
        let mut ran: Vec<TargetStep> = k.calls().iter().map(step_of).collect();
        ran.dedup();
        // A step with nothing to do makes no call: LiftLinks when the pipes are high already.
        let planned: Vec<TargetStep> = target_steps(&t, &links)
            .filter(|s| *s != TargetStep::LiftLinks || ran.contains(s))
            .filter(|s| *s != TargetStep::Capabilities || ran.contains(s))
            .collect();
        assert_eq!(ran, planned, "bits {bits:b}");
    }
}

#[test]
fn a_join_with_identity_makes_these_calls_in_this_order() {
    let mut t = plain();
    t.identity = Some(Mapped {
        range: RANGE,
        degrade: false,
    });
    t.caps = Some([caps::Capability::CAP_KILL].into_iter().collect());
    t.no_new_privs = true;
    t.landlock = Some(landlock());
    t.seccomp = Some(crate::plan::seccomp::build(&Default::default()).unwrap());
    t.pass_fds = vec![7, 8];
    t.cwd_in_root = Some(workdir("/workspace"));
    let program = t.program.as_raw_fd();
    t.keep_fds = vec![3, 4, program];
    // One end of the handshake and the parent's pipe sit low, where the kept fds go (3, 4):
    // lifted above them.
    let links = Links {
        handshake: Some((3, 60)),
        parent_alive: Some(4),
        errors: Some(program + 1),
    };
    let k = Recorder::default();
    let Failed::Exec(e) = target::run(&k, &t, links) else {
        panic!("{:?}", k.calls())
    };
    assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
    let lifted_handshake: RawFd = 50;
    let lifted_alive: RawFd = 51;
    let mut kept = vec![
        3,
        4,
        program,
        program + 1,
        lifted_handshake,
        60,
        lifted_alive,
    ];
    kept.sort_unstable();
    let seccomp_len = t.seccomp.as_ref().unwrap().len();
    assert_eq!(
        k.calls(),
        [
            Call::NewSession,
            Call::DupAbove(3, 5),
            Call::DupAbove(4, 5),
            Call::ArrangeFds(
                vec![7, 8],
                vec![program, program + 1, lifted_handshake, 60, lifted_alive]
            ),
            Call::CloseFdsFrom(3, kept),
            Call::ResetSignals,
            Call::UserNamespace { degrade: false },
            Call::Capabilities {
                kept: 1,
                no_new_privs: true,
                run_as: None
            },
            Call::NoNewPrivs,
            Call::DieWithParent(lifted_alive),
            Call::ChdirInRoot("/workspace".into()),
            Call::Landlock,
            Call::Seccomp(seccomp_len),
            Call::Execveat(program, 1),
        ]
    );
}

#[test]
fn a_degraded_identity_runs_as_the_range_without_capabilities() {
    let mut t = plain();
    t.identity = Some(Mapped {
        range: RANGE,
        degrade: true,
    });
    t.run_as = Some(RunAs { uid: 5, gid: 7 });
    let links = Links {
        handshake: Some((60, 61)),
        ..Links::default()
    };
    let k = Recorder {
        userns: false,
        ..Recorder::default()
    };
    assert!(matches!(target::run(&k, &t, links), Failed::Exec(_)));
    let caps = k
        .calls()
        .into_iter()
        .find(|c| matches!(c, Call::Capabilities { .. }));
    assert_eq!(
        caps,
        Some(Call::Capabilities {
            kept: 0,
            no_new_privs: false,
            run_as: Some((100005, 100007)),
        })
    );
    // Granted, with no capability set in the plan: nothing is cut.
    let k = Recorder::default();
    assert!(matches!(target::run(&k, &t, links), Failed::Exec(_)));
    assert!(!k
        .calls()
        .iter()
        .any(|c| matches!(c, Call::Capabilities { .. })));
}

#[test]
fn setuid_mode_becomes_the_caller_before_its_directory_and_the_cut() {
    let (t, links) = target_from(1 << 2 | 1 << 3 | 1 << 4);
    let k = Recorder::default();
    assert!(matches!(target::run(&k, &t, links), Failed::Exec(_)));
    let names: Vec<&str> = k.calls().iter().map(Call::name).collect();
    assert_eq!(
        names,
        [
            "new_session",
            "close_fds_from",
            "reset_signals",
            "become_for_good",
            "chdir",
            "capabilities",
            "no_new_privs",
            "execveat"
        ]
    );
    assert!(k.calls().contains(&Call::Chdir("/home/me".into())));
}

#[test]
fn nothing_runs_after_a_step_refuses() {
    let all = (1 << TARGET_BITS) - 1 - (1 << 1);
    for failing in [
        "user_namespace",
        "capabilities",
        "no_new_privs",
        "landlock",
        "seccomp",
    ] {
        let (t, links) = target_from(all);
        let k = Recorder {
            failing: Some(failing),
            ..Recorder::default()
        };
        assert!(matches!(target::run(&k, &t, links), Failed::Setup(_)));
        let calls = k.calls();
        assert_eq!(calls.last().map(Call::name), Some(failing), "{calls:?}");
    }
    // A join whose caller is gone stops before its directory, Landlock, seccomp and exec.
    let (t, links) = target_from(all);
    let k = Recorder {
        parent: false,
        ..Recorder::default()
    };
    let Failed::Setup(e) = target::run(&k, &t, links) else {
        panic!()
    };
    assert!(e.to_string().contains("the caller is gone"), "{e}");
    assert_eq!(k.calls().last().map(Call::name), Some("die_with_parent"));
}

#[test]
fn pid1_runs_its_list_through_the_kernel() {
    let mut sandbox = sandbox_from((1 << PID1_BITS) - 1);
    sandbox.userns = None;
    sandbox.cwd = Some(crate::plan::launch::Workdir {
        candidates: vec![PathBuf::from("/workspace")],
        requested: false,
        named: false,
    });
    sandbox.keep_fds = vec![7];
    let procs = [fd()];
    let alive = fd();
    let alive_fd = alive.as_raw_fd();
    let role = Role::OneShot {
        alive,
        program: 101,
        net: Some(102),
        errors: Some(103),
        cgroup: &procs,
    };
    let k = Recorder::default();
    pid1::setup(&k, &sandbox, role).unwrap();
    let steps = sandbox.mounts.as_ref().unwrap().steps.len();
    // The system CA bundle (bound secrets) is kept for pid 1 to copy.
    let system = sandbox.ca().unwrap().system.as_raw_fd();
    let mut keep = vec![system, 7, 101, 102, 103];
    keep.sort_unstable();
    assert_eq!(
        k.calls(),
        [
            Call::JoinCgroup(1),
            Call::DieWithParent(alive_fd),
            Call::OomScoreAdj("500".into()),
            Call::NonDumpable,
            Call::NewSession,
            Call::CloseFdsFrom(3, keep),
            Call::SecretMountPoint,
            Call::Mounts(steps),
            Call::SecretFiles(1),
            Call::LoopbackUp,
            Call::HandOutNetwork(102),
            Call::ChdirPath("/workspace".into()),
        ]
    );
    // A keeper: named, its own pipes kept, `/`, stdio detached; rootless: the ids first.
    let (ready, commit) = (fd(), fd());
    let keeper = Role::Keeper {
        ready: &ready,
        commit: &commit,
        net: None,
        ns: None,
    };
    let mut sandbox = sandbox_from(1 << 0 | 1 << 1 | 1 << 3);
    sandbox.cwd = None;
    let k = Recorder::default();
    pid1::setup(&k, &sandbox, keeper).unwrap();
    let mut keep = vec![ready.as_raw_fd(), commit.as_raw_fd()];
    keep.sort_unstable();
    let steps = sandbox.mounts.as_ref().unwrap().steps.len();
    assert_eq!(
        k.calls(),
        [
            Call::IdMaps(1000, 1000),
            Call::SetName("sbx-keeper".into()),
            Call::OomScoreAdj("500".into()),
            Call::NonDumpable,
            Call::NewSession,
            Call::CloseFdsFrom(3, keep),
            Call::Mounts(steps),
            Call::ChdirPath("/".into()),
            Call::DetachStdio,
        ]
    );
}
