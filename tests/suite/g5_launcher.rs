//! G5: a faithful launcher (exit codes, signals, no orphans, fds, streaming, status fd).

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::harness::*;

pub fn exit_codes_pass_through() -> Result<(), String> {
    needs_isolation()?;
    let cases: &[(&[&str], i32)] = &[
        (&["true"], 0),
        (&["sh", "-c", "exit 7"], 7),
        (&["sh", "-c", "kill -TERM $$"], 143),
        (&["sh", "-c", "kill -KILL $$"], 137),
    ];
    for (cmd, want) in cases {
        let mut args = vec!["--ctx", "user", "--"];
        args.extend_from_slice(cmd);
        Cmd::sbx(&args)
            .run()
            .expect_code(*want, &format!("{cmd:?}"))?;
        // Control: the same command outside reports the same status through a shell.
        let c = Cmd::sh(&format!(
            "{}; exit $?",
            cmd.iter()
                .map(|a| format!("'{a}'"))
                .collect::<Vec<_>>()
                .join(" ")
        ))
        .run();
        c.expect_code(*want, &format!("control {cmd:?}"))?;
    }
    Ok(())
}

pub fn own_errors_are_125_126_127() -> Result<(), String> {
    let r = Cmd::sbx(["--ctx", "nope", "--", "true"]).run();
    r.expect_code(125, "unknown context")?;
    check(
        r.stderr.contains("unknown context") && r.stderr.contains("platform"),
        || r.show(),
    )?;
    let r = Cmd::sbx(["--ctx", "user", "--", "no-such-command-xyz"]).run();
    r.expect_code(127, "not found")?;
    check(
        r.stderr.contains("command not found") && r.stderr.contains("PATH="),
        || r.show(),
    )?;
    let d = TempDir::new("noexec");
    let f = d.file("script.sh", "#!/bin/sh\necho hi\n");
    let r = Cmd::sbx(["--ctx", "user", "--"]).run_with_arg(&f);
    r.expect_code(126, "not executable")?;
    check(r.stderr.contains("execute permission"), || r.show())?;
    Cmd::sbx(["--bogus-flag"])
        .run()
        .expect_code(125, "bad flag")?;
    Cmd::sbx(["--ctx", "user"])
        .run()
        .expect_code(125, "no command")?;
    let h = Cmd::sbx(["--help"]).run();
    h.expect_code(0, "--help")?;
    check(
        h.stdout.contains("Exit status") && h.stdout.contains("--secrets-fd"),
        || h.show(),
    )
}

trait RunWithArg {
    fn run_with_arg(self, p: &std::path::Path) -> Run;
}

impl RunWithArg for Cmd {
    fn run_with_arg(mut self, p: &std::path::Path) -> Run {
        self.command().arg(p);
        self.run()
    }
}

/// Start `sbx-exec --ctx user -- sh -c SCRIPT` with piped stdout; wait for its first line.
fn spawn_until_ready(script: &str) -> (Spawned, BufReader<std::process::ChildStdout>) {
    let mut c = Cmd::sbx(["--ctx", "user", "--", "sh", "-c", script]);
    c.command().stdout(Stdio::piped());
    let mut child = c.spawn();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "first line");
    (child, out)
}

pub fn signals_reach_the_target() -> Result<(), String> {
    needs_isolation()?;
    for (sig, name) in [
        (Signal::SIGTERM, "TERM"),
        (Signal::SIGINT, "INT"),
        (Signal::SIGHUP, "HUP"),
        (Signal::SIGUSR1, "USR1"),
        (Signal::SIGUSR2, "USR2"),
        (Signal::SIGQUIT, "QUIT"),
    ] {
        let script = format!(
            "trap 'echo got-{name}; exit 42' {name}; echo ready; while :; do sleep 0.05; done"
        );
        let (mut child, mut out) = spawn_until_ready(&script);
        kill(Pid::from_raw(child.id() as i32), sig).unwrap();
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
        let status = child.wait().unwrap();
        check(
            rest.contains(&format!("got-{name}")) && status.code() == Some(42),
            || format!("SIG{name} did not reach the target: out={rest:?} status={status:?}"),
        )?;
    }
    Ok(())
}

pub fn sigterm_default_gives_143() -> Result<(), String> {
    needs_isolation()?;
    let (mut child, _out) = spawn_until_ready("echo ready; exec sleep 30");
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    check(status.code() == Some(143), || {
        format!("expected 143, got {status:?}")
    })
}

