//! The hostile caller of a setuid copy: uid/gid 65534 (via setpriv), with supplementary group
//! 4242 where a test needs one; the setuid-root copy of the binary, in a root-owned 0755 directory
//! on a mount without `nosuid`; a test system policy on a private tmpfs on /etc/sbx.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::harness::*;

pub(super) const NOBODY: &str = "65534";
pub(super) const GROUP: &str = "4242";

/// A setuid-root copy of sbx-exec in a directory the unprivileged caller can reach.
pub(super) struct SetuidCopy {
    pub(super) dir: PathBuf,
    pub(super) bin: PathBuf,
}

/// Is `dir` on a mount that honours the setuid bit (no `nosuid` in /proc/self/mountinfo)?
pub(super) fn suid_capable(dir: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut best: Option<(usize, bool)> = None;
    for line in info.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let (Some(mp), Some(opts)) = (f.get(4), f.get(5)) else {
            continue;
        };
        if dir.starts_with(mp) && best.is_none_or(|(len, _)| mp.len() >= len) {
            best = Some((mp.len(), opts.split(',').any(|o| o == "nosuid")));
        }
    }
    best.is_some_and(|(_, nosuid)| !nosuid)
}

impl SetuidCopy {
    pub(super) fn new() -> Result<SetuidCopy, String> {
        // The suite runs in its own pid namespace, so its pid repeats across concurrent suites
        // on one host: the start time keeps their copies apart.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let tag = format!("sbx-suite-{}-{nanos}-setuid", std::process::id());
        let parents = [std::env::temp_dir(), "/var/tmp".into(), "/opt".into()];
        let Some(parent) = parents.iter().find(|p| suid_capable(p)) else {
            return Err("no directory on a mount without nosuid for the setuid copy".into());
        };
        let dir = parent.join(tag);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
        std::fs::set_permissions(&dir, PermissionsExt::from_mode(0o755)).unwrap();
        let bin = dir.join("sbx-exec");
        std::fs::copy(crate::harness::bin(), &bin).map_err(|e| e.to_string())?;
        std::fs::set_permissions(&bin, PermissionsExt::from_mode(0o4755)).unwrap();
        Ok(SetuidCopy { dir, bin })
    }

    pub(super) fn path(&self) -> &str {
        self.bin.to_str().unwrap()
    }
}

impl Drop for SetuidCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Run `program args` as uid/gid 65534, with group 4242 when `group`, and extra variables.
pub(super) fn as_caller(program: &str, group: bool, env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut c = Cmd::new("setpriv");
    let groups = if group {
        format!("--groups={GROUP}")
    } else {
        "--clear-groups".to_string()
    };
    c.command()
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            &groups,
            program,
        ])
        .args(args);
    for (k, v) in env {
        c = c.env(k, v);
    }
    c.run()
}

/// A test system policy at /etc/sbx/policy.toml, on a private tmpfs; gone when dropped.
pub(super) struct SystemPolicy {
    created_dir: bool,
}

impl SystemPolicy {
    pub(super) fn install(
        text: &str,
        file_mode: u32,
        dir_mode: u32,
    ) -> Result<SystemPolicy, String> {
        let created_dir = !Path::new("/etc/sbx").exists();
        if created_dir {
            std::fs::create_dir("/etc/sbx").map_err(|e| format!("mkdir /etc/sbx: {e}"))?;
        }
        let guard = SystemPolicy { created_dir };
        let r = Cmd::new("mount")
            .command_args(&[
                "-t",
                "tmpfs",
                "-o",
                "mode=755,size=1m",
                "sbx-test",
                "/etc/sbx",
            ])
            .run();
        r.expect_code(0, "mount tmpfs on /etc/sbx")?;
        std::fs::write("/etc/sbx/policy.toml", text).unwrap();
        std::fs::set_permissions("/etc/sbx/policy.toml", PermissionsExt::from_mode(file_mode))
            .unwrap();
        std::fs::set_permissions("/etc/sbx", PermissionsExt::from_mode(dir_mode)).unwrap();
        Ok(guard)
    }
}

impl Drop for SystemPolicy {
    fn drop(&mut self) {
        let _ = Cmd::new("umount").command_args(&["/etc/sbx"]).run();
        if self.created_dir {
            let _ = std::fs::remove_dir("/etc/sbx");
        }
    }
}

pub(super) trait CommandArgs {
    fn command_args(self, args: &[&str]) -> Self;
}

impl CommandArgs for Cmd {
    fn command_args(mut self, args: &[&str]) -> Cmd {
        self.command().args(args);
        self
    }
}

pub(super) fn setuid_prereqs() -> Result<SetuidCopy, String> {
    needs_isolation()?;
    if !nix::unistd::geteuid().is_root() {
        return Err(format!("{SKIP}needs root to install a setuid copy"));
    }
    SetuidCopy::new()
}

/// The value of a `/proc/self/status` line, whitespace-normalized.
pub(super) fn status_field(out: &str, key: &str) -> Option<String> {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
}
