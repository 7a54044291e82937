//! Setuid root: what the caller's process brings (its cwd, fds, umask, limits, ignored signals,
//! a tiny stack) is reset or refused, and a copy setuid to anyone but root refuses to run.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use super::caller::*;
use crate::harness::*;

pub fn setuid_enters_the_cwd_as_the_caller() -> Result<(), String> {
    let su = setuid_prereqs()?;
    // A directory only root can enter, with an open subdirectory the caller starts in.
    let top = PathBuf::from(format!("/var/lib/sbx-suite-{}-cwd", std::process::id()));
    let inner = top.join("inner");
    let _ = std::fs::remove_dir_all(&top);
    std::fs::create_dir_all(&inner).unwrap();
    std::fs::set_permissions(&inner, PermissionsExt::from_mode(0o755)).unwrap();
    let run = |mode: u32, cwd: bool| {
        std::fs::set_permissions(&top, PermissionsExt::from_mode(mode)).unwrap();
        let mut c = Cmd::new("setpriv");
        c.command()
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                su.path(),
            ])
            .args(["--ctx", "user"]);
        if cwd {
            c.command().args(["--cwd", inner.to_str().unwrap()]);
        }
        c.command().args(["--", "pwd"]).current_dir(&inner);
        c.run()
    };
    let closed = run(0o700, false);
    let asked = run(0o700, true);
    let open = run(0o755, false);
    let _ = std::fs::remove_dir_all(&top);
    // Root could enter it; the caller cannot: the command starts in the context's workdir.
    closed.expect_code(0, "cwd below a directory the caller cannot enter")?;
    check(
        !closed.stdout.contains("inner") && closed.stdout.trim().starts_with('/'),
        || closed.show(),
    )?;
    asked.expect_code(125, "--cwd below a directory the caller cannot enter")?;
    check(asked.stderr.contains("--cwd"), || asked.show())?;
    // Control: once the caller may enter it, the same launch starts there.
    open.expect_code(0, "cwd the caller can enter")?;
    check(open.stdout.trim() == inner.to_str().unwrap(), || {
        open.show()
    })
}

pub fn setuid_resets_fds_umask_limits_and_signals() -> Result<(), String> {
    let su = setuid_prereqs()?;
    // What the caller sets up: a stray fd 5, stdin closed, umask 000, core dumps unlimited, SIGTERM
    // ignored. The probe prints the fds, the umask, the core limit and the ignored-signal mask.
    let probe =
        "ls /proc/self/fd | tr '\\n' ' '; echo; umask; ulimit -c; grep SigIgn /proc/self/status";
    let script = |launcher: &str| {
        format!(
            "exec 5</etc/hostname; exec 0<&-; umask 000; ulimit -c unlimited 2>/dev/null || ulimit -S -c unlimited; trap '' TERM; \
             exec setpriv --reuid=65534 --regid=65534 --clear-groups {launcher} sh -c \"{probe}\""
        )
    };
    let outside = Cmd::sh(&script("")).run();
    let inside = Cmd::sh(&script(&format!("{} --ctx user --", su.path()))).run();
    // Control: without sbx-exec, the caller's settings reach the command.
    outside.expect_code(0, "control")?;
    let first = |r: &Run| r.stdout.lines().next().unwrap_or("").to_string();
    check(first(&outside).split(' ').any(|f| f == "5"), || {
        outside.show()
    })?;
    check(outside.stdout.contains("\n0000\n"), || outside.show())?;
    inside.expect_code(0, "setuid launch")?;
    let fds: Vec<String> = first(&inside)
        .split_whitespace()
        .map(String::from)
        .collect();
    check(!fds.contains(&"5".to_string()), || {
        format!("fd 5 leaked: {}", inside.show())
    })?;
    check(fds.contains(&"0".to_string()), || {
        format!("fd 0 not reopened: {}", inside.show())
    })?;
    check(inside.stdout.contains("\n0022\n0\n"), || {
        format!("umask/core limit not reset: {}", inside.show())
    })?;
    // SIGTERM is signal 15: bit 14 of SigIgn; ignored outside, default inside.
    let ign = |r: &Run| {
        status_field(&r.stdout, "SigIgn")
            .and_then(|h| u64::from_str_radix(&h, 16).ok())
            .map(|m| m & (1 << 14) != 0)
    };
    check(ign(&outside) == Some(true), || outside.show())?;
    check(ign(&inside) == Some(false), || inside.show())
}

pub fn setuid_to_a_non_root_owner_is_refused() -> Result<(), String> {
    let su = setuid_prereqs()?;
    let args = ["--ctx", "user", "--", "true"];
    // Control: the root-owned setuid copy runs for the caller.
    as_caller(su.path(), false, &[], &args).expect_code(0, "setuid root")?;
    // The same binary setuid to uid 4243 would let the caller act as 4243 unchecked: refused.
    nix::unistd::chown(&su.bin, Some(4243.into()), None).map_err(|e| e.to_string())?;
    std::fs::set_permissions(&su.bin, PermissionsExt::from_mode(0o4755)).unwrap();
    let r = as_caller(su.path(), false, &[], &args);
    r.expect_code(125, "setuid to uid 4243")?;
    check(
        r.stderr
            .contains("setuid or setgid to someone other than root"),
        || r.show(),
    )
}

/// A caller's tiny RLIMIT_STACK (16 KiB) made the setuid launcher die of SIGSEGV. Stage 0 raises
/// it (soft up to the hard limit; root may raise the hard one too, given CAP_SYS_RESOURCE): the
/// launch runs, or, when even the hard limit is tiny and cannot be raised, is refused with 125.
pub fn setuid_survives_a_tiny_stack_limit() -> Result<(), String> {
    let su = setuid_prereqs()?;
    let run = |ulimit: &str| {
        Cmd::sh(&format!(
            "{ulimit}; exec setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups {} --ctx user -- sh -c 'echo ran'",
            su.path()
        ))
        .run()
    };
    // Control: with the usual limit the launch runs.
    let normal = run("true");
    normal.expect_code(0, "setuid launch")?;
    check(normal.stdout.trim() == "ran", || normal.show())?;
    // Soft limit 16 KiB: raised, the launch runs.
    let soft = run("ulimit -S -s 16");
    soft.expect_code(0, "setuid launch with a 16 KiB soft stack limit")?;
    check(soft.stdout.trim() == "ran", || soft.show())?;
    // Soft and hard 16 KiB: runs (root raised the hard limit) or a clean 125, never a crash.
    let hard = run("ulimit -s 16");
    check(
        (hard.code == Some(0) && hard.stdout.trim() == "ran")
            || (hard.code == Some(125) && hard.stderr.contains("RLIMIT_STACK")),
        || format!("16 KiB hard stack limit: {}", hard.show()),
    )
}
