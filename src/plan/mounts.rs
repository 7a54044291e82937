//! The filesystem view of a context: a plan built from the policy before any process is created
//! (pure data, unit-tested), applied by the sandbox's pid 1 inside its private mount namespace
//! ([`crate::run::apply::mounts`]).

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::model::FsPolicy;

/// One mount operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Stop mount events from propagating back to the host (`mount --make-rprivate /`).
    MakePrivate,
    /// Make `path` and everything below it read-only.
    ReadOnly(CString),
    /// Make `path` and everything below it writable again, nosuid and nodev (skipped when missing).
    Writable(CString),
    /// Mount a fresh tmpfs (nosuid, nodev) with this mode (skipped when missing).
    Tmpfs(CString, u32),
    /// No execution below `path` (bound onto itself, `MOUNT_ATTR_NOEXEC` recursively).
    NoExec(CString),
    /// Symlinks below `path` are not followed (`MOUNT_ATTR_NOSYMFOLLOW` recursively).
    NoSymFollow(CString),
    /// Hide: a directory becomes an empty read-only tmpfs, a file is covered by `/dev/null`.
    Hide(CString),
    /// A private /dev (tmpfs, nosuid, nodev, noexec): the host's null, zero, full, random,
    /// urandom and tty bound in (nosuid, noexec), a new devpts instance, /dev/ptmx, /dev/shm and
    /// the fd links, plus these host character devices (`fs.devices`).
    PrivateDev(Vec<CString>),
    /// A fresh read-only sysfs on /sys (`fs.sys = "private"`; of pid 1's network namespace), with
    /// a read-only tmpfs on /sys/fs/cgroup that shows these cgroup directories of the host, at
    /// the same paths, read-only: the call's own (filled in when they exist, [`Plan::show_cgroups`]).
    PrivateSys(Vec<CString>),
    /// Mount a fresh procfs on /proc (needs the pid namespace) and mask it like Docker does.
    PrivateProc,
}

/// The ordered mount operations for one launch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// Setuid mode: the caller's uid/gid, given the private (mode 0755) tmpfs mounts such as HOME.
    pub tmpfs_owner: Option<(u32, u32)>,
}

impl Plan {
    /// A canonical text of the steps (for a stable fingerprint of a persistent context).
    pub fn canonical(&self) -> String {
        let mut out = String::new();
        for step in &self.steps {
            let (tag, path, mode) = match step {
                Step::MakePrivate => ("private", None, 0),
                Step::PrivateDev(extra) => {
                    out.push_str("dev");
                    for d in extra {
                        out.push(' ');
                        out.push_str(&d.to_string_lossy());
                    }
                    out.push('\n');
                    continue;
                }
                Step::ReadOnly(p) => ("ro", Some(p), 0),
                Step::Writable(p) => ("rw", Some(p), 0),
                Step::Tmpfs(p, m) => ("tmpfs", Some(p), *m),
                Step::Hide(p) => ("hide", Some(p), 0),
                Step::NoExec(p) => ("noexec", Some(p), 0),
                Step::NoSymFollow(p) => ("nosymfollow", Some(p), 0),
                Step::PrivateProc => ("proc", None, 0),
                // The cgroups shown differ per call: not part of what a keeper is built from.
                Step::PrivateSys(_) => ("sys", None, 0),
            };
            out.push_str(tag);
            if let Some(p) = path {
                out.push(' ');
                out.push_str(&p.to_string_lossy());
            }
            if mode != 0 {
                out.push_str(&format!(" {mode:o}"));
            }
            out.push('\n');
        }
        if let Some((u, g)) = self.tmpfs_owner {
            out.push_str(&format!("owner {u}:{g}\n"));
        }
        out
    }

    /// Show these cgroup directories (the call's, or a persistent context's) in the private /sys,
    /// if the plan has one. Only directories below /sys/fs/cgroup can be shown.
    pub fn show_cgroups(&mut self, dirs: &[std::path::PathBuf]) {
        for step in &mut self.steps {
            if let Step::PrivateSys(shown) = step {
                *shown = dirs
                    .iter()
                    .filter(|d| d.starts_with("/sys/fs/cgroup/") && d.is_absolute())
                    .map(|d| c(d))
                    .collect();
            }
        }
    }
}

fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("policy paths contain no NUL")
}

