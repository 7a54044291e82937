//! The suite's throwaway PID + mount namespace (the whole suite re-executes itself in one before
//! any test, so that a broken sandbox can only hurt the suite) and the copy of the binary under
//! test staged on a tmpfs there.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{check, Cmd, SKIP};

/// The binary under test: inside the suite's throwaway namespace, its copy on the staging tmpfs
/// ([`stage`]), which every context sees wherever the repository is cloned (a clone under /root or
/// /tmp is covered by the contexts' private tmpfs mounts); outside, the one cargo built.
pub fn bin() -> &'static str {
    match STAGE.get() {
        Some(Ok(dir)) => STAGED_BIN.get_or_init(|| format!("{dir}/bin/sbx-exec")),
        _ => env!("CARGO_BIN_EXE_sbx-exec"),
    }
}

/// The staging directory's path, or why there is none.
pub(super) static STAGE: std::sync::OnceLock<Result<String, String>> = std::sync::OnceLock::new();
static STAGED_BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Directories a staging tmpfs may cover in the suite's own mount namespace: present on most
/// systems, empty or unused by the suite, and neither private nor hidden in any shipped context.
const STAGE_DIRS: &[&str] = &["/mnt", "/srv", "/media"];

/// In the throwaway namespace, before any test: a tmpfs (root-owned, 0755) on the first of
/// [`STAGE_DIRS`] that exists, holding a copy of the binary under test. Tests then depend on
/// nothing of where the repository lives; the host's directory is untouched (the mount exists only
/// in the suite's namespace).
pub(super) fn stage() {
    STAGE.get_or_init(|| {
        let dir = STAGE_DIRS
            .iter()
            .find(|d| Path::new(d).is_dir())
            .ok_or_else(|| format!("none of {STAGE_DIRS:?} exists to stage the binary on"))?;
        let mounted = Cmd::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                "mode=0755,size=256m",
                "sbx-suite-stage",
                dir,
            ])
            .run();
        if !mounted.ok() {
            return Err(format!(
                "cannot mount the staging tmpfs on {dir}: {}",
                mounted.show()
            ));
        }
        let to = Path::new(dir).join("bin");
        std::fs::create_dir_all(&to).map_err(|e| format!("{}: {e}", to.display()))?;
        std::fs::copy(env!("CARGO_BIN_EXE_sbx-exec"), to.join("sbx-exec"))
            .map_err(|e| format!("copying the binary to {}: {e}", to.display()))?;
        Ok(dir.to_string())
    });
}

/// A file of the repository (`rel`, e.g. "examples/jupyter/serve.py") copied to the staging tmpfs,
/// where every context sees it; outside the throwaway namespace, the repository's own.
pub fn staged(rel: &str) -> Result<PathBuf, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    let Some(Ok(dir)) = STAGE.get() else {
        return Ok(src);
    };
    let dst = Path::new(dir).join("repo").join(rel);
    if !dst.exists() {
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::copy(&src, &dst).map_err(|e| format!("staging {rel}: {e}"))?;
    }
    Ok(dst)
}

/// Set (to the outer namespaces) in the re-executed suite.
pub(super) const INNER: &str = "SBX_SUITE_INNER";

/// `unshare(1)` arguments for the suite's throwaway namespace.
const UNSHARE: &[&str] = &[
    "--pid",
    "--fork",
    "--kill-child",
    "--mount-proc",
    "--mount",
    "--propagation",
    "private",
    "--",
];

/// Why this process is not in the throwaway namespace, when the re-exec was not possible.
pub(super) static NOT_ISOLATED: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// This process's pid and mount namespaces, as `/proc/self/ns` names them.
fn own_namespaces() -> String {
    ["pid", "mnt"]
        .iter()
        .map(|ns| {
            std::fs::read_link(format!("/proc/self/ns/{ns}"))
                .map(|l| l.display().to_string())
                .unwrap_or_else(|_| format!("{ns}:?"))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Re-run this binary inside a new PID + mount namespace and return its exit status. An error (the
/// suite then runs only what attacks nothing, here) only when `unshare` cannot make the namespace:
/// once the suite has started inside, its result stands and it is never run again outside. (The
/// two processes here are the suite's own driver, before any test: not under a test's watchdog.)
pub(super) fn reexec_in_throwaway_namespace() -> Result<i32, String> {
    let probe = Command::new("unshare")
        .args(UNSHARE)
        .arg("true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            return Err(format!(
                "cannot create the suite's throwaway PID + mount namespace (unshare {}: {:?}): {}",
                UNSHARE.join(" "),
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            ))
        }
        Err(e) => {
            return Err(format!(
                "cannot create the suite's throwaway PID + mount namespace: unshare(1): {e}"
            ))
        }
    }
    let me = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let status = Command::new("unshare")
        .args(UNSHARE)
        .arg(&me)
        .args(std::env::args_os().skip(1))
        .env(INNER, own_namespaces())
        .status();
    Ok(match status {
        Ok(s) => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)),
        Err(e) => {
            eprintln!("cannot run the suite under unshare(1): {e}");
            1
        }
    })
}

/// Is this the suite inside its throwaway namespace? It must be pid 1 of a PID namespace, in a
/// mount namespace, both other than those of the process that re-executed it.
pub(crate) fn in_throwaway_namespace() -> Result<(), String> {
    static STATE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    STATE
        .get_or_init(|| {
            if NOT_ISOLATED.get().is_some() {
                return Err(format!(
                    "{SKIP}not run outside the suite's throwaway namespace, which could not be made \
                     (the reason is at the top of the output)"
                ));
            }
            let Some(outer) = std::env::var_os(INNER) else {
                return Err(format!("{SKIP}not in the suite's throwaway namespace"));
            };
            let outer = outer.to_string_lossy().into_owned();
            let outer: Vec<&str> = outer.split(' ').collect();
            let ours = own_namespaces();
            let ours: Vec<&str> = ours.split(' ').collect();
            if std::process::id() != 1 || outer.len() != 2 || ours.iter().any(|n| outer.contains(n)) {
                return Err(format!(
                    "the suite is not in a throwaway namespace of its own (pid {}, namespaces {ours:?}, outer {outer:?}): \
                     refusing to run attack tests",
                    std::process::id()
                ));
            }
            Ok(())
        })
        .clone()
}

/// May this test launch sandboxes? Only inside the suite's throwaway namespace (otherwise a skip,
/// a failure under `SBX_REQUIRE_ISOLATION=1`), where the kernel gives the `user` context's
/// namespaces (checked with unshare(1), independently of the binary under test). If the kernel
/// gives them and `sbx-exec --ctx user -- true` still fails, that is a failure, not a skip.
pub(crate) fn needs_isolation() -> Result<(), String> {
    in_throwaway_namespace()?;
    static STATE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    STATE
        .get_or_init(|| {
            let mut k = Cmd::new("unshare");
            k.command()
                .args(["--pid", "--fork", "--mount", "--ipc", "--uts", "--", "true"]);
            let k = k.run();
            if !k.ok() {
                return Err(format!(
                    "{SKIP}the kernel refuses pid/mount/ipc/uts namespaces here: {}",
                    k.show()
                ));
            }
            let r = Cmd::sbx(["--ctx", "user", "--", "true"]).run();
            check(r.ok(), || {
                format!(
                    "the kernel gives namespaces (unshare worked) but sbx-exec --ctx user -- true failed: {}",
                    r.show()
                )
            })
        })
        .clone()
}
