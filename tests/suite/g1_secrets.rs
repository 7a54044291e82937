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
            "ls /proc/$$/fd | tr '\\n' ' '",
        ],
    );
    let r = cmd.run();
    r.expect_code(0, "fd listing")?;
    check(r.stdout.trim() == "0 1 2", || {
        format!("target holds more than 0 1 2: {}", r.show())
    })
}

pub fn secret_not_in_argv_of_any_process() -> Result<(), String> {
    needs_isolation()?;
    let mark = marker("argv");
    let (cmd, _d) = sbx_with_secrets(
        &format!("TOKEN={SECRET}\n"),
        &[
            "--ctx",
            "platform",
            "--secrets-fd",
            "3",
            "--",
            "sleep",
            "30",
        ],
    );
    let mut cmd = cmd.limit(std::time::Duration::from_secs(20));
    cmd.command().env("SBX_MARK", &mark);
    let handle = std::thread::spawn(move || cmd.run());
    let seen = wait_until(std::time::Duration::from_secs(10), || {
        process_with("sleep 30").is_some()
    });
    let mut argv_leak = None;
    if seen {
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            if let Ok(c) = std::fs::read(entry.path().join("cmdline")) {
                if String::from_utf8_lossy(&c).contains(SECRET) {
                    argv_leak = Some(entry.path());
                }
            }
        }
    }
    if let Some(pid) = process_with("sleep 30") {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = handle.join();
    check(seen, || "the platform process never appeared".into())?;
    check(argv_leak.is_none(), || {
        format!("secret in the argv of {argv_leak:?}")
    })
}