pub fn sigkill_of_launcher_leaves_no_process() -> Result<(), String> {
    needs_isolation()?;
    let mark = marker("orphan");
    let script = format!("bash -c 'exec -a {mark} sleep 300' & bash -c 'exec -a {mark}b sleep 300' & echo ready; wait");
    let (mut child, _out) = spawn_until_ready(&script);
    check(
        wait_until(Duration::from_secs(5), || {
            process_argv0(&format!("{mark}b")).is_some()
        }),
        || "sandbox processes never started".into(),
    )?;
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    let _ = child.wait();
    check(
        wait_until(Duration::from_secs(5), || process_argv0(&mark).is_none()),
        || {
            format!(
                "a sandbox process outlived sbx-exec: pid {:?}",
                process_argv0(&mark)
            )
        },
    )
}

/// `ps -eo pid=,ppid=,stat=,args=` output: (pid, ppid, stat, args) per process.
pub fn ps_table(out: &str) -> Vec<(i32, i32, String, String)> {
    out.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let pid = f.next()?.parse().ok()?;
            let ppid = f.next()?.parse().ok()?;
            let stat = f.next()?.to_string();
            Some((pid, ppid, stat, f.collect::<Vec<_>>().join(" ")))
        })
        .collect()
}

pub fn zombies_are_reaped() -> Result<(), String> {
    needs_isolation()?;
    // Control: a parent that never waits (a shell that execs `sleep` after starting a child) keeps
    // exactly one zombie, which ps shows. Then 300 orphans: each double-forks so its child is
    // re-parented to the sandbox's pid 1, which must reap every one.
    let script = "sh -c 'sh -c \"exit 0\" & exec sleep 30' & \
                  i=0; while [ $i -lt 300 ]; do (sh -c 'exit 0' &) ; i=$((i+1)); done; sleep 0.5; \
                  ps -eo pid=,ppid=,stat=,args=";
    let r = Cmd::sbx(["--ctx", "user", "--", "sh", "-c", script])
        .limit(Duration::from_secs(60))
        .run();
    r.expect_code(0, "zombie workload")?;
    let table = ps_table(&r.stdout);
    check(
        table
            .iter()
            .any(|(pid, _, _, args)| *pid == 1 && !args.is_empty()),
        || format!("ps did not list the sandbox's processes: {}", r.show()),
    )?;
    let zombies: Vec<_> = table.iter().filter(|p| p.2.starts_with('Z')).collect();
    let keeper = table
        .iter()
        .find(|p| p.3 == "sleep 30")
        .map(|p| p.0)
        .ok_or_else(|| format!("control: the non-waiting parent is missing: {}", r.show()))?;
    check(zombies.len() == 1 && zombies[0].1 == keeper, || {
        format!(
            "want exactly the control's zombie (a child of pid {keeper}), got {zombies:?}: {}",
            r.show()
        )
    })
}

