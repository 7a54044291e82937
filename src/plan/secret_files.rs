//! Secrets delivered as files (`[context.NAME.secrets] files = ["PGPASSFILE", ...]`), like
//! systemd's `LoadCredential=`: each listed secret is written to `/run/credentials/sbx/NAME`
//! (mode 0400, owned by the target's uid; the directory 0500) on a tmpfs that the sandbox's pid 1
//! mounts inside the invocation's private mount namespace. The variable NAME holds the file's path
//! and `CREDENTIALS_DIRECTORY` the directory. The tmpfs dies with the mount namespace, so nothing
//! of it exists outside the invocation.
//!
//! This is the plan ([`Files::split`], in the outer process); [`crate::run::apply::secret_files`]
//! mounts the tmpfs and writes the files in pid 1.

use zeroize::Zeroizing;

use crate::model::{EnvName, RunAs};
use crate::secrets::{expose, SecretSet};

/// The directory `CREDENTIALS_DIRECTORY` names.
pub const DIR: &str = "/run/credentials/sbx";

/// The secrets to write as files, and who owns them.
#[derive(Clone)]
pub struct Files {
    pub(crate) entries: Vec<(String, Zeroizing<Vec<u8>>)>,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.entries.iter().map(|(n, _)| n.as_str()).collect();
        write!(f, "Files({names:?}, uid {})", self.uid)
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
        Some(Files { entries, uid, gid })
    }

    /// Is `name` delivered as a file (so its value must stay out of the environment)?
    pub fn is_file(files: &Option<Files>, name: &str) -> bool {
        files
            .as_ref()
            .is_some_and(|f| f.entries.iter().any(|(n, _)| n == name))
    }

    /// The variables the target gets: NAME=path for each file, and CREDENTIALS_DIRECTORY.
    pub fn variables(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .entries
            .iter()
            .map(|(n, _)| (n.clone(), format!("{DIR}/{n}")))
            .collect();
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
}
