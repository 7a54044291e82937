//! Prepared sandboxes (`pool = N`): a call claims one from `sbx-exec pool serve` and keeps every
//! wall; the launch cases of the suite pass pooled as they do inline; a sandbox serves one call;
//! claims are root's alone, a call never waits for a stuck server, and a call made from another
//! plan never gets one. The server runs in the suite's own namespaces (its /run/sbx tmpfs).

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::harness::*;

/// The pool servers' sockets in /run/sbx (`pool-CTX-KEY.sock`): the host's runtime directory,
/// where a test looks only at the sockets its own server made ([`new_sockets`]).
fn pool_sockets() -> Vec<std::path::PathBuf> {
    std::fs::read_dir("/run/sbx")
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    let n = p
                        .file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned();
                    n.starts_with("pool-") && n.ends_with(".sock")
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The sockets in /run/sbx that are not in `before`.
fn new_sockets(before: &[std::path::PathBuf]) -> Vec<std::path::PathBuf> {
    let mut now = pool_sockets();
    now.retain(|p| !before.contains(p));
    now
}

/// `sbx-exec [--policy P] pool serve`, stopped with SIGTERM when dropped.
struct Server {
    child: Option<Spawned>,
    /// The sockets it made.
    sockets: Vec<std::path::PathBuf>,
}

impl Server {
    /// Started, and ready: a `user` call of the embedded default is pooled.
    fn start(policy: Option<&Path>) -> Result<Server, String> {
        let mut args: Vec<String> = Vec::new();
        if let Some(p) = policy {
            args.extend(["--policy".into(), p.display().to_string()]);
        }
        args.extend(["pool".into(), "serve".into()]);
        let before = pool_sockets();
        let child = Cmd::sbx(&args)
            .limit(Duration::from_secs(600))
            .piped()
            .spawn();
        let mut s = Server {
            child: Some(child),
            sockets: Vec::new(),
        };
        let ready = wait_until(Duration::from_secs(10), || !new_sockets(&before).is_empty());
        check(ready, || "pool serve made no socket within 10 s".into())?;
        s.sockets = new_sockets(&before);
        // Its first sandboxes take a moment.
        std::thread::sleep(Duration::from_millis(300));
        Ok(s)
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().map_or(0, |c| c.id() as i32))
    }

    /// Stop it; its summary line (stderr).
    fn stop(mut self) -> Result<String, String> {
        let child = self.child.take().ok_or("no server")?;
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let r = child.output_within(Duration::from_secs(10));
        r.expect_code(0, "pool serve after SIGTERM")?;
        Ok(r.stderr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(c) = self.child.take() {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
            let _ = c.output_within(Duration::from_secs(10));
        }
    }
}

/// How many calls the server says ran in prepared sandboxes.
fn handed(summary: &str) -> Option<u64> {
    let at = summary.find("stopped; ")? + "stopped; ".len();
    summary[at..].split(' ').next()?.parse().ok()
}

/// A `user` call (the embedded default unless `policy`) that prints its pid 1's command line:
/// whether it ran in a prepared sandbox (`pool serve`) or one built for it.
fn pid1_of_user_call(policy: Option<&Path>) -> Result<String, String> {
    let mut args: Vec<String> = Vec::new();
    if let Some(p) = policy {
        args.extend(["--policy".into(), p.display().to_string()]);
    }
    args.extend(
        [
            "--ctx",
            "user",
            "--",
            "sh",
            "-c",
            "tr '\\0' ' ' < /proc/1/cmdline",
        ]
        .map(String::from),
    );
    let r = Cmd::sbx(&args).run();
    r.expect_code(0, "a user call")?;
    Ok(r.stdout)
}

pub fn a_pooled_call_keeps_every_wall() -> Result<(), String> {
    needs_isolation()?;
    // Control: no server, the call builds its own sandbox (its pid 1 is the call's own).
    let inline = pid1_of_user_call(None)?;
    check(
        inline.contains("--ctx user") && !inline.contains("pool serve"),
        || format!("without a server the call was not built inline: {inline}"),
    )?;
    let server = Server::start(None)?;
    let pooled = pid1_of_user_call(None)?;
    check(pooled.contains("pool serve"), || {
        format!("with a server ready the call did not run in a prepared sandbox: {pooled}")
    })?;
    // The server (it holds its sandboxes' CA keys with bound secrets) writes no core file.
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid()))
        .map_err(|e| format!("the server's limits: {e}"))?;
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .map(|l| l.split_whitespace().skip(4).take(2).collect::<Vec<_>>());
    check(core == Some(vec!["0", "0"]), || {
        format!("the pool server may dump core: {limits}")
    })?;
    let b = crate::g2_visibility::Bystander::start("pool");
    let script = format!(
        "cat /proc/self/uid_map; ps -eo pid= | wc -l; kill -0 {} 2>/dev/null && echo SIGNALLED; \
         cat /proc/{}/environ 2>/dev/null && echo READ; id -u; grep -c . /proc/self/status >/dev/null; \
         tr '\\0' ' ' < /proc/1/cmdline",
        b.pid(),
        b.pid()
    );
    let r = Cmd::sbx(["--ctx", "user", "--", "sh", "-c", &script]).run();
    r.expect_code(0, "the pooled call")?;
    let out = &r.stdout;
    check(out.contains("pool serve"), || {
        format!("not pooled: {}", r.show())
    })?;
    check(out.contains("0     100000      65536"), || {
        format!("the identity's map is missing: {}", r.show())
    })?;
    check(!out.contains("SIGNALLED") && !out.contains("READ"), || {
        format!("the pooled call reached a process outside: {}", r.show())
    })?;
    let procs: usize = out
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(99);
    // pid 1, sh, ps, wc (and the substitution's subshell)
    check(procs <= 5, || {
        format!("it sees more than its own: {}", r.show())
    })?;
    // Control: the same signal from outside reaches the bystander.
    Cmd::sh(&format!("kill -0 {}", b.pid()))
        .run()
        .expect_code(0, "control kill -0")?;
    let said = server.stop()?;
    check(handed(&said).is_some_and(|n| n >= 2), || {
        format!("the server does not count the calls it served: {said}")
    })
}

