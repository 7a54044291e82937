//! G1: secrets go only where they are handed.

use crate::harness::*;

const SECRET: &str = "AKIAsentinel-9f3b1c-value";

pub fn platform_receives_handed_secret() -> Result<(), String> {
    needs_isolation()?;
    let (cmd, _d) = sbx_with_secrets(
        &format!("AWS_SECRET_ACCESS_KEY={SECRET}\n"),
        &[
            "--ctx",
            "platform",
            "--secrets-fd",
            "3",
            "--",
            "sh",
            "-c",
            "printf %s \"$AWS_SECRET_ACCESS_KEY\"",
        ],
    );
    let r = cmd.run();
    r.expect_code(0, "platform with a secret")?;
    check(r.stdout == SECRET, || {
        format!("platform did not get the secret: {}", r.show())
    })
}

pub fn json_secrets_round_trip_exactly() -> Result<(), String> {
    needs_isolation()?;
    let value = format!(
        "line1\nline2 with = and \"quotes\" and 'single' ünï 🔑 {}",
        "x".repeat(64 * 1024)
    );
    let json = serde_json::json!({ "BIG": value, "SMALL": "s" }).to_string();
    let (cmd, _d) = sbx_with_secrets(
        &json,
        &[
            "--ctx",
            "platform",
            "--secrets-fd",
            "3",
            "--",
            "sh",
            "-c",
            "printf %s \"$BIG\"",
        ],
    );
    let r = cmd.run();
    r.expect_code(0, "json secrets")?;
    check(r.stdout == value, || {
        format!(
            "value changed in transit ({} vs {} bytes)",
            r.stdout.len(),
            value.len()
        )
    })
}

/// What untrusted code would try in order to find a secret in its environment.
const HUNT: &str =
    "env; cat /proc/*/environ; cat /proc/*/cmdline; echo \"$AWS_SECRET_ACCESS_KEY\"; \
                    python3 -c 'import os; print(dict(os.environ))' 2>/dev/null; true";

pub fn user_never_sees_the_callers_environment() -> Result<(), String> {
    needs_isolation()?;
    // Control: the same hunt without sbx-exec finds the secret the caller's environment holds.
    let control = Cmd::sh(HUNT).env("AWS_SECRET_ACCESS_KEY", SECRET).run();
    check(control.stdout.contains(SECRET), || {
        format!("control could not find the secret: {}", control.show())
    })?;
    for ctx in ["user", "platform"] {
        let r = Cmd::sbx(["--ctx", ctx, "--", "sh", "-c", HUNT])
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .run();
        r.expect_code(0, ctx)?;
        check(
            !r.stdout.contains(SECRET) && !r.stderr.contains(SECRET),
            || format!("{ctx}: the caller's secret leaked through: {}", r.show()),
        )?;
        check(r.stdout.contains("PATH="), || {
            format!("{ctx}: env printed nothing: {}", r.show())
        })?;
    }
    Ok(())
}

pub fn injection_variables_are_dropped() -> Result<(), String> {
    needs_isolation()?;
    let vars = [
        ("BASH_ENV", "/tmp/evil-bashenv"),
        ("NODE_OPTIONS", "--require /tmp/evil.js"),
        ("LD_AUDIT", "/tmp/evil-audit.so"),
        ("PYTHONSTARTUP", "/tmp/evil.py"),
    ];
    let mut control = Cmd::sh("env");
    let mut inside = Cmd::sbx(["--ctx", "platform", "--", "env"]);
    for (k, v) in vars {
        control = control.env(k, v);
        inside = inside.env(k, v);
    }
    let (control, inside) = (control.run(), inside.run());
    inside.expect_code(0, "platform env")?;
    for (k, _) in vars {
        check(control.stdout.contains(&format!("{k}=")), || {
            format!("control lacks {k}: {}", control.show())
        })?;
        check(!inside.stdout.contains(&format!("{k}=")), || {
            format!("{k} reached the target: {}", inside.show())
        })?;
    }
    Ok(())
}

pub fn ld_preload_is_dropped() -> Result<(), String> {
    needs_isolation()?;
    // LD_PRELOAD of an empty string is harmless to the loader but visible in env when passed on.
    let control = Cmd::sh("env").env("LD_PRELOAD", "").run();
    check(control.stdout.contains("LD_PRELOAD="), || {
        "control lacks LD_PRELOAD".into()
    })?;
    let r = Cmd::sbx(["--ctx", "platform", "--", "env"])
        .env("LD_PRELOAD", "")
        .run();
    r.expect_code(0, "platform env")?;
    check(!r.stdout.contains("LD_PRELOAD"), || {
        format!("LD_PRELOAD reached the target: {}", r.show())
    })
}

