//! Peak RSS of one command, measured from a small process.
//!
//! `wait4`'s `ru_maxrss` is the larger of the child's own peak and its waited-for descendants';
//! and a forked child's peak starts at its parent's RSS (the copied pages count, and `execve` keeps
//! the old peak in `signal->maxrss`). A command forked straight from the suite (tens of MiB, more
//! when other tests run) reports the suite's size, not its own. So the suite re-executes itself
//! as a small waiter ([`WAITER`] in its environment): fresh, a few MiB, it forks the command, waits
//! for it with `wait4`, writes the peak in KiB to the file the variable names, and exits with the
//! command's status. The command's own peak then counts from the waiter's few MiB.

use std::os::unix::process::CommandExt;

/// The environment variable that makes the suite binary a waiter: the file to write the peak to.
pub const WAITER: &str = "SBX_SUITE_RSS_WAITER";

/// If this process is a waiter, run its command (argv[1..]) and exit; else return.
pub fn waiter_main() {
    let Some(out) = std::env::var_os(WAITER) else {
        return;
    };
    std::env::remove_var(WAITER);
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let Some((program, rest)) = args.split_first() else {
        eprintln!("{WAITER}: no command");
        std::process::exit(125);
    };
    let mut cmd = std::process::Command::new(program);
    cmd.args(rest);
    // SAFETY: prctl is async-signal-safe; the command dies with the waiter (a test's watchdog
    // kills the waiter).
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{WAITER}: cannot run {program:?}: {e}");
            std::process::exit(125);
        }
    };
    let pid = child.id() as i32;
    let mut status = 0;
    // SAFETY: a zeroed rusage is valid; wait4 fills it and the status for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if r != pid {
        eprintln!("{WAITER}: wait4: {}", std::io::Error::last_os_error());
        std::process::exit(125);
    }
    if let Err(e) = std::fs::write(&out, usage.ru_maxrss.to_string()) {
        eprintln!("{WAITER}: cannot write {out:?}: {e}");
        std::process::exit(125);
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    std::process::exit(code);
}

/// A command that runs `program` with an empty environment under a waiter writing its peak RSS
/// to `out` (read it with [`peak_kib`] after the command ended).
pub fn measured(program: &str, out: &std::path::Path) -> std::process::Command {
    let me = std::env::current_exe().expect("the suite binary's path");
    let mut cmd = std::process::Command::new(me);
    cmd.env_clear().env(WAITER, out).arg(program);
    cmd
}

/// The peak RSS in KiB a waiter wrote to `out`.
pub fn peak_kib(out: &std::path::Path) -> Result<i64, String> {
    let text = std::fs::read_to_string(out).map_err(|e| format!("{}: {e}", out.display()))?;
    text.trim()
        .parse()
        .map_err(|e| format!("{}: {text:?}: {e}", out.display()))
}
