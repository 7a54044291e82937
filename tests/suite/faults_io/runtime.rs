//! A runtime directory, limits or /proc that are not what sbx-exec expects, and a control plane
//! that crash-loops: the cause is named, the port is kept, joins still work.

use super::*;

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
        let r = Cmd::sh_in_own_mounts(false, &script, &[bin(), pol.as_str()])
            .limit(Duration::from_secs(20))
            .run();
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
    let r = Cmd::sh_in_own_mounts(false, script, &[bin(), pol.as_str()])
        .limit(Duration::from_secs(20))
        .run();
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
    let mut c = Cmd::sbx([
        "--policy", &pol, "--ctx", "control", "--", "sh", "-c", &target,
    ]);
    c.command().stderr(Stdio::piped());
    let mut child = c.spawn();
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
    let out = child.output();
    check(out.code == Some(3), || {
        format!("control mode ended with {}", out.show())
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
    let r = Cmd::sh_in_own_mounts(false, script, &[bin(), &pol, &running, &fresh])
        .limit(Duration::from_secs(30))
        .run();
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
