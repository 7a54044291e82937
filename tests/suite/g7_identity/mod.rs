//! G7, no identity that means anything outside: user code is root inside its sandbox, but the
//! host sees it as an unprivileged uid (`identity`, the shipped `user` maps 0.. onto 100000..).
//! A filesystem socket's peer credential, a file it chowns and marks setuid, and everything it
//! writes carry the mapped uid; the control side (root outside) still reads and writes its work
//! area. Each attack has its control outside.
//!
//! The work area is a stand-in for /workspace made by the test under /var/lib (the sandbox's /tmp
//! and /var/tmp are private), owned by the mapped uid as the image makes /workspace; only sentinel files are
//! written.
//!
//! One file per part: [`mapped`] (what the host sees of user code: peer credentials, setuid
//! bits, the work area both sides share), [`tools`] (root inside, and tools that need it work),
//! [`contexts`] (persistent calls, no user namespaces, the shipped agent and notebook). The tests
//! are re-exported here.

mod contexts;
mod mapped;
mod tools;

pub use contexts::*;
pub use mapped::*;
pub use tools::*;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::*;
use crate::policy_tests::{write_policy, DEFAULT_TOML};

/// The host uid and gid of the shipped `user` context's root.
const MAPPED: u32 = 100000;
const PY: &str = "/usr/bin/python3";

/// A stand-in for /workspace owned by the mapped uid (as the image makes it), the default policy
/// naming it in place of /workspace, and a root-owned scratch directory for the controls.
struct Work {
    dir: PathBuf,
    outside: PathBuf,
    _keep: TempDir,
    policy: PathBuf,
}

impl Work {
    fn new(tag: &str) -> Work {
        let dir = Path::new("/var/lib").join(marker(tag));
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(MAPPED), Some(MAPPED)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let outside = Path::new("/var/lib").join(marker(&format!("{tag}-ctl")));
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o700)).unwrap();
        let keep = TempDir::new(tag);
        let text = DEFAULT_TOML.replace("\"/workspace\"", &format!("\"{}\"", dir.display()));
        let policy = write_policy(keep.path(), &text);
        Work {
            dir,
            outside,
            _keep: keep,
            policy,
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// `sh -c script` in the `user` context, in the work area.
    fn user(&self, script: &str) -> Run {
        let mut c = Cmd::sbx([
            "--policy",
            self.policy.to_str().unwrap(),
            "--ctx",
            "user",
            "--",
            "/bin/sh",
            "-c",
            script,
        ]);
        c.command().current_dir(&self.dir);
        c.limit(Duration::from_secs(120)).run()
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(&self.outside);
    }
}

trait Args {
    fn command_args(self, args: &[&str]) -> Self;
}

impl Args for Cmd {
    fn command_args(mut self, args: &[&str]) -> Cmd {
        self.command().args(args);
        self
    }
}