pub fn launch_cases_pass_pooled() -> Result<(), String> {
    needs_isolation()?;
    let server = Server::start(None)?;
    let cases: &[(&str, TestFn)] = &[
        ("exit codes", crate::g5_launcher::exit_codes_pass_through),
        ("own errors", crate::g5_launcher::own_errors_are_125_126_127),
        ("signals", crate::g5_launcher::signals_reach_the_target),
        ("SIGTERM", crate::g5_launcher::sigterm_default_gives_143),
        (
            "SIGKILL of the launcher",
            crate::g5_launcher::sigkill_of_launcher_leaves_no_process,
        ),
        ("zombies", crate::g5_launcher::zombies_are_reaped),
        ("fds", crate::g5_launcher::only_stdio_fds_reach_the_target),
        (
            "closed stdio",
            crate::g5_launcher::closed_standard_fds_are_reopened_on_dev_null,
        ),
        ("streaming", crate::g5_launcher::stdio_streams_unbuffered),
        ("status fd", crate::g5_launcher::status_fd_reports_json),
        ("timeout", crate::g5_launcher::timeout_gives_124),
        (
            "--env",
            crate::g5_request::env_option_sets_only_allowed_names,
        ),
        (
            "--cwd",
            crate::g5_request::cwd_option_moves_the_command_or_refuses,
        ),
        (
            "hidden cwd",
            crate::g5_request::hidden_caller_directory_starts_in_workdir,
        ),
        ("ps", crate::g2_visibility::ps_shows_only_the_context),
        ("kill", crate::g2_visibility::kill_pkill_and_kill_all_fail),
        (
            "ptrace",
            crate::g2_visibility::ptrace_and_proc_of_outside_fail,
        ),
        (
            "socket peers",
            crate::g7_identity::socket_peers_see_the_mapped_uid,
        ),
        (
            "setuid bits",
            crate::g7_identity::setuid_bits_set_inside_are_not_root_outside,
        ),
        (
            "work area",
            crate::g7_identity::work_area_is_shared_with_the_control_side,
        ),
    ];
    for (what, case) in cases {
        case().map_err(|e| format!("{what}, pooled: {e}"))?;
        // Between cases the pool fills again, so that the next one's calls are pooled too.
        std::thread::sleep(Duration::from_millis(50));
    }
    let said = server.stop()?;
    // Most of those calls ran in prepared sandboxes (back-to-back calls may find none ready).
    check(handed(&said).is_some_and(|n| n >= 20), || {
        format!("few calls were pooled: {said}")
    })
}

