//! Persistent contexts (`persist = true`): processes started by one call are seen and signalled by
//! later calls of the same context, never by other contexts; one keeper per context even under
//! concurrent first calls; `ctx stop` leaves nothing; a dead keeper is replaced; cgroup limits hold.
//!
//! Every test uses its own context names and stops them at the end. The runtime dir /run/sbx is a
//! private tmpfs mounted in the suite's throwaway mount namespace, so the host's is never touched.

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::Duration;

use crate::harness::*;
use crate::limits::{bomb, started};

/// Mount a private tmpfs (0700) on /run/sbx, once, inside the suite's throwaway namespace: every
/// test that starts a persistent context calls this first, so keepers and their state never reach
/// the host's /run/sbx.
pub fn runtime() -> Result<(), String> {
    in_throwaway_namespace()?;
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let r =
            Cmd::sh("{ [ -d /run/sbx ] || mkdir -m 0700 /run/sbx; } && mount -t tmpfs -o mode=0700 sbx-suite /run/sbx").run();
        check(r.ok(), || {
            format!("cannot mount a tmpfs on /run/sbx: {}", r.show())
        })
    })
    .clone()
}

/// A policy with persistent contexts `names`, a one-shot `oneshot` and a one-shot `platform`.
/// `limits` (TOML lines) go into every persistent context's `[limits]`, if given.
fn policy(dir: &TempDir, names: &[&str], limits: Option<&str>) -> String {
    let ctx = |name: &str, persist: bool| {
        let mut s = format!(
            "[context.{name}]\nnamespaces = [\"pid\", \"mount\", \"ipc\", \"uts\"]\npersist = {persist}\n\
             env.allow = [\"PATH\"]\nfs.hide = [\"/run/sbx\"]\nsecurity.seccomp = \"default\"\n"
        );
        if let (true, Some(l)) = (persist, limits) {
            s.push_str(&format!("[context.{name}.limits]\n{l}\n"));
        }
        s
    };
    let mut text = String::from("version = 1\n");
    for n in names {
        text.push_str(&ctx(n, true));
    }
    text.push_str(&ctx("oneshot", false));
    text.push_str(&ctx("platform", false));
    dir.file("policy.toml", &text).display().to_string()
}

fn run_in(pol: &str, ctx: &str, cmd: &[&str]) -> Run {
    let mut args = vec!["--policy", pol, "--ctx", ctx, "--"];
    args.extend_from_slice(cmd);
    Cmd::sbx(args).run()
}

fn stop(pol: &str, ctx: &str) -> Run {
    Cmd::sbx(["ctx", "stop", ctx, "--timeout", "2", "--policy", pol]).run()
}

/// Alive = exists and is not a zombie (killed keepers stay zombies of the suite's pid 1).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 1..].trim_start().to_string()))
        .is_some_and(|rest| !rest.starts_with('Z') && !rest.starts_with('X'))
}

fn alive_argv0(mark: &str) -> bool {
    process_argv0(mark).is_some_and(alive)
}

/// `ctx list --json`: (keeper pid, running) of `name`'s entries.
fn listed(name: &str) -> Result<Vec<(i32, bool)>, String> {
    let r = Cmd::sbx(["ctx", "list", "--json"]).run();
    r.expect_code(0, "ctx list --json")?;
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim())
        .map_err(|e| format!("bad JSON: {e}: {}", r.show()))?;
    Ok(v.as_array()
        .ok_or("not an array")?
        .iter()
        .filter(|e| e["name"] == name)
        .map(|e| {
            (
                e["keeper_pid"].as_i64().unwrap_or(0) as i32,
                e["running"] == true,
            )
        })
        .collect())
}

fn keeper_of(name: &str) -> Result<i32, String> {
    match listed(name)?.as_slice() {
        [(pid, true)] => Ok(*pid),
        other => Err(format!(
            "expected one running keeper of {name}, got {other:?}"
        )),
    }
}

/// Keepers in the suite's namespace: live processes named sbx-keeper that are pid 1 of their own.
pub fn keepers() -> BTreeSet<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            status.lines().any(|l| l == "Name:\tsbx-keeper")
                && status
                    .lines()
                    .any(|l| l.starts_with("NSpid:") && l.ends_with("\t1"))
                && alive(*pid)
        })
        .collect()
}

pub fn background_process_survives_and_is_killed_later() -> Result<(), String> {
    needs_isolation()?;
    runtime()?;
    let dir = TempDir::new("persist1");
    let pol = policy(&dir, &["keep1"], None);
    let mark = marker("bg");
    let r = run_in(
        &pol,
        "keep1",
        &[
            "bash",
            "-c",
            &format!("exec -a {mark} sleep 300 >/dev/null 2>&1 & echo started"),
        ],
    );
    r.expect_code(0, "first call")?;
    check(
        wait_until(Duration::from_secs(5), || alive_argv0(&mark)),
        || {
            format!(
                "the background process did not survive its call: {}",
                r.show()
            )
        },
    )?;
    let seen = run_in(&pol, "keep1", &["ps", "-eo", "args"]);
    seen.expect_code(0, "ps in a later call")?;
    check(seen.stdout.lines().any(|l| l.starts_with(&mark)), || {
        format!(
            "a later call of the same context does not see it: {}",
            seen.show()
        )
    })?;
    // Control: a one-shot context with the same isolation sees only itself.
    let other = run_in(&pol, "oneshot", &["ps", "-eo", "args"]);
    other.expect_code(0, "ps in a one-shot context")?;
    check(
        other.stdout.contains("ps -eo args") && !other.stdout.contains(&mark),
        || format!("one-shot context: {}", other.show()),
    )?;
    let kill = format!(
        "pid=$(ps -eo pid=,args= | awk -v m={mark} '$2 == m {{print $1}}'); [ -n \"$pid\" ] && kill $pid && echo killed $pid"
    );
    let k = run_in(&pol, "keep1", &["sh", "-c", &kill]);
    k.expect_code(0, "kill in a later call")?;
    check(
        wait_until(Duration::from_secs(5), || !alive_argv0(&mark)),
        || format!("kill from a later call did not end it: {}", k.show()),
    )?;
    stop(&pol, "keep1").expect_code(0, "ctx stop")?;
    Ok(())
}

