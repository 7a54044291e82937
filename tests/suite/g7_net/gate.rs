//! The egress gate: a process apart and unprivileged, refusing to run when started by hand; its
//! limits (no call starves another, a trickled head is dropped); net policy errors.

use super::*;

/// Tasks (threads) of a running sbx-exec whose target runs `script` (in bash) and then sleeps.
/// What `ps` would show of one call while `script` runs in it (checked after 900 ms): the
/// launcher's thread count and, for each child of the launcher that is the gate, its
/// /proc/PID/status lines of interest and what its fds 0 and 1 are (the launcher's own are
/// pipes). With `kill_gate`, the gate is then killed (a crash) and the call's exit code is
/// returned too.
struct Seen {
    launcher_threads: usize,
    /// The launcher's fds 0 and 1.
    launcher_stdio: String,
    gates: Vec<String>,
    gate_stdio: Vec<String>,
    code: Option<i32>,
}

/// Where fds 0 and 1 of `pid` lead, as "0 -> X, 1 -> Y".
fn stdio_of(pid: &str) -> String {
    let link = |fd: u32| {
        std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
            .map_or_else(|e| format!("({e})"), |p| p.display().to_string())
    };
    format!("0 -> {}, 1 -> {}", link(0), link(1))
}

fn while_running(p: &Path, script: &str, kill_gate: bool) -> Result<Seen, String> {
    let mut call = Cmd::sbx([
        "--policy",
        p.to_str().unwrap(),
        "--ctx",
        "user",
        "--",
        "bash",
        "-c",
        script,
    ]);
    // Pipes, as a caller feeding the command and reading its output would pass: what the gate
    // must not get.
    call.command()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = call.spawn();
    std::thread::sleep(Duration::from_millis(900));
    let launcher = child.id();
    let launcher_stdio = stdio_of(&launcher.to_string());
    let launcher_threads = std::fs::read_dir(format!("/proc/{launcher}/task"))
        .map(|d| d.count())
        .unwrap_or(0);
    let children = std::fs::read_to_string(format!("/proc/{launcher}/task/{launcher}/children"))
        .unwrap_or_default();
    let mut gates = Vec::new();
    let mut gate_stdio = Vec::new();
    let mut gate_pids = Vec::new();
    for pid in children.split_whitespace() {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmdline.starts_with(b"sbx-gate\0") || cmdline == b"sbx-gate" {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let keep: Vec<&str> = status
                .lines()
                .filter(|l| {
                    ["Uid:", "CapEff:", "CapPrm:", "NoNewPrivs:", "Seccomp:"]
                        .iter()
                        .any(|k| l.starts_with(k))
                })
                .collect();
            gates.push(keep.join(" | "));
            gate_stdio.push(stdio_of(pid));
            gate_pids.push(pid.to_string());
        }
    }
    if kill_gate {
        for pid in &gate_pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid.parse().unwrap_or(0)),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let code = child.wait().ok().and_then(|s| s.code());
    Ok(Seen {
        launcher_threads,
        launcher_stdio,
        gates,
        gate_stdio,
        code,
    })
}

/// The egress gate runs apart and unprivileged (G9): with `net.allow = []` there is none, with
/// an allowlist none until the sandbox's first connection to the proxy (only to its own
/// 127.0.0.1:3128; no request is sent, so nothing leaves). While a connection is held, the
/// launcher has one thread (it parses nothing) and the gate is a process of its own with uid
/// 65534, no capabilities, no_new_privs and a seccomp filter, and its stdin and stdout are
/// /dev/null, not the pipes the launcher (and the command) got: a gate taken over cannot read the
/// command's input. Killing the gate (as a crash of its parser would) ends only the call's
/// egress: the command goes on, its next connection to the proxy is refused, and it exits as it
/// would.
pub fn the_gate_runs_apart_unprivileged() -> Result<(), String> {
    needs_isolation()?;
    let d = TempDir::new("g7tasks");
    let none = policy(d.path(), "mode = \"private\"\nallow = []", "");
    let seen = while_running(&none, "sleep 2", false)?;
    check(seen.launcher_threads == 1 && seen.gates.is_empty(), || {
        format!(
            "net.allow = []: {} threads, gates {:?}",
            seen.launcher_threads, seen.gates
        )
    })?;
    let d2 = TempDir::new("g7tasks2");
    let some = policy(
        d2.path(),
        "mode = \"private\"\nallow = [\"192.0.2.10/32\"]",
        "",
    );
    let idle = while_running(&some, "sleep 2", false)?;
    check(idle.launcher_threads == 1 && idle.gates.is_empty(), || {
        format!(
            "an allowlist, no connection: {} threads, gates {:?}",
            idle.launcher_threads, idle.gates
        )
    })?;
    let used = while_running(
        &some,
        "exec 3<>/dev/tcp/127.0.0.1/3128 || exit 9; sleep 2",
        false,
    )?;
    check(used.launcher_threads == 1, || {
        format!(
            "a connection held: the launcher has {} threads",
            used.launcher_threads
        )
    })?;
    let [gate] = used.gates.as_slice() else {
        return Err(format!("a connection held: gates {:?}", used.gates));
    };
    for want in [
        "Uid:\t65534\t65534\t65534\t65534",
        "CapEff:\t0000000000000000",
        "CapPrm:\t0000000000000000",
        "NoNewPrivs:\t1",
        "Seccomp:\t2",
    ] {
        check(gate.contains(want), || {
            format!("the gate: {gate} (expected {want:?})")
        })?;
    }
    // The control: the launcher's own stdin and stdout are the caller's pipes.
    check(
        used.launcher_stdio.starts_with("0 -> pipe:") && used.launcher_stdio.contains("1 -> pipe:"),
        || format!("the launcher's stdio: {}", used.launcher_stdio),
    )?;
    check(
        used.gate_stdio == ["0 -> /dev/null, 1 -> /dev/null"],
        || format!("the gate's stdin and stdout: {:?}", used.gate_stdio),
    )?;
    // A dead gate: the command goes on; its next connection to the proxy is refused (exit 7 from
    // the script), not hung; the call ends with the command's own status.
    let crash = while_running(
        &some,
        "exec 3<>/dev/tcp/127.0.0.1/3128 || exit 9; sleep 1.5; if exec 4<>/dev/tcp/127.0.0.1/3128; then exit 8; else exit 7; fi",
        true,
    )?;
    check(crash.gates.len() == 1 && crash.code == Some(7), || {
        format!(
            "after the gate was killed: gates {:?}, exit {:?}",
            crash.gates, crash.code
        )
    })
}

