//! A persistent context's life: `ctx stop` leaves nothing, a dead keeper is replaced, its pids
//! limit holds, exit statuses pass through, and a killed launcher takes its command but not the
//! background.

use super::*;

pub fn stop_leaves_nothing_running() -> Result<(), String> {
    needs_isolation()?;
    runtime()?;
    let dir = TempDir::new("persist4");
    let pol = policy(&dir, &["stopme"], None);
    let polite = marker("polite");
    let stubborn = marker("stubborn");
    let script = format!(
        "exec -a {polite} sleep 300 >/dev/null 2>&1 & (trap '' TERM; exec -a {stubborn} sleep 300 >/dev/null 2>&1) & echo ok"
    );
    run_in(&pol, "stopme", &["bash", "-c", &script]).expect_code(0, "start")?;
    check(
        wait_until(Duration::from_secs(5), || {
            alive_argv0(&polite) && alive_argv0(&stubborn)
        }),
        || "background processes not started".into(),
    )?;
    let keeper = keeper_of("stopme")?;
    check(alive(keeper), || "keeper not alive".into())?;
    let r = stop(&pol, "stopme");
    r.expect_code(0, "ctx stop")?;
    // No waiting: when ctx stop returns, nothing of the context runs any more.
    check(!alive_argv0(&polite), || {
        "a process that takes SIGTERM survived".into()
    })?;
    check(!alive_argv0(&stubborn), || {
        "a process that ignores SIGTERM survived".into()
    })?;
    check(!alive(keeper), || "the keeper survived".into())?;
    check(listed("stopme")?.is_empty(), || "state not removed".into())?;
    let again = stop(&pol, "stopme");
    again.expect_code(1, "ctx stop of a context that is not running")?;
    check(again.stderr.contains("not running"), || again.show())
}

pub fn dead_keeper_is_replaced() -> Result<(), String> {
    needs_isolation()?;
    runtime()?;
    let dir = TempDir::new("persist5");
    let pol = policy(&dir, &["phoenix"], None);
    let mark = marker("orphan");
    start_sleeper(&pol, "phoenix", &mark, "start")?;
    let old = keeper_of("phoenix")?;
    // The keeper was started by this test (through sbx-exec), so the test may kill it.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old),
        nix::sys::signal::Signal::SIGKILL,
    )
    .map_err(|e| format!("kill keeper {old}: {e}"))?;
    check(wait_until(Duration::from_secs(5), || !alive(old)), || {
        "keeper did not die".into()
    })?;
    check(!alive_argv0(&mark), || {
        "the context's process outlived its keeper".into()
    })?;
    let r = run_in(&pol, "phoenix", &["ps", "-eo", "args"]);
    r.expect_code(0, "call after the keeper died")?;
    check(!r.stdout.contains(&mark), || {
        format!("old process visible: {}", r.show())
    })?;
    let new = keeper_of("phoenix")?;
    check(new != old && alive(new), || {
        format!("keeper not replaced: old {old}, new {new}")
    })?;
    stop(&pol, "phoenix").expect_code(0, "ctx stop")?;
    Ok(())
}

