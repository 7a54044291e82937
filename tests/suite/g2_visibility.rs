//! G2: a confined context sees and signals only itself.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::*;

/// A process this test owns, outside any sandbox, recognisable by a marker in its argv.
pub struct Bystander {
    pub child: Child,
    pub mark: String,
}

impl Bystander {
    pub fn start(tag: &str) -> Bystander {
        let mark = marker(tag);
        // `exec -a` gives the sleep a unique argv[0] that ps/pkill can find.
        let child = Command::new("bash")
            .args(["-c", &format!("exec -a {mark} sleep 300")])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn bystander");
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
    for ctx in ["user", "platform"] {
        let r = Cmd::sbx([
            "--ctx",
            ctx,
            "--",
            "sh",
            "-c",
            &format!(
                "kill -9 {pid}; pkill -9 -f {}; kill -9 -1; sleep 0.2; echo done",
                b.mark
            ),
        ])
        .run();
        check(r.stdout.contains("done") || r.signal.is_none(), || r.show())?;
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
    let strace = which("strace");
    for ctx in ["user", "platform"] {
        let r = Cmd::sbx(["--ctx", ctx, "--", "sh", "-c", &format!("cat /proc/{pid}/environ /proc/{pid}/cmdline 2>&1; ls -l /proc/{pid}/exe 2>&1; true")]).run();
        check(!r.stdout.contains(&b.mark), || {
            format!("{ctx} reads /proc of an outside process: {}", r.show())
        })?;
        if let Some(st) = &strace {
            let r = Cmd::sbx([
                "--ctx",
                ctx,
                "--",
                st,
                "-p",
                &pid.to_string(),
                "-e",
                "trace=none",
            ])
            .limit(Duration::from_secs(10))
            .run();
            check(r.code != Some(0) && r.signal.is_none(), || {
                format!("{ctx}: strace -p outside succeeded: {}", r.show())
            })?;
        }
    }
    // Control: outside, /proc shows it and (if strace exists) ptrace attaches.
    let c = Cmd::sh(&format!("cat /proc/{pid}/cmdline")).run();
    check(c.stdout.contains(&b.mark), || {
        format!("control cannot read cmdline: {}", c.show())
    })?;
    if let Some(st) = &strace {
        let c = Cmd::sh(&format!(
            "timeout -s INT 1 {st} -p {pid} -e trace=none; echo rc=$?"
        ))
        .run();
        check(c.stderr.contains("attached"), || {
            format!("control strace did not attach: {}", c.show())
        })?;
    } else if require_isolation() {
        return Err("strace is not installed (.ci/run installs it)".into());
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
        "cat /proc/*/environ; true",
    ])
    .run();
    if let Some(pid) = process_with("sleep 20") {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = handle.join();
    check(found, || {
        "control: the platform process's environ with the secret was not found from outside".into()
    })?;
    check(!user.stdout.contains(&secret), || {
        format!("user read the platform secret: {}", user.show())
    })
}

pub fn which(name: &str) -> Option<String> {
    std::env::var("PATH")
        .unwrap_or_else(|_| "/usr/bin:/bin".into())
        .split(':')
        .chain(["/usr/bin", "/bin", "/usr/sbin"])
        .map(|d| format!("{d}/{name}"))
        .find(|p| std::path::Path::new(p).exists())
}
