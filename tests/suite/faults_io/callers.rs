//! What callers control cannot hang or cut a call: a secrets writer that never closes, a full or
//! stuck status stream, a policy file that is huge, endless or never written.

use super::*;

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