/// The gate and its dialer started by hand without the fds sbx-exec places for them (as uid 65534
/// with no_new_privs and no capability, so that they pass their first checks): each says it runs
/// only as sbx-exec starts it and exits 125, rather than aborting on a descriptor that names
/// nothing. Control: with an open fd 3 (a config that is not one) the gate goes on to read it and
/// refuses what it read.
pub fn the_gate_started_by_hand_refuses_cleanly() -> Result<(), String> {
    needs_isolation()?;
    let setpriv = require_tool("setpriv")?;
    let by_hand = |role: &str, fd3: &str| {
        // $PPID: the dialer checks that its "launcher" (its argument) is its parent.
        let script = format!("exec -a {role} {} $PPID {fd3}", bin());
        let mut c = Cmd::new(&setpriv);
        c.command().args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--no-new-privs",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--",
            "bash",
            "-c",
            &script,
        ]);
        c.limit(Duration::from_secs(20)).run()
    };
    for role in ["sbx-gate", "sbx-gate-dial"] {
        let r = by_hand(role, "3<&-");
        check(
            r.code == Some(125)
                && r.stderr.contains("runs only as sbx-exec starts it")
                && r.stderr.contains("fd 3 is not open")
                && r.stderr.contains("not a command to run by hand")
                && !r.stderr.contains("IO Safety"),
            || format!("{role} by hand without fd 3: {}", r.show()),
        )?;
    }
    let r = by_hand("sbx-gate", "3</dev/null");
    check(
        r.code == Some(125)
            && r.stderr.contains("the gate's config")
            && !r.stderr.contains("fd 3 is not open"),
        || format!("the gate by hand with an open fd 3: {}", r.show()),
    )
}

pub fn net_policy_errors_name_the_place() -> Result<(), String> {
    let d = TempDir::new("g7policy");
    let cases = [
        (
            "mode = \"private\"\nallow = [\"10.0.0.0/33\"]",
            "net.allow entry",
        ),
        (
            "mode = \"private\"\npublish = [8080]",
            "reserved for the control plane",
        ),
        ("mode = \"private\"\nproxy = 1", "unknown field"),
        (
            "mode = \"host\"\nallow = [\"pypi.org\"]",
            "need mode = \"private\"",
        ),
    ];
    for (net, want) in cases {
        let p = policy(d.path(), net, "");
        let r = Cmd::sbx(["policy".as_ref(), "check".as_ref(), p.as_os_str()]).run();
        check(!r.ok() && r.stderr.contains(want), || {
            format!("{net:?}: expected an error with {want:?}: {}", r.show())
        })?;
        check(r.stderr.contains("policy.toml:"), || r.show())?;
    }
    Ok(())
}