pub fn only_stdio_fds_reach_the_target() -> Result<(), String> {
    needs_isolation()?;
    // The fds of a process are read from outside (/proc/PID/fd), so no shell or ls adds its own.
    let fds_of = |launch: &str| -> Result<Vec<String>, String> {
        let mark = marker("fds");
        let script = format!(
            "exec 5</dev/null 7</dev/null; exec {launch} bash -c 'exec -a {mark} sleep 30'"
        );
        let mut child = Cmd::sh(&script).spawn();
        // Read once sleep sits in its nanosleep: while the loader and setlocale run, it holds
        // fds of its own for a moment.
        let asleep = |pid: i32| {
            std::fs::read_to_string(format!("/proc/{pid}/syscall")).is_ok_and(|s| {
                let nr = s
                    .split(' ')
                    .next()
                    .and_then(|n| n.parse::<libc::c_long>().ok());
                nr == Some(libc::SYS_nanosleep) || nr == Some(libc::SYS_clock_nanosleep)
            })
        };
        let found = wait_until(Duration::from_secs(5), || {
            process_argv0(&mark).is_some_and(asleep)
        });
        let fds = process_argv0(&mark).map(|pid| {
            let mut v: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
                .map(|d| {
                    d.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            v.sort();
            v
        });
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
        if let Some(pid) = process_argv0(&mark) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = child.wait();
        check(found, || format!("{launch}: the process never appeared"))?;
        Ok(fds.unwrap_or_default())
    };
    // Control: without sbx-exec, the extra fds 5 and 7 are inherited.
    let control = fds_of("")?;
    let has = |v: &[String], fd: &str| v.iter().any(|f| f == fd);
    check(has(&control, "5") && has(&control, "7"), || {
        format!("control did not inherit 5 and 7: {control:?}")
    })?;
    let inside = fds_of(&format!("{} --ctx user --", bin()))?;
    check(inside == ["0", "1", "2"], || {
        format!("extra fds leaked into the target: {inside:?}")
    })
}

/// A caller that closed fds 0-2: sbx-exec puts /dev/null there first (`sys::startup`, as Rust's
/// runtime start-up did), so no file it opens (the checked program, a policy, a pipe) lands on
/// them and becomes the target's stdio. The target finds the null device on its fds 0, 1 and 2.
/// Control: given open stdio, it finds the caller's (not the null device).
pub fn closed_standard_fds_are_reopened_on_dev_null() -> Result<(), String> {
    needs_isolation()?;
    let target =
        r#"for fd in 0 1 2; do echo "fd$fd $(stat -L -c "%F %t:%T" /proc/$$/fd/$fd)" >&3; done"#;
    let run = |pre: &str| {
        let mut c = Cmd::new("sh");
        c.command().args([
            "-c",
            &format!(
                "exec 3>&1 4</dev/zero; {pre} {} --ctx user --keep-fd 3 -- sh -c '{target}'; echo \"rc=$?\" >&3",
                bin()
            ),
        ]);
        c.run()
    };
    let null = |r: &Run, fd: u32| {
        r.stdout
            .contains(&format!("fd{fd} character special file 1:3"))
    };
    let control = run("exec 0<&4 1>/dev/zero 2>/dev/zero;");
    check(
        control.stdout.contains("fd0 character special file 1:5") && !null(&control, 1),
        || {
            format!(
                "control: the target's stdio is not the caller's: {}",
                control.show()
            )
        },
    )?;
    let closed = run("exec 0<&- 1>&- 2>&-;");
    check(
        closed.stdout.contains("rc=0") && (0..3).all(|fd| null(&closed, fd)),
        || {
            format!(
                "with fds 0-2 closed, the target's stdio is not /dev/null: {}",
                closed.show()
            )
        },
    )
}

pub fn stdio_streams_unbuffered() -> Result<(), String> {
    needs_isolation()?;
    let mut c = Cmd::sbx([
        "--ctx",
        "user",
        "--",
        "sh",
        "-c",
        "while read l; do echo \"got:$l\"; echo \"err:$l\" >&2; done",
    ])
    .piped();
    c.command().stdin(Stdio::piped());
    let mut child = c.spawn();
    let mut stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut err = BufReader::new(child.stderr.take().unwrap());
    // Each answer must arrive before the next question is asked: nothing waits for a buffer to fill.
    let mut result = Ok(());
    for i in 0..5 {
        writeln!(stdin, "q{i}").unwrap();
        stdin.flush().unwrap();
        let (mut a, mut e) = (String::new(), String::new());
        out.read_line(&mut a).unwrap();
        err.read_line(&mut e).unwrap();
        if a.trim() != format!("got:q{i}") || e.trim() != format!("err:q{i}") {
            result = Err(format!("round {i}: {a:?} {e:?}"));
            let _ = child.kill();
            break;
        }
    }
    drop(stdin);
    let st = child.wait().unwrap();
    result?;
    check(st.success(), || format!("{st:?}"))
}

pub fn status_fd_reports_json() -> Result<(), String> {
    needs_isolation()?;
    let d = TempDir::new("status");
    let f = d.path().join("status.jsonl");
    let r = Cmd::sh(&format!(
        "{} --ctx user --status-fd 4 -- sh -c 'exit 3' 4>{}",
        bin(),
        f.display()
    ))
    .run();
    r.expect_code(3, "status run")?;
    let text = std::fs::read_to_string(&f).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    check(lines.len() == 2, || format!("expected 2 lines: {text}"))?;
    check(
        lines[0]["child-pid"].as_i64().is_some_and(|p| p > 1),
        || text.clone(),
    )?;
    check(lines[1]["exit-code"] == 3, || text.clone())
}

pub fn timeout_gives_124() -> Result<(), String> {
    needs_isolation()?;
    let d = TempDir::new("timeout");
    let policy = crate::policy_tests::default_with(d.path(), "user", "timeout = 1\n");
    let start = std::time::Instant::now();
    let r = Cmd::sbx([
        "--policy",
        policy.to_str().unwrap(),
        "--ctx",
        "user",
        "--",
        "sleep",
        "30",
    ])
    .run();
    r.expect_code(124, "timeout")?;
    check(start.elapsed() < Duration::from_secs(10), || {
        "timeout took too long".into()
    })?;
    check(r.stderr.contains("timed out"), || r.show())
}
