//! Nothing lost under faults (issue #19), continued: what callers control (the secrets writer, the
//! status pipe, fd and pids limits), `ctx stop` and keeper deaths with calls in flight, and a
//! runtime directory or /proc that is not what sbx-exec expects. See [`crate::faults`].

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::faults::{nothing_left, policy, recorded_keeper, run_in, snapshot, stop};
use crate::harness::*;

/// `bash -c SCRIPT` with `$0` = sbx-exec and `$1` = the policy.
fn bash(script: &str, pol: &str, limit: u64) -> Run {
    let mut c = Cmd::new("/bin/bash");
    c.command().args(["-c", script, bin(), pol]);
    c.limit(Duration::from_secs(limit)).run()
}

/// Regression (#19, "hangs"): a secrets writer that never closes its pipe gets 125 within
/// `secrets.read_timeout`; one that closes early is an answer, not a hang; and a write end that
/// sbx-exec itself inherited does not deadlock it (it closes inherited fds before reading).
pub fn secrets_writers_cannot_hang_the_call() -> Result<(), String> {
    needs_isolation()?;
    let dir = TempDir::new("faults-secrets");
    let pol = policy(&dir, &[], "secrets.read_timeout = 2\n");
    let before = snapshot();
    let mark = marker("writer");
    let t = Instant::now();
    let r = bash(
        &format!("exec 3< <(echo A=1; exec -a {mark} sleep 30 2>/dev/null); exec \"$0\" --policy \"$1\" --ctx sec --secrets-fd 3 -- true"),
        &pol,
        20,
    );
    let took = t.elapsed();
    if let Some(p) = process_argv0(&mark) {
        let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
    }
    r.expect_code(125, "a writer that never closes")?;
    check(
        r.stderr.contains("did not close --secrets-fd 3 within 2 s")
            && took < Duration::from_secs(6),
        || format!("took {took:?}: {}", r.show()),
    )?;
    // The caller's own process holds the only other write end: sbx-exec inherited it.
    let fifo = dir.path().join("fifo");
    let script = format!(
        "mkfifo {f}; exec 4<>{f} 3<{f}; echo A=inherited >&4; exec \"$0\" --policy \"$1\" --ctx sec --secrets-fd 3 -- sh -c 'echo \"$A\"'",
        f = fifo.display()
    );
    let r = bash(&script, &pol, 10);
    r.expect_code(0, "a write end sbx-exec inherited")?;
    check(r.stdout.trim() == "inherited", || r.show())?;
    // Early close: nothing, or half a line.
    for (what, writer) in [("nothing", "true"), ("half a line", "printf A")] {
        let t = Instant::now();
        let r = bash(
            &format!(
                "exec 3< <({writer}); exec \"$0\" --policy \"$1\" --ctx sec --secrets-fd 3 -- true"
            ),
            &pol,
            10,
        );
        check(
            matches!(r.code, Some(0) | Some(125)) && t.elapsed() < Duration::from_secs(3),
            || format!("writer that sends {what}: {}", r.show()),
        )?;
    }
    nothing_left(&before, "after the secrets writers")
}

/// Regression (#19, "hangs"): `--status-fd` on a full pipe nobody reads does not delay the exit,
/// the records that do not fit are dropped with a warning, and the caller's pipe stays blocking.
pub fn full_status_pipe_does_not_delay_the_exit() -> Result<(), String> {
    needs_isolation()?;
    let python = require_tool("/usr/bin/python3")?;
    let before = snapshot();
    let script = r#"
import fcntl, os, subprocess, sys, time
r, w = os.pipe()
os.set_blocking(w, False)
try:
    while True:
        os.write(w, b"x" * 4096)
except BlockingIOError:
    pass
os.set_blocking(w, True)
t = time.time()
p = subprocess.run([sys.argv[1], "--status-fd", str(w), "--ctx", "user", "--", "true"],
                   pass_fds=(w,), stderr=subprocess.PIPE, timeout=30)
print("rc", p.returncode, "took", round(time.time() - t, 2),
      "blocking", os.get_blocking(w))
sys.stderr.write(p.stderr.decode())
"#;
    let mut c = Cmd::new(python);
    c.command().args(["-c", script, bin()]);
    let r = c.limit(Duration::from_secs(40)).run();
    let f: Vec<&str> = r.stdout.split_whitespace().collect();
    check(f.len() == 6 && f[1] == "0", || r.show())?;
    let took: f64 = f[3].parse().unwrap_or(99.0);
    check(took < 5.0, || {
        format!("the exit waited {took} s: {}", r.show())
    })?;
    check(f[5] == "True", || {
        format!("the caller's pipe was made non-blocking: {}", r.show())
    })?;
    check(r.stderr.contains("--status-fd"), || {
        format!("no warning about the dropped records: {}", r.show())
    })?;
    nothing_left(&before, "after a full status pipe")
}