/// A fair gate: in a persistent context, one call holding 300 idle connections to its proxy
/// (in the background, outliving the call) takes only its share (`limits.per_call`); the ones over
/// it are told why (503), and a second call's 10 requests all succeed. Control: with `per_call`
/// as large as the whole context's limit, the same first call starves the second.
pub fn one_call_cannot_starve_another() -> Result<(), String> {
    persistent_tools()?;
    let hog = "python3 -c \"\nimport os, socket, time\nh = os.environ[\\\"HTTP_PROXY\\\"].split(\\\"//\\\")[1].split(\\\":\\\")[0]\nall = [socket.create_connection((h, 3128), 5) for i in range(300)]\ntime.sleep(1)\nsocks, codes = [], {}\nfor s in all:\n    s.setblocking(False)\n    try:\n        c = s.recv(12)[9:12].decode()\n        codes[c] = codes.get(c, 0) + 1\n    except BlockingIOError:\n        socks.append(s)\nprint(\\\"held\\\", len(socks), \\\"told\\\", codes, flush=True)\ntime.sleep(60)\n\" > /tmp/hog.out 2>&1 &\nsleep 0.5; i=0; until [ -s /tmp/hog.out ]; do i=$((i+1)); [ $i -gt 200 ] && break; sleep 0.1; done; cat /tmp/hog.out";
    let second = "ok=0; for i in 1 2 3 4 5 6 7 8 9 10; do [ \"$(curl -s -m 5 http://192.0.2.10/who)\" = internet ] && ok=$((ok+1)); done; echo second:$ok";
    let run = |tag: &str, limits: &str| -> Result<Run, String> {
        let d = TempDir::new(tag);
        let name = unique_name("pfair");
        let p = persistent_policy(
            d.path(),
            &name,
            &format!("mode = \"private\"\nallow = [\"192.0.2.10/32\"]\nlimits = {limits}"),
            "",
        );
        let script = format!(
            "{}call '{hog}'\ncall '{second}'\nstop; echo stop:$?\n",
            persistent_shell(&p, &name)
        );
        Ok(in_test_netns(d.path(), &script))
    };
    let fair = run(
        "g7pfair",
        "{ connections = 256, per_call = 64, head_timeout = 60 }",
    )?;
    fair.expect_code(0, "fair gate scenario")?;
    check(fair.stdout.contains("held 64 told {'503': 236}"), || {
        format!("the first call's share: {}", fair.show())
    })?;
    check(fair.stdout.contains("second:10"), || {
        format!("the second call was starved: {}", fair.show())
    })?;
    check(fair.stdout.contains("stop:0"), || fair.show())?;
    let unfair = run(
        "g7punfair",
        "{ connections = 256, per_call = 256, head_timeout = 60 }",
    )?;
    unfair.expect_code(0, "unfair gate scenario (control)")?;
    check(
        unfair.stdout.contains("held 256 told {'503': 44}") && unfair.stdout.contains("second:0"),
        || {
            format!(
                "control: without a per-call share the second call was not starved: {}",
                unfair.show()
            )
        },
    )
}

/// A client that trickles its request head (one byte every 400 ms) is dropped once
/// `limits.head_timeout` (2 s here) has passed; control: a whole request at once is served.
pub fn a_trickled_head_is_dropped() -> Result<(), String> {
    tools()?;
    let d = TempDir::new("g7slow");
    let p = policy(
        d.path(),
        "mode = \"private\"\nallow = [\"192.0.2.10/32\"]\nlimits = { head_timeout = 2 }",
        "",
    );
    let slow = "import socket, time\ns = socket.create_connection((\"127.0.0.1\", 3128), 5)\nstart = time.time()\nreq = b\"GET http://192.0.2.10/who HTTP/1.1\\r\\nHost: 192.0.2.10\\r\\nX-Slow: \" + b\"a\" * 40 + b\"\\r\\n\\r\\n\"\nans = b\"\"\nfor c in req:\n    try:\n        s.send(bytes([c]))\n    except OSError:\n        break\n    time.sleep(0.4)\n    s.setblocking(False)\n    try:\n        ans = s.recv(100)\n    except BlockingIOError:\n        pass\n    s.setblocking(True)\n    if ans:\n        break\nprint(\"slow:\" + ans[:12].decode(errors=\"replace\") + \" after %.0f s\" % (time.time() - start))";
    // The script where the sandbox reads it: /var/lib, not the private /tmp.
    let shared = PathBuf::from("/var/lib").join(unique_name("g7slow"));
    std::fs::create_dir_all(&shared).map_err(|e| e.to_string())?;
    std::fs::write(shared.join("slow.py"), slow).unwrap();
    let script = format!(
        "{} --policy {} --ctx user -- sh -c 'python3 {}/slow.py; echo whole:$(curl -s -m 5 http://192.0.2.10/who)'\n",
        bin(),
        p.display(),
        shared.display()
    );
    let r = in_test_netns(d.path(), &script);
    let _ = std::fs::remove_dir_all(&shared);
    r.expect_code(0, "trickle scenario")?;
    let line = r
        .stdout
        .lines()
        .find(|l| l.starts_with("slow:"))
        .unwrap_or("");
    let secs: f64 = line
        .rsplit("after ")
        .next()
        .and_then(|t| t.trim_end_matches(" s").parse().ok())
        .unwrap_or(0.0);
    check(line.contains("408") && (2.0..10.0).contains(&secs), || {
        format!(
            "the trickled head was not dropped after the timeout: {}",
            r.show()
        )
    })?;
    check(r.stdout.contains("whole:internet"), || r.show())
}
