//! What the sandbox's pid 1 sets up ([`Sandbox`]), and the two plans derived from it when the
//! kernel gives less than asked: fewer namespaces (`degrade = true`) or no cgroup to show.

use std::os::fd::RawFd;

use crate::plan::mounts;
use crate::plan::namespaces::{self, Kind};
use crate::plan::secret_files::Files;
use crate::privilege::IdMap;

use super::Workdir;

/// Everything pid 1 of the sandbox does before it forks the target (or, for a persistent
/// context, before it says "ready"). Its steps, in order: [`crate::run::confine::PID1_ORDER`].
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub kinds: Vec<Kind>,
    pub mounts: Option<mounts::Plan>,
    /// Bring up `lo` in the new network namespace.
    pub loopback: bool,
    /// `net = "private"` with egress or published ports: what the outer process runs for it
    /// (pid 1 binds the proxy's listener inside when `egress` is set).
    pub net: Option<crate::plan::net::Plan>,
    /// The working directory pid 1 enters; `None` with mounts: `/` (setuid mode enters the
    /// caller's directory later, in the target, as the caller).
    pub cwd: Option<Workdir>,
    pub degrade: bool,
    /// Secrets written as files on a private tmpfs (`secrets.files`, and the CA bundle of bound
    /// secrets).
    pub creds: Option<Files>,
    /// Rootless mode: the user namespace's id map, written first by pid 1.
    pub userns: Option<IdMap>,
    /// Inherited fds pid 1 keeps open for the target (`--keep-fd`, `--listen-fd`), sorted.
    pub keep_fds: Vec<RawFd>,
}

impl Sandbox {
    /// This sandbox without the namespaces the kernel refused (`degrade = true`), and without what
    /// depends on them: no mount namespace, no mounts; no user namespace, no id map; no network
    /// namespace, no loopback, no proxy listener and no published ports (nothing to bind them in;
    /// the outer process says so). A new plan: the one made before stays as it was.
    pub fn without(&self, missing: &[Kind]) -> Sandbox {
        let mut s = self.clone();
        s.kinds.retain(|k| !missing.contains(k));
        if missing.contains(&namespaces::MOUNT) {
            s.mounts = None;
        }
        if missing.contains(&namespaces::USER) {
            s.userns = None;
        }
        if missing.contains(&namespaces::NET) {
            s.loopback = false;
            if let Some(net) = &mut s.net {
                net.egress = None;
                net.publish.clear();
            }
        }
        s
    }

    /// This sandbox showing no cgroup in its private /sys: the cgroups planned for it could not
    /// be made, and the call runs without them (`required = false` or `degrade = true`).
    pub fn without_cgroups(&self) -> Sandbox {
        let mut s = self.clone();
        if let Some(m) = &mut s.mounts {
            m.show_cgroups(&[]);
        }
        s
    }

    /// The CA bundle of a call with bound secrets, when it has one.
    pub fn ca(&self) -> Option<&crate::plan::secret_files::CaBundle> {
        self.creds.as_ref().and_then(|f| f.ca.as_ref())
    }

    /// This sandbox with `pem` as the call's CA certificate in its CA bundle (when it has one).
    pub fn with_ca_pem(&self, pem: &[u8]) -> Sandbox {
        let mut s = self.clone();
        if let Some(ca) = s.creds.as_mut().and_then(|f| f.ca.as_mut()) {
            ca.ca_pem = pem.to_vec();
        }
        s
    }

    /// What decides a persistent context's namespaces and mounts, as a stable 64-bit FNV-1a hash
    /// of a canonical text (the same on every build and Rust version): a call made with a
    /// different plan must not silently join a keeper built from the old one.
    pub fn fingerprint(&self) -> u64 {
        let mut text = String::new();
        for k in &self.kinds {
            text.push_str(k.name);
            text.push(',');
        }
        text.push('|');
        if let Some(m) = &self.mounts {
            text.push_str(&m.canonical());
            // Who owns the private tmpfs mounts (identity): a keeper made for another owner
            // would give the call a HOME it cannot write. Absent: the text is as before.
            if let Some((uid, gid)) = m.tmpfs_owner {
                text.push_str(&format!("|owner {uid}:{gid}"));
            }
        }
        text.push_str(if self.loopback { "|lo" } else { "|-" });
        if let Some(net) = &self.net {
            text.push_str("|net:");
            text.push_str(&net.canonical());
        }
        fnv1a(text.as_bytes())
    }
}

#[cfg(test)]
impl Sandbox {
    /// Pid and mount namespaces, `mounts` and `loopback`, nothing else (for tests).
    pub(crate) fn for_tests(mounts: Option<mounts::Plan>, loopback: bool) -> Sandbox {
        Sandbox {
            kinds: vec![namespaces::PID, namespaces::MOUNT],
            mounts,
            loopback,
            net: None,
            cwd: None,
            degrade: false,
            creds: None,
            userns: None,
            keep_fds: Vec::new(),
        }
    }
}

/// FNV-1a, 64 bit: a stable hash for fingerprints (not for security; the state file holding it is
/// root-only).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