pub fn a_prepared_sandbox_serves_one_call() -> Result<(), String> {
    needs_isolation()?;
    let _server = Server::start(None)?;
    let mark = marker("poolonce");
    let first = Cmd::sbx([
        "--ctx",
        "user",
        "--",
        "sh",
        "-c",
        &format!("echo x > /tmp/{mark}; (exec -a {mark} sleep 300) & cat /tmp/{mark}; tr '\\0' ' ' < /proc/1/cmdline"),
    ])
    .run();
    first.expect_code(0, "the first call")?;
    check(
        first.stdout.contains('x') && first.stdout.contains("pool serve"),
        || {
            format!(
                "control: the first call (pooled) sees its own file: {}",
                first.show()
            )
        },
    )?;
    // Nothing of the first call outlives it.
    check(process_argv0(&mark).is_none(), || {
        format!("the first call's background process outlived it: {mark}")
    })?;
    std::thread::sleep(Duration::from_millis(50));
    let second = Cmd::sbx([
        "--ctx",
        "user",
        "--",
        "sh",
        "-c",
        &format!(
            "ls /tmp/{mark} 2>&1; ps -eo args | grep -c '^{mark}'; tr '\\0' ' ' < /proc/1/cmdline"
        ),
    ])
    .run();
    second.expect_code(0, "the second call")?;
    check(second.stdout.contains("pool serve"), || {
        format!("the second call was not pooled: {}", second.show())
    })?;
    check(second.stdout.contains("No such file"), || {
        format!(
            "the second call sees the first call's file: {}",
            second.show()
        )
    })?;
    check(second.stdout.lines().nth(1) == Some("0"), || {
        format!(
            "the second call sees the first call's process: {}",
            second.show()
        )
    })
}

pub fn claims_are_roots_and_never_wait() -> Result<(), String> {
    needs_isolation()?;
    let server = Server::start(None)?;
    // The attack: a process that is not root connects to the user pool's socket: refused.
    let py = require_tool("python3")?;
    let sock = server
        .sockets
        .iter()
        .find(|p| p.to_string_lossy().contains("/pool-user-"))
        .ok_or("no socket for the user pool")?;
    let claim = "import socket,sys\ns=socket.socket(socket.AF_UNIX,socket.SOCK_SEQPACKET)\n\
                 s.settimeout(2)\ntry:\n s.connect(sys.argv[1])\n s.send(sys.argv[2].encode())\n print('ANSWER', s.recv(100))\n\
                 except OSError as e:\n print('REFUSED', e.errno)\n";
    let path = sock.display().to_string();
    let r = Cmd::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            &py,
            "-c",
            claim,
            &path,
            "claim",
        ])
        .run();
    check(r.stdout.contains("REFUSED"), || {
        format!("a non-root process reached the pool's socket: {}", r.show())
    })?;
    // Control: root reaches it; anything but `claim` is closed unanswered, and a plan no server
    // prepares has no socket at all.
    let r = Cmd::new(&py).args(["-c", claim, &path, "gimme"]).run();
    check(r.stdout.contains("ANSWER b''"), || {
        format!("root's malformed claim was answered: {}", r.show())
    })?;
    let other = path.replace("/pool-user-", "/pool-user-0");
    let r = Cmd::new(&py).args(["-c", claim, &other, "claim"]).run();
    check(r.stdout.contains("REFUSED 2"), || {
        format!("a socket for another plan: {}", r.show())
    })?;
    // A stuck server: the call builds its own sandbox and runs.
    kill(server.pid(), Signal::SIGSTOP).map_err(|e| e.to_string())?;
    let started = std::time::Instant::now();
    let out = pid1_of_user_call(None);
    let _ = kill(server.pid(), Signal::SIGCONT);
    let out = out?;
    check(!out.contains("pool serve"), || {
        format!("a stopped server handed out a sandbox: {out}")
    })?;
    check(started.elapsed() < Duration::from_secs(5), || {
        format!(
            "the call waited {:?} for a stopped server",
            started.elapsed()
        )
    })?;
    // And once it runs again, calls are pooled again.
    std::thread::sleep(Duration::from_millis(200));
    let out = pid1_of_user_call(None)?;
    check(out.contains("pool serve"), || {
        format!("not pooled after SIGCONT: {out}")
    })
}