/// Build the plan: private propagation, the policy's read-only paths, the private /dev (if
/// `private_dev`), the writable, tmpfs and hidden paths, `protect` (the sbx-exec binary and the
/// policy file: always read-only), then a private /sys (if `private_sys`) and a private /proc.
///
/// The private /dev comes after the read-only paths (a new tmpfs is writable even under a
/// read-only "/", as its devpts must be for new ptys) and before the others, so a policy path
/// below /dev applies to the private /dev, not to the host's one it covers. A tmpfs on /dev/shm is
/// then not planned: the private /dev has its own.
pub fn plan(fs: &FsPolicy, protect: &[&Path], private_proc: bool, private_dev: bool) -> Plan {
    let private_sys = fs.sys == Some(crate::model::SysMode::Private);
    let mut steps = vec![Step::MakePrivate];
    steps.extend(fs.read_only.iter().map(|p| Step::ReadOnly(c(p.as_path()))));
    if private_dev {
        let extra = fs.devices.iter().map(|p| c(p.as_path())).collect();
        steps.push(Step::PrivateDev(extra));
    }
    steps.extend(fs.writable.iter().map(|p| Step::Writable(c(p.as_path()))));
    let own_shm = |p: &&crate::model::AbsPath| !(private_dev && p.0 == "/dev/shm");
    steps.extend(fs.tmpfs.iter().filter(own_shm).map(|p| {
        let mode = if p.0 == "/tmp" || p.0 == "/var/tmp" || p.0 == "/dev/shm" {
            0o1777
        } else {
            0o755
        };
        Step::Tmpfs(c(p.as_path()), mode)
    }));
    steps.extend(fs.noexec.iter().map(|p| Step::NoExec(c(p.as_path()))));
    steps.extend(
        fs.nosymfollow
            .iter()
            .map(|p| Step::NoSymFollow(c(p.as_path()))),
    );
    steps.extend(fs.hide.iter().map(|p| Step::Hide(c(p.as_path()))));
    steps.extend(protect.iter().map(|p| Step::ReadOnly(c(p))));
    if private_sys {
        steps.push(Step::PrivateSys(Vec::new()));
    }
    if private_proc {
        steps.push(Step::PrivateProc);
    }
    Plan {
        steps,
        tmpfs_owner: None,
    }
}

/// Whether the mount steps before the private /proc already leave `/sys` and every mount below it
/// read-only: "/" was made read-only recursively (which covers /sys and its submounts) and no
/// later step made writable, or mounted a tmpfs on, /sys, a path below it or "/" again; or a
/// private /sys (mounted read-only) came after those. Binding
/// /sys onto itself a second time would then only copy its ~15 mounts for nothing.
///
/// Only valid when every step succeeded, i.e. not under `degrade` (which skips failed steps).
pub fn sys_already_read_only(steps: &[Step]) -> bool {
    let sys = Path::new("/sys");
    let touches_sys = |p: &CStr| {
        let p = Path::new(std::ffi::OsStr::from_bytes(p.to_bytes()));
        p.starts_with(sys) || sys.starts_with(p)
    };
    let mut read_only = false;
    for step in steps {
        match step {
            Step::ReadOnly(p) if p.to_bytes() == b"/" => read_only = true,
            Step::ReadOnly(_)
            | Step::MakePrivate
            | Step::NoExec(_)
            | Step::NoSymFollow(_)
            | Step::PrivateDev(_) => {}
            Step::Writable(p) | Step::Tmpfs(p, _) | Step::Hide(p) if touches_sys(p) => {
                read_only = false
            }
            Step::Writable(_) | Step::Tmpfs(..) | Step::Hide(_) => {}
            // A fresh sysfs mounted read-only, nothing writable below it.
            Step::PrivateSys(_) => read_only = true,
            Step::PrivateProc => break,
        }
    }
    read_only
}

