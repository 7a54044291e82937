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
//! 3. [`load_policy`]: the system policy, checked by [`crate::privilege::system_policy`], or the embedded
//!    default; `--policy` is refused.
//! 4. [`SetuidLaunch::plan`]: `allow_callers`, no control mode, the identity to drop to.
//! 5. [`as_caller`]: every lookup of a path the caller named (the command, `exec` rules) runs with
//!    the caller's filesystem uid/gid, so root's access never answers a caller's question.
//! 6. [`crate::privilege::drop::drop_privs`], in the target just before the capability sets are emptied: the whole
//!    bounding set cut, supplementary groups, gid and uid switched for good, then verified.
//!    Only then does the target `chdir` into the caller's directory (as the caller).

use std::sync::OnceLock;

use anyhow::{bail, Result};
use nix::unistd::Gid;

use crate::model::DEFAULT_PATH;

pub mod drop;
pub mod setuid;
pub mod system_policy;
pub mod userns;

use crate::model::{self, AllowCallers, Context, EnvPolicy};
pub use setuid::{
    as_caller, caller_env, close_caller_fds, enter_setuid_mode, load_policy, raise_stack_limit,
};
pub use userns::IdMap;

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
            || crate::sys::can_clone(libc::CLONE_NEWUSER),
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
            // Who is admitted is root's business: the lists are never shown to a caller.
            bail!(
                "context {ctx_name:?} does not admit uid {}: you are not admitted by its allow_callers in {}; \
                 ask root to add your uid or one of your groups there",
                caller.uid,
                model::SYSTEM_POLICY
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
        if !ctx.ops.is_empty() {
            // The control plane performs them as root for the context; which caller asked is
            // not part of its protocol yet.
            bail!(
                "context {ctx_name:?} lists platform operations (ops), which setuid mode does not offer to non-root callers: \
                 the control plane would act for any caller the context admits; remove ops, or run as root"
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

/// The trust rule for a file or directory sbx-exec relies on (a program given secrets, the setuid
/// system policy and the directories above them): owned by root, not writable by group or others.
/// `Err` says why not, as the rest of a sentence naming the path.
pub fn only_root_can_change(uid: u32, mode: u32) -> std::result::Result<(), String> {
    if uid != 0 {
        return Err(format!("is owned by uid {uid}, not root"));
    }
    if mode & 0o022 != 0 {
        return Err(format!(
            "is writable by group or others (mode {:o})",
            mode & 0o7777
        ));
    }
    Ok(())
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
        let p = model::Policy::parse(
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
            err.contains("\"a\"") && err.contains("not admitted") && !err.contains("[1]"),
            "{err}"
        );
        let ok = SetuidLaunch::plan(&mode, "b", p.context("b").unwrap()).unwrap();
        assert_eq!(ok.unwrap().identity.uid, 1000);
        assert!(SetuidLaunch::plan(&mode, "c", p.context("c").unwrap()).is_err());
        // A context with platform operations: refused in setuid mode, not in root mode.
        let mut ops = p.context("b").unwrap().clone();
        ops.ops = vec![model::OpName("deploy".into())];
        let err = SetuidLaunch::plan(&mode, "b", &ops)
            .unwrap_err()
            .to_string();
        assert!(err.contains("platform operations (ops)"), "{err}");
        assert!(SetuidLaunch::plan(&Mode::Root, "b", &ops)
            .unwrap()
            .is_none());
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
            model::EnvName("PATH".into()),
            model::EnvValue("/usr/bin".into()),
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
