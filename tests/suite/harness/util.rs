//! What tests share besides processes: temporary directories, unique names, finding processes
//! in the suite's namespace, waiting for a condition, and `check`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{bin, Cmd};

/// A fresh directory for one test, removed when dropped.
pub struct TempDir(pub PathBuf);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        // Inside the throwaway namespace the suite is always pid 1 or 2: the pid namespace's
        // inode tells concurrent suite runs (other worktrees sharing /tmp) apart.
        let ns = std::fs::metadata("/proc/self/ns/pid").map_or(0, |m| {
            use std::os::unix::fs::MetadataExt;
            m.ino()
        });
        let p =
            std::env::temp_dir().join(format!("sbx-suite-{}-{ns}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Write a file (mode 0600) and return its path.
    pub fn file(&self, name: &str, content: &str) -> PathBuf {
        use std::os::unix::fs::OpenOptionsExt;
        let p = self.0.join(name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&p)
            .unwrap();
        f.write_all(content.as_bytes()).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A unique marker string for this test run (so `ps`/`grep` find only what this test started).
/// A name no other run of the suite uses at the same time (`tag`, the suite's pid-namespace inode
/// and a counter): for names that live outside the suite's namespaces (cgroups, contexts).
pub fn unique_name(tag: &str) -> String {
    let ns = std::fs::metadata("/proc/self/ns/pid").map_or(0, |m| {
        use std::os::unix::fs::MetadataExt;
        m.ino()
    });
    format!("{tag}{ns:x}{}", COUNTER.fetch_add(1, Ordering::SeqCst))
}

pub fn marker(tag: &str) -> String {
    format!(
        "sbxmark{}{}{}",
        tag,
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// Run `sbx-exec` with `secrets` on fd 3 (a 0600 file in a temp dir that lives as long as the
/// returned guard, opened onto fd 3 by /bin/sh).
pub fn sbx_with_secrets(secrets: &str, args: &[&str]) -> (Cmd, TempDir) {
    let dir = TempDir::new("secrets");
    let f = dir.file("secrets", secrets);
    let mut c = Cmd::new("/bin/sh");
    c.command()
        .arg("-c")
        .arg("f=$1; shift; exec \"$@\" 3<\"$f\"")
        .arg("sh")
        .arg(&f)
        .arg(bin())
        .args(args);
    (c, dir)
}

/// Fail with `msg` unless `cond`.
pub fn check(cond: bool, msg: impl FnOnce() -> String) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(msg())
    }
}

/// The processes (in this suite's namespace) with `needle` in their command line.
pub fn processes_with(needle: &str) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| entry.file_name().to_string_lossy().parse::<i32>().ok())
        .filter(|&pid| pid != std::process::id() as i32)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                String::from_utf8_lossy(&c)
                    .replace('\0', " ")
                    .contains(needle)
            })
        })
        .collect()
}

/// The process (in this suite's namespace) whose argv[0] is exactly `name` (`exec -a NAME`).
pub fn process_argv0(name: &str) -> Option<i32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            if cmd.split(|&b| b == 0).next() == Some(name.as_bytes()) {
                return Some(pid);
            }
        }
    }
    None
}

/// The process (in this suite's namespace) whose whole argv is exactly `argv`.
pub fn process_exact(argv: &[&str]) -> Option<i32> {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid = entry.file_name().to_string_lossy().parse::<i32>().ok()?;
            (std::fs::read(format!("/proc/{pid}/cmdline")).ok()? == want).then_some(pid)
        })
}

/// Wait until `cond` holds, up to `limit`.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}