/// Start `sbx-exec --status-fd 3 ... -- CMD` in the background with fd 3 on the file `status`.
fn in_flight(pol: &str, ctx: &str, status: &std::path::Path, cmd: &[&str]) -> std::process::Child {
    let mut c = Command::new("/bin/sh");
    c.args([
        "-c",
        "s=$1; shift; exec \"$0\" --status-fd 3 \"$@\" 3>\"$s\"",
        bin(),
    ])
    .arg(status)
    .args(["--policy", pol, "--ctx", ctx, "--"])
    .args(cmd)
    .env_clear()
    .env("PATH", SUITE_PATH)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    c.spawn().unwrap()
}

fn finish(child: std::process::Child, limit: Duration) -> Result<(Option<i32>, String), String> {
    let end = Instant::now() + limit;
    let pid = child.id() as i32;
    let waiter = std::thread::spawn(move || child.wait_with_output());
    while !waiter.is_finished() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    if !waiter.is_finished() {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        return Err(format!("an in-flight call did not end within {limit:?}"));
    }
    let out = waiter.join().unwrap().map_err(|e| e.to_string())?;
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[allow(clippy::zombie_processes)] // the call is waited in `finish`, or killed with the suite
/// Regression (#19, "silent ends"): `ctx stop` sticks (calls arriving while it runs get 125 and
/// start no keeper), and a call in flight says on stderr and in its end record that it was stopped.
pub fn stop_sticks_and_tells_calls_in_flight() -> Result<(), String> {
    needs_isolation()?;
    crate::persist::runtime()?;
    let dir = TempDir::new("faults-stop");
    let pol = policy(&dir, &["fkstop"], "");
    let before = snapshot();
    run_in(&pol, "fkstop", &["true"]).expect_code(0, "first call")?;
    let status = dir.path().join("status");
    let call = in_flight(
        &pol,
        "fkstop",
        &status,
        &["sh", "-c", "trap '' TERM; sleep 30 & wait; wait"],
    );
    std::thread::sleep(Duration::from_millis(300));
    let stopper = std::thread::spawn({
        let pol = pol.clone();
        move || stop(&pol, "fkstop")
    });
    std::thread::sleep(Duration::from_millis(500));
    let late = run_in(&pol, "fkstop", &["true"]);
    let s = stopper.join().unwrap();
    s.expect_code(0, "ctx stop")?;
    late.expect_code(125, "a call during ctx stop")?;
    check(late.stderr.contains("is being stopped"), || late.show())?;
    check(recorded_keeper("fkstop").is_none(), || {
        "a call during ctx stop started a new keeper".into()
    })?;
    let (code, err) = finish(call, Duration::from_secs(10))?;
    check(code.is_some_and(|c| c > 128), || {
        format!("in flight: {code:?} {err}")
    })?;
    check(
        err.contains("context \"fkstop\" was stopped (ctx stop) while this command ran"),
        || format!("in flight, no message: {code:?} {err}"),
    )?;
    let records = std::fs::read_to_string(&status).unwrap_or_default();
    check(records.contains("\"reason\":\"stopped\""), || {
        format!("status records: {records}")
    })?;
    nothing_left(&before, "after ctx stop with a call in flight")
}

#[allow(clippy::zombie_processes)] // the calls are waited in `finish`, or killed with the suite
/// A keeper killed with joins in flight: they end with a message naming the cause, and the next
/// call starts a new keeper.
pub fn killed_keeper_ends_calls_in_flight_with_a_message() -> Result<(), String> {
    needs_isolation()?;
    crate::persist::runtime()?;
    let dir = TempDir::new("faults-keeper");
    let pol = policy(&dir, &["fkkeep"], "");
    let before = snapshot();
    run_in(&pol, "fkkeep", &["true"]).expect_code(0, "first call")?;
    let keeper = recorded_keeper("fkkeep").ok_or("no keeper")?;
    let calls: Vec<_> = (0..3)
        .map(|i| {
            let st = dir.path().join(format!("status{i}"));
            (in_flight(&pol, "fkkeep", &st, &["sleep", "30"]), st)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(400));
    kill(Pid::from_raw(keeper), Signal::SIGKILL).map_err(|e| e.to_string())?;
    for (call, st) in calls {
        let (code, err) = finish(call, Duration::from_secs(10))?;
        check(code == Some(137), || format!("in flight: {code:?} {err}"))?;
        check(err.contains("keeper of context \"fkkeep\" died"), || {
            format!("no message: {err}")
        })?;
        let records = std::fs::read_to_string(&st).unwrap_or_default();
        check(records.contains("\"reason\":\"keeper_died\""), || records)?;
    }
    run_in(&pol, "fkkeep", &["true"]).expect_code(0, "the next call")?;
    check(
        recorded_keeper("fkkeep").is_some_and(|k| k != keeper),
        || "no new keeper".into(),
    )?;
    stop(&pol, "fkkeep").expect_code(0, "ctx stop")?;
    nothing_left(&before, "after a keeper killed with calls in flight")
}

/// /run/sbx read-only, full, or missing (each in a mount namespace of its own): a clear 125 naming
/// the file and the errno, no temporary file, no keeper; a missing one is created.
pub fn runtime_dir_faults_name_their_cause() -> Result<(), String> {
    needs_isolation()?;
    let dir = TempDir::new("faults-rundir");
    let pol = policy(&dir, &["fkrun"], "");
    let before = snapshot();
    let cases = [
        ("read-only", "mount -t tmpfs -o ro,mode=0700 x /run/sbx", "Read-only file system"),
        (
            "full",
            "mount -t tmpfs -o size=8k,mode=0700 x /run/sbx && (dd if=/dev/zero of=/run/sbx/fill bs=1k 2>/dev/null; true)",
            "No space left on device",
        ),
        ("missing", "mount -t tmpfs x /run && ! [ -e /run/sbx ]", ""),
    ];
    for (what, setup, cause) in cases {
        let script = format!(
            "mkdir -p /run/sbx && {setup} || exit 99; \"$0\" --policy \"$1\" --ctx fkrun -- true; echo rc=$?; \
             \"$0\" ctx stop fkrun --policy \"$1\" >/dev/null 2>&1; ls -A /run/sbx | grep -v -e '^fill$' -e '[.]lock$'; echo end"
        );
        let mut c = Cmd::new("unshare");
        c.command().args([
            "--mount",
            "--propagation",
            "private",
            "/bin/sh",
            "-c",
            &script,
            bin(),
            &pol,
        ]);
        let r = c.limit(Duration::from_secs(20)).run();
        let left: Vec<&str> = r
            .stdout
            .lines()
            .skip_while(|l| !l.starts_with("rc="))
            .skip(1)
            .take_while(|l| *l != "end")
            .collect();
        if cause.is_empty() {
            check(r.stdout.contains("rc=0"), || {
                format!("{what}: {}", r.show())
            })?;
        } else {
            check(
                r.stdout.contains("rc=125")
                    && r.stderr.contains(cause)
                    && r.stderr.contains("/run/sbx"),
                || format!("{what}: {}", r.show()),
            )?;
        }
        check(left.is_empty(), || {
            format!("{what}: left in /run/sbx: {left:?}")
        })?;
        nothing_left(&before, what)?;
    }
    Ok(())
}

/// Regression (#19, "wrong causes"): no pids left for the caller is EAGAIN and named as a process
/// limit, not a permission problem; an empty /proc is named as such, and `probe` says "no /proc",
/// not "no seccomp".
pub fn limits_and_missing_proc_name_the_real_cause() -> Result<(), String> {
    needs_isolation()?;
    let dir = TempDir::new("faults-causes");
    let pol = policy(&dir, &[], "");
    let before = snapshot();
    let cg = "/sys/fs/cgroup/pids/faults-pids";
    let v2 = "/sys/fs/cgroup/faults-pids";
    let base = if std::path::Path::new("/sys/fs/cgroup/pids").is_dir() {
        cg
    } else {
        v2
    };
    if std::fs::create_dir(base).is_err() && !std::path::Path::new(base).is_dir() {
        return Err(format!("{SKIP_HOST}cannot make a pids cgroup at {base}"));
    }
    std::fs::write(format!("{base}/pids.max"), "1").map_err(|e| format!("pids.max: {e}"))?;
    let script =
        format!("echo $$ > {base}/cgroup.procs && exec \"$0\" --policy \"$1\" --ctx once -- true");
    let r = bash(&script, &pol, 10);
    let _ = std::fs::remove_dir(base);
    r.expect_code(125, "no pids left")?;
    check(
        r.stderr.contains("EAGAIN")
            && !r.stderr.contains("EPERM")
            && !r.stderr.contains("run sbx-exec as root"),
        || format!("pids limit blamed on something else: {}", r.show()),
    )?;
    let script = "mount -t tmpfs none /proc || exit 99; \"$0\" --policy \"$1\" --ctx once -- true; echo rc=$?; \"$0\" probe";
    let mut c = Cmd::new("unshare");
    c.command().args([
        "--mount",
        "--propagation",
        "private",
        "/bin/sh",
        "-c",
        script,
        bin(),
        &pol,
    ]);
    let r = c.limit(Duration::from_secs(20)).run();
    check(
        r.stdout.contains("rc=125") && r.stderr.contains("/proc"),
        || format!("empty /proc: {}", r.show()),
    )?;
    check(
        !r.stderr.contains("/workspace") && !r.stderr.contains("/root"),
        || format!("empty /proc blamed on a directory: {}", r.show()),
    )?;
    check(
        r.stdout.contains("no /proc")
            && !r
                .stdout
                .lines()
                .any(|l| l.starts_with("seccomp:") && l.ends_with("no")),
        || format!("probe with an empty /proc: {}", r.show()),
    )?;
    nothing_left(&before, "after limits and an empty /proc")
}

/// A control plane in a crash loop: while it restarts, the reserved port stays bound by sbx-exec
/// (nobody outside can bind it, and a connection is still taken into its backlog); when
/// control mode gives up, nothing is left and the port is free again. The target notes each start
/// and end in a file: a bind from outside counts as stolen unless every run had already ended
/// (control mode has then given up, and its ports close a moment before it exits).
pub fn control_crash_loop_keeps_the_port() -> Result<(), String> {
    needs_isolation()?;
    let before = snapshot();
    let (port, _) = crate::g3_control::free_ports();
    let dir = TempDir::new("faults-control");
    let text = format!(
        "version = 1\n[context.control]\nenv.allow = [\"*\"]\nenv.hygiene = false\nsecurity.caps = [\"ALL\"]\n\
         security.no_new_privs = false\n[context.control.supervise]\nports = [{port}]\nmax_restarts = 4\nrestart_delay_ms = 20\n"
    );
    let pol = dir.file("policy.toml", &text).display().to_string();
    let runs_log = dir.path().join("runs");
    let target = format!(
        "echo start >> {0}; sleep 0.05; echo end >> {0}; exit 3",
        runs_log.display()
    );
    let ended = || {
        std::fs::read_to_string(&runs_log)
            .unwrap_or_default()
            .lines()
            .filter(|l| *l == "end")
            .count()
    };
    let mut child = Command::new(bin())
        .args([
            "--policy", &pol, "--ctx", "control", "--", "sh", "-c", &target,
        ])
        .env_clear()
        .env("PATH", SUITE_PATH)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let (mut probes, mut stolen, mut refused) = (0, 0, 0);
    std::thread::sleep(Duration::from_millis(30));
    let end = Instant::now() + Duration::from_secs(20);
    while child.try_wait().map_err(|e| e.to_string())?.is_none() && Instant::now() < end {
        probes += 1;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            || std::net::TcpListener::bind(("::", port)).is_ok()
        {
            if ended() < 5 {
                stolen += 1;
            } else {
                break;
            }
        }
        // Connecting once shows the port is still listening (nobody accepts: the backlog
        // would fill if every probe connected).
        if probes == 1 {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err() {
                refused += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    check(out.status.code() == Some(3), || {
        format!(
            "control mode ended with {:?}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    check(ended() == 5, || {
        format!("the target ran {} times, not 1 + max_restarts (4)", ended())
    })?;
    check(probes >= 10 && stolen == 0 && refused == 0, || {
        format!("{probes} probes during the restarts: the port was bound from outside {stolen} times, refused {refused} times")
    })?;
    check(
        std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
        || "control: the port is not free after control mode ended".into(),
    )?;
    nothing_left(&before, "after a control-plane crash loop")
}

/// Issue #26 ("no unbounded write"): `--status-fd` on a terminal nobody reads, its output stopped
/// (`tcflow(TCOOFF)`) or its buffer full, does not hold the call: it ends within a few seconds
/// with the command's status, the records dropped with a warning, and the caller's terminal stays
/// blocking. Control: the same pty, read, gets both records.
pub fn status_fd_on_a_stuck_terminal_does_not_block() -> Result<(), String> {
    needs_isolation()?;
    let python = require_tool("/usr/bin/python3")?;
    let before = snapshot();
    let script = r#"
import os, select, subprocess, sys, termios, time
mode = sys.argv[2]
m, s = os.openpty()
if mode == "stopped":
    termios.tcflow(s, termios.TCOOFF)
elif mode == "full":
    # Filled until it takes nothing more, even after the pty moved what it could to the master.
    os.set_blocking(s, False)
    while True:
        n = 0
        for size in (1024, 1):
            try:
                while True:
                    n += os.write(s, b"x" * size)
            except BlockingIOError:
                pass
        if n == 0:
            break
        time.sleep(0.2)
    os.set_blocking(s, True)
t = time.time()
try:
    p = subprocess.run([sys.argv[1], "--status-fd", str(s), "--ctx", "user", "--", "sh", "-c", "exit 3"],
                       pass_fds=(s,), stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=20)
    rc, err = p.returncode, p.stderr.decode()
except subprocess.TimeoutExpired as e:
    rc, err = "timeout", (e.stderr or b"").decode()
took = round(time.time() - t, 2)
got = b""
if mode == "read":
    while select.select([m], [], [], 0.5)[0]:
        got += os.read(m, 65536)
print("rc", rc, "took", took, "blocking", os.get_blocking(s))
print(got.decode(errors="replace").replace("\r", ""))
sys.stderr.write(err)
"#;
    let run = |mode: &str| {
        let mut c = Cmd::new(&python);
        c.command().args(["-c", script, bin(), mode]);
        let r = c.limit(Duration::from_secs(40)).run();
        let head: Vec<String> = r
            .stdout
            .lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .map(String::from)
            .collect();
        (r, head)
    };
    for mode in ["stopped", "full"] {
        let (r, f) = run(mode);
        check(f.len() == 6 && f[1] == "3", || {
            format!("{mode} terminal: not the command's status: {}", r.show())
        })?;
        let took: f64 = f[3].parse().unwrap_or(99.0);
        check(took < 5.0, || {
            format!("{mode} terminal: the call took {took} s: {}", r.show())
        })?;
        check(f[5] == "True", || {
            format!(
                "{mode} terminal: the caller's terminal was made non-blocking: {}",
                r.show()
            )
        })?;
        check(
            r.stderr.contains("--status-fd") && r.stderr.contains("terminal"),
            || {
                format!(
                    "{mode} terminal: no warning about the dropped records: {}",
                    r.show()
                )
            },
        )?;
    }
    let (r, f) = run("read");
    check(f.len() == 6 && f[1] == "3", || r.show())?;
    check(
        r.stdout.contains("{\"child-pid\":") && r.stdout.contains("{\"exit-code\":3,"),
        || format!("a terminal that is read got no records: {}", r.show()),
    )?;
    nothing_left(&before, "after a stuck terminal as the status stream")
}

/// Run `sbx-exec ARGS` with a 1 GB address-space limit (`ulimit -v`); the run and how long it took.
fn limited_memory(args: &[&str]) -> (Run, Duration) {
    let mut c = Cmd::new("/bin/bash");
    c.command()
        .args(["-c", "ulimit -v 1048576 && exec \"$@\"", "bash", bin()])
        .args(args);
    let t = Instant::now();
    let r = c.limit(Duration::from_secs(15)).run();
    (r, t.elapsed())
}

/// Issue #26 ("no unbounded read"): `--policy` (and `policy check`, `policy show`, `probe`) reads
/// only a regular file of at most 4 MiB and never blocks: /dev/zero, a FIFO with no writer and a
/// 100 MB policy file, each under a 1 GB address-space limit, are refused with 125 within 5 s,
/// naming what the file is and the fix; text that is not UTF-8 is named with its line and column,
/// a key nested 20,000 deep with its line. Control: the same calls with a normal policy work.
pub fn policy_reads_are_bounded_and_never_block() -> Result<(), String> {
    use std::io::Write;
    needs_isolation()?;
    let dir = TempDir::new("faults-policy-read");
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .map_err(|e| format!("mkfifo: {e}"))?;
    let good = crate::policy_tests::write_policy(dir.path(), crate::policy_tests::DEFAULT_TOML);
    // A valid policy followed by 100 MB of comments: without the cap it is read and accepted.
    let big = dir.path().join("big.toml");
    {
        let mut f = std::fs::File::create(&big).map_err(|e| e.to_string())?;
        f.write_all(crate::policy_tests::DEFAULT_TOML.as_bytes())
            .map_err(|e| e.to_string())?;
        let chunk = "# padding padding padding padding padding padding padding padding padding\n"
            .repeat(1 << 14);
        while f.metadata().map_err(|e| e.to_string())?.len() < 100_000_000 {
            f.write_all(chunk.as_bytes()).map_err(|e| e.to_string())?;
        }
    }
    let (fifo, good, big) = (
        fifo.display().to_string(),
        good.display().to_string(),
        big.display().to_string(),
    );
    let calls = |f: &str| -> Vec<Vec<String>> {
        [
            vec!["--policy", f, "--ctx", "user", "--", "true"],
            vec!["policy", "check", f],
            vec!["--policy", f, "policy", "show"],
            vec!["--policy", f, "probe"],
        ]
        .into_iter()
        .map(|v| v.into_iter().map(String::from).collect())
        .collect()
    };
    for (what, file, says) in [
        (
            "/dev/zero",
            "/dev/zero",
            "it is a character device, not a regular file",
        ),
        (
            "a FIFO with no writer",
            fifo.as_str(),
            "it is a FIFO (named pipe), not a regular file",
        ),
        (
            "a 100 MB file",
            big.as_str(),
            "more than the 4 MiB a policy file may have",
        ),
    ] {
        for args in calls(file) {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let (r, took) = limited_memory(&args);
            check(
                r.code == Some(125)
                    && took < Duration::from_secs(5)
                    && r.stderr.contains(&format!("cannot read policy {file}: "))
                    && r.stderr.contains(says)
                    && r.stderr.contains("give the path of a policy file"),
                || format!("{what}, {args:?}: took {took:?}: {}", r.show()),
            )?;
        }
    }
    // Where the text goes wrong: the line and column of a byte that is not UTF-8, the line of a
    // key nested too deep (toml's own error named neither).
    let latin = dir.path().join("latin.toml");
    std::fs::write(
        &latin,
        b"version = 1\n[context.x]\ndescription = \"caf\xe9\"\n",
    )
    .map_err(|e| e.to_string())?;
    let deep = dir.file(
        "deep.toml",
        &format!("version = 1\n# deep\n{} = 1\n", vec!["a"; 20_000].join(".")),
    );
    for (file, says) in [
        (
            latin.display().to_string(),
            ":3:19: not UTF-8 (byte 0xe9 here)",
        ),
        (
            deep.display().to_string(),
            ":3:1: keys nest more than 32 levels deep",
        ),
    ] {
        for args in calls(&file) {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let (r, _) = limited_memory(&args);
            check(r.code == Some(125) && r.stderr.contains(says), || {
                format!("{args:?}: {}", r.show())
            })?;
        }
    }
    // Control: a normal policy file, under the same limit.
    for args in calls(&good) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (r, _) = limited_memory(&args);
        r.expect_code(0, &format!("control {args:?}"))?;
    }
    Ok(())
}

/// Issue #26: a persistent context is joined even where /run/sbx is read-only (the lock is taken
/// on a read-only descriptor: `flock` needs no write access), here a read-only bind of it in a
/// mount namespace of the call's own. Control: a first call of another persistent context
/// there, which must write its state, is refused with 125 naming the read-only directory, and
/// starts no keeper.
pub fn joins_work_on_a_read_only_runtime_dir() -> Result<(), String> {
    needs_isolation()?;
    crate::persist::runtime()?;
    let dir = TempDir::new("faults-rojoin");
    let (running, fresh) = (unique_name("fkro"), unique_name("fkrofirst"));
    let pol = policy(&dir, &[&running, &fresh], "");
    let before = snapshot();
    run_in(&pol, &running, &["true"]).expect_code(0, "first call")?;
    let script = "mount -o remount,bind,ro /run/sbx || exit 99; \
                  touch /run/sbx/probe 2>/dev/null && echo writable; \
                  \"$0\" --policy \"$1\" --ctx \"$2\" -- sh -c 'echo joined'; echo rc=$?; \
                  \"$0\" --policy \"$1\" --ctx \"$3\" -- true; echo rc=$?";
    let mut c = Cmd::new("unshare");
    c.command().args([
        "--mount",
        "--propagation",
        "private",
        "/bin/sh",
        "-c",
        script,
        bin(),
        &pol,
        &running,
        &fresh,
    ]);
    let r = c.limit(Duration::from_secs(30)).run();
    let lines: Vec<&str> = r.stdout.lines().collect();
    let result = check(lines == ["joined", "rc=0", "rc=125"], || {
        format!(
            "a join and a first call on a read-only /run/sbx: {}",
            r.show()
        )
    })
    .and_then(|()| {
        check(
            r.stderr.contains(&format!("/run/sbx/{fresh}.lock"))
                && r.stderr.contains("read-only")
                && r.stderr.contains("remount it read-write"),
            || {
                format!(
                    "the refusal does not name the read-only directory: {}",
                    r.show()
                )
            },
        )
    })
    .and_then(|()| {
        check(recorded_keeper(&fresh).is_none(), || {
            "a first call on a read-only /run/sbx left a keeper".into()
        })
    });
    stop(&pol, &running).expect_code(0, "ctx stop")?;
    stop(&pol, &fresh);
    result?;
    nothing_left(&before, "after joins on a read-only /run/sbx")
}

/// The cgroup leaves (`sbx-NAME-PID`) of context `name`, anywhere in the cgroup tree.
fn leaves_of(name: &str) -> Vec<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, depth: usize, prefix: &str, out: &mut Vec<std::path::PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if e.file_name().to_string_lossy().starts_with(prefix) {
                out.push(e.path());
            }
            if depth > 0 {
                walk(&e.path(), depth - 1, prefix, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(
        std::path::Path::new("/sys/fs/cgroup"),
        8,
        &format!("sbx-{name}-"),
        &mut out,
    );
    out
}

/// Issue #26: a one-shot call that fails after its cgroup is made removes it before returning:
/// here `net.publish` of a port the test holds on 127.0.0.1 (refused saying it is in use), and
/// the same port with too few fds left to bind it (refused naming EMFILE and the limit, not a
/// port in use). Control: the same context with the port free makes its leaf while it runs.
pub fn refused_one_shot_calls_leave_no_cgroup() -> Result<(), String> {
    needs_isolation()?;
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let v1 = std::path::Path::new("/sys/fs/cgroup/pids/cgroup.procs").exists();
    if !(v1 || v2) {
        return Err(format!("{SKIP_HOST}no pids cgroup controller here"));
    }
    let dir = TempDir::new("faults-pubcg");
    let name = unique_name("fkpub");
    let port = crate::g3_control::free_ports().0;
    let text = format!(
        "version = 1\n[context.{name}]\nnamespaces = [\"pid\", \"mount\", \"ipc\", \"uts\"]\n\
         env.allow = [\"PATH\"]\nfs.hide = [\"/run/sbx\"]\nsecurity.seccomp = \"default\"\n\
         net = {{ mode = \"private\", publish = [{port}] }}\n[context.{name}.limits]\npids_max = 64\n"
    );
    let pol = dir.file("policy.toml", &text).display().to_string();
    let before = snapshot();
    // Control: the port free, the call makes its leaf and removes it at the end.
    let mut call = Command::new(bin())
        .args(["--policy", &pol, "--ctx", &name, "--", "sleep", "1"])
        .env_clear()
        .env("PATH", SUITE_PATH)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let seen = wait_until(Duration::from_secs(5), || !leaves_of(&name).is_empty());
    let code = call.wait().map_err(|e| e.to_string())?.code();
    check(seen && code == Some(0), || {
        format!("control: leaf seen {seen}, exit {code:?}")
    })?;
    check(leaves_of(&name).is_empty(), || {
        format!("control: leaves left: {:?}", leaves_of(&name))
    })?;
    // The port in use.
    let held = std::net::TcpListener::bind(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    let r = run_in(&pol, &name, &["true"]);
    let left = leaves_of(&name);
    r.expect_code(125, "a published port in use")?;
    check(
        r.stderr.contains(&format!("cannot publish port {port}")) && r.stderr.contains("in use"),
        || r.show(),
    )?;
    check(left.is_empty(), || {
        format!("a call refused for a port in use left {left:?}")
    })?;
    drop(held);
    // Too few fds: some limit lets the launch reach the bind and no further.
    let mut reached = Vec::new();
    for n in 8..64 {
        let script = format!("ulimit -n {n} && exec \"$0\" --policy \"$1\" --ctx {name} -- true");
        let r = bash(&script, &pol, 10);
        let left = leaves_of(&name);
        check(left.is_empty(), || {
            format!("a call with {n} fds left {left:?}: {}", r.show())
        })?;
        if r.stderr.contains(&format!("cannot publish port {port}")) {
            check(
                r.code == Some(125)
                    && r.stderr.contains("EMFILE")
                    && r.stderr.contains("RLIMIT_NOFILE")
                    && !r.stderr.contains("in use"),
                || format!("with {n} fds: {}", r.show()),
            )?;
            reached.push(n);
        }
        if r.code == Some(0) {
            break;
        }
    }
    check(!reached.is_empty(), || {
        "no fd limit made the bind of the published port fail".into()
    })?;
    nothing_left(&before, "after refused one-shot calls with limits")
}

/// Issue #26: a context that names the secrets it needs (`secrets.require`) refuses, with 125 and
/// before anything runs, a call without `--secrets-fd`, with an empty stream or with one that
/// lacks a required name, naming the missing ones and never a value. Control: every required
/// secret handed, the command runs and gets them.
pub fn required_secrets_refuse_calls_that_lack_them() -> Result<(), String> {
    needs_isolation()?;
    let dir = TempDir::new("faults-require");
    let text = "version = 1\n[context.req]\nnamespaces = [\"pid\", \"mount\", \"ipc\", \"uts\"]\n\
                env.allow = [\"PATH\"]\nfs.hide = [\"/run/sbx\"]\nsecurity.seccomp = \"default\"\n\
                [context.req.secrets]\nallow = [\"PGPASSWORD\", \"TOKEN\", \"EXTRA\"]\n\
                require = [\"PGPASSWORD\", \"TOKEN\"]\n";
    let pol = dir.file("policy.toml", text).display().to_string();
    const VALUE: &str = "sekrit-value-9f2c";
    let status = dir.path().join("status");
    let call = |secrets: Option<&str>| {
        let (fd, redirect) = match secrets {
            Some(s) => {
                let f = dir.file("secrets", s);
                ("--secrets-fd 3", format!("3<{}", f.display()))
            }
            None => ("", String::new()),
        };
        let script = format!(
            "exec \"$0\" --policy \"$1\" --ctx req --status-fd 4 {fd} -- sh -c 'echo \"ran:$PGPASSWORD:$TOKEN\"' {redirect} 4>{}",
            status.display()
        );
        let r = bash(&script, &pol, 20);
        let records = std::fs::read_to_string(&status).unwrap_or_default();
        (r, records)
    };
    for (what, secrets, says) in [
        (
            "no --secrets-fd",
            None,
            "requires the secrets PGPASSWORD, TOKEN ([context.req.secrets] require), but no --secrets-fd was given",
        ),
        (
            "an empty stream",
            Some(""),
            "requires the secrets PGPASSWORD, TOKEN ([context.req.secrets] require), but the secrets stream is empty",
        ),
        (
            "one of two",
            Some(&format!("PGPASSWORD={VALUE}\nEXTRA={VALUE}\n")[..]),
            "requires the secret TOKEN ([context.req.secrets] require), but the secrets stream has only PGPASSWORD, EXTRA",
        ),
        (
            "one of two, as JSON",
            Some(&format!("{{\"TOKEN\": \"{VALUE}\"}}")[..]),
            "requires the secret PGPASSWORD ([context.req.secrets] require)",
        ),
    ] {
        let (r, records) = call(secrets);
        check(
            r.code == Some(125)
                && r.stderr.contains(says)
                && r.stderr.contains("nothing was run")
                && !r.stdout.contains("ran:"),
            || format!("{what}: {}", r.show()),
        )?;
        check(
            !records.contains("child-pid") && records.contains("\"reason\":\"refused\""),
            || format!("{what}: the command was started: {records}"),
        )?;
        check(
            !r.stderr.contains(VALUE) && !records.contains(VALUE),
            || format!("{what}: a value was echoed: {} {records}", r.show()),
        )?;
    }
    let (r, records) = call(Some(&format!("TOKEN=t-{VALUE}\nPGPASSWORD=p-{VALUE}\n")));
    r.expect_code(0, "every required secret handed")?;
    check(
        r.stdout.trim() == format!("ran:p-{VALUE}:t-{VALUE}") && records.contains("child-pid"),
        || format!("{}: {records}", r.show()),
    )
}
