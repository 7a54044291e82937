//! G8, no confused deputy, for files: `sbx-exec file` runs each operation inside the context, as
//! its identity, in its mount view, so a link user code planted never leads a write of the control
//! plane outside what that code could write itself, and what the control plane writes for user
//! code belongs to it. Each attack has its control: the same link followed by a root-side write
//! does reach the sentinel, and a plain write works and user code reads it back.
//!
//! The work area is a stand-in for /workspace made by the test under /var/lib, owned by the
//! mapped uid as the image makes /workspace, named in place of /workspace in the shipped policy.
//! The sentinels are the test's own files under a root-owned directory beside it (visible, and
//! read-only, inside `user`); they are probed by content, size, inode and mtime.
//!
//! One file per part: [`links`] (planted links, `..`, FIFOs), [`ops`] (every operation, its
//! typed errors and exit codes, 100 MB through in bounded memory), [`contexts`] (who owns what
//! is written, platform's Landlock, a persistent context, a setuid caller). The tests are
//! re-exported here, as tests/suite/main.rs registers them.

mod contexts;
mod links;
mod ops;

pub use contexts::*;
pub use links::*;
pub use ops::*;

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::harness::*;
use crate::support::policy::write_policy;
use crate::support::policy::DEFAULT_TOML;

/// The host uid and gid of the shipped `user` context's root.
const MAPPED: u32 = 100000;

/// A work area owned by the mapped uid, a root-owned directory beside it holding the sentinels,
/// and the shipped policy with the work area in place of /workspace.
struct Work {
    dir: PathBuf,
    root_only: PathBuf,
    _keep: TempDir,
    policy: PathBuf,
}

impl Work {
    fn new(tag: &str) -> Work {
        Work::with_policy(tag, |text| text)
    }

    /// [`Work::new`] with the policy text changed by `edit` (after /workspace is replaced).
    fn with_policy(tag: &str, edit: impl FnOnce(String) -> String) -> Work {
        let dir = Path::new("/var/lib").join(marker(tag));
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(MAPPED), Some(MAPPED)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let root_only = Path::new("/var/lib").join(marker(&format!("{tag}-root")));
        std::fs::create_dir_all(&root_only).unwrap();
        std::fs::set_permissions(&root_only, std::fs::Permissions::from_mode(0o755)).unwrap();
        let keep = TempDir::new(tag);
        let text = DEFAULT_TOML.replace("\"/workspace\"", &format!("\"{}\"", dir.display()));
        let policy = write_policy(keep.path(), &edit(text));
        Work {
            dir,
            root_only,
            _keep: keep,
            policy,
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn policy(&self) -> &str {
        self.policy.to_str().unwrap()
    }

    /// A root-owned 0644 file under the root-only directory, with `text`.
    fn sentinel(&self, name: &str, text: &str) -> Sentinel {
        let path = self.root_only.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        Sentinel::of(path)
    }

    /// `sbx-exec --policy P file --ctx CTX ARGS...` with `stdin`.
    fn file(&self, ctx: &str, args: &[&str], stdin: &[u8]) -> Run {
        file_call(
            &["--policy", self.policy(), "file", "--ctx", ctx],
            args,
            stdin,
        )
    }

    /// `sh -c script` in context `ctx`, in the work area.
    fn run(&self, ctx: &str, script: &str) -> Run {
        let mut c = Cmd::sbx([
            "--policy",
            self.policy(),
            "--ctx",
            ctx,
            "--",
            "/bin/sh",
            "-c",
            script,
        ]);
        c.command().current_dir(&self.dir);
        c.limit(Duration::from_secs(120)).run()
    }

    /// `sh -c script` in `user` (user code), in the work area; it must succeed.
    fn user(&self, script: &str) -> Result<Run, String> {
        let r = self.run("user", script);
        r.expect_code(0, &format!("user code: {script}"))?;
        Ok(r)
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(&self.root_only);
    }
}

/// `sbx-exec FIRST... ARGS...` with `stdin` fed from a thread; killed if it takes over a minute
/// (a FIFO that blocked it would).
fn file_call(first: &[&str], args: &[&str], stdin: &[u8]) -> Run {
    let mut c = Cmd::sbx(first.iter().chain(args)).piped();
    c.command().stdin(Stdio::piped());
    let mut s = c.spawn();
    let mut w = s.stdin.take().unwrap();
    let data = stdin.to_vec();
    let feed = std::thread::spawn(move || {
        let _ = w.write_all(&data);
    });
    let r = s.output();
    let _ = feed.join();
    r
}

/// A file the test owns, and how it was: content, size, inode, mtime.
struct Sentinel {
    path: PathBuf,
    was: (Vec<u8>, u64, u64, i64, i64),
}

impl Sentinel {
    fn of(path: PathBuf) -> Sentinel {
        let was = Sentinel::now(&path);
        Sentinel { path, was }
    }

    fn now(path: &Path) -> (Vec<u8>, u64, u64, i64, i64) {
        let m = std::fs::symlink_metadata(path).unwrap();
        let text = std::fs::read(path).unwrap();
        (text, m.size(), m.ino(), m.mtime(), m.mtime_nsec())
    }

    fn path(&self) -> String {
        self.path.display().to_string()
    }

    /// Fail unless it is exactly as it was.
    fn unchanged(&self, after: &str) -> Result<(), String> {
        let now = Sentinel::now(&self.path);
        check(now == self.was, || {
            format!(
                "{} changed after {after}: {:?} -> {:?}",
                self.path.display(),
                String::from_utf8_lossy(&self.was.0),
                String::from_utf8_lossy(&now.0)
            )
        })
    }
}

/// The JSON error line a failed call ends its stderr with.
fn error_line(r: &Run) -> Result<serde_json::Value, String> {
    let last = r.stderr.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .map_err(|e| format!("the last line of stderr is not JSON ({e}): {}", r.show()))
}

/// Fail unless `r` exited `code` with a JSON error of kind `kind` (one of `kinds`).
fn typed(r: &Run, code: i32, kinds: &[&str], what: &str) -> Result<serde_json::Value, String> {
    r.expect_code(code, what)?;
    let e = error_line(r)?;
    let kind = e["error"].as_str().unwrap_or_default();
    check(kinds.contains(&kind), || {
        format!(
            "{what}: error {kind:?}, expected one of {kinds:?}\n{}",
            r.show()
        )
    })?;
    Ok(e)
}