pub fn fork_bomb_hits_pids_max() -> Result<(), String> {
    needs_isolation()?;
    runtime()?;
    if !std::path::Path::new("/sys/fs/cgroup/pids/cgroup.procs").exists()
        && !std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
    {
        return Err(format!("{SKIP}no pids cgroup controller here"));
    }
    let dir = TempDir::new("persist6");
    let pol = policy(&dir, &["bomb"], Some("pids_max = 32"));
    let free_dir = TempDir::new("persist6free");
    let free = policy(&free_dir, &["nobomb"], None);
    // A sleep length unique to this run, so /proc can find exactly these processes.
    let tag = format!(
        "{}.{}",
        40 + std::process::id() % 50,
        std::process::id() % 997
    );
    let needle = format!("sleep {tag}");
    let limited = Cmd::sbx([
        "--policy",
        &pol,
        "--ctx",
        "bomb",
        "--",
        "sh",
        "-c",
        &bomb(&tag),
    ])
    .limit(Duration::from_secs(60))
    .run();
    let n = started(&limited);
    // The host (and another context) stay usable while the context sits at its limit.
    let host = Cmd::sh("echo alive").run();
    let elsewhere = run_in(&pol, "oneshot", &["true"]);
    let stopped = stop(&pol, "bomb");
    check((5..32).contains(&n), || {
        format!("limited context started {n} processes: {}", limited.show())
    })?;
    check(limited.stderr.to_lowercase().contains("fork"), || {
        format!("no failed fork reported: {}", limited.show())
    })?;
    check(host.ok() && host.stdout.trim() == "alive", || host.show())?;
    elsewhere.expect_code(0, "another context during the bomb")?;
    stopped.expect_code(0, "ctx stop bomb")?;
    check(!processes_with(&needle).into_iter().any(alive), || {
        "bomb survived ctx stop".into()
    })?;
    // Control: without the limit the same bounded loop gets further than the limit.
    let unlimited = run_in(&free, "nobomb", &["sh", "-c", &bomb(&tag)]);
    let m = started(&unlimited);
    stop(&free, "nobomb").expect_code(0, "ctx stop nobomb")?;
    check(m > 32, || {
        format!("without a limit only {m} started: {}", unlimited.show())
    })?;
    check(!processes_with(&needle).into_iter().any(alive), || {
        "control loop survived ctx stop".into()
    })
}

pub fn exit_status_and_status_fd_pass_through() -> Result<(), String> {
    needs_isolation()?;
    runtime()?;
    let dir = TempDir::new("persist8");
    let pol = policy(&dir, &["codes"], None);
    let hidden = dir.path().join("hidden");
    let text = std::fs::read_to_string(&pol).map_err(|e| e.to_string())?;
    let text = text.replace(
        "fs.hide = [\"/run/sbx\"]",
        &format!("fs.hide = [\"/run/sbx\", \"{}\"]", hidden.display()),
    );
    std::fs::create_dir_all(&hidden).map_err(|e| e.to_string())?;
    std::fs::write(&pol, text).map_err(|e| e.to_string())?;
    run_in(&pol, "codes", &["true"]).expect_code(0, "first call")?;
    run_in(&pol, "codes", &["sh", "-c", "exit 7"]).expect_code(7, "exit 7 in a joined call")?;
    run_in(&pol, "codes", &["sh", "-c", "kill -TERM $$"]).expect_code(143, "signal death")?;
    run_in(&pol, "codes", &["no-such-command-xyz"]).expect_code(127, "not found")?;
    let status = dir.path().join("status.jsonl");
    let script = format!(
        "exec \"$0\" --policy {pol} --ctx codes --status-fd 4 -- sh -c 'exit 3' 4>{}",
        status.display()
    );
    let mut c = Cmd::new("/bin/sh");
    c.command().arg("-c").arg(&script).arg(bin());
    c.run().expect_code(3, "with --status-fd")?;
    let text = std::fs::read_to_string(&status).unwrap_or_default();
    check(
        text.contains("\"child-pid\":") && text.contains("{\"exit-code\":3,\"reason\":\"exited\""),
        || format!("status fd: {text:?}"),
    )?;
    // The caller's cwd carries over when the context shares it; a hidden one is not entered.
    let mut c = Cmd::sbx(["--policy", &pol, "--ctx", "codes", "--", "pwd"]);
    c.command().current_dir("/usr/bin");
    let r = c.run();
    r.expect_code(0, "pwd")?;
    check(r.stdout.trim() == "/usr/bin", || r.show())?;
    // A cwd hidden in the context is not entered: the command starts in the context's workdir
    // (here /, it has no writable area), and nothing under the hidden one leaks (runc
    // CVE-2024-21626); a --cwd there is refused.
    let sub = hidden.join("sub");
    std::fs::create_dir_all(&sub).map_err(|e| e.to_string())?;
    std::fs::write(sub.join("private.txt"), "outside-only").map_err(|e| e.to_string())?;
    let mut c = Cmd::sbx([
        "--policy",
        &pol,
        "--ctx",
        "codes",
        "--",
        "sh",
        "-c",
        "cat private.txt; pwd",
    ]);
    c.command().current_dir(&sub);
    let r = c.run();
    check(
        !r.stdout.contains("outside-only") && r.stdout.trim() == "/",
        || r.show(),
    )?;
    let r = Cmd::sbx([
        "--policy",
        &pol,
        "--ctx",
        "codes",
        "--cwd",
        sub.to_str().unwrap(),
        "--",
        "cat",
        "private.txt",
    ])
    .run();
    r.expect_code(125, "--cwd hidden in the context")?;
    check(
        r.stderr.contains("no such directory inside the context")
            && !r.stdout.contains("outside-only"),
        || r.show(),
    )?;
    let mut c = Cmd::sh("cat private.txt");
    c.command().current_dir(&sub);
    let control = c.run();
    check(control.stdout == "outside-only", || {
        format!("control: {}", control.show())
    })?;
    stop(&pol, "codes").expect_code(0, "ctx stop")?;
    Ok(())
}

