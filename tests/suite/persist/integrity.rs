//! What cannot steer a persistent context: an invalid policy, a SIGTERM forged from inside, a
//! directory swapped under a frozen join, a lost state record.

use super::*;

pub fn persist_policy_is_validated() -> Result<(), String> {
    let dir = TempDir::new("persist7");
    for (text, want) in [
        ("[context.x]\nnamespaces = [\"mount\"]\npersist = true\n", "\"pid\" and \"mount\""),
        // One-shot contexts take [limits] too (issue #18); a swap limit needs a memory limit.
        ("[context.x]\nnamespaces = [\"pid\", \"mount\"]\n[context.x.limits]\nmemory_swap_max = 0\n", "needs limits.memory_max"),
        ("[context.x]\nnamespaces = [\"pid\", \"mount\"]\npersist = true\n[context.x.limits]\nmemory_max = \"1.5G\"\n", "policy.toml:6:"),
    ] {
        let f = dir.file("policy.toml", &format!("version = 1\n{text}"));
        let r = Cmd::sbx(["policy".as_ref(), "check".as_ref(), f.as_os_str()]).run();
        r.expect_code(125, text)?;
        check(r.stderr.contains(want), || format!("{want:?} not in: {}", r.show()))?;
    }
    // A name that is a path is refused (for root, by the name check; anyone else is refused
    // `ctx stop` before that).
    let r = Cmd::sbx(["ctx", "stop", "../etc"]).run();
    r.expect_code(125, "bad context name")?;
    let want = if nix::unistd::geteuid().is_root() {
        "context name"
    } else {
        "for root only"
    };
    check(r.stderr.contains(want), || {
        format!("{want:?} not in: {}", r.show())
    })
}

/// A process inside forges "sent from outside" to the keeper: `rt_sigqueueinfo(1, SIGTERM)` with
/// `si_code = SI_QUEUE` and `si_pid = 0`. The keeper only counts `kill(2)` from outside its pid
/// namespace (`SI_USER`, pid 0) or the kernel, so the context (and a background sleeper started
/// earlier) keeps running; control: `ctx stop`, a real signal from outside, stops it.
pub fn forged_sigterm_from_inside_does_not_stop_the_keeper() -> Result<(), String> {
    needs_isolation()?;
    runtime()?;
    let dir = TempDir::new("persist-forge");
    let pol = policy(&dir, &["forge1"], None);
    let mark = marker("forge");
    start_sleeper(&pol, "forge1", &mark, "first call")?;
    // struct siginfo: si_signo, si_errno, si_code, then (for SI_QUEUE) si_pid, si_uid, si_value.
    let forge = "import ctypes, struct, sys\n\
libc = ctypes.CDLL(None, use_errno=True)\n\
info = ctypes.create_string_buffer(struct.pack('iii4xiiq', 15, 0, -1, 0, 0, 0) + bytes(128 - 32))\n\
r = libc.syscall(129, 1, 15, info)\n\
print('sent', r, ctypes.get_errno())\n\
sys.exit(0 if r == 0 else 3)\n";
    let f = run_in(&pol, "forge1", &["python3", "-c", forge]);
    f.expect_code(0, "rt_sigqueueinfo to the keeper")?;
    std::thread::sleep(Duration::from_millis(500));
    check(alive_argv0(&mark), || {
        format!("a forged SIGTERM stopped the context: {}", f.show())
    })?;
    let seen = run_in(&pol, "forge1", &["ps", "-eo", "args"]);
    seen.expect_code(0, "a later call")?;
    check(seen.stdout.lines().any(|l| l.starts_with(&mark)), || {
        format!("a later call does not see the sleeper: {}", seen.show())
    })?;
    // Control: a real stop from outside ends the context and its sleeper.
    stop(&pol, "forge1").expect_code(0, "ctx stop")?;
    check(
        wait_until(Duration::from_secs(5), || !alive_argv0(&mark)),
        || "ctx stop left the sleeper running".to_string(),
    )
}

