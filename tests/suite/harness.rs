//! A small test runner for tests that run the real `sbx-exec` binary.
//!
//! Attack tests really attack (`kill -9 -1`, `mount`, writes to /proc) if confinement is broken, so
//! the whole suite first re-executes itself inside a throwaway PID + mount namespace of its own
//! (`unshare --pid --fork --mount-proc --mount --propagation private`): there, a broken sandbox can
//! only hurt the suite. Where that namespace cannot be made (not root, no `unshare`), the suite runs
//! only its tests that attack nothing; every test that launches a sandbox is skipped with the reason
//! (a failure when `SBX_REQUIRE_ISOLATION=1`), and nothing is re-run outside the namespace.
//!
//! A missing tool (psql, aws, bun, zsh, strace, ...) is one rule, [`require_tool`]: skipped with a
//! message locally, a failure under `CI=true` (whose `.ci/run` installs them all).

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub type TestFn = fn() -> Result<(), String>;

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
static STAGE: std::sync::OnceLock<Result<String, String>> = std::sync::OnceLock::new();
static STAGED_BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Directories a staging tmpfs may cover in the suite's own mount namespace: present on most
/// systems, empty or unused by the suite, and neither private nor hidden in any shipped context.
const STAGE_DIRS: &[&str] = &["/mnt", "/srv", "/media"];