pub fn a_call_from_another_plan_builds_its_own() -> Result<(), String> {
    needs_isolation()?;
    let _server = Server::start(None)?;
    // The same contexts from a file: its path is protected in every sandbox, so the plan differs.
    let d = TempDir::new("poolplan");
    let pol = crate::support::policy::Policy::shipped().write(d.path());
    let other = pid1_of_user_call(Some(&pol))?;
    check(!other.contains("pool serve"), || {
        format!("a call of another plan got a prepared sandbox: {other}")
    })?;
    // Control: the embedded default's call is pooled.
    let same = pid1_of_user_call(None)?;
    check(same.contains("pool serve"), || {
        format!("not pooled: {same}")
    })
}

/// Processes whose command line is `... --policy POLICY pool serve` (the server of that policy and
/// its prepared sandboxes' pid 1).
fn pool_processes(policy: &Path) -> usize {
    let want = format!("{}\0pool\0serve", policy.display());
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    std::fs::read(e.path().join("cmdline"))
                        .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&want))
                })
                .count()
        })
        .unwrap_or(0)
}

pub fn control_mode_keeps_the_pool() -> Result<(), String> {
    needs_isolation()?;
    let (port, _) = crate::g3_control::free_ports();
    let d = TempDir::new("poolctl");
    let pol = crate::support::policy::Policy::shipped()
        .replace_table(
            "context.control.supervise",
            &format!("ports = [{port}]\nstop_timeout = 2\n"),
        )
        .write(d.path());
    let p = pol.display().to_string();
    let before = pool_sockets();
    let control = Cmd::sbx(["--policy", &p, "--ctx", "control", "--", "sleep", "300"])
        .limit(Duration::from_secs(120))
        .spawn();
    let up = wait_until(Duration::from_secs(10), || {
        !new_sockets(&before).is_empty() && pool_processes(&pol) >= 3
    });
    check(up, || {
        "control mode started no pool server with two prepared sandboxes".into()
    })?;
    let pooled = pid1_of_user_call(Some(&pol))?;
    check(pooled.contains("pool serve"), || {
        format!("a user call under control mode was not pooled: {pooled}")
    })?;
    kill(Pid::from_raw(control.id() as i32), Signal::SIGTERM).map_err(|e| e.to_string())?;
    let r = control.output_within(Duration::from_secs(30));
    check(!r.hung(), || {
        format!("control mode did not stop: {}", r.show())
    })?;
    let gone = wait_until(Duration::from_secs(5), || pool_processes(&pol) == 0);
    check(gone && new_sockets(&before).is_empty(), || {
        format!(
            "the pool server or a prepared sandbox outlived control mode ({} processes, sockets {:?}): {}",
            pool_processes(&pol),
            new_sockets(&before),
            r.show()
        )
    })?;
    // Control: without control mode the same call builds its own.
    let inline = pid1_of_user_call(Some(&pol))?;
    check(!inline.contains("pool serve"), || {
        format!("pooled with no server: {inline}")
    })
}

