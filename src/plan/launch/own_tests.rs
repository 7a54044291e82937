//! A target that runs sbx-exec's own binary (the file tool): the same walls as any command of
//! the context, an empty environment, and Landlock's execution limit widened by that one handle.

use super::*;

fn own(f: &mut Facts) {
    f.program.own = true;
    f.program.argv = vec!["sbx-file".into(), "read".into(), "--".into(), "/w/x".into()];
}

#[test]
fn the_file_tool_gets_every_wall_of_the_context_and_no_environment() {
    for name in ["user", "platform"] {
        let c = ctx(name);
        let command = plan(&request(name, None), &c, &Mode::Root, facts()).unwrap();
        let mut f = facts();
        own(&mut f);
        let tool = plan(&request(name, None), &c, &Mode::Root, f).unwrap();
        let (a, b) = (&command.target, &tool.target);
        assert_eq!(a.caps, b.caps, "{name}");
        assert_eq!(a.no_new_privs, b.no_new_privs, "{name}");
        assert_eq!(a.seccomp, b.seccomp, "{name}");
        assert_eq!(a.identity, b.identity, "{name}");
        assert_eq!(
            format!("{:?}", command.sandbox),
            format!("{:?}", tool.sandbox)
        );
        assert!(
            !a.env.names().is_empty() && b.env.names().is_empty(),
            "{name}"
        );
        assert_eq!(b.argv[0].to_str().unwrap(), "sbx-file");
        let (la, lb) = (a.landlock.as_ref(), b.landlock.as_ref());
        assert_eq!(la.map(|l| l.exec_handle), Some(None), "{name}");
        match name {
            // exec_only_under: the tool's handle may be executed too, and nothing else changes.
            "platform" => {
                let lb = lb.unwrap();
                assert_eq!(lb.exec_handle, Some(b.program.as_raw_fd()));
                assert_eq!(lb.exec_under, la.unwrap().exec_under);
            }
            // No execution limit: no rule is added.
            _ => assert_eq!(lb.map(|l| l.exec_handle), Some(None), "{name}"),
        }
    }
}

#[test]
fn a_setuid_caller_runs_the_tool_as_itself() {
    let caller = Identity {
        uid: 1000,
        gid: 1000,
        groups: vec![],
    };
    let mode = Mode::Setuid {
        caller: caller.clone(),
    };
    let c = ctx("user");
    let setuid = SetuidLaunch::plan(&mode, "user", &c).unwrap();
    let mut f = facts();
    own(&mut f);
    let l = plan(&request("user", setuid), &c, &mode, f).unwrap();
    assert_eq!(l.target.drop_to.as_ref().map(|i| i.uid), Some(1000));
    assert_eq!(l.target.caps, Some(Default::default()));
    assert!(l.target.no_new_privs);
}