/// The freeze-and-swap escape, 20 times: code left running in a persistent context stops the next
/// joining call as soon as it is visible and swaps the following call's working directory for a
/// link through `/proc/<stopped>/root/run/sbx` (the container's runtime state, hidden in the
/// context). A joining call is visible only once it is inside every namespace of the context, and
/// the working directory is resolved inside the context's root without magic links, so the
/// following call is refused (125) and sees nothing of the outside; the same call with a real
/// directory runs there (control).
pub fn freeze_and_swap_cannot_steer_a_join_outside() -> Result<(), String> {
    runtime()?;
    require_tool("python3")?;
    let d = TempDir::new("persist-swap");
    let pol = policy(&d, &["swap"], None);
    let work = d.path().join("work");
    let real = work.join("real");
    std::fs::create_dir_all(&real).map_err(|e| e.to_string())?;
    let watcher = d.file(
        "watcher.py",
        r#"import os, signal, sys, time
work = sys.argv[1]
known = {int(p) for p in os.listdir("/proc") if p.isdigit()}
open(os.path.join(work, "ready"), "w").close()
end = time.time() + 10
while time.time() < end:
    for p in os.listdir("/proc"):
        if not p.isdigit() or int(p) in known:
            continue
        pid = int(p)
        known.add(pid)
        try:
            os.kill(pid, signal.SIGSTOP)
        except OSError:
            continue
        tmp = os.path.join(work, "proj.new")
        os.symlink("/proc/%d/root/run/sbx" % pid, tmp)
        os.rename(tmp, os.path.join(work, "proj"))
        open(os.path.join(work, "frozen"), "w").write(str(pid))
        sys.exit(0)
    time.sleep(0.0002)
"#,
    );
    let (w, proj) = (work.display().to_string(), work.join("proj"));
    let proj_s = proj.display().to_string();
    let script = format!("python3 {} {w} >/dev/null 2>&1 &", watcher.display());
    // 20 rounds in which the watcher did stop the joining call (under heavy load it may miss one:
    // such a round proves nothing and is run again, at most 20 more times).
    let (mut round, mut attempts) = (0, 0);
    while round < 20 {
        attempts += 1;
        if attempts > 40 {
            return Err(format!(
                "the watcher stopped only {round} joining calls in 40 tries"
            ));
        }
        for f in ["ready", "frozen", "proj", "proj.new"] {
            let _ = std::fs::remove_file(work.join(f));
        }
        std::os::unix::fs::symlink(&real, &proj).map_err(|e| e.to_string())?;
        run_in(&pol, "swap", &["sh", "-c", &script]).expect_code(0, "start the watcher")?;
        if !wait_until(Duration::from_secs(10), || work.join("ready").exists()) {
            return Err(format!("round {round}: the watcher did not start"));
        }
        // The victim: a joining call the watcher stops as soon as it sees it.
        let mut victim =
            Cmd::sbx(["--policy", &pol, "--ctx", "swap", "--", "sleep", "0.5"]).spawn();
        let frozen = wait_until(Duration::from_secs(5), || work.join("frozen").exists());
        if !frozen {
            run_in(&pol, "swap", &["pkill", "-f", "watcher.py"]);
            let _ = victim.wait();
            continue;
        }
        // The next call, in the swapped directory: refused, and nothing of /run/sbx outside seen.
        let r = Cmd::sbx([
            "--policy", &pol, "--ctx", "swap", "--cwd", &proj_s, "--", "ls", "-a",
        ])
        .run();
        // Let the stopped call go on (from inside the context, where its pid means something).
        let stopped = std::fs::read_to_string(work.join("frozen")).unwrap_or_default();
        if !stopped.is_empty() {
            run_in(&pol, "swap", &["kill", "-CONT", stopped.trim()]);
        }
        let done = wait_until(Duration::from_secs(10), || {
            victim.try_wait().is_ok_and(|s| s.is_some())
        });
        if !done {
            let _ = victim.kill();
            let _ = victim.wait();
        }
        r.expect_code(
            125,
            &format!("round {round}: cwd through a stopped call's /proc root"),
        )?;
        check(
            !r.stdout.contains(".state") && !r.stdout.contains(".lock"),
            || {
                format!(
                    "round {round}: the call saw the container's /run/sbx: {}",
                    r.show()
                )
            },
        )?;
        round += 1;
    }
    // Control: a real directory of the context is entered as asked.
    let real_s = real.display().to_string();
    let r = Cmd::sbx([
        "--policy", &pol, "--ctx", "swap", "--cwd", &real_s, "--", "pwd",
    ])
    .run();
    r.expect_code(0, "cwd in a real directory")?;
    check(r.stdout.trim() == real_s, || r.show())?;
    // And outside the context, the same link does lead into /run/sbx (what the attack aims at).
    let c = Cmd::sh("ls -a /run/sbx").run();
    check(c.stdout.contains("swap.state"), || {
        format!("control: {}", c.show())
    })?;
    stop(&pol, "swap").expect_code(0, "ctx stop")?;
    Ok(())
}

