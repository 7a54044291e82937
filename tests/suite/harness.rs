//! A small test runner for tests that run the real `sbx-exec` binary.
//!
//! Attack tests really attack (`kill -9 -1`, `mount`, writes to /proc) if confinement is broken, so
//! the whole suite first re-executes itself inside a throwaway PID + mount namespace of its own
//! (`unshare --pid --fork --mount-proc --mount --propagation private`): there, a broken sandbox can
//! only hurt the suite. Tests that need namespaces skip where the kernel refuses them, and fail
//! instead when `SBX_REQUIRE_ISOLATION=1`.

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub type TestFn = fn() -> Result<(), String>;

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sbx-exec")
}

/// Outcome of one test.
enum Verdict {
    Pass,
    Fail(String),
    Skip(String),
}

/// Marker error: the kernel refused namespaces and isolation is not required.
pub const SKIP: &str = "\u{1}skip:";

/// Marker error: this host cannot have the thing at all (cgroup v2 on a v1 host): a skip even
/// with `SBX_REQUIRE_ISOLATION=1` or `CI=true`; a CI job on a host that has it runs the test.
pub const SKIP_HOST: &str = "\u{1}skip-host:";

pub fn require_isolation() -> bool {
    std::env::var("SBX_REQUIRE_ISOLATION").as_deref() == Ok("1")
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
    if std::env::var_os("SBX_SUITE_INNER").is_none() {
        if let Some(code) = reexec_in_throwaway_namespace() {
            std::process::exit(code);
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

/// Re-run this binary inside a new PID + mount namespace; `None` when that is not possible and
/// not required (the suite then runs here, and isolation tests skip).
fn reexec_in_throwaway_namespace() -> Option<i32> {
    let me = std::env::current_exe().expect("current_exe");
    let status = Command::new("unshare")
        .args([
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "--mount",
            "--propagation",
            "private",
            "--",
        ])
        .arg(&me)
        .args(std::env::args_os().skip(1))
        .env("SBX_SUITE_INNER", "1")
        .status();
    match status {
        Ok(s) if s.code() == Some(1) || s.code() == Some(0) => Some(s.code().unwrap()),
        other => {
            let why =
                format!("cannot create the suite's throwaway namespace with unshare(1): {other:?}");
            if require_isolation() {
                eprintln!("{why}; SBX_REQUIRE_ISOLATION=1, so the suite fails");
                Some(1)
            } else {
                eprintln!("{why}; running here, isolation tests will skip");
                None
            }
        }
    }
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
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
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

/// Does the kernel let sbx-exec create the default `user` context here? Otherwise skip.
pub fn needs_isolation() -> Result<(), String> {
    static STATE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    STATE
        .get_or_init(|| {
            let r = Cmd::sbx(["--ctx", "user", "--", "true"]).run();
            if r.ok() {
                Ok(())
            } else {
                Err(format!(
                    "{SKIP}namespaces unavailable here: {}",
                    r.stderr.trim()
                ))
            }
        })
        .clone()
}

/// Is any process (in this suite's namespace) running with `needle` in its command line?
pub fn process_with(needle: &str) -> Option<i32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == std::process::id() as i32 {
            continue;
        }
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                return Some(pid);
            }
        }
    }
    None
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
