//! Privilege modes, and the stages of a setuid-root launch where the caller is hostile.
//!
//! [`Mode`] says how sbx-exec was started: as root (the container case), setuid root (real uid
//! not 0, effective uid 0), rootless (not root, unprivileged user namespaces allowed) or
//! unprivileged (neither: namespaces will be refused unless a context degrades).
//!
//! In setuid mode everything the caller controls is untrusted. The stages, in order (named after
//! bubblewrap's `acquire_privs` / `drop_privs`, which did the same until 0.11):
//! 1. [`enter_setuid_mode`], first thing in `main`, before the arguments are parsed: never
//!    dumpable, fds 0-2 open (else /dev/null), umask 022, no core dumps, default signal
//!    dispositions and an empty mask, and the caller's environment taken out of the process (kept
//!    aside only for the context's allowlist).
//! 2. [`close_caller_fds`] once the arguments are known: only 0, 1, 2 and the named
//!    `--secrets-fd` / `--status-fd` stay open.
//! 3. [`load_policy`]: the system policy, checked by [`crate::system_policy`], or the embedded
//!    default; `--policy` is refused.
//! 4. [`SetuidLaunch::plan`]: `allow_callers`, no control mode, the identity to drop to.
//! 5. [`as_caller`]: every lookup of a path the caller named (the command, `exec` rules) runs with
//!    the caller's filesystem uid/gid, so root's access never answers a caller's question.
//! 6. [`drop_privs`], in the target just before the capability sets are emptied: the whole
//!    bounding set cut, supplementary groups, gid and uid switched for good, then verified.
//!    Only then does the target `chdir` into the caller's directory (as the caller).

use std::ffi::{CString, OsString};
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{bail, Context as _, Result};
use caps::CapSet;
use nix::unistd::{Gid, Uid};

use crate::env::DEFAULT_PATH;
use crate::policy::{self, AllowCallers, Context, EnvPolicy, UserNs};

/// A user to run as: uid, primary gid, supplementary groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// How sbx-exec was started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Real and effective uid 0: the full feature set.
    Root,
    /// Installed setuid root and run by `caller`: only the system policy, the caller is hostile.
    Setuid { caller: Identity },
    /// Not root, unprivileged user namespaces allowed: namespaces inside a user namespace.
    Rootless,
    /// Not root, no user namespaces: namespaces are refused (or degraded).
    Unprivileged,
}

impl Mode {
    /// Classify from the process ids; `userns` is asked only for a non-root process.
    pub fn classify(
        ruid: u32,
        euid: u32,
        caller: impl FnOnce() -> Identity,
        userns: impl FnOnce() -> bool,
    ) -> Mode {
        match (ruid, euid) {
            (0, 0) => Mode::Root,
            (_, 0) => Mode::Setuid { caller: caller() },
            _ if userns() => Mode::Rootless,
            _ => Mode::Unprivileged,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Mode::Root => "root",
            Mode::Setuid { .. } => "setuid",
            Mode::Rootless => "rootless",
            Mode::Unprivileged => "unprivileged",
        }
    }

    pub fn caller(&self) -> Option<&Identity> {
        match self {
            Mode::Setuid { caller } => Some(caller),
            _ => None,
        }
    }
}

/// The mode of this process, detected once (a non-root process probes user namespaces once).
pub fn mode() -> &'static Mode {
    static MODE: OnceLock<Mode> = OnceLock::new();
    MODE.get_or_init(|| {
        let ids = nix::unistd::getresuid().expect("getresuid cannot fail");
        Mode::classify(
            ids.real.as_raw(),
            ids.effective.as_raw(),
            real_identity,
            || crate::namespaces::can_create(crate::namespaces::USER),
        )
    })
}

/// Refuse ids that only a wrong install produces: setuid or setgid to someone other than root
/// (the caller would act as that user with none of setuid mode's checks).
pub fn check_ids(ruid: u32, euid: u32, rgid: u32, egid: u32) -> Result<()> {
    if euid != 0 && (ruid != euid || rgid != egid) {
        bail!(
            "sbx-exec is running with real uid/gid {ruid}/{rgid} but effective uid/gid {euid}/{egid}: it is installed \
             setuid or setgid to someone other than root, which sbx-exec refuses; install it setuid root \
             (chown root:root, chmod 4755) or without those bits (chmod 0755)"
        );
    }
    Ok(())
}