pub fn user_context_refuses_secrets_without_echo() -> Result<(), String> {
    let (cmd, _d) = sbx_with_secrets(
        &format!("TOKEN={SECRET}\n"),
        &["--ctx", "user", "--secrets-fd", "3", "--", "env"],
    );
    let r = cmd.run();
    r.expect_code(125, "user with --secrets-fd")?;
    check(r.stderr.contains("takes no secrets"), || r.show())?;
    check(
        !r.stdout.contains(SECRET) && !r.stderr.contains(SECRET),
        || format!("leaked: {}", r.show()),
    )
}

pub fn malformed_secrets_fail_without_echo() -> Result<(), String> {
    let inputs = [
        format!("{{\"A\": 5, \"B\": \"{SECRET}\"}}"),
        format!("{{\"A\": \"{SECRET}\""),
        format!("{SECRET}\n"),
        format!("not a name={SECRET}\n"),
        format!("A={SECRET}\nA={SECRET}\n"),
    ];
    for input in inputs {
        let (cmd, _d) = sbx_with_secrets(
            &input,
            &["--ctx", "platform", "--secrets-fd", "3", "--", "true"],
        );
        let r = cmd.run();
        r.expect_code(125, "malformed secrets")?;
        check(r.stderr.contains("secrets:"), || {
            format!("no useful message: {}", r.show())
        })?;
        check(
            !r.stderr.contains(SECRET) && !r.stdout.contains(SECRET),
            || format!("secret echoed: {}", r.show()),
        )?;
    }
    Ok(())
}

pub fn secrets_fd_is_closed_before_exec() -> Result<(), String> {
    needs_isolation()?;
    let (cmd, _d) = sbx_with_secrets(
        "T=v\n",
        &[
            "--ctx",
            "platform",
            "--secrets-fd",
            "3",
            "--",
            "sh",
            "-c",
            // The shell's fds, listed by a child while the shell holds nothing else (no pipeline,
            // whose pipe the shell might still hold; not the last command, which sh would exec).
            "ls /proc/$$/fd; :",
        ],
    );
    let r = cmd.run();
    r.expect_code(0, "fd listing")?;
    let fds = |r: &Run| r.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    check(fds(&r) == "0 1 2", || {
        format!("target holds more than 0 1 2: {}", r.show())
    })?;
    // Control: the same listing without sbx-exec shows the inherited fd 3.
    let d = TempDir::new("fd3");
    let f = d.file("secrets", "T=v\n");
    let c = Cmd::sh(&format!(
        "exec 3<{}; sh -c 'ls /proc/$$/fd; :'",
        f.display()
    ))
    .run();
    // (Other fds the suite itself inherited may show up here too.)
    check(c.stdout.split_whitespace().any(|fd| fd == "3"), || {
        format!(
            "control: fd 3 is not inherited without sbx-exec: {}",
            c.show()
        )
    })
}

/// The processes (seen from the suite's namespace, sandboxed ones included) whose argv holds `value`.
fn argv_holding(value: &str) -> Vec<std::path::PathBuf> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(value))
        })
        .map(|e| e.path())
        .collect()
}

pub fn secret_not_in_argv_of_any_process() -> Result<(), String> {
    needs_isolation()?;
    // A canary that IS in an argv: the shell inside platform gets it as an argument, so the same
    // scan must find it there (the scanner sees the sandbox's processes).
    let canary = marker("argvcanary");
    let (cmd, _d) = sbx_with_secrets(
        &format!("TOKEN={SECRET}\n"),
        &[
            "--ctx",
            "platform",
            "--secrets-fd",
            "3",
            "--",
            "sh",
            "-c",
            "sleep 30; :",
            &canary,
        ],
    );
    let cmd = cmd.limit(std::time::Duration::from_secs(20));
    let handle = std::thread::spawn(move || cmd.run());
    let seen = wait_until(std::time::Duration::from_secs(10), || {
        process_exact(&["sleep", "30"]).is_some()
    });
    let (canary_found, secret_found) = if seen {
        (argv_holding(&canary), argv_holding(SECRET))
    } else {
        (Vec::new(), Vec::new())
    };
    if let Some(pid) = process_exact(&["sleep", "30"]) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let r = handle.join().map_err(|_| "the platform run panicked")?;
    check(seen, || {
        format!("the platform process never appeared: {}", r.show())
    })?;
    check(!canary_found.is_empty(), || {
        format!(
            "control: the scan does not find the canary in the sandboxed shell's argv: {}",
            r.show()
        )
    })?;
    check(secret_found.is_empty(), || {
        format!("secret in the argv of {secret_found:?}")
    })
}