/// Bound secrets in prepared sandboxes (issue 33, item 3): the server makes a CA for each
/// sandbox and its pid 1 writes the CA bundle ahead; the call that claims it gets the CA's key
/// for its gate. Two calls of the SDK's `agent` context (with `pool = 2`) each run in a prepared
/// sandbox, reach the stand-in for api.anthropic.com through the gate with their placeholder,
/// and the stand-in receives the real key; each sandbox trusts a CA of its own (two calls, two
/// certificates). Attack: nothing in the sandbox holds a private key or the real key (the CA's
/// key stays with the server and the call's gate), and the command holds no fd but its stdio. Control: with the server stopped, the same
/// call builds its own sandbox (and its own CA) and works the same.
pub fn bound_secrets_run_pooled() -> Result<(), String> {
    let s = crate::g1_bound::Stage::new("poolbound", "")?;
    let policy = s.read("policy.toml");
    let pooled = policy.replacen("[context.agent]\n", "[context.agent]\npool = 2\n", 1);
    check(pooled != policy, || {
        "no [context.agent] in the SDK policy".into()
    })?;
    std::fs::write(s.path("policy.toml"), pooled).map_err(|e| e.to_string())?;
    let call = r#"echo "PID1=$(tr '\0' ' ' < /proc/1/cmdline)"
echo "curl=$(curl -sS -m 15 https://api.anthropic.com/v1/messages -H "x-api-key: $ANTHROPIC_API_KEY" -d '{"via":"curl"}' 2>&1)"
last() { awk '/BEGIN CERT/{c=""} {c=c $0 "\n"} END{printf "%s", c}' "$SSL_CERT_FILE"; }
echo "CA=$(last | openssl x509 -noout -subject -fingerprint -sha256 2>&1 | tr '\n' ' ')"
echo "certs=$(grep -c 'BEGIN CERTIFICATE' "$SSL_CERT_FILE")"
echo "keys=$(cat /run/credentials/sbx/* 2>/dev/null | grep -c 'PRIVATE KEY')"
echo "fds=$(for f in /proc/$$/fd/*; do readlink "$f"; done | tr '\n' ' ')"
"#;
    for name in ["first", "second", "inline"] {
        s.inside(name, call);
    }
    let script = format!(
        r#"{bin} --policy "$D/policy.toml" pool serve 2>"$D/pool.errors" & SP=$!
# Its socket: made after the policy was written (another server's, if any, is older).
i=0; until [ -n "$(find /run/sbx -maxdepth 1 -name 'pool-agent-*.sock' -newer "$D/policy.toml")" ]; do i=$((i+1)); [ $i -gt 200 ] && echo "no pool socket" && exit 3; sleep 0.05; done
sleep 0.5
sbx first
sbx second
kill -TERM $SP; wait $SP; echo "server exit $?"
sbx inline
"#,
        bin = bin()
    );
    let r = s.run_with(
        &[(
            crate::g1_bound::ANTHROPIC_IP,
            443,
            "anthropic",
            "anthropic.log",
            "stand_in.py",
        )],
        &script,
    );
    let show = || s.show(&r);
    check(r.ok(), show)?;
    for name in ["first", "second", "inline"] {
        check(r.stdout.contains(&format!("{name} exit 0")), show)?;
    }
    check(r.stdout.contains("server exit 0"), show)?;
    let outs: Vec<String> = ["first", "second", "inline"]
        .iter()
        .map(|n| s.read(&format!("{n}.out")))
        .collect();
    for (out, name) in outs.iter().zip(["first", "second", "inline"]) {
        // Attack first: neither the real key nor any private key is in the sandbox.
        check(!out.contains(&s.key), || {
            format!("{name}: the real key reached the sandbox: {}", show())
        })?;
        check(crate::g1_bound::field(out, "keys") == "0", || {
            format!("{name}: a private key in /run/credentials: {}", show())
        })?;
        // Nor the system CA bundle's fd that pid 1 copied from (the control: the listing shows
        // the command's stdout, its .out file).
        let fds = crate::g1_bound::field(out, "fds");
        check(
            fds.contains(&format!("{name}.out"))
                && !fds.contains("/etc/ssl")
                && !fds.contains(".crt"),
            || format!("{name}: the command's fds: {}", show()),
        )?;
        let pooled = crate::g1_bound::field(out, "PID1").contains("pool serve");
        check(pooled == (name != "inline"), || {
            format!("{name}: pooled should be {}: {}", name != "inline", show())
        })?;
        check(
            crate::g1_bound::field(out, "curl").contains("stand-in 192.0.2.10 ok"),
            || format!("{name}: the bound host through the gate: {}", show()),
        )?;
        let ca = crate::g1_bound::field(out, "CA");
        check(ca.contains("sbx-exec per-call CA"), || {
            format!("{name}: the bundle's last certificate: {}", show())
        })?;
        let certs: usize = crate::g1_bound::field(out, "certs").parse().unwrap_or(0);
        check(certs > 1, || {
            format!(
                "{name}: the system CAs are missing from the bundle: {}",
                show()
            )
        })?;
    }
    let cas: Vec<&str> = outs
        .iter()
        .map(|o| crate::g1_bound::field(o, "CA"))
        .collect();
    check(
        cas[0] != cas[1] && cas[1] != cas[2] && cas[0] != cas[2],
        || format!("each sandbox should trust a CA of its own: {}", show()),
    )?;
    // The stand-in got the real key three times, never a placeholder.
    let requests: Vec<String> = s
        .read("anthropic.log")
        .split("\n---\n")
        .filter(|q| !q.trim().is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    check(requests.len() == 3, || {
        format!("3 requests expected: {}", show())
    })?;
    check(
        requests
            .iter()
            .all(|q| q.contains(&format!("x-api-key: {}", s.key))),
        || format!("the stand-in did not get the real key: {}", show()),
    )?;
    let summary = s.read("pool.errors");
    check(handed(&summary) == Some(2), || {
        format!("the server should have handed out 2 sandboxes: {}", show())
    })?;
    Ok(())
}