/// [`check_ids`] for this process.
pub fn check_process_ids() -> Result<()> {
    use nix::unistd::{getegid, geteuid, getgid, getuid};
    check_ids(
        getuid().as_raw(),
        geteuid().as_raw(),
        getgid().as_raw(),
        getegid().as_raw(),
    )
}

/// Real uid not 0 and effective uid 0: started through the setuid bit by someone else.
pub fn is_setuid() -> bool {
    nix::unistd::getuid().as_raw() != 0 && nix::unistd::geteuid().is_root()
}

fn real_identity() -> Identity {
    Identity {
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        groups: nix::unistd::getgroups()
            .unwrap_or_default()
            .into_iter()
            .map(Gid::as_raw)
            .collect(),
    }
}

static CALLER_ENV: OnceLock<Vec<(OsString, OsString)>> = OnceLock::new();

/// Stage 1 of setuid mode: reset what the caller controls before anything else runs.
pub fn enter_setuid_mode() -> Result<()> {
    use nix::sys::resource::{setrlimit, Resource};
    use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};
    // Nobody may ptrace this process or read its memory while it holds privilege (the kernel
    // already makes a setuid exec non-dumpable; say it explicitly, it never changes back).
    nix::sys::prctl::set_dumpable(false).context("cannot make sbx-exec non-dumpable")?;
    ensure_stdio_open()?;
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    // No core file of a process holding privilege or secrets, in it or in anything it starts.
    setrlimit(Resource::RLIMIT_CORE, 0, 0).context("cannot disable core dumps")?;
    crate::sys::reset_signal_dispositions();
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .context("cannot reset the signal mask")?;
    // The caller's variables leave the process: nothing here (libc, Rust's runtime, a panic
    // message) may read RUST_BACKTRACE, TMPDIR or the like; the allowlist reads the copy.
    let env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    crate::sys::clear_environment();
    let _ = CALLER_ENV.set(env);
    Ok(())
}

/// Make sure fds 0, 1 and 2 are open (on /dev/null if the caller closed them), so no file that
/// sbx-exec opens can land on them and be written as "stdout".
fn ensure_stdio_open() -> Result<()> {
    use nix::fcntl::{fcntl, open, FcntlArg, OFlag};
    for fd in 0..3 {
        if fcntl(fd, FcntlArg::F_GETFD).is_ok() {
            continue;
        }
        let got = open("/dev/null", OFlag::O_RDWR, nix::sys::stat::Mode::empty())
            .context("cannot open /dev/null for a closed standard fd")?;
        if got != fd {
            bail!("standard fd {fd} was closed and /dev/null landed on {got}");
        }
    }
    Ok(())
}

/// The caller's environment, for the context's allowlist only.
pub fn caller_env() -> Vec<(OsString, OsString)> {
    match CALLER_ENV.get() {
        Some(env) => env.clone(),
        None => std::env::vars_os().collect(),
    }
}

/// Stage 2 of setuid mode: close every fd the caller left open but 0, 1, 2 and those named.
pub fn close_caller_fds(named: &[RawFd]) -> Result<()> {
    let mut keep: Vec<RawFd> = named.iter().copied().filter(|&fd| fd > 2).collect();
    keep.sort_unstable();
    keep.dedup();
    crate::sys::close_fds_from(3, &keep, false).context("cannot close inherited file descriptors")
}

/// Stage 3: the effective policy. In setuid mode only the system policy (checked) or the embedded
/// default; `--policy` is refused.
pub fn load_policy(mode: &Mode, flag: Option<&Path>) -> Result<policy::Loaded> {
    match (mode, flag) {
        (Mode::Setuid { caller }, Some(file)) => bail!(
            "--policy {} is refused: sbx-exec runs setuid root for uid {}, and then only the system policy ({}) or the embedded default applies; \
             ask root to install the policy as {}, or run without --policy",
            file.display(),
            caller.uid,
            policy::SYSTEM_POLICY,
            policy::SYSTEM_POLICY
        ),
        (Mode::Setuid { .. }, None) => {
            crate::system_policy::load_trusted(Path::new(policy::SYSTEM_POLICY))
        }
        _ => policy::load(flag),
    }
}

