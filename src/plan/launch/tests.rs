//! The launch plan, branch by branch (root, setuid, rootless, identity, degrade, persistent,
//! control, secrets delivered, fds passed): pure, so these run as any user, with no namespace
//! and no privilege.

use std::ffi::{CString, OsString};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::sys::signal::SigSet;

use super::*;
use crate::model::{self, Policy};
use crate::plan::cgroup::{CgroupInfo, Decision, Layout, Version};
use crate::plan::fds::Passed;
use crate::plan::host::exec::Program;
use crate::plan::mounts::{self, Step};
use crate::plan::namespaces;
use crate::privilege::{Identity, Mode, SetuidLaunch};

fn policy() -> Policy {
    Policy::parse(model::EMBEDDED_DEFAULT, "default.toml").unwrap()
}

fn ctx(name: &str) -> Context {
    policy().context(name).unwrap().clone()
}

/// A context of the embedded default with `extra` TOML lines added to its table.
fn ctx_with(name: &str, extra: &str) -> Context {
    let text = format!("version = 1\n[context.t]\nextends = \"{name}\"\n{extra}\n");
    Policy::parse(&text, "t.toml")
        .unwrap()
        .context("t")
        .unwrap()
        .clone()
}

/// A program handle (any open fd will do: the plan never looks at it), above fd 100 so that no
/// passed fd lands on it.
fn program() -> Program {
    let f = std::fs::File::open("/dev/null").unwrap();
    Program {
        fd: crate::sys::dup_cloexec_above(f.as_raw_fd(), 100).unwrap(),
        argv: vec!["/usr/bin/env".into(), "-0".into()],
        shown: PathBuf::from("/usr/bin/env"),
        own: false,
    }
}

fn facts() -> Facts {
    let env = |k: &str, v: &str| (OsString::from(k), OsString::from(v));
    Facts {
        caller_env: vec![
            env("PATH", "/home/me/bin:/usr/bin:/bin"),
            env("TERM", "xterm"),
            env("AWS_SECRET_ACCESS_KEY", "from-the-callers-env"),
            env("LD_PRELOAD", "/tmp/evil.so"),
        ],
        program: program(),
        path_kept: None,
        passed: Passed::default(),
        secrets: crate::secrets::SecretSet::default(),
        bound: None,
        cwd: Some(PathBuf::from("/workspace/repo")),
        exe: Some(PathBuf::from("/usr/local/bin/sbx-exec")),
        policy_file: None,
        euid: 1000,
        egid: 1000,
        pid: 4242,
        cgroups: None,
        sigmask: SigSet::empty(),
    }
}

fn request<'a>(ctx_name: &'a str, setuid: Option<SetuidLaunch>) -> Request<'a> {
    Request {
        ctx_name,
        cmd: &[],
        env: &[],
        cwd: None,
        in_workdir: false,
        timeout: None,
        timeout_asked: false,
        setuid,
    }
}

fn v2(self_cgroup: &str) -> Layout {
    Layout {
        root: true,
        info: CgroupInfo {
            version: Version::V2,
            controllers: vec!["pids".into(), "memory".into(), "cpu".into()],
        },
        self_cgroup: Ok(self_cgroup.into()),
    }
}

fn var(t: &Target, name: &str) -> Option<String> {
    t.env.get(name).map(|v| v.to_string_lossy().into_owned())
}

fn shown_cgroups(s: &Sandbox) -> Vec<CString> {
    let steps = &s.mounts.as_ref().unwrap().steps;
    steps
        .iter()
        .find_map(|st| match st {
            Step::PrivateSys(shown) => Some(shown.clone()),
            _ => None,
        })
        .unwrap()
}