pub fn killed_launcher_takes_its_command_but_not_background() -> Result<(), String> {
    needs_isolation()?;
    runtime()?;
    let dir = TempDir::new("persist9");
    let pol = policy(&dir, &["pdeath"], None);
    let (bg, fg) = (marker("bgkeep"), marker("fgdie"));
    let script =
        format!("exec -a {bg} sleep 300 >/dev/null 2>&1 & exec -a {fg} sleep 300 >/dev/null 2>&1");
    let mut launcher = Cmd::sbx([
        "--policy", &pol, "--ctx", "pdeath", "--", "bash", "-c", &script,
    ])
    .spawn();
    let up = wait_until(Duration::from_secs(10), || {
        alive_argv0(&bg) && alive_argv0(&fg)
    });
    let fg_pid = process_argv0(&fg);
    // The launcher is this test's own child.
    let _ = launcher.kill();
    let _ = launcher.wait();
    check(up, || "the command did not start".into())?;
    check(
        wait_until(Duration::from_secs(5), || !alive_argv0(&fg)),
        || "the call's own command outlived its sbx-exec".into(),
    )?;
    // Its zombie is re-parented to the suite, which is pid 1 of its namespace: reap it, as a
    // container's init would (the kernel ends the context only once it is reaped).
    if let Some(pid) = fg_pid {
        let pid = nix::unistd::Pid::from_raw(pid);
        wait_until(Duration::from_secs(5), || {
            !matches!(
                nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG)),
                Ok(nix::sys::wait::WaitStatus::StillAlive)
            )
        });
    }
    check(alive_argv0(&bg), || {
        "the background process died with the call".into()
    })?;
    // Secrets are never handed to a persistent context (refused before a byte is read).
    let (c, _guard) = sbx_with_secrets(
        "TOKEN=persist-secret-value",
        &[
            "--policy",
            &pol,
            "--ctx",
            "pdeath",
            "--secrets-fd",
            "3",
            "--",
            "env",
        ],
    );
    let r = c.run();
    r.expect_code(125, "secrets to a persistent context")?;
    check(
        !r.stdout.contains("persist-secret-value") && !r.stderr.contains("persist-secret-value"),
        || r.show(),
    )?;
    let r = stop(&pol, "pdeath");
    let ps = Cmd::sh("ps -eo pid,ppid,stat,args").run();
    r.expect_code(0, &format!("ctx stop; processes:\n{}", ps.stdout))?;
    check(!alive_argv0(&bg), || {
        "background process survived ctx stop".into()
    })
}