/// Does `allow` admit `caller` (by real uid or any of its groups)? Absent: everyone.
pub fn caller_admitted(allow: Option<&AllowCallers>, caller: &Identity) -> bool {
    let Some(allow) = allow else { return true };
    allow.uids.contains(&caller.uid)
        || allow.gids.contains(&caller.gid)
        || caller.groups.iter().any(|g| allow.gids.contains(g))
}

/// What a setuid launch changes in the plan: whom the target becomes, and where it starts.
#[derive(Debug, Clone)]
pub struct SetuidLaunch {
    pub identity: Identity,
}

impl SetuidLaunch {
    /// Stage 4: `None` outside setuid mode; otherwise check the caller against the context.
    pub fn plan(mode: &Mode, ctx_name: &str, ctx: &Context) -> Result<Option<SetuidLaunch>> {
        let Mode::Setuid { caller } = mode else {
            return Ok(None);
        };
        if !caller_admitted(ctx.allow_callers.as_ref(), caller) {
            let a = ctx.allow_callers.clone().unwrap_or_default();
            bail!(
                "context {ctx_name:?} does not admit uid {} (groups {:?}): [context.{ctx_name}] allow_callers = {{ uids = {:?}, gids = {:?} }} in {}; \
                 ask root to add your uid or one of your groups there",
                caller.uid,
                caller.groups,
                a.uids,
                a.gids,
                policy::SYSTEM_POLICY
            );
        }
        if ctx.supervise.is_some() {
            bail!(
                "context {ctx_name:?} is a control-mode context ([context.{ctx_name}.supervise]), which only root may start; \
                 sbx-exec runs setuid for uid {}",
                caller.uid
            );
        }
        if ctx.persist {
            // One keeper per context: callers with different uids would share a pid namespace.
            bail!(
                "context {ctx_name:?} is persistent (persist = true), which setuid mode does not offer to non-root callers: \
                 its processes would be shared with every other caller of the context; use a one-shot context, or run as root"
            );
        }
        let identity = match ctx.security.run_as {
            Some(ids) => Identity {
                uid: ids.uid,
                gid: ids.gid,
                groups: vec![ids.gid],
            },
            None => caller.clone(),
        };
        Ok(Some(SetuidLaunch { identity }))
    }
}

/// The env policy as applied in `mode`: setuid mode always drops injection variables.
pub fn env_policy(mode: &Mode, env: &EnvPolicy) -> EnvPolicy {
    let mut env = env.clone();
    if matches!(mode, Mode::Setuid { .. }) {
        env.hygiene = true;
    }
    env
}

/// The PATH a setuid launch resolves the command in (and gives the target): the policy's
/// `env.set PATH`, else the built-in default; never the caller's.
pub fn policy_path(env: &EnvPolicy) -> String {
    env.set
        .iter()
        .find(|(k, _)| k.0 == "PATH")
        .map_or_else(|| DEFAULT_PATH.to_string(), |(_, v)| v.0.clone())
}

/// Stage 5: run `f` with the caller's filesystem uid/gid (its groups are already the process's),
/// so path lookups the caller asked for are answered with the caller's access, not root's.
pub fn as_caller<T>(mode: &Mode, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let Some(caller) = mode.caller() else {
        return f();
    };
    use nix::unistd::{setfsgid, setfsuid};
    setfsgid(Gid::from_raw(caller.gid));
    setfsuid(Uid::from_raw(caller.uid));
    // setfsuid returns the previous value: asking again tells whether the switch took.
    let switched = setfsuid(Uid::from_raw(caller.uid)).as_raw() == caller.uid
        && setfsgid(Gid::from_raw(caller.gid)).as_raw() == caller.gid;
    let out = if switched {
        f()
    } else {
        Err(anyhow::anyhow!(
            "cannot take the caller's filesystem identity"
        ))
    };
    setfsuid(nix::unistd::geteuid());
    setfsgid(nix::unistd::getegid());
    out
}