#[test]
fn root_mode_user_is_a_one_shot_sandbox_with_an_identity() {
    let user = ctx("user");
    let mut f = facts();
    f.cgroups = Some(v2("0::/srv\n"));
    let l = plan(&request("user", None), &user, &Mode::Root, f).unwrap();
    assert!(matches!(l.how, How::OneShot));
    let names: Vec<&str> = l.sandbox.kinds.iter().map(|k| k.name).collect();
    assert_eq!(names, ["pid", "mount", "ipc", "uts", "net"]);
    assert!(l.sandbox.loopback && l.sandbox.userns.is_none());
    // Root inside, 100000 outside: the target maps its own user namespace; HOME is its root's.
    let m = l.target.identity.unwrap();
    assert_eq!(
        (m.range.uid, m.range.gid, m.degrade),
        (100000, 100000, false)
    );
    let mounts = l.sandbox.mounts.as_ref().unwrap();
    assert_eq!(mounts.tmpfs_owner, Some((100000, 100000)));
    // The binary is kept read-only; the call's cgroup is planned and shown in its /sys.
    assert!(mounts.steps.contains(&Step::ReadOnly(
        CString::new("/usr/local/bin/sbx-exec").unwrap()
    )));
    let Decision::Make(cg) = &l.cgroup else {
        panic!("{:?}", l.cgroup)
    };
    assert_eq!(
        cg.dirs[0].path,
        Path::new("/sys/fs/cgroup/srv/sbx/sbx-user-4242")
    );
    assert_eq!(
        shown_cgroups(&l.sandbox),
        [c"/sys/fs/cgroup/srv/sbx/sbx-user-4242"]
    );
    // The environment is rebuilt: the caller's secret and injection variables are gone, the
    // proxy is named, HOME is the policy's.
    assert_eq!(var(&l.target, "AWS_SECRET_ACCESS_KEY"), None);
    assert_eq!(var(&l.target, "LD_PRELOAD"), None);
    assert_eq!(var(&l.target, "TERM").as_deref(), Some("xterm"));
    assert_eq!(var(&l.target, "HOME").as_deref(), Some("/root"));
    assert_eq!(
        var(&l.target, "HTTPS_PROXY").as_deref(),
        Some("http://127.0.0.1:3128")
    );
    // Walls: capabilities cut, no_new_privs, seccomp, Landlock scope; no setuid drop.
    assert!(l.target.caps.is_some() && l.target.no_new_privs);
    assert!(l.target.seccomp.is_some() && l.target.landlock.as_ref().unwrap().scope);
    assert!(l.target.drop_to.is_none() && l.target.chdir_after_drop.is_none());
    // Pid 1 enters the caller's directory first (then the work areas); work areas granted.
    let cwd = l.sandbox.cwd.as_ref().unwrap();
    assert_eq!(cwd.candidates[0], Path::new("/workspace/repo"));
    let (areas, who) = l.grant.as_ref().unwrap();
    assert_eq!((areas.len(), who.uid), (2, 100000));
    assert!(l.redact.is_none() && l.sandbox.creds.is_none());
}

#[test]
fn setuid_mode_becomes_the_caller_and_enters_its_directory_as_it() {
    let platform = ctx_with("platform", "secrets.files = [\"PGPASSFILE\"]");
    let caller = Identity {
        uid: 1000,
        gid: 1000,
        groups: vec![1000, 27],
    };
    let mode = Mode::Setuid {
        caller: caller.clone(),
    };
    let s = SetuidLaunch::plan(&mode, "t", &platform).unwrap();
    let mut f = facts();
    f.secrets = crate::secrets::parse(b"PGPASSFILE=pw\nTOKEN=t0k\n").unwrap();
    let l = plan(&request("t", s), &platform, &mode, f).unwrap();
    assert_eq!(l.target.drop_to.as_ref(), Some(&caller));
    assert_eq!(l.target.caps.as_ref().map(|c| c.len()), Some(0));
    assert!(l.target.run_as.is_none() && l.target.no_new_privs);
    assert!(l.target.identity.is_none(), "identity is root mode's");
    // The directory is entered by the target as the caller, never by root in pid 1.
    assert!(l.sandbox.cwd.is_none());
    let later = l.target.chdir_after_drop.as_ref().unwrap();
    assert_eq!(later.candidates[0].as_c_str(), c"/workspace/repo");
    assert_eq!(
        l.sandbox.mounts.as_ref().unwrap().tmpfs_owner,
        Some((1000, 1000))
    );
    // The policy's PATH, never the caller's; injection variables dropped whatever the policy.
    assert_eq!(var(&l.target, "PATH").as_deref(), Some(model::DEFAULT_PATH));
    // Secret files belong to the caller; no host permission is changed for it.
    let creds = l.sandbox.creds.as_ref().unwrap();
    assert_eq!((creds.uid, creds.gid), (1000, 1000));
    assert!(l.grant.is_none());
    assert_eq!(var(&l.target, "TOKEN").as_deref(), Some("t0k"));
    assert_eq!(
        var(&l.target, "PGPASSFILE").as_deref(),
        Some("/run/credentials/sbx/PGPASSFILE")
    );
}

