//! Parts of the launch plan on their own: the working directory's candidates and how they are
//! entered, and a sandbox's fingerprint (what a persistent context's keeper is recognised by).

use super::*;

fn sandbox(mounts: Option<mounts::Plan>, loopback: bool) -> Sandbox {
    Sandbox::for_tests(mounts, loopback)
}

#[test]
fn workdir_falls_back_unless_asked_for() {
    let mut ctx = Context::default();
    ctx.fs.writable = vec![
        model::AbsPath("/workspace".into()),
        model::AbsPath("/home".into()),
    ];
    let here = PathBuf::from("/root/repo");
    let w = Workdir::plan(&ctx, None, Some(here.clone()));
    let want: Vec<PathBuf> = ["/root/repo", "/workspace", "/home", "/"]
        .iter()
        .map(PathBuf::from)
        .collect();
    assert_eq!(w.candidates, want);
    // The caller's directory and /workspace are missing inside: /home is entered.
    let exists = |p: &PathBuf| match p.as_path() == Path::new("/home") {
        true => Ok(()),
        false => Err("missing"),
    };
    let mut entered = Vec::new();
    w.enter(
        |p| {
            entered.push(p.clone());
            exists(p)
        },
        |p| p.display().to_string(),
    )
    .unwrap();
    assert_eq!(entered.last().unwrap(), Path::new("/home"));
    // --cwd: only that, and missing is a refusal naming it.
    let asked = Workdir::plan(&ctx, Some("/nope".into()), Some(here.clone()));
    let e = asked
        .enter(exists, |p| p.display().to_string())
        .unwrap_err();
    assert!(e.to_string().contains("--cwd /nope"), "{e}");
    // --in-workdir: the caller's directory is not a candidate.
    assert_eq!(
        Workdir::plan(&ctx, None, None).candidates[0],
        Path::new("/workspace")
    );
    // A named workdir alone; missing, it is refused by name.
    ctx.workdir = Some(model::AbsPath("/srv/app".into()));
    let named = Workdir::plan(&ctx, None, Some(here));
    assert_eq!(named.candidates.len(), 2);
    let e = named
        .enter(exists, |p| p.display().to_string())
        .unwrap_err();
    assert!(e.to_string().contains("workdir /srv/app"), "{e}");
}

#[test]
fn fingerprint_is_stable_and_sees_every_part() {
    // The value itself is fixed: a keeper recorded by one build is recognised by the next.
    assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    let plan = mounts::plan(&model::FsPolicy::default(), &[], true, false);
    let a = sandbox(Some(plan.clone()), false);
    assert_eq!(
        a.fingerprint(),
        sandbox(Some(plan.clone()), false).fingerprint()
    );
    assert_ne!(
        a.fingerprint(),
        sandbox(Some(plan.clone()), true).fingerprint()
    );
    assert_ne!(a.fingerprint(), sandbox(None, false).fingerprint());
    let mut other = sandbox(Some(plan), false);
    other.kinds.push(namespaces::IPC);
    assert_ne!(a.fingerprint(), other.fingerprint());
    let mut owned = sandbox(a.mounts.clone(), false);
    owned.mounts.as_mut().unwrap().tmpfs_owner = Some((100000, 100000));
    assert_ne!(a.fingerprint(), owned.fingerprint());
}