/// Stage 6, in the target before its capability sets are emptied: cut the whole bounding set,
/// then become `id` for good (groups, gid, uid: real, effective and saved), and check that root
/// cannot be regained.
pub fn drop_privs(id: &Identity) -> Result<()> {
    use nix::unistd::{setgroups, setresgid, setresuid};
    let bounding = caps::read(None, CapSet::Bounding).context("cannot read the bounding set")?;
    for cap in bounding {
        caps::drop(None, CapSet::Bounding, cap)
            .with_context(|| format!("cannot drop {cap} from the bounding set"))?;
    }
    let groups: Vec<Gid> = id.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    setgroups(&groups).context("cannot set the supplementary groups")?;
    let (uid, gid) = (Uid::from_raw(id.uid), Gid::from_raw(id.gid));
    setresgid(gid, gid, gid).context("cannot change group")?;
    setresuid(uid, uid, uid).context("cannot change user")?;
    let r = nix::unistd::getresuid()?;
    let g = nix::unistd::getresgid()?;
    if [r.real, r.effective, r.saved] != [uid; 3] || [g.real, g.effective, g.saved] != [gid; 3] {
        bail!("the switch to uid {} gid {} did not take", id.uid, id.gid);
    }
    if id.uid != 0 && nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        bail!("uid 0 could be regained after dropping privileges");
    }
    Ok(())
}

/// `chdir` as the caller, after [`drop_privs`]: the directory is looked up with the caller's
/// access, inside the sandbox's mount namespace.
pub fn chdir_as_caller(dir: &CString) -> Result<()> {
    nix::unistd::chdir(dir.as_c_str()).with_context(|| {
        format!(
            "the working directory {} is not reachable by you inside the context (a private tmpfs or hidden path covers it, \
             or you cannot enter it); run sbx-exec from a directory the context shares",
            dir.to_string_lossy()
        )
    })
}

/// Setuid mode, in pid 1 right after mounting a private tmpfs at `p` (nothing else runs in the
/// sandbox yet): give its root to the caller, so a tmpfs HOME is writable by the target. Only a
/// tmpfs is ever changed (a path whose mount was skipped keeps its owner).
pub fn give_new_tmpfs(p: &std::ffi::CStr, uid: u32, gid: u32) -> Result<()> {
    use nix::fcntl::AtFlags;
    use nix::sys::statfs::{fstatfs, TMPFS_MAGIC};
    let fd = match crate::sys::open_path_nofollow(p) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", p.to_string_lossy())),
    };
    if fstatfs(&fd)?.filesystem_type() != TMPFS_MAGIC {
        return Ok(());
    }
    nix::unistd::fchownat(
        Some(std::os::fd::AsRawFd::as_raw_fd(&fd)),
        "",
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        AtFlags::AT_EMPTY_PATH,
    )
    .with_context(|| {
        format!(
            "cannot give the private tmpfs {} to uid {uid}",
            p.to_string_lossy()
        )
    })
}

/// Rootless mode: the ids mapped into the new user namespace (each to itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    pub uid: u32,
    pub gid: u32,
}

/// Should this launch create a user namespace, and with which map? Only in rootless mode, when the
/// context asks for namespaces and does not say `userns = "never"`.
pub fn userns_plan(mode: &Mode, ctx: &Context, wants_namespaces: bool) -> Option<IdMap> {
    (*mode == Mode::Rootless && ctx.userns == UserNs::Auto && wants_namespaces).then(|| IdMap {
        uid: nix::unistd::geteuid().as_raw(),
        gid: nix::unistd::getegid().as_raw(),
    })
}

/// In the first process of a new user namespace: map the caller's uid and gid to themselves
/// (`setgroups` denied first, as the kernel requires for an unprivileged gid_map).
///
/// A non-dumpable process's /proc files belong to the global root, which this user namespace
/// cannot map, so the process is made dumpable for the three writes and non-dumpable again. In
/// that window only processes of the same uid outside the sandbox (the caller itself: rootless
/// mode guards no boundary between a user and its own processes) could attach to it.
pub fn write_id_maps(map: &IdMap) -> Result<()> {
    nix::sys::prctl::set_dumpable(true).context("cannot make pid 1 dumpable to map ids")?;
    let written = write_id_maps_now(map);
    nix::sys::prctl::set_dumpable(false).context("cannot make pid 1 non-dumpable")?;
    written
}

fn write_id_maps_now(map: &IdMap) -> Result<()> {
    std::fs::write("/proc/self/setgroups", b"deny").context("cannot write /proc/self/setgroups")?;
    let line = |id: u32| format!("{id} {id} 1\n");
    std::fs::write("/proc/self/uid_map", line(map.uid).as_bytes())
        .context("cannot write /proc/self/uid_map")?;
    std::fs::write("/proc/self/gid_map", line(map.gid).as_bytes())
        .context("cannot write /proc/self/gid_map")?;
    Ok(())
}