#[test]
fn rootless_mode_maps_the_caller_to_itself_and_has_no_cgroups() {
    let user = ctx("user");
    let mut f = facts();
    f.cgroups = Some(Layout {
        root: false,
        info: CgroupInfo {
            version: Version::None,
            controllers: vec![],
        },
        self_cgroup: Err(String::new()),
    });
    let l = plan(&request("user", None), &user, &Mode::Rootless, f).unwrap();
    assert_eq!(
        l.sandbox.kinds[0],
        namespaces::USER,
        "the user namespace comes first"
    );
    assert_eq!(
        l.sandbox.userns,
        Some(crate::privilege::IdMap {
            uid: 1000,
            gid: 1000
        })
    );
    assert!(
        l.target.identity.is_none(),
        "the caller is not root outside"
    );
    assert_eq!(
        l.cgroup,
        Decision::Unavailable("the cgroup tree belongs to root".into())
    );
    assert!(shown_cgroups(&l.sandbox).is_empty());
    assert!(
        l.grant.is_none(),
        "no host permission changes outside root mode"
    );
    // userns = "never": no user namespace.
    let never = ctx_with("user", "userns = \"never\"");
    let l = plan(&request("t", None), &never, &Mode::Rootless, facts()).unwrap();
    assert!(l.sandbox.userns.is_none() && !l.sandbox.kinds.contains(&namespaces::USER));
}

#[test]
fn degrade_is_planned_and_a_refused_namespace_gives_a_new_plan() {
    let user = ctx_with("user", "degrade = true");
    let l = plan(&request("t", None), &user, &Mode::Root, facts()).unwrap();
    assert!(l.sandbox.degrade && l.target.identity.unwrap().degrade);
    assert!(l.target.landlock.as_ref().unwrap().degrade);
    let net = l.sandbox.net.as_ref().unwrap();
    assert!(net.egress.is_some());
    // The kernel refuses the network and mount namespaces: the derived plan has neither, nor
    // what needs them; the plan it came from is unchanged.
    let less = l.sandbox.without(&[namespaces::NET, namespaces::MOUNT]);
    let names: Vec<&str> = less.kinds.iter().map(|k| k.name).collect();
    assert_eq!(names, ["pid", "ipc", "uts"]);
    assert!(less.mounts.is_none() && !less.loopback);
    let lnet = less.net.as_ref().unwrap();
    assert!(lnet.egress.is_none() && lnet.publish.is_empty());
    assert!(l.sandbox.mounts.is_some() && l.sandbox.loopback);
    assert_eq!(l.sandbox.kinds.len(), 5);
    // Rootless without a user namespace: no id map either.
    let rootless = plan(&request("t", None), &user, &Mode::Rootless, facts()).unwrap();
    assert!(rootless
        .sandbox
        .without(&[namespaces::USER])
        .userns
        .is_none());
    // Cgroups that could not be made are not shown.
    let mut f = facts();
    f.cgroups = Some(v2("0::/\n"));
    let l = plan(&request("t", None), &user, &Mode::Root, f).unwrap();
    assert_eq!(shown_cgroups(&l.sandbox).len(), 1);
    assert!(shown_cgroups(&l.sandbox.without_cgroups()).is_empty());
    assert_eq!(
        l.sandbox.fingerprint(),
        l.sandbox.without_cgroups().fingerprint()
    );
}

#[test]
fn a_persistent_call_joins_with_its_own_proxy_address_and_directory() {
    let user = ctx_with("user", "persist = true\nsecurity.scope = false");
    let l = plan(&request("t", None), &user, &Mode::Root, facts()).unwrap();
    assert!(matches!(l.how, How::Persistent));
    let at = crate::plan::net::call_address(4242);
    assert_eq!(
        var(&l.target, "HTTPS_PROXY"),
        Some(format!("http://{at}:3128"))
    );
    // The target enters the directory itself, inside the context's root (after its caps drop).
    let dir = l.target.cwd_in_root.as_ref().unwrap();
    assert_eq!(dir.candidates[0].as_c_str(), c"/workspace/repo");
    // The keeper's plan (its fingerprint) does not depend on the call's directory or pid.
    let mut f = facts();
    f.cwd = Some("/elsewhere".into());
    f.pid = 7;
    let other = plan(&request("t", None), &user, &Mode::Root, f).unwrap();
    assert_eq!(l.sandbox.fingerprint(), other.sandbox.fingerprint());
}

#[test]
fn control_mode_supervises_unconfined() {
    let control = ctx("control");
    let l = plan(&request("control", None), &control, &Mode::Root, facts()).unwrap();
    let How::Control(sup) = &l.how else {
        panic!("{:?}", l.how)
    };
    assert_eq!(sup.ports, [8080, 8888]);
    assert!(l.sandbox.kinds.is_empty() && l.sandbox.mounts.is_none());
    assert!(l.target.seccomp.is_none() && !l.target.no_new_privs);
    // It keeps its whole environment, injection variables included (env.hygiene = false).
    assert_eq!(
        var(&l.target, "LD_PRELOAD").as_deref(),
        Some("/tmp/evil.so")
    );
}

