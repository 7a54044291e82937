//! Tests of command resolution and the `[exec]` checks: PATH search, links, `#!` interpreters,
//! ownership, the allowlist and deny_under.

use super::*;

#[test]
fn resolves_like_execvp() {
    let p = resolve(OsStr::new("sh"), OsStr::new("/nonexistent:/bin:/usr/bin")).unwrap();
    assert!(p.ends_with("sh"));
    let e = resolve(OsStr::new("no-such-cmd-xyz"), OsStr::new("/bin:/usr/bin")).unwrap_err();
    assert_eq!(e.exit_code(), 127);
    assert!(e.to_string().contains("PATH=/bin:/usr/bin"), "{e}");
    let dir = std::env::temp_dir().join(format!("sbx-exec-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plain = dir.join("not-executable");
    std::fs::write(&plain, "data").unwrap();
    std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = resolve(plain.as_os_str(), OsStr::new("")).unwrap_err();
    assert_eq!(e.exit_code(), 126, "{e}");
    let e = resolve(OsStr::new("not-executable"), dir.as_os_str()).unwrap_err();
    assert_eq!(e.exit_code(), 126, "found on PATH but not executable: {e}");
    std::fs::remove_dir_all(&dir).unwrap();
    let e = resolve(OsStr::new("/etc"), OsStr::new("")).unwrap_err();
    assert_eq!(e.exit_code(), 126, "{e}");
    let e = resolve(OsStr::new("./nope/x"), OsStr::new("")).unwrap_err();
    assert_eq!(e.exit_code(), 127, "{e}");
}

use crate::model::AbsPath;

#[test]
fn allowlist_compares_real_paths() {
    let sh = std::fs::canonicalize("/bin/sh").unwrap();
    let mut rules = ExecPolicy {
        allow: vec![AbsPath(sh.display().to_string())],
        ..ExecPolicy::default()
    };
    assert!(check_allowed("p", Path::new("/bin/sh"), &rules).is_ok());
    let err = check_allowed("p", Path::new("/bin/true"), &rules)
        .unwrap_err()
        .to_string();
    assert!(err.contains("exec] allow"), "{err}");
    rules.allow.clear();
    assert!(check_allowed("p", Path::new("/bin/true"), &rules).is_ok());
    rules.deny_under.push(AbsPath("/usr".into()));
    let err = check_allowed("p", Path::new("/bin/true"), &rules)
        .unwrap_err()
        .to_string();
    assert!(err.contains("deny_under"), "{err}");
}

#[test]
fn owner_check_walks_every_parent() {
    let rules = ExecPolicy {
        verify_owner: true,
        ..ExecPolicy::default()
    };
    // /usr/bin/env: root-owned all the way up on any sane system.
    assert!(check_allowed("p", Path::new("/usr/bin/env"), &rules).is_ok());
    let dir = std::env::temp_dir().join(format!("sbx-owner-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let prog = dir.join("tool");
    std::fs::write(&prog, "#!/bin/sh\n").unwrap();
    // The temp dir (mode 1777) is writable by others: refused.
    let err = check_allowed("p", &prog, &rules).unwrap_err().to_string();
    assert!(
        err.contains("writable by group or others") || err.contains("not root"),
        "{err}"
    );
    let trusting = ExecPolicy {
        trusted: vec![AbsPath(dir.display().to_string())],
        ..rules
    };
    assert!(check_allowed("p", &prog, &trusting).is_ok());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn symlinks_to_programs_are_checked_and_kept_as_found() {
    let rules = ExecPolicy {
        verify_owner: true,
        ..ExecPolicy::default()
    };
    // A link in a directory others can write could be re-pointed after the check: refused,
    // although its target is a good root-owned program.
    let dir = std::env::temp_dir().join(format!("sbx-link-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join("env");
    std::os::unix::fs::symlink("/usr/bin/env", &link).unwrap();
    let err = check_allowed("p", &link, &rules).unwrap_err().to_string();
    assert!(err.contains("verify_owner"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
    // The program itself passes, and the path returned is the one found (argv[0] semantics).
    assert_eq!(
        check_allowed("p", Path::new("/usr/bin/env"), &rules).unwrap(),
        Path::new("/usr/bin/env")
    );
}

#[test]
fn shebang_lines_split_like_the_kernel() {
    let p = |s: &str| parse_shebang(s.as_bytes());
    assert_eq!(p("#!/bin/sh\necho"), Some(("/bin/sh".into(), None)));
    assert_eq!(
        p("#!  /usr/bin/env  node  \n"),
        Some(("/usr/bin/env".into(), Some("node".into())))
    );
    assert_eq!(
        p("#!/bin/sh -e -x\n"),
        Some(("/bin/sh".into(), Some("-e -x".into())))
    );
    assert_eq!(p("\x7fELF"), None);
    assert_eq!(p("#!\n"), None);
}

#[test]
fn deny_under_sees_every_hop_and_allow_the_link_or_its_target() {
    let dir = std::env::temp_dir().join(format!("sbx-hops-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join("tool");
    std::os::unix::fs::symlink("/usr/bin/env", &link).unwrap();
    let env = std::fs::canonicalize("/usr/bin/env").unwrap();
    // The target is fine, but the link lives where others write: refused.
    let deny = ExecPolicy {
        deny_under: vec![AbsPath(dir.display().to_string())],
        ..ExecPolicy::default()
    };
    let err = check_allowed("p", &link, &deny).unwrap_err().to_string();
    assert!(err.contains("deny_under"), "{err}");
    assert!(check_allowed("p", &env, &deny).is_ok());
    // allow names the link or the real program: both admit it.
    for listed in [link.clone(), env.clone()] {
        let rules = ExecPolicy {
            allow: vec![AbsPath(listed.display().to_string())],
            ..ExecPolicy::default()
        };
        assert_eq!(check_allowed("p", &link, &rules).unwrap(), env);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn scripts_run_through_their_checked_interpreter() {
    let dir = std::env::temp_dir().join(format!("sbx-script-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("s");
    std::fs::write(&script, "#!/bin/sh -e\necho hi\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cmd = [script.clone().into_os_string(), "a".into()];
    let prog = open_checked("p", &script, &cmd, &ExecPolicy::default(), OsStr::new("")).unwrap();
    let want: Vec<OsString> = vec![
        "/bin/sh".into(),
        "-e".into(),
        script.clone().into(),
        "a".into(),
    ];
    assert_eq!(prog.argv, want);
    // The interpreter is held to the same rules.
    let deny = ExecPolicy {
        deny_under: vec![AbsPath("/bin".into()), AbsPath("/usr/bin".into())],
        ..ExecPolicy::default()
    };
    assert!(open_checked("p", &script, &cmd, &deny, OsStr::new("")).is_err());
    // `#!/usr/bin/env NAME`: NAME as found on PATH, checked too.
    std::fs::write(&script, "#!/usr/bin/env planted\n").unwrap();
    let planted = dir.join("planted");
    std::fs::write(&planted, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o755)).unwrap();
    let only_dir = ExecPolicy {
        deny_under: vec![AbsPath(dir.join("planted").display().to_string())],
        ..ExecPolicy::default()
    };
    let err = open_checked("p", &script, &cmd, &only_dir, dir.as_os_str()).unwrap_err();
    assert!(err.to_string().contains("deny_under"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn noexec_paths_are_refused_like_deny_under() {
    let fs = crate::model::FsPolicy {
        noexec: vec![AbsPath("/srv/work".into())],
        ..Default::default()
    };
    let rules = with_noexec(&ExecPolicy::default(), &fs);
    assert_eq!(rules.deny_under, vec![AbsPath("/srv/work".into())]);
    assert_eq!(
        path_without(OsStr::new("/srv/work/bin::/usr/bin:rel"), &rules.deny_under),
        Some("/usr/bin".into())
    );
    assert_eq!(
        path_without(OsStr::new("/usr/bin:/bin"), &rules.deny_under),
        None
    );
}