/// The current directory as a C string (for a chdir done later by the target).
pub fn c_path(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes()).context("the working directory contains a NUL byte")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(uid: u32, gid: u32, groups: &[u32]) -> Identity {
        Identity {
            uid,
            gid,
            groups: groups.to_vec(),
        }
    }

    #[test]
    fn mode_from_ids() {
        let never = || -> bool { panic!("root must not probe user namespaces") };
        assert_eq!(Mode::classify(0, 0, || who(0, 0, &[]), never), Mode::Root);
        assert_eq!(
            Mode::classify(1000, 0, || who(1000, 100, &[100]), never),
            Mode::Setuid {
                caller: who(1000, 100, &[100])
            }
        );
        assert_eq!(
            Mode::classify(1000, 1000, || unreachable!(), || true),
            Mode::Rootless
        );
        assert_eq!(
            Mode::classify(1000, 1000, || unreachable!(), || false),
            Mode::Unprivileged
        );
        // Real root with a non-root effective uid (dropped privileges): not setuid mode.
        assert_eq!(
            Mode::classify(0, 1000, || unreachable!(), || false),
            Mode::Unprivileged
        );
    }

    #[test]
    fn setuid_or_setgid_to_non_root_is_refused() {
        assert!(check_ids(0, 0, 0, 0).is_ok());
        assert!(check_ids(1000, 1000, 1000, 1000).is_ok());
        // Setuid root (with or without setgid): setuid mode handles it.
        assert!(check_ids(1000, 0, 1000, 1000).is_ok());
        assert!(check_ids(1000, 0, 1000, 0).is_ok());
        let e = check_ids(1000, 1001, 1000, 1000).unwrap_err().to_string();
        assert!(
            e.contains("setuid or setgid") && e.contains("chmod 4755"),
            "{e}"
        );
        assert!(check_ids(1000, 1000, 1000, 50).is_err());
    }

    #[test]
    fn allow_callers_matches_uid_or_any_group() {
        let alice = who(1000, 1000, &[1000, 27]);
        assert!(caller_admitted(None, &alice));
        let by_uid = AllowCallers {
            uids: vec![1000],
            gids: vec![],
        };
        assert!(caller_admitted(Some(&by_uid), &alice));
        let by_group = AllowCallers {
            uids: vec![],
            gids: vec![27],
        };
        assert!(caller_admitted(Some(&by_group), &alice));
        let other = AllowCallers {
            uids: vec![1001],
            gids: vec![4242],
        };
        assert!(!caller_admitted(Some(&other), &alice));
        assert!(!caller_admitted(Some(&AllowCallers::default()), &alice));
    }

    #[test]
    fn setuid_plan_refuses_excluded_callers_and_control() {
        let p = policy::Policy::parse(
            "version = 1\n[context.a]\nallow_callers = { uids = [1] }\n[context.b]\nallow_callers = { gids = [27] }\n[context.c.supervise]\nports = [1]\n",
            "t.toml",
        )
        .unwrap();
        let mode = Mode::Setuid {
            caller: who(1000, 1000, &[27]),
        };
        let err = SetuidLaunch::plan(&mode, "a", p.context("a").unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"a\"") && err.contains("allow_callers"),
            "{err}"
        );
        let ok = SetuidLaunch::plan(&mode, "b", p.context("b").unwrap()).unwrap();
        assert_eq!(ok.unwrap().identity.uid, 1000);
        assert!(SetuidLaunch::plan(&mode, "c", p.context("c").unwrap()).is_err());
        // Root mode: no plan, no checks.
        assert!(
            SetuidLaunch::plan(&Mode::Root, "a", p.context("a").unwrap())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn setuid_path_comes_from_the_policy() {
        let mut env = EnvPolicy::default();
        assert_eq!(policy_path(&env), DEFAULT_PATH);
        env.set.insert(
            policy::EnvName("PATH".into()),
            policy::EnvValue("/usr/bin".into()),
        );
        assert_eq!(policy_path(&env), "/usr/bin");
        env.hygiene = false;
        let mode = Mode::Setuid {
            caller: who(1, 1, &[]),
        };
        assert!(env_policy(&mode, &env).hygiene);
        assert!(!env_policy(&Mode::Root, &env).hygiene);
    }
}
