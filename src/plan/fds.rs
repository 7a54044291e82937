//! File descriptors passed into the target: `--keep-fd N` and `--listen-fd NAME`, and the
//! systemd socket-activation variables that describe them (`LISTEN_FDS`, `LISTEN_FDNAMES`,
//! `LISTEN_PID`, see sd_listen_fds(3)).
//!
//! The kept fds reach the target renumbered 3, 4, ... in order (`--listen-fd` ones first). When the
//! caller's socket activation describes every one of them (fds 3..3+LISTEN_FDS with LISTEN_PID ==
//! sbx-exec's pid), they are passed on as sockets: each must be a listening socket, and the target
//! gets LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID (its own pid as it sees it, filled in just
//! before exec). A socket bound to a reserved port (some control context's `supervise.ports`)
//! reaches only a context whose `listen` names that port. Pure: the facts about each fd are
//! gathered by the caller.

use std::ffi::OsStr;
use std::os::fd::RawFd;

use crate::model::Policy;
use crate::plan::env::TargetEnv;

/// The socket-activation variables; never inherited by a target (they describe the caller's fds),
/// only set by sbx-exec for the fds it passes on.
pub const LISTEN_VARS: [&str; 3] = ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"];

/// At most this many activation fds are taken from LISTEN_FDS (systemd has no fixed limit; this
/// only bounds a bogus value).
const MAX_LISTEN_FDS: usize = 1024;

/// The caller's socket activation, if it is meant for this process: fd `3 + i` is named
/// `names[i]` ("unknown" where LISTEN_FDNAMES has no entry, as systemd does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activation {
    pub names: Vec<String>,
}

impl Activation {
    /// Read LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES; `None` when they are absent, malformed, or
    /// LISTEN_PID is not `my_pid` (they were meant for another process).
    pub fn from_vars(
        fds: Option<&OsStr>,
        pid: Option<&OsStr>,
        names: Option<&OsStr>,
        my_pid: u32,
    ) -> Option<Activation> {
        let pid: u32 = pid?.to_str()?.parse().ok()?;
        let n: usize = fds?.to_str()?.parse().ok()?;
        if pid != my_pid || n == 0 || n > MAX_LISTEN_FDS {
            return None;
        }
        let given: Vec<&str> = names
            .and_then(OsStr::to_str)
            .map_or(Vec::new(), |s| s.split(':').collect());
        let names = (0..n)
            .map(|i| given.get(i).copied().unwrap_or("unknown").to_string())
            .collect();
        Some(Activation { names })
    }

    /// From a process environment (the caller's).
    pub fn from_env(env: &[(std::ffi::OsString, std::ffi::OsString)], my_pid: u32) -> Option<Self> {
        let get = |name: &str| {
            env.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_os_str())
        };
        Activation::from_vars(
            get("LISTEN_FDS"),
            get("LISTEN_PID"),
            get("LISTEN_FDNAMES"),
            my_pid,
        )
    }

    fn describes(&self, fd: RawFd) -> Option<&str> {
        let i = usize::try_from(fd.checked_sub(3)?).ok()?;
        self.names.get(i).map(String::as_str)
    }
}

/// The fds the target gets, in order (placed on 3, 4, ...), and their LISTEN_FDNAMES when they
/// are passed on as socket activation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Passed {
    pub fds: Vec<RawFd>,
    pub listen_names: Option<Vec<String>>,
}

/// Resolve `--listen-fd` names and `--keep-fd` numbers against the caller's activation.
pub fn select(
    activation: Option<&Activation>,
    keep: &[RawFd],
    listen: &[String],
) -> Result<Passed, String> {
    let mut fds = Vec::new();
    for name in listen {
        let Some(act) = activation else {
            return Err(format!(
                "--listen-fd {name}: the caller passed no sockets (LISTEN_FDS and LISTEN_PID naming this process, as control mode or systemd set them); use --keep-fd N for a plain fd"
            ));
        };
        let found: Vec<RawFd> = (3..)
            .zip(&act.names)
            .filter(|(_, n)| *n == name)
            .map(|(fd, _)| fd)
            .collect();
        if found.is_empty() {
            return Err(format!(
                "--listen-fd {name}: no socket of that name in LISTEN_FDNAMES (the caller passed: {})",
                act.names.join(", ")
            ));
        }
        fds.extend(found);
    }
    fds.extend_from_slice(keep);
    for (i, fd) in fds.iter().enumerate() {
        if fds[..i].contains(fd) {
            return Err(format!(
                "file descriptor {fd} is passed twice (--keep-fd/--listen-fd)"
            ));
        }
    }
    let described = fds
        .iter()
        .filter(|&&fd| activation.is_some_and(|a| a.describes(fd).is_some()))
        .count();
    let listen_names = match (described, activation) {
        (0, _) | (_, None) => None,
        (n, Some(act)) if n == fds.len() => Some(
            fds.iter()
                .map(|&fd| act.describes(fd).unwrap_or("unknown").to_string())
                .collect(),
        ),
        _ => {
            return Err(
                "some kept fds are the caller's LISTEN_FDS sockets and some are not; pass either only sockets from LISTEN_FDS (they keep LISTEN_FDNAMES) or only other fds"
                    .into(),
            )
        }
    };
    Ok(Passed { fds, listen_names })
}