#[test]
fn secrets_go_where_the_context_says() {
    let platform = ctx_with(
        "platform",
        "secrets.files = [\"PGPASSFILE\"]\nsecrets.redact = true",
    );
    let mut f = facts();
    f.secrets = crate::secrets::parse(b"PGPASSFILE=pw\nAPI_KEY=real\nTOKEN=t0k\n").unwrap();
    f.bound = Some(BoundSecrets {
        variables: vec![("API_KEY".into(), "sbx-placeholder".into())],
        ca: crate::plan::secret_files::CaBundle::new(
            std::sync::Arc::new(std::fs::File::open("/dev/null").unwrap().into()),
            Vec::new(),
        ),
    });
    f.path_kept = Some("/usr/bin:/bin".into());
    let l = plan(&request("t", None), &platform, &Mode::Root, f).unwrap();
    // As a variable; as a file (its variable the path); bound: the placeholder, never the value.
    assert_eq!(var(&l.target, "TOKEN").as_deref(), Some("t0k"));
    assert_eq!(
        var(&l.target, "PGPASSFILE").as_deref(),
        Some("/run/credentials/sbx/PGPASSFILE")
    );
    assert_eq!(
        var(&l.target, "API_KEY").as_deref(),
        Some("sbx-placeholder")
    );
    assert_eq!(
        var(&l.target, "SSL_CERT_FILE").as_deref(),
        Some("/run/credentials/sbx/ca-bundle.pem")
    );
    let creds = l.sandbox.creds.as_ref().unwrap();
    let names: Vec<&str> = creds.entries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["PGPASSFILE"]);
    assert!(creds.ca.is_some());
    // Root mode without identity or run_as: root's files.
    assert_eq!((creds.uid, creds.gid), (0, 0));
    // A context holding secrets gets the PATH without the places user code writes.
    assert_eq!(var(&l.target, "PATH").as_deref(), Some("/usr/bin:/bin"));
    // Masked output: the values to mask go with the plan.
    assert_eq!(l.redact.as_ref().map(|s| s.iter().count()), Some(3));
}

#[test]
fn passed_fds_go_on_3_with_socket_activation() {
    let user = ctx("user");
    let mut f = facts();
    f.passed = Passed {
        fds: vec![9, 7],
        listen_names: Some(vec!["web".into(), "api".into()]),
    };
    let program = f.program.fd.as_raw_fd();
    let l = plan(&request("user", None), &user, &Mode::Root, f).unwrap();
    assert_eq!(l.sandbox.keep_fds, [7, 9], "pid 1 keeps them, sorted");
    assert_eq!(l.target.pass_fds, [9, 7], "placed on 3, 4 in this order");
    assert_eq!(l.target.keep_fds, [3, 4, program]);
    assert!(l.target.listen_pid);
    assert_eq!(var(&l.target, "LISTEN_FDS").as_deref(), Some("2"));
    assert_eq!(var(&l.target, "LISTEN_FDNAMES").as_deref(), Some("web:api"));
}

#[test]
fn the_call_is_checked_and_the_plan_says_what_it_asked() {
    let user = ctx("user");
    let bad = ["LD_PRELOAD=/x.so".to_string()];
    let mut r = request("user", None);
    r.env = &bad;
    let e = plan(&r, &user, &Mode::Root, facts()).unwrap_err();
    assert!(e.to_string().contains("--env LD_PRELOAD is refused"), "{e}");
    let good = ["NODE_ENV=production".to_string()];
    let mut r = request("user", None);
    r.env = &good;
    r.cwd = Some(Path::new("sub"));
    r.timeout = Some(5);
    r.timeout_asked = true;
    let l = plan(&r, &user, &Mode::Root, facts()).unwrap();
    assert_eq!(var(&l.target, "NODE_ENV").as_deref(), Some("production"));
    let cwd = l.sandbox.cwd.as_ref().unwrap();
    assert!(cwd.requested);
    assert_eq!(cwd.candidates, [PathBuf::from("/workspace/repo/sub")]);
    assert_eq!((l.timeout, l.timeout_asked), (Some(5), true));
    // Without a mount namespace and no --cwd: no directory to enter, none read.
    let bare = Policy::parse("version = 1\n[context.t]\nnamespaces = []\n", "t.toml").unwrap();
    let bare = bare.context("t").unwrap();
    let mut f = facts();
    f.cwd = None;
    let l = plan(&request("t", None), bare, &Mode::Root, f).unwrap();
    assert!(l.sandbox.cwd.is_none() && l.sandbox.mounts.is_none());
}

#[path = "parts_tests.rs"]
mod parts;

#[path = "own_tests.rs"]
mod own;