pub fn other_contexts_do_not_see_it() -> Result<(), String> {
    needs_isolation()?;
    runtime()?;
    let dir = TempDir::new("persist2");
    let pol = policy(&dir, &["keep2a", "keep2b"], None);
    let mark = marker("vis");
    run_in(
        &pol,
        "keep2a",
        &[
            "bash",
            "-c",
            &format!("exec -a {mark} sleep 300 >/dev/null 2>&1 &"),
        ],
    )
    .expect_code(0, "start in keep2a")?;
    check(
        wait_until(Duration::from_secs(5), || alive_argv0(&mark)),
        || "background process not started".into(),
    )?;
    let same = run_in(&pol, "keep2a", &["ps", "-eo", "args"]);
    check(same.stdout.contains(&mark), || {
        format!("control: keep2a: {}", same.show())
    })?;
    for ctx in ["keep2b", "platform", "oneshot"] {
        let r = run_in(&pol, ctx, &["ps", "-eo", "args"]);
        r.expect_code(0, ctx)?;
        check(!r.stdout.contains(&mark), || {
            format!("{ctx} sees keep2a's process: {}", r.show())
        })?;
    }
    check(alive_argv0(&mark), || {
        "keep2a's process was killed from outside".into()
    })?;
    stop(&pol, "keep2a").expect_code(0, "stop keep2a")?;
    stop(&pol, "keep2b").expect_code(0, "stop keep2b")?;
    check(!alive_argv0(&mark), || {
        "still running after ctx stop".into()
    })
}

pub fn concurrent_first_calls_make_one_keeper() -> Result<(), String> {
    needs_isolation()?;
    runtime()?;
    let dir = TempDir::new("persist3");
    let pol = policy(&dir, &["conc"], None);
    let before = keepers();
    let threads: Vec<_> = (0..20)
        .map(|_| {
            let pol = pol.clone();
            std::thread::spawn(move || run_in(&pol, "conc", &["readlink", "/proc/self/ns/pid"]))
        })
        .collect();
    let runs: Vec<Run> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    for r in &runs {
        r.expect_code(0, "concurrent call")?;
    }
    let mut ns: Vec<&str> = runs.iter().map(|r| r.stdout.trim()).collect();
    ns.sort();
    ns.dedup();
    check(ns.len() == 1, || {
        format!("the calls ran in {} pid namespaces: {ns:?}", ns.len())
    })?;
    let listed = listed("conc")?;
    check(listed.len() == 1 && listed[0].1, || {
        format!("ctx list: {listed:?}")
    })?;
    let after = keepers();
    let new: Vec<&i32> = after.iter().filter(|p| !before.contains(p)).collect();
    check(new == vec![&listed[0].0], || {
        format!("keepers in /proc: before {before:?}, after {after:?}, listed {listed:?}")
    })?;
    stop(&pol, "conc").expect_code(0, "ctx stop")?;
    Ok(())
}

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
    run_in(
        &pol,
        "phoenix",
        &[
            "bash",
            "-c",
            &format!("exec -a {mark} sleep 300 >/dev/null 2>&1 &"),
        ],
    )
    .expect_code(0, "start")?;
    check(
        wait_until(Duration::from_secs(5), || alive_argv0(&mark)),
        || "background process not started".into(),
    )?;
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
    let mut launcher = std::process::Command::new(bin())
        .args([
            "--policy", &pol, "--ctx", "pdeath", "--", "bash", "-c", &script,
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
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
    run_in(
        &pol,
        "forge1",
        &[
            "bash",
            "-c",
            &format!("exec -a {mark} sleep 300 >/dev/null 2>&1 & echo started"),
        ],
    )
    .expect_code(0, "first call")?;
    check(
        wait_until(Duration::from_secs(5), || alive_argv0(&mark)),
        || "the background sleeper did not start".to_string(),
    )?;
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
        let mut victim = std::process::Command::new(bin())
            .args(["--policy", &pol, "--ctx", "swap", "--", "sleep", "0.5"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
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
        run_in(
            &pol,
            "lostrec",
            &[
                "bash",
                "-c",
                &format!("exec -a {mark} sleep 300 >/dev/null 2>&1 &"),
            ],
        )
        .expect_code(0, "start")?;
        check(
            wait_until(Duration::from_secs(5), || alive_argv0(&mark)),
            || "background process not started".into(),
        )?;
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