use crate::g1_tools::{policy_with, PLATFORM_SECRETS};

/// A value that must come through exactly: newlines, `=`, quotes, multibyte UTF-8, 64 KiB.
fn awkward_value() -> String {
    format!(
        "line1\nline2 with = and \"quotes\" and 'single' ünï 🔑 {SECRET}\n{}",
        "y".repeat(64 * 1024)
    )
}

fn platform_secrets_with(extra: &str) -> String {
    format!("{PLATFORM_SECRETS}\n{extra}")
}

pub fn exec_allow_is_checked_before_secrets_are_read() -> Result<(), String> {
    needs_isolation()?;
    let dir = TempDir::new("execfirst");
    let env = std::fs::canonicalize("/usr/bin/env").unwrap();
    let policy = policy_with(
        &dir,
        &[(
            "[context.platform.exec]\n",
            &format!("[context.platform.exec]\nallow = [\"{}\"]\n", env.display()),
        )],
    )?;
    let pol = policy.to_str().unwrap();
    // Unreadable garbage on the fd: if sbx-exec read it, it would fail with a "secrets:" error.
    let garbage = format!("{SECRET} is not NAME=value\n");
    let head = [
        "--policy",
        pol,
        "--ctx",
        "platform",
        "--secrets-fd",
        "3",
        "--",
    ];
    let (cmd, _s) = sbx_with_secrets(&garbage, &[&head[..], &["sh", "-c", "true"]].concat());
    let r = cmd.run();
    r.expect_code(125, "a program outside exec.allow")?;
    check(
        r.stderr.contains("is not allowed") && !r.stderr.contains("secrets:"),
        || {
            format!(
                "refused for the wrong reason (secrets read first?): {}",
                r.show()
            )
        },
    )?;
    check(!r.stderr.contains(SECRET), || r.show())?;
    // Control: an allowed program gets as far as reading (and rejecting) the secrets.
    let (cmd, _s) = sbx_with_secrets(&garbage, &[&head[..], &["/usr/bin/env"]].concat());
    let r = cmd.run();
    r.expect_code(125, "allowed program, bad secrets")?;
    check(r.stderr.contains("secrets:"), || r.show())
}