/// In the throwaway namespace, before any test: a tmpfs (root-owned, 0755) on the first of
/// [`STAGE_DIRS`] that exists, holding a copy of the binary under test. Tests then depend on
/// nothing of where the repository lives; the host's directory is untouched (the mount exists only
/// in the suite's namespace).
fn stage() {
    STAGE.get_or_init(|| {
        let dir = STAGE_DIRS
            .iter()
            .find(|d| Path::new(d).is_dir())
            .ok_or_else(|| format!("none of {STAGE_DIRS:?} exists to stage the binary on"))?;
        let mounted = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                "mode=0755,size=256m",
                "sbx-suite-stage",
                dir,
            ])
            .status()
            .map_err(|e| format!("mount(8): {e}"))?;
        if !mounted.success() {
            return Err(format!(
                "cannot mount the staging tmpfs on {dir}: {mounted}"
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

/// Outcome of one test.
enum Verdict {
    Pass,
    Fail(String),
    Skip(String),
}

/// Marker error: the test cannot run here because isolation (the suite's throwaway namespace, a
/// kernel feature, root) is missing. A failure under `SBX_REQUIRE_ISOLATION=1`.
pub const SKIP: &str = "\u{1}skip:";

/// Marker error: a tool the test runs is not installed (only [`require_tool`] makes it, and never
/// under `CI=true`).
const SKIP_TOOL: &str = "\u{1}skip-tool:";

/// Marker error: this host cannot have the thing at all (cgroup v2 on a v1 host): a skip even
/// with `SBX_REQUIRE_ISOLATION=1` or `CI=true`; a CI job on a host that has it runs the test.
pub const SKIP_HOST: &str = "\u{1}skip-host:";

pub fn require_isolation() -> bool {
    std::env::var("SBX_REQUIRE_ISOLATION").as_deref() == Ok("1")
}

/// `CI=true`: every tool the suite uses must be installed.
pub fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// The PATH of every command the suite runs (see [`Cmd::new`]), and where [`require_tool`] looks.
pub const SUITE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The tool `name` (a bare name looked up in [`SUITE_PATH`], or an absolute path), or why not: a
/// skip with how to install it, or a failure under `CI=true`.
pub fn require_tool(name: &str) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    let found = if name.contains('/') {
        executable(Path::new(name)).then(|| name.to_string())
    } else {
        SUITE_PATH
            .split(':')
            .map(|d| format!("{d}/{name}"))
            .find(|p| executable(Path::new(p)))
    };
    if let Some(path) = found {
        return Ok(path);
    }
    let base = name.rsplit('/').next().unwrap_or(name);
    let install = match base {
        "psql" => "apt-get install postgresql-client-15",
        "postgres" | "initdb" | "pg_isready" => "apt-get install postgresql-15",
        "aws" | "moto_server" => {
            "python3 -m venv /opt/sbx-test-venv && /opt/sbx-test-venv/bin/pip install awscli 'moto[server]'"
        }
        "bun" => "npm install -g bun",
        "git" => "apt-get install git",
        "groff" => "apt-get install groff-base",
        "man" => "apt-get install man-db",
        "ps" | "pkill" | "pgrep" => "apt-get install procps",
        "unshare" | "setpriv" | "mount" => "apt-get install util-linux",
        "jupyter" => "pip install jupyter",
        _ => "apt-get install it",
    };
    let why = format!("{name} is not installed (install: {install}; .ci/run does)");
    if in_ci() {
        Err(format!(
            "{why}, and CI=true requires every tool the suite uses"
        ))
    } else {
        Err(format!("{SKIP_TOOL}{why}"))
    }
}

/// Run the suite: re-exec into a throwaway namespace if not there yet, then run each test.
pub fn main(tests: &[(&str, TestFn)]) {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if std::env::args().any(|a| a == "--list") {
        for (name, _) in tests {
            println!("{name}: test");
        }
        return;
    }
    if std::env::var_os(INNER).is_none() {
        match reexec_in_throwaway_namespace() {
            // The suite ran in the namespace: its status is the answer, whatever it is.
            Ok(code) => std::process::exit(code),
            Err(why) => {
                let then = if require_isolation() {
                    "fail"
                } else {
                    "are skipped"
                };
                eprintln!(
                    "{why}\nrunning only the tests that launch no sandbox here; the others {then}"
                );
                let _ = NOT_ISOLATED.set(why);
            }
        }
    }
    if std::env::var_os(INNER).is_some() {
        stage();
        if let Some(Err(why)) = STAGE.get() {
            eprintln!("cannot stage the binary: {why}");
            std::process::exit(1);
        }
    }
    let (mut pass, mut fail, mut skipped) = (0, 0, 0);
    let mut failures = Vec::new();
    for (name, test) in tests {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let start = Instant::now();
        let verdict = match std::panic::catch_unwind(test) {
            Ok(Ok(())) => Verdict::Pass,
            Ok(Err(e)) if e.starts_with(SKIP_TOOL) => {
                Verdict::Skip(e.trim_start_matches(SKIP_TOOL).to_string())
            }
            Ok(Err(e)) if e.starts_with(SKIP_HOST) => {
                Verdict::Skip(e.trim_start_matches(SKIP_HOST).to_string())
            }
            Ok(Err(e)) if e.starts_with(SKIP) => {
                let why = e.trim_start_matches(SKIP).to_string();
                if require_isolation() {
                    Verdict::Fail(format!("SBX_REQUIRE_ISOLATION=1 but skipped: {why}"))
                } else {
                    Verdict::Skip(why)
                }
            }
            Ok(Err(e)) => Verdict::Fail(e),
            Err(p) => Verdict::Fail(
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panicked".into()),
            ),
        };
        let ms = start.elapsed().as_millis();
        match verdict {
            Verdict::Pass => {
                pass += 1;
                println!("test {name} ... ok ({ms} ms)");
            }
            Verdict::Skip(why) => {
                skipped += 1;
                println!("test {name} ... skipped: {why}");
            }
            Verdict::Fail(why) => {
                fail += 1;
                println!("test {name} ... FAILED ({ms} ms)");
                failures.push((name.to_string(), why));
            }
        }
        let _ = std::io::stdout().flush();
    }
    for (name, why) in &failures {
        println!("\n---- {name} ----\n{why}");
    }
    println!("\n{pass} passed, {fail} failed, {skipped} skipped");
    std::process::exit(if fail > 0 { 1 } else { 0 });
}

/// Set (to the outer namespaces) in the re-executed suite.
const INNER: &str = "SBX_SUITE_INNER";

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
static NOT_ISOLATED: std::sync::OnceLock<String> = std::sync::OnceLock::new();

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
/// once the suite has started inside, its result stands and it is never run again outside.
fn reexec_in_throwaway_namespace() -> Result<i32, String> {
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
pub fn in_throwaway_namespace() -> Result<(), String> {
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

/// A finished run of a command.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// Describe this run for an error message.
    pub fn show(&self) -> String {
        format!(
            "code {:?} signal {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.signal, self.stdout, self.stderr
        )
    }

    /// Fail unless the exit code is `code`.
    pub fn expect_code(&self, code: i32, what: &str) -> Result<&Self, String> {
        if self.code == Some(code) {
            Ok(self)
        } else {
            Err(format!("{what}: expected exit {code}, got {}", self.show()))
        }
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code(),
            signal: o.status.signal(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// A command to run with a clean, predictable environment, a stdin of /dev/null, and a time limit.
pub struct Cmd {
    cmd: Command,
    stdin: Option<Vec<u8>>,
    limit: Duration,
}

impl Cmd {
    pub fn new(program: impl AsRef<OsStr>) -> Cmd {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("PATH", SUITE_PATH)
            .env("LANG", "C.UTF-8")
            .current_dir("/");
        Cmd {
            cmd,
            stdin: None,
            limit: Duration::from_secs(60),
        }
    }

    /// `sbx-exec ARGS...`
    pub fn sbx<I, S>(args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = Cmd::new(bin());
        c.cmd.args(args);
        c
    }

    /// `sh -c SCRIPT` (outside any sandbox: the control side of a test).
    pub fn sh(script: &str) -> Cmd {
        let mut c = Cmd::new("/bin/sh");
        c.cmd.args(["-c", script]);
        c
    }

    pub fn env(mut self, k: &str, v: &str) -> Cmd {
        self.cmd.env(k, v);
        self
    }

    pub fn limit(mut self, d: Duration) -> Cmd {
        self.limit = d;
        self
    }

    pub fn command(&mut self) -> &mut Command {
        &mut self.cmd
    }

    /// Run to completion (killed if it exceeds its time limit).
    pub fn run(mut self) -> Run {
        self.cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        self.cmd.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = self
            .cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {:?}: {e}", self.cmd));
        if let Some(data) = self.stdin.take() {
            let mut w = child.stdin.take().unwrap();
            std::thread::spawn(move || {
                let _ = w.write_all(&data);
            });
        }
        let pid = child.id() as i32;
        let limit = self.limit;
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let d2 = done.clone();
        std::thread::spawn(move || {
            let end = Instant::now() + limit;
            while Instant::now() < end {
                if d2.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if !d2.load(Ordering::SeqCst) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        });
        let out = child.wait_with_output().expect("wait");
        done.store(true, Ordering::SeqCst);
        out.into()
    }
}

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

/// May this test launch sandboxes? Only inside the suite's throwaway namespace (otherwise a skip,
/// a failure under `SBX_REQUIRE_ISOLATION=1`), where the kernel gives the `user` context's
/// namespaces (checked with unshare(1), independently of the binary under test). If the kernel
/// gives them and `sbx-exec --ctx user -- true` still fails, that is a failure, not a skip.
pub fn needs_isolation() -> Result<(), String> {
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
