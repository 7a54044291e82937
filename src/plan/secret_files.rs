//! Secrets delivered as files (`[context.NAME.secrets] files = ["PGPASSFILE", ...]`), like
//! systemd's `LoadCredential=`: each listed secret is written to `/run/credentials/sbx/NAME`
//! (mode 0400, owned by the target's uid; the directory 0500) on a tmpfs that the sandbox's pid 1
//! mounts inside the invocation's private mount namespace. The variable NAME holds the file's path
//! and `CREDENTIALS_DIRECTORY` the directory. The tmpfs dies with the mount namespace, so nothing
//! of it exists outside the invocation.
//!
//! This is the plan ([`Files::split`], in the outer process); [`crate::run::apply::secret_files`]
//! mounts the tmpfs and writes the files in pid 1.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::model::bind::HostPattern;
use crate::model::{EnvName, RunAs};
use crate::secrets::{expose, SecretSet};

/// The directory `CREDENTIALS_DIRECTORY` names.
pub const DIR: &str = "/run/credentials/sbx";

/// The CA bundle of a call with bound secrets (system CAs + the per-call CA), next to the
/// credential files; [`crate::plan::bound::CA_VARIABLES`] name it. Not an environment name, so
/// no secret can take its place.
pub const CA_BUNDLE: &str = "ca-bundle.pem";

/// The secrets to write as files, and who owns them.
#[derive(Clone)]
pub struct Files {
    pub(crate) entries: Vec<(String, Zeroizing<Vec<u8>>)>,
    /// A call with bound secrets: its CA bundle ([`CA_BUNDLE`]).
    pub ca: Option<CaBundle>,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.entries.iter().map(|(n, _)| n.as_str()).collect();
        let ca = self.ca.as_ref().map(|c| &c.hosts);
        write!(f, "Files({names:?}, uid {}, CA for {ca:?})", self.uid)
    }
}

/// The CA bundle of a call with bound secrets: pid 1 writes the system CAs, copied by the kernel
/// from `system` (opened by the launch; its 200 KB are never read into a process on the way),
/// then the call's CA certificate.
#[derive(Clone)]
pub struct CaBundle {
    /// The system CA bundle, open for reading (read at explicit offsets: shared by every pid 1
    /// a pool's server starts).
    pub system: Arc<OwnedFd>,
    /// The call's CA certificate (PEM): empty in the plan; the launch sets it once it has the
    /// CA (made for the call, or by the pool's server for a prepared sandbox).
    pub ca_pem: Vec<u8>,
    /// The bound hosts the CA is for (its name constraints), sorted, each once.
    pub hosts: Vec<HostPattern>,
}

impl std::fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CaBundle({:?}, {} bytes of CA)",
            self.hosts,
            self.ca_pem.len()
        )
    }
}

impl CaBundle {
    /// The bundle of a call with bound secrets for `hosts` (sorted and deduplicated here).
    pub fn new(system: Arc<OwnedFd>, mut hosts: Vec<HostPattern>) -> CaBundle {
        hosts.sort_by_key(|h| format!("{h:?}"));
        hosts.dedup();
        CaBundle {
            system,
            ca_pem: Vec::new(),
            hosts,
        }
    }
}

impl Files {
    /// The handed secrets whose names `files` lists (copied into zeroizing buffers); `None` when
    /// there are none. The caller leaves these out of the environment (see [`Files::is_file`]).
    pub fn split(set: &SecretSet, files: &[EnvName], run_as: Option<RunAs>) -> Option<Files> {
        let entries: Vec<_> = set
            .iter()
            .filter(|s| files.iter().any(|f| f.0 == s.name))
            .map(|s| {
                (
                    s.name.clone(),
                    Zeroizing::new(expose(s).as_bytes().to_vec()),
                )
            })
            .collect();
        if entries.is_empty() {
            return None;
        }
        let (uid, gid) = run_as.map_or((0, 0), |r| (r.uid, r.gid));
        Some(Files {
            entries,
            ca: None,
            uid,
            gid,
        })
    }

    /// Is `name` delivered as a file (so its value must stay out of the environment)?
    pub fn is_file(files: &Option<Files>, name: &str) -> bool {
        files
            .as_ref()
            .is_some_and(|f| f.entries.iter().any(|(n, _)| n == name))
    }

    /// Add the CA bundle of a call with bound secrets ([`CA_BUNDLE`]) to the files written on the
    /// private tmpfs (creating the set if there are no secret files).
    pub fn with_ca_bundle(files: Option<Files>, owner: Option<RunAs>, ca: CaBundle) -> Files {
        let (uid, gid) = owner.map_or((0, 0), |r| (r.uid, r.gid));
        let mut files = files.unwrap_or(Files {
            entries: Vec::new(),
            ca: None,
            uid,
            gid,
        });
        files.ca = Some(ca);
        files
    }

    /// The variables the target gets: NAME=path for each file (the CA variables for the CA
    /// bundle), and CREDENTIALS_DIRECTORY.
    pub fn variables(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = Vec::new();
        for (n, _) in &self.entries {
            v.push((n.clone(), format!("{DIR}/{n}")));
        }
        if self.ca.is_some() {
            let path = format!("{DIR}/{CA_BUNDLE}");
            let ca = crate::plan::bound::CA_VARIABLES.iter();
            v.extend(ca.map(|var| (var.to_string(), path.clone())));
        }
        v.push(("CREDENTIALS_DIRECTORY".into(), DIR.into()));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_takes_only_listed_names_and_owner_follows_run_as() {
        let set = crate::secrets::parse(b"PGPASSFILE=h:5432:*:u:pw\nTOKEN=abc\n").unwrap();
        let files = [EnvName("PGPASSFILE".into())];
        let f = Files::split(
            &set,
            &files,
            Some(RunAs {
                uid: 1000,
                gid: 100,
            }),
        )
        .unwrap();
        assert_eq!(f.uid, 1000);
        assert_eq!(f.gid, 100);
        assert_eq!(
            f.variables(),
            vec![
                ("PGPASSFILE".to_string(), format!("{DIR}/PGPASSFILE")),
                ("CREDENTIALS_DIRECTORY".to_string(), DIR.to_string()),
            ]
        );
        let some = Some(f);
        assert!(Files::is_file(&some, "PGPASSFILE"));
        assert!(!Files::is_file(&some, "TOKEN"));
        assert!(!format!("{some:?}").contains("pw"));
        assert!(Files::split(&set, &[EnvName("OTHER".into())], None).is_none());
        let f = Files::split(&set, &files, None).unwrap();
        assert_eq!((f.uid, f.gid), (0, 0));
    }

    #[test]
    fn the_ca_bundle_is_named_by_the_ca_variables() {
        let owner = Some(RunAs { uid: 7, gid: 8 });
        let null = std::fs::File::open("/dev/null").unwrap();
        let ca = CaBundle::new(Arc::new(null.into()), Vec::new());
        let f = Files::with_ca_bundle(None, owner, ca);
        assert_eq!((f.uid, f.gid), (7, 8));
        let vars = f.variables();
        let path = format!("{DIR}/{CA_BUNDLE}");
        assert!(vars.contains(&("SSL_CERT_FILE".to_string(), path.clone())));
        assert!(vars.contains(&("AWS_CA_BUNDLE".to_string(), path)));
        assert_eq!(vars.len(), crate::plan::bound::CA_VARIABLES.len() + 1);
        assert!(!Files::is_file(&Some(f), "SSL_CERT_FILE"));
    }
}