pub fn audit_log_has_names_never_values() -> Result<(), String> {
    needs_isolation()?;
    let dir = TempDir::new("audit");
    let log = dir.path().join("audit.jsonl");
    let policy = policy_with(
        &dir,
        &[(
            "version = 1\n",
            &format!("version = 1\naudit = \"{}\"\n", log.display()),
        )],
    )?;
    let pol = policy.to_str().unwrap();
    let status = dir.path().join("status.jsonl");
    let secrets = format!("TOKEN={SECRET}\nPGPASSWORD={SECRET}-pg\n");
    // 1: a run with secrets, an argument that holds data, and a status fd.
    let (mut cmd, _s) = sbx_with_secrets(
        &secrets,
        &[
            "--policy",
            pol,
            "--ctx",
            "platform",
            "--secrets-fd",
            "3",
            "--status-fd",
            "4",
            "--",
            "sh",
            "-c",
            "exit 7",
            "data-in-argv",
        ],
    );
    // fd 4 for --status-fd: the status file, opened by the wrapper shell next to fd 3.
    let mut args: Vec<String> = cmd
        .command()
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    args[1] = format!("{} 4>\"{}\"", args[1], status.display());
    let mut with_status = Cmd::new("/bin/sh");
    with_status.command().args(&args);
    let r = with_status.run();
    r.expect_code(7, "platform run")?;
    // 2: refused (user takes no secrets), 3: refused (unknown command).
    let (cmd, _s2) = sbx_with_secrets(
        &secrets,
        &[
            "--policy",
            pol,
            "--ctx",
            "user",
            "--secrets-fd",
            "3",
            "--",
            "true",
        ],
    );
    cmd.run().expect_code(125, "user refuses secrets")?;
    Cmd::sbx(["--policy", pol, "--ctx", "user", "--", "no-such-cmd-sbx"])
        .run()
        .expect_code(127, "unknown command")?;

    let text = std::fs::read_to_string(&log).map_err(|e| format!("no audit log: {e}"))?;
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).map_err(|e| format!("not JSON: {l:?}: {e}")))
        .collect::<Result<_, _>>()?;
    // The run: a start record, then the end record with the same call id; each refusal: one.
    check(lines.len() == 4, || format!("expected 4 lines: {text}"))?;
    check(
        lines[0]["event"] == "start"
            && lines[0]["call"] == lines[1]["call"]
            && lines[0]["context"] == "platform"
            && lines[0].get("status").is_none(),
        || format!("start line: {}", lines[0]),
    )?;
    let lines = &lines[1..];
    check(
        lines[0]["event"] == "end"
            && lines[1]["event"] == "refused"
            && lines[2]["event"] == "refused",
        || format!("events: {text}"),
    )?;
    let first = &lines[0];
    check(
        first["context"] == "platform"
            && first["argv0"] == "sh"
            && first["argc"] == 3
            && first["status"] == 7
            && first["secrets"] == serde_json::json!(["TOKEN", "PGPASSWORD"])
            && first["uid"].is_u64()
            && first["pid"].is_i64()
            && first["duration_ms"].is_u64()
            && first["time"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z') && t.len() == 24)
            && first.get("error").is_none(),
        || format!("first line: {first}"),
    )?;
    check(
        lines[1]["status"] == 125
            && lines[1]["context"] == "user"
            && lines[1]["error"]
                .as_str()
                .is_some_and(|e| e.contains("takes no secrets")),
        || format!("refusal line: {}", lines[1]),
    )?;
    check(lines[2]["status"] == 127, || format!("{}", lines[2]))?;
    check(!text.contains("data-in-argv"), || {
        format!("arguments logged: {text}")
    })?;
    let mode = std::fs::metadata(&log).unwrap().permissions().mode() & 0o777;
    check(mode == 0o600, || format!("audit log mode {mode:o}"))?;
    // The value is in no file sbx-exec wrote (the audit log, the status file), nor anywhere in
    // this test's directory except the secrets files the test itself wrote.
    let status_text = std::fs::read_to_string(&status).unwrap_or_default();
    check(status_text.contains("exit-code"), || {
        format!("status fd not written: {status_text:?}")
    })?;
    for entry in walk(dir.path()) {
        if entry.file_name().is_some_and(|n| n == "secrets") {
            continue;
        }
        let bytes = std::fs::read(&entry).unwrap_or_default();
        check(!String::from_utf8_lossy(&bytes).contains(SECRET), || {
            format!("the secret value is in {}", entry.display())
        })?;
    }
    Ok(())
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

use std::os::unix::fs::PermissionsExt;

const SPLIT_SCRIPT: &str = "printf 'plain %s end\\n' \"$TOKEN\"; \
     printf %s \"$TOKEN\" | head -c 9; sleep 0.3; printf %s \"$TOKEN\" | tail -c +10; echo; \
     printf %s \"$TOKEN\" | base64; \
     printf 'err %s\\n' \"$TOKEN\" >&2; exit 3";

pub fn redaction_masks_values_split_and_base64() -> Result<(), String> {
    needs_isolation()?;
    let dir = TempDir::new("redact");
    let policy = policy_with(
        &dir,
        &[(PLATFORM_SECRETS, &platform_secrets_with("redact = true"))],
    )?;
    let b64 = Cmd::sh(&format!("printf %s '{SECRET}' | base64"))
        .run()
        .stdout;
    let b64 = b64.trim();
    let args = |pol: Option<&str>| -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        if let Some(p) = pol {
            v.extend(["--policy".into(), p.to_string()]);
        }
        v.extend(
            [
                "--ctx",
                "platform",
                "--secrets-fd",
                "3",
                "--",
                "sh",
                "-c",
                SPLIT_SCRIPT,
            ]
            .map(String::from),
        );
        v
    };
    // Control: with redact off (the default policy) the value and its base64 come out as-is.
    let a = args(None);
    let (cmd, _s) = sbx_with_secrets(
        &format!("TOKEN={SECRET}\n"),
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let plain = cmd.run();
    plain.expect_code(3, "redact off")?;
    check(
        plain.stdout.matches(SECRET).count() == 2
            && plain.stdout.contains(b64)
            && plain.stderr.contains(SECRET),
        || format!("control did not print the value: {}", plain.show()),
    )?;
    // redact = true: every form is masked, on both streams, and the exit status is kept.
    let a = args(Some(policy.to_str().unwrap()));
    let (cmd, _s) = sbx_with_secrets(
        &format!("TOKEN={SECRET}\n"),
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let r = cmd.run();
    r.expect_code(3, "redact on")?;
    check(
        !r.stdout.contains(SECRET)
            && !r.stderr.contains(SECRET)
            && !r.stdout.contains(b64)
            && !r.stdout.contains(&SECRET[..12]),
        || format!("a value got through: {}", r.show()),
    )?;
    check(
        r.stdout == "plain <redacted:TOKEN> end\n<redacted:TOKEN>\n<redacted:TOKEN>\n"
            && r.stderr.contains("err <redacted:TOKEN>"),
        || format!("output changed beyond the masks: {}", r.show()),
    )
}

pub fn secrets_files_round_trip_and_stay_private() -> Result<(), String> {
    needs_isolation()?;
    let dir = TempDir::new("files");
    // The target signals through files in the test's directory: /tmp shared, not private.
    let policy = policy_with(
        &dir,
        &[
            (
                PLATFORM_SECRETS,
                &platform_secrets_with("files = [\"BIGFILE\"]"),
            ),
            ("tmpfs = [\"/root\", \"/tmp\", ", "tmpfs = [\"/root\", "),
            (
                "writable = [\"/workspace\"]",
                "writable = [\"/workspace\", \"/tmp\"]",
            ),
        ],
    )?;
    let pol = policy.to_str().unwrap();
    let value = awkward_value();
    let ready = dir.path().join("ready");
    let done = dir.path().join("done");
    let json = serde_json::json!({ "BIGFILE": value }).to_string();
    let script = format!(
        "cat \"$BIGFILE\"; stat -c '%a %u' \"$BIGFILE\" \"$CREDENTIALS_DIRECTORY\" >&2; \
         echo \"var=$BIGFILE dir=$CREDENTIALS_DIRECTORY\" >&2; \
         touch '{r}'; i=0; while [ ! -e '{d}' ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done",
        r = ready.display(),
        d = done.display()
    );
    let (cmd, _s) = sbx_with_secrets(
        &json,
        &[
            "--policy",
            pol,
            "--ctx",
            "platform",
            "--secrets-fd",
            "3",
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    let handle = std::thread::spawn(move || cmd.run());
    let started = wait_until(std::time::Duration::from_secs(30), || ready.exists());
    // While it runs: not on the host, not in /proc/mounts outside, not readable from user.
    let host_sees = std::path::Path::new("/run/credentials/sbx").exists();
    let mounts_outside = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let user = Cmd::sbx([
        "--policy", pol, "--ctx", "user", "--", "sh", "-c",
        "cat /run/credentials/sbx/BIGFILE; ls -la /run/credentials/sbx; cat /proc/*/root/run/credentials/sbx/BIGFILE",
    ])
    .run();
    std::fs::write(&done, "").unwrap();
    let r = handle.join().map_err(|_| "the platform run panicked")?;
    check(started, || {
        format!("platform never got ready: {}", r.show())
    })?;
    r.expect_code(0, "platform with secrets.files")?;
    check(r.stdout == value, || {
        format!(
            "file content changed ({} vs {} bytes)",
            r.stdout.len(),
            value.len()
        )
    })?;
    check(r.stderr.contains("400 0\n500 0\n"), || {
        format!("modes: {}", r.stderr)
    })?;
    check(
        r.stderr
            .contains("var=/run/credentials/sbx/BIGFILE dir=/run/credentials/sbx"),
        || r.show(),
    )?;
    check(!host_sees, || {
        "/run/credentials/sbx exists on the host".into()
    })?;
    check(!mounts_outside.contains("/run/credentials"), || {
        format!("mount visible outside: {mounts_outside}")
    })?;
    check(
        !user.stdout.contains(SECRET) && user.stderr.contains("No such file"),
        || format!("user code could read the file: {}", user.show()),
    )?;
    // After it: nothing left (the mount point directory itself may stay, empty).
    check(
        !std::path::Path::new("/run/credentials/sbx").exists(),
        || "left behind on the host".into(),
    )?;
    let after = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    check(!after.contains("/run/credentials"), || after.clone())
}

pub fn secrets_files_belong_to_the_run_as_user() -> Result<(), String> {
    needs_isolation()?;
    let dir = TempDir::new("filesrunas");
    let policy = policy_with(
        &dir,
        &[
            (PLATFORM_SECRETS, &platform_secrets_with("files = [\"TOKEN\"]")),
            (
                "caps = [\"CHOWN\", \"DAC_OVERRIDE\", \"FOWNER\", \"FSETID\", \"KILL\", \"SETGID\", \"SETUID\", \"SETPCAP\",\n        \"NET_BIND_SERVICE\", \"SYS_CHROOT\", \"AUDIT_WRITE\"]\nseccomp = \"default\"                # deny",
                "run_as = { uid = 65534, gid = 65534 }\nseccomp = \"default\"                # deny",
            ),
        ],
    )?;
    let (cmd, _s) = sbx_with_secrets(
        &format!("TOKEN={SECRET}\n"),
        &[
            "--policy",
            policy.to_str().unwrap(),
            "--ctx",
            "platform",
            "--secrets-fd",
            "3",
            "--",
            "sh",
            "-c",
            "id -u; stat -c '%a %u %g' \"$TOKEN\" \"$CREDENTIALS_DIRECTORY\"; cat \"$TOKEN\"",
        ],
    );
    let r = cmd.run();
    r.expect_code(0, "run_as with secrets.files")?;
    check(
        r.stdout == format!("65534\n400 65534 65534\n500 65534 65534\n{SECRET}"),
        || r.show(),
    )
}

pub fn audit_to_stderr_is_one_json_line() -> Result<(), String> {
    needs_isolation()?;
    let dir = TempDir::new("auditstderr");
    let policy = policy_with(
        &dir,
        &[("version = 1\n", "version = 1\naudit = \"stderr\"\n")],
    )?;
    let (cmd, _s) = sbx_with_secrets(
        &format!("TOKEN={SECRET}\n"),
        &[
            "--policy",
            policy.to_str().unwrap(),
            "--ctx",
            "platform",
            "--secrets-fd",
            "3",
            "--",
            "true",
        ],
    );
    let r = cmd.run();
    r.expect_code(0, "audit to stderr")?;
    // A start record before the command runs, an end record after: one JSON line each.
    let lines: Vec<&str> = r.stderr.lines().collect();
    check(lines.len() == 2, || r.show())?;
    let parse = |l: &str| -> Result<serde_json::Value, String> {
        serde_json::from_str(l).map_err(|e| format!("not JSON ({e}): {}", r.show()))
    };
    let (s, v) = (parse(lines[0])?, parse(lines[1])?);
    check(
        s["event"] == "start" && v["event"] == "end" && s["call"] == v["call"],
        || r.show(),
    )?;
    check(
        v["secrets"] == serde_json::json!(["TOKEN"]) && v["argv0"] == "true" && v["status"] == 0,
        || r.show(),
    )?;
    check(!r.stderr.contains(SECRET), || r.show())
}

/// G8: secret names pass the same injection filter as environment names. A secret named
/// `LD_PRELOAD` (`BASH_ENV`, `NODE_OPTIONS`, `GIT_CONFIG_*`...) would make the trusted tool load the
/// caller's code; it is refused (125, naming the variable, never the value) while an ordinary name
/// is delivered.
pub fn injection_secret_names_are_refused() -> Result<(), String> {
    needs_isolation()?;
    let value = "/tmp/evil-sentinel-7c1e.so";
    let run = |name: &str| {
        let (cmd, d) = sbx_with_secrets(
            &format!("TOKEN=fine\n{name}={value}\n"),
            &[
                "--ctx",
                "platform",
                "--secrets-fd",
                "3",
                "--",
                "sh",
                "-c",
                "printf '%s' \"$TOKEN\"",
            ],
        );
        (cmd.run(), d)
    };
    for name in [
        "LD_PRELOAD",
        "BASH_ENV",
        "NODE_OPTIONS",
        "GIT_CONFIG_KEY_0",
        "GIT_SSH_COMMAND",
    ] {
        let (r, _d) = run(name);
        r.expect_code(125, &format!("secret named {name}"))?;
        check(r.stderr.contains(name), || {
            format!("the refusal does not name {name}: {}", r.show())
        })?;
        check(
            !r.stderr.contains(value) && !r.stdout.contains(value),
            || format!("the value of {name} leaked: {}", r.show()),
        )?;
        check(r.stdout.is_empty(), || {
            format!("{name}: the command ran: {}", r.show())
        })?;
    }
    // Control: an ordinary name is delivered.
    let (r, _d) = run("OTHER_TOKEN");
    r.expect_code(0, "ordinary secret names")?;
    check(r.stdout == "fine", || r.show())
}