/// Whether the steps before it already leave `path` read-only, so that a read-only bind of it (the
/// launcher and the policy file under a read-only "/", a `read_only` path inside another) would
/// only add a mount to make and to tear down: the last step on `path` or a directory above it
/// made it read-only, and no step changed anything below it.
///
/// Only valid when every step succeeded, i.e. not under `degrade` (which skips failed steps).
pub fn already_read_only(before: &[Step], path: &CStr) -> bool {
    let path = Path::new(std::ffi::OsStr::from_bytes(path.to_bytes()));
    let mut read_only = false;
    for step in before {
        let (at, makes_read_only) = match step {
            Step::ReadOnly(q) => (q.as_c_str(), true),
            Step::Writable(q) | Step::Tmpfs(q, _) | Step::Hide(q) => (q.as_c_str(), false),
            Step::PrivateDev(_) => (c"/dev", false),
            Step::PrivateSys(_) => (c"/sys", true),
            Step::PrivateProc => (c"/proc", false),
            Step::MakePrivate | Step::NoExec(_) | Step::NoSymFollow(_) => continue,
        };
        let at = Path::new(std::ffi::OsStr::from_bytes(at.to_bytes()));
        if path.starts_with(at) {
            read_only = makes_read_only;
        } else if at.starts_with(path) && !makes_read_only {
            return false;
        }
    }
    read_only
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AbsPath;

    fn paths(v: &[&str]) -> Vec<AbsPath> {
        v.iter().map(|s| AbsPath(s.to_string())).collect()
    }

    #[test]
    fn plan_orders_steps_and_protects_launcher() {
        let fs = FsPolicy {
            read_only: paths(&["/"]),
            writable: paths(&["/workspace"]),
            tmpfs: paths(&["/tmp", "/root"]),
            hide: paths(&["/run/sbx"]),
            noexec: paths(&["/workspace"]),
            nosymfollow: paths(&["/workspace"]),
            ..Default::default()
        };
        let p = plan(&fs, &[Path::new("/usr/bin/sbx-exec")], true, false);
        assert_eq!(
            p.steps,
            vec![
                Step::MakePrivate,
                Step::ReadOnly(c"/".into()),
                Step::Writable(c"/workspace".into()),
                Step::Tmpfs(c"/tmp".into(), 0o1777),
                Step::Tmpfs(c"/root".into(), 0o755),
                Step::NoExec(c"/workspace".into()),
                Step::NoSymFollow(c"/workspace".into()),
                Step::Hide(c"/run/sbx".into()),
                Step::ReadOnly(c"/usr/bin/sbx-exec".into()),
                Step::PrivateProc,
            ]
        );
    }

    #[test]
    fn no_proc_without_pid_namespace() {
        let p = plan(&FsPolicy::default(), &[], false, false);
        assert_eq!(p.steps, vec![Step::MakePrivate]);
    }

    fn fs(read_only: &[&str], writable: &[&str], tmpfs: &[&str]) -> FsPolicy {
        let v = |l: &[&str]| l.iter().map(|s| AbsPath(s.to_string())).collect();
        FsPolicy {
            read_only: v(read_only),
            writable: v(writable),
            tmpfs: v(tmpfs),
            hide: v(&["/run/sbx"]),
            ..Default::default()
        }
    }

    #[test]
    fn sys_is_skipped_only_under_a_read_only_root() {
        let protect = [Path::new("/usr/bin/sbx-exec")];
        // The user context: / read-only, work areas writable, scratch tmpfs elsewhere.
        let user = fs(
            &["/"],
            &["/workspace", "/home"],
            &["/tmp", "/root", "/dev/shm"],
        );
        assert!(sys_already_read_only(
            &plan(&user, &protect, true, true).steps
        ));
        // The platform context: / stays writable, so /sys must be remounted.
        let platform = fs(&[], &[], &["/root"]);
        assert!(!sys_already_read_only(
            &plan(&platform, &protect, true, true).steps
        ));
        // Read-only parts that do not cover /sys do not count.
        let usr = fs(&["/usr", "/sysroot"], &[], &[]);
        assert!(!sys_already_read_only(
            &plan(&usr, &protect, true, true).steps
        ));
    }

    #[test]
    fn anything_reopening_sys_keeps_the_remount() {
        for (writable, tmpfs) in [
            (&["/sys"][..], &[][..]),
            (&["/sys/fs/cgroup"], &[]),
            (&["/"], &[]),
            (&[], &["/sys/kernel"]),
        ] {
            let p = plan(&fs(&["/"], writable, tmpfs), &[], true, true);
            assert!(!sys_already_read_only(&p.steps), "{writable:?} {tmpfs:?}");
        }
        // A sibling that merely starts with the same letters is not below /sys.
        let p = plan(&fs(&["/"], &["/sysroot"], &["/system"]), &[], true, true);
        assert!(sys_already_read_only(&p.steps));
    }

    #[test]
    fn a_read_only_root_after_proc_does_not_count() {
        let steps = [
            Step::MakePrivate,
            Step::PrivateProc,
            Step::ReadOnly(c"/".into()),
        ];
        assert!(!sys_already_read_only(&steps));
    }

    #[test]
    fn private_sys_comes_last_before_proc_and_shows_only_cgroup_dirs() {
        let mut f = fs(&["/workspace"], &[], &[]);
        f.sys = Some(crate::model::SysMode::Private);
        let mut p = plan(&f, &[Path::new("/usr/bin/sbx-exec")], true, false);
        assert_eq!(
            &p.steps[p.steps.len() - 3..],
            &[
                Step::ReadOnly(c"/usr/bin/sbx-exec".into()),
                Step::PrivateSys(Vec::new()),
                Step::PrivateProc,
            ]
        );
        // A writable "/" still leaves /sys read-only: the fresh sysfs is mounted so.
        assert!(sys_already_read_only(&p.steps));
        let before = p.canonical();
        p.show_cgroups(&[
            "/sys/fs/cgroup/pids/sbx/sbx-user-7".into(),
            "/elsewhere/memory/sbx/sbx-user-7".into(),
            "sys/fs/cgroup/relative".into(),
        ]);
        assert!(p.steps.contains(&Step::PrivateSys(vec![
            c"/sys/fs/cgroup/pids/sbx/sbx-user-7".into()
        ])));
        // The cgroups shown differ per call: a keeper's fingerprint does not change with them.
        assert_eq!(p.canonical(), before);
        assert!(before.contains("\nsys\n"));
        // Without fs.sys = "private": no step, and showing cgroups changes nothing.
        let mut host = plan(&fs(&["/"], &[], &[]), &[], true, false);
        let steps = host.steps.clone();
        host.show_cgroups(&["/sys/fs/cgroup/pids/x".into()]);
        assert_eq!(host.steps, steps);
    }

    #[test]
    fn private_dev_comes_after_read_only_and_before_the_rest() {
        let mut f = fs(&["/"], &["/workspace"], &["/tmp", "/dev/shm"]);
        f.devices = paths(&["/dev/fuse"]);
        let p = plan(&f, &[Path::new("/usr/bin/sbx-exec")], true, true);
        assert_eq!(
            p.steps,
            vec![
                Step::MakePrivate,
                Step::ReadOnly(c"/".into()),
                Step::PrivateDev(vec![c"/dev/fuse".into()]),
                Step::Writable(c"/workspace".into()),
                // No tmpfs on /dev/shm: the private /dev has its own.
                Step::Tmpfs(c"/tmp".into(), 0o1777),
                Step::Hide(c"/run/sbx".into()),
                Step::ReadOnly(c"/usr/bin/sbx-exec".into()),
                Step::PrivateProc,
            ]
        );
        assert!(p.canonical().contains("\ndev /dev/fuse\n"));
        // The host's /dev: no private /dev, and a /dev/shm tmpfs stays planned.
        let host = plan(&f, &[], true, false);
        assert!(!host.steps.iter().any(|s| matches!(s, Step::PrivateDev(_))));
        assert!(host
            .steps
            .contains(&Step::Tmpfs(c"/dev/shm".into(), 0o1777)));
        assert_ne!(host.canonical(), p.canonical());
    }

    #[test]
    fn a_path_already_read_only_needs_no_bind() {
        let f = fs(&["/"], &["/workspace", "/home"], &["/tmp"]);
        let p = plan(&f, &[], true, true);
        let proc_at = p.steps.len() - 1;
        let before = &p.steps[..proc_at];
        // Under the read-only "/", untouched by any later step: already read-only.
        assert!(already_read_only(before, c"/usr/bin/sbx-exec"));
        assert!(already_read_only(before, c"/etc/sbx/policy.toml"));
        // Made writable, covered by a tmpfs or by the private /dev afterwards: it needs the bind.
        assert!(!already_read_only(before, c"/workspace/sbx-exec"));
        assert!(!already_read_only(before, c"/home/u/policy.toml"));
        assert!(!already_read_only(before, c"/tmp/x"));
        assert!(!already_read_only(before, c"/dev/x"));
        // A path with a writable mount below it: a read-only bind would change that mount.
        assert!(!already_read_only(before, c"/"));
        // Nothing made read-only: every path needs it.
        assert!(!already_read_only(
            &[Step::MakePrivate],
            c"/usr/bin/sbx-exec"
        ));
        // A later read-only step over a writable one counts again.
        let steps = [
            Step::ReadOnly(c"/".into()),
            Step::Writable(c"/srv".into()),
            Step::ReadOnly(c"/srv/app".into()),
        ];
        assert!(already_read_only(&steps, c"/srv/app/bin"));
        assert!(!already_read_only(&steps, c"/srv/data"));
    }
}
