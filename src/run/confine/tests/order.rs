//! The invariants of both orders, for every combination of what a plan may ask for.

use super::*;

#[test]
fn the_target_order_holds_for_every_plan() {
    use TargetStep::*;
    for bits in 0..(1 << TARGET_BITS) {
        let (t, links) = target_from(bits);
        let steps: Vec<TargetStep> = target_steps(&t, &links).collect();
        // A new session first (no TIOCSTI into the caller's terminal); the exec last.
        assert_eq!(steps.first(), Some(&NewSession), "{steps:?}");
        assert_eq!(steps.last(), Some(&Exec), "{steps:?}");
        // Only the target's fds remain before any change of ids, filter or exec; the parent's
        // pipes are lifted before the kept fds are placed, which is before the clean-up.
        for s in [
            UserNamespace,
            BecomeCaller,
            Capabilities,
            Landlock,
            Seccomp,
            Exec,
        ] {
            before(&steps, CloseFds, s);
        }
        before(&steps, LiftLinks, PassFds);
        before(&steps, PassFds, CloseFds);
        // The identity handshake and the setuid caller's identity before the capabilities are
        // cut; after the cut, nothing changes ids again (no privilege regained).
        let cut = at(&steps, Capabilities);
        for (i, s) in steps.iter().enumerate() {
            if s.changes_ids() && *s != Capabilities {
                assert!(cut.is_none_or(|c| i < c), "{s:?} after the cut: {steps:?}");
            }
        }
        before(&steps, UserNamespace, Capabilities);
        before(&steps, BecomeCaller, Capabilities);
        // The caller's directory is entered as the caller; a join's once its caps are gone.
        before(&steps, BecomeCaller, CallerWorkdir);
        before(&steps, Capabilities, WorkdirInRoot);
        // The parent-death signal is armed after the last change of ids.
        for s in [UserNamespace, BecomeCaller, Capabilities] {
            before(&steps, s, ParentDeath);
        }
        // no_new_privs before Landlock and seccomp; Landlock before seccomp; seccomp the last
        // step before the exec.
        before(&steps, NoNewPrivs, Landlock);
        before(&steps, NoNewPrivs, Seccomp);
        before(&steps, Landlock, Seccomp);
        if let Some(i) = at(&steps, Seccomp) {
            assert_eq!(steps[i + 1], Exec, "{steps:?}");
        }
        // Every step the plan asks for is there, and only those.
        for s in TARGET_ORDER {
            assert_eq!(
                steps.contains(&s),
                s.applies(&t, &links),
                "{s:?} in {steps:?}"
            );
        }
        let want = |s| steps.contains(&s);
        assert_eq!(want(Seccomp), t.seccomp.is_some());
        assert_eq!(want(Landlock), t.landlock.is_some());
        assert_eq!(want(NoNewPrivs), t.no_new_privs);
        assert_eq!(want(UserNamespace), t.identity.is_some());
        assert_eq!(want(ParentDeath), links.parent_alive.is_some());
    }
}

#[test]
fn the_pid1_order_holds_for_every_plan() {
    use Pid1Step::*;
    let (ready, commit) = (fd(), fd());
    let procs = [fd()];
    for bits in 0..(1 << PID1_BITS) {
        let sandbox = sandbox_from(bits);
        let cgroup: &[OwnedFd] = match bits & (1 << 6) != 0 {
            true => &procs,
            false => &[],
        };
        let one_shot = Role::OneShot {
            alive: fd(),
            program: 101,
            net: Some(102),
            errors: Some(103),
            cgroup,
        };
        let keeper = Role::Keeper {
            ready: &ready,
            commit: &commit,
            net: Some(102),
            ns: Some(104),
        };
        let prepared = Role::Prepared {
            ctl: 105,
            net: Some(102),
            cgroup,
        };
        for role in [one_shot, keeper, prepared] {
            let steps: Vec<Pid1Step> = pid1_steps(&sandbox, &role).collect();
            // The call's cgroup first: everything pid 1 and its children do is counted.
            if let Some(i) = steps.iter().position(|s| *s == JoinCgroup) {
                assert_eq!(i, 0, "{steps:?}");
            }
            // Rootless ids before anything else it does in its user namespace.
            if let Some(i) = steps.iter().position(|s| *s == IdMaps) {
                assert!(steps[..i].iter().all(|s| *s == JoinCgroup), "{steps:?}");
            }
            // It dies with the outer process, and is non-dumpable, before it sets anything up.
            for s in [
                CloseFds,
                SecretMountPoint,
                Mounts,
                SecretFiles,
                Loopback,
                HandOutNetwork,
            ] {
                before(&steps, DieWithOuter, s);
                before(&steps, NonDumpable, s);
            }
            // Inherited fds closed before the mounts and the secret files.
            before(&steps, CloseFds, Mounts);
            before(&steps, CloseFds, SecretFiles);
            // The secret files' tmpfs before the mounts, the files after them.
            before(&steps, SecretMountPoint, Mounts);
            before(&steps, Mounts, SecretFiles);
            // lo up before the proxy's listener is bound on it.
            before(&steps, Loopback, HandOutNetwork);
            // The working directory once the mounts are in place.
            before(&steps, Mounts, Workdir);
            before(&steps, Mounts, RootDir);
            match &role {
                Role::OneShot { .. } => assert_eq!(steps.last(), Some(&Workdir)),
                Role::Keeper { .. } => assert_eq!(steps.last(), Some(&DetachStdio)),
                // A prepared sandbox ends with its socket, not with the server's exit, and is
                // no keeper (`ctx list` never shows it).
                Role::Prepared { .. } => {
                    assert_eq!(steps.last(), Some(&DetachStdio));
                    assert!(!steps.contains(&DieWithOuter) && !steps.contains(&NameKeeper));
                    assert_eq!(steps.contains(&JoinCgroup), !role.cgroup().is_empty());
                }
            }
            for s in PID1_ORDER {
                assert_eq!(steps.contains(&s), s.applies(&sandbox, &role), "{s:?}");
            }
        }
    }
}