/// Hostile or careless root in the container removes a running context's record
/// (/run/sbx/NAME.state), then writes garbage in its place. The keeper must not be lost: `ctx
/// list` still shows it (the kernel's own record: pid 1 of a pid namespace named sbx-keeper),
/// a call is refused naming `ctx stop` (never a second keeper beside the first), and `ctx stop`
/// ends the keeper, its background job and its cgroups. Control: the next call starts anew.
pub fn a_lost_record_loses_no_process() -> Result<(), String> {
    needs_isolation()?;
    runtime()?;
    let dir = TempDir::new("persist-lost");
    let pol = policy(&dir, &["lostrec"], Some("pids_max = 64"));
    for damage in [
        "rm -f /run/sbx/lostrec.state",
        "printf 'garbage{\\n' > /run/sbx/lostrec.state",
    ] {
        let mark = marker("lost");
        start_sleeper(&pol, "lostrec", &mark, "start")?;
        let keeper = keeper_of("lostrec")?;
        let cgroups: Vec<String> = std::fs::read_to_string(format!("/proc/{keeper}/cgroup"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("/sbx-"))
            .map(str::to_string)
            .collect();
        // Control: where a pids controller exists, the keeper is in a cgroup of its own.
        let pids = std::path::Path::new("/sys/fs/cgroup/pids/cgroup.procs").exists()
            || std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        check(!pids || !cgroups.is_empty(), || {
            format!("keeper {keeper} is in no sbx- cgroup")
        })?;
        Cmd::sh(damage).run().expect_code(0, damage)?;

        let listed = Cmd::sbx(["ctx", "list"]).run();
        check(
            listed.stdout.contains("lostrec") && listed.stdout.contains("without its record"),
            || {
                format!(
                    "{damage}: ctx list does not show the keeper: {}",
                    listed.show()
                )
            },
        )?;
        let before = keepers();
        let refused = run_in(&pol, "lostrec", &["echo", "ran"]);
        refused.expect_code(125, &format!("a call after {damage}"))?;
        check(
            !refused.stdout.contains("ran")
                && refused.stderr.contains("ctx stop lostrec")
                && keepers() == before,
            || format!("{damage}: {}", refused.show()),
        )?;
        check(alive(keeper) && alive_argv0(&mark), || {
            format!("{damage}: the refused call ended the context")
        })?;

        stop(&pol, "lostrec").expect_code(0, &format!("ctx stop after {damage}"))?;
        check(
            wait_until(Duration::from_secs(5), || {
                !alive(keeper) && !alive_argv0(&mark)
            }),
            || format!("{damage}: the keeper or its job outlived ctx stop"),
        )?;
        for line in &cgroups {
            let mut parts = line.splitn(3, ':');
            let (_, ctl, path) = (
                parts.next(),
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
            );
            let dir = std::path::Path::new("/sys/fs/cgroup")
                .join(ctl)
                .join(path.trim_start_matches('/'));
            check(ctl.is_empty() || !dir.exists(), || {
                format!("{damage}: its cgroup {} is left", dir.display())
            })?;
        }
        check(
            !std::path::Path::new("/run/sbx/lostrec.state").exists(),
            || format!("{damage}: the damaged record is left"),
        )?;
        // Control: the context starts anew.
        let again = run_in(&pol, "lostrec", &["echo", "anew"]);
        again.expect_code(0, "a call after ctx stop")?;
        check(again.stdout.contains("anew"), || again.show())?;
        stop(&pol, "lostrec").expect_code(0, "ctx stop")?;
    }
    Ok(())
}
