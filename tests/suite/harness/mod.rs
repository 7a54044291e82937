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
//!
//! Nothing a test does can stall the run: every process it starts goes through [`Cmd`] (to the end,
//! or in the background as a [`Spawned`]) with a time limit, as the leader of a process group of
//! its own; each test runs on a thread of its own under a watchdog ([`run_one`]): past the test's
//! deadline the processes it started are killed with their groups and the test fails naming
//! them. And none can be forgotten: [`every_suite_test_is_registered`] fails for a test that
//! tests/suite/main.rs does not list.

mod ns;
mod process;
mod registry;
mod rss;
mod util;

pub use ns::*;
pub use process::*;
pub use registry::*;
pub use rss::{measured, peak_kib};
pub use util::*;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

pub type TestFn = fn() -> Result<(), String>;

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
    rss::waiter_main();
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
    let _ = REGISTERED.set(tests.iter().map(|(n, _)| n.to_string()).collect());
    let deadline = test_deadline();
    let (mut pass, mut fail, mut skipped) = (0, 0, 0);
    let mut failures = Vec::new();
    for (name, test) in tests {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let start = Instant::now();
        let verdict = run_one(name, *test, deadline);
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

/// The names registered with [`main`], for [`every_suite_test_is_registered`].
static REGISTERED: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

/// How long one test may take: `SBX_SUITE_TEST_TIMEOUT` seconds, else 5 minutes (the longest
/// test took 13 s on a 2-core machine; every command a test runs has a limit of its own, 60 s
/// unless set).
fn test_deadline() -> Duration {
    let secs = std::env::var("SBX_SUITE_TEST_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    Duration::from_secs(secs)
}

/// Run one test on a thread of its own, watched: past `deadline`, every process it started that
/// is still running is killed (with its process group), which ends most waits; the test fails
/// naming them, and if its thread is still blocked 10 s later the suite goes on without it. After
/// every test, whatever it started and left running is killed.
fn run_one(name: &str, test: TestFn, deadline: Duration) -> Verdict {
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name(name.to_string())
        .stack_size(8 << 20)
        .spawn(move || {
            let _ = tx.send(std::panic::catch_unwind(test));
        });
    if let Err(e) = spawned {
        return Verdict::Fail(format!("cannot start the test's thread: {e}"));
    }
    let outcome = match rx.recv_timeout(deadline) {
        Ok(outcome) => outcome,
        Err(_) => {
            let killed = kill_live();
            let listed = if killed.is_empty() {
                "none: it was not waiting for a process the suite started".to_string()
            } else {
                killed.join("\n  ")
            };
            let then = match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(Ok(Ok(()))) => "it then returned Ok".to_string(),
                Ok(Ok(Err(e))) => format!("it then returned: {e}"),
                Ok(Err(p)) => format!("it then panicked: {}", panic_text(&p)),
                Err(_) => "its thread is still blocked; the suite goes on without it".to_string(),
            };
            return Verdict::Fail(format!(
                "hung: the test did not end within {deadline:?} (SBX_SUITE_TEST_TIMEOUT); \
                 processes it started that were still running, killed with their groups:\n  \
                 {listed}\n{then}"
            ));
        }
    };
    kill_live();
    match outcome {
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
        Err(p) => Verdict::Fail(panic_text(&p)),
    }
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panicked".into())
}