/// What the launcher found out about one kept fd.
pub use crate::sys::FdFacts;

/// Is `fd` allowed into context `ctx_name`? Socket activation takes listening sockets only; a
/// socket on a reserved port needs the port in the context's `listen`.
pub fn check(
    fd: RawFd,
    facts: FdFacts,
    as_listen: bool,
    reserved: &[u16],
    ctx_name: &str,
    allowed: &[u16],
) -> Result<(), String> {
    if as_listen && !(facts.is_socket && facts.listening) {
        return Err(format!(
            "file descriptor {fd} is in LISTEN_FDS but is not a listening socket; only listening sockets are passed on as socket activation"
        ));
    }
    if let Some(port) = facts.port.filter(|p| reserved.contains(p)) {
        if !allowed.contains(&port) {
            return Err(format!(
                "file descriptor {fd} is a socket on the reserved port {port}, which context {ctx_name:?} may not be handed; add it to [context.{ctx_name}] listen if it should serve that port"
            ));
        }
    }
    Ok(())
}

/// Every reserved port of the policy: the `supervise.ports` of each control context.
pub fn reserved_ports(policy: &Policy) -> Vec<u16> {
    let mut ports: Vec<u16> = policy
        .context
        .values()
        .filter_map(|c| c.supervise.as_ref())
        .flat_map(|s| s.ports.iter().copied())
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// The target's socket-activation variables: the caller's are always removed; for sockets passed
/// on, LISTEN_FDS and LISTEN_FDNAMES are set and LISTEN_PID reserved (the target fills in its pid
/// just before exec). Returns whether LISTEN_PID must be filled in.
pub fn set_env(env: &mut TargetEnv, passed: &Passed) -> bool {
    for name in LISTEN_VARS {
        env.remove(name);
    }
    let Some(names) = &passed.listen_names else {
        return false;
    };
    env.set_var("LISTEN_FDS", &names.len().to_string());
    env.set_var("LISTEN_FDNAMES", &names.join(":"));
    env.set_var("LISTEN_PID", "0");
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn act(names: &[&str]) -> Activation {
        Activation {
            names: names.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn activation_is_only_for_this_pid() {
        let v = |s: &str| Some(OsStr::new(s).to_owned());
        let (n, p, names) = (v("2"), v("42"), v("8888:8888v6"));
        let a = Activation::from_vars(n.as_deref(), p.as_deref(), names.as_deref(), 42).unwrap();
        assert_eq!(a, act(&["8888", "8888v6"]));
        assert!(Activation::from_vars(n.as_deref(), p.as_deref(), None, 43).is_none());
        let a = Activation::from_vars(n.as_deref(), p.as_deref(), None, 42).unwrap();
        assert_eq!(a, act(&["unknown", "unknown"]));
        assert!(Activation::from_vars(v("x").as_deref(), p.as_deref(), None, 42).is_none());
        assert!(Activation::from_vars(v("0").as_deref(), p.as_deref(), None, 42).is_none());
    }

    #[test]
    fn listen_names_pick_sockets_and_keep_their_names() {
        let a = act(&["8080", "8080v6", "8888", "8888v6"]);
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let p = select(Some(&a), &[], &names(&["8888", "8888v6"])).unwrap();
        assert_eq!(p.fds, vec![5, 6]);
        assert_eq!(p.listen_names, Some(names(&["8888", "8888v6"])));
        let p = select(Some(&a), &[3], &[]).unwrap();
        assert_eq!(p.listen_names, Some(names(&["8080"])));
        assert!(select(Some(&a), &[], &names(&["9999"]))
            .unwrap_err()
            .contains("8080, 8080v6"));
        assert!(select(None, &[], &names(&["8888"])).is_err());
        assert!(select(Some(&a), &[5], &names(&["8888"]))
            .unwrap_err()
            .contains("twice"));
        assert!(select(Some(&a), &[9], &names(&["8888"]))
            .unwrap_err()
            .contains("some are not"));
        let p = select(None, &[7, 4], &[]).unwrap();
        assert_eq!((p.fds, p.listen_names), (vec![7, 4], None));
    }

    #[test]
    fn only_listening_sockets_and_reserved_ports_where_allowed() {
        let listening = FdFacts {
            is_socket: true,
            listening: true,
            port: Some(8888),
        };
        assert!(check(3, listening, true, &[8080, 8888], "nb", &[8888]).is_ok());
        let e = check(3, listening, true, &[8080, 8888], "user", &[]).unwrap_err();
        assert!(e.contains("[context.user] listen"), "{e}");
        assert!(check(3, listening, false, &[8080], "user", &[]).is_ok());
        let pipe = FdFacts::default();
        assert!(check(3, pipe, true, &[], "user", &[]).is_err());
        assert!(check(3, pipe, false, &[], "user", &[]).is_ok());
        let connected = FdFacts {
            listening: false,
            ..listening
        };
        assert!(check(3, connected, true, &[], "user", &[]).is_err());
        assert!(check(3, connected, false, &[8888], "user", &[]).is_err());
    }
}
