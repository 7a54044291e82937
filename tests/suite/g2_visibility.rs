//! G2: a confined context sees and signals only itself.

use std::time::Duration;

use crate::harness::*;

/// A process this test owns, outside any sandbox, recognisable by a marker in its argv.
pub struct Bystander {
    pub child: Spawned,
    pub mark: String,
}

impl Bystander {
    pub fn start(tag: &str) -> Bystander {
        let mark = marker(tag);
        // `exec -a` gives the sleep a unique argv[0] that ps/pkill can find.
        let child = Cmd::new("bash")
            .args(["-c", &format!("exec -a {mark} sleep 300")])
            .limit(Duration::from_secs(300))
            .spawn();
        assert!(wait_until(Duration::from_secs(5), || process_argv0(&mark).is_some()));
        Bystander { child, mark }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn ps_shows_only_the_context() -> Result<(), String> {
    needs_isolation()?;
    let b = Bystander::start("ps");
    let control = Cmd::sh("ps -eo pid,args").run();
    check(control.stdout.contains(&b.mark), || {
        format!("control ps does not show the bystander: {}", control.show())
    })?;
    for ctx in ["user", "platform"] {
        let r = Cmd::sbx(["--ctx", ctx, "--", "ps", "-eo", "pid,args"]).run();
        r.expect_code(0, ctx)?;
        check(!r.stdout.contains(&b.mark), || {
            format!("{ctx} sees the bystander: {}", r.show())
        })?;
        let lines = r.stdout.lines().count();
        // header + pid 1 (sbx-exec) + ps itself
        check(r.stdout.contains("ps -eo pid,args"), || {
            format!("{ctx}: ps does not list itself: {}", r.show())
        })?;
        check(lines <= 3, || {
            format!("{ctx}: ps shows more than its own processes: {}", r.show())
        })?;
    }
    Ok(())
}

pub fn kill_pkill_and_kill_all_fail() -> Result<(), String> {
    needs_isolation()?;
    let mut b = Bystander::start("kill");
    let pid = b.pid().to_string();
    // pkill's pattern is put together at run time, so that the attacking shell's own command line
    // does not contain it (pkill -f would otherwise kill that shell and the rest would not run).
    let (m1, m2) = b.mark.split_at(b.mark.len() / 2);
    let pattern = format!("m1={m1}; m2={m2}; p=\"$m1$m2\"");
    // Control: outside, the same pattern finds the bystander (so pkill inside has a target).
    let c = Cmd::sh(&format!("{pattern}; pgrep -f \"$p\"")).run();
    check(c.stdout.lines().any(|l| l.trim() == pid), || {
        format!(
            "control: pgrep -f does not find the bystander: {}",
            c.show()
        )
    })?;
    for ctx in ["user", "platform"] {
        let r = Cmd::sbx([
            "--ctx",
            ctx,
            "--",
            "sh",
            "-c",
            &format!(
                "{pattern}; kill -9 {pid}; echo kill=$?; pkill -9 -f \"$p\"; echo pkill=$?; \
                 kill -9 -1; echo all=$?; sleep 0.2; echo done"
            ),
        ])
        .run();
        // The attacks ran to the end (the shell was not killed on the way) and each one failed.
        r.expect_code(0, &format!("{ctx}: the attacking shell"))?;
        check(r.stdout.lines().last() == Some("done"), || r.show())?;
        for failed in ["kill=", "pkill="] {
            let rc = r
                .stdout
                .lines()
                .find_map(|l| l.strip_prefix(failed))
                .unwrap_or("missing");
            check(rc != "0" && rc != "missing", || {
                format!("{ctx}: {failed}{rc}: {}", r.show())
            })?;
        }
        std::thread::sleep(Duration::from_millis(200));
        check(b.alive(), || {
            format!("{ctx}: the bystander was killed from inside: {}", r.show())
        })?;
    }
    // Control: the same kill outside the sandbox succeeds.
    let r = Cmd::sh(&format!("kill -9 {pid}")).run();
    r.expect_code(0, "control kill")?;
    check(wait_until(Duration::from_secs(5), || !b.alive()), || {
        "control kill did not kill".into()
    })
}

pub fn ptrace_and_proc_of_outside_fail() -> Result<(), String> {
    needs_isolation()?;
    let b = Bystander::start("ptrace");
    let pid = b.pid();
    // Control: outside, /proc shows it.
    let c = Cmd::sh(&format!("cat /proc/{pid}/cmdline")).run();
    check(c.stdout.contains(&b.mark), || {
        format!("control cannot read cmdline: {}", c.show())
    })?;
    for ctx in ["user", "platform"] {
        let r = Cmd::sbx(["--ctx", ctx, "--", "sh", "-c", &format!("cat /proc/{pid}/environ /proc/{pid}/cmdline 2>&1; ls -l /proc/{pid}/exe 2>&1; echo done")]).run();
        r.expect_code(0, ctx)?;
        check(r.stdout.contains("done"), || r.show())?;
        check(!r.stdout.contains(&b.mark), || {
            format!("{ctx} reads /proc of an outside process: {}", r.show())
        })?;
    }
    // ptrace: with strace, attaching works outside (control) and fails inside.
    let st = require_tool("strace")?;
    let c = Cmd::sh(&format!(
        "timeout -s INT 1 {st} -p {pid} -e trace=none; echo rc=$?"
    ))
    .run();
    check(c.stderr.contains("attached"), || {
        format!("control strace did not attach: {}", c.show())
    })?;
    for ctx in ["user", "platform"] {
        let r = Cmd::sbx([
            "--ctx",
            ctx,
            "--",
            st.as_str(),
            "-p",
            &pid.to_string(),
            "-e",
            "trace=none",
        ])
        .limit(Duration::from_secs(10))
        .run();
        check(
            r.code.is_some_and(|c| c != 0) && !r.stderr.contains("attached"),
            || format!("{ctx}: strace -p outside succeeded: {}", r.show()),
        )?;
    }
    Ok(())
}

pub fn platform_secret_invisible_to_user() -> Result<(), String> {
    needs_isolation()?;
    let secret = marker("pgpass");
    let (cmd, _d) = sbx_with_secrets(
        &format!("PGPASSWORD={secret}\n"),
        &[
            "--ctx",
            "platform",
            "--secrets-fd",
            "3",
            "--",
            "sleep",
            "20",
        ],
    );
    let handle = std::thread::spawn(move || cmd.limit(Duration::from_secs(25)).run());
    // Find the platform target from outside (the suite namespace sees every process).
    let found = wait_until(Duration::from_secs(10), || {
        std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            std::fs::read(e.path().join("environ"))
                .is_ok_and(|v| String::from_utf8_lossy(&v).contains(&secret))
        })
    });
    let user = Cmd::sbx([
        "--ctx",
        "user",
        "--",
        "sh",
        "-c",
        "cat /proc/*/environ; echo done",
    ])
    .run();
    if let Some(pid) = process_exact(&["sleep", "20"]) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = handle.join();
    check(found, || {
        "control: the platform process's environ with the secret was not found from outside".into()
    })?;
    // The hunt ran, and read at least its own environment (so /proc/*/environ is readable there).
    check(
        user.stdout.ends_with("done\n") && user.stdout.contains("PATH="),
        || format!("user's hunt did not run: {}", user.show()),
    )?;
    check(!user.stdout.contains(&secret), || {
        format!("user read the platform secret: {}", user.show())
    })
}
