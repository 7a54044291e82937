//! Setuid root: the caller cannot cut or hide the audit log (killing its launcher, a file size
//! limit), and sees nothing of the system policy that is root's business.

use std::path::Path;
use std::time::Duration;

use super::caller::*;
use crate::harness::*;

/// A system policy with an audit log at `log` and a one-shot context `open` for any caller.
fn audit_policy(log: &Path) -> String {
    format!(
        "version = 1\naudit = \"{}\"\n[context.open]\nnamespaces = [\"pid\", \"mount\"]\n",
        log.display()
    )
}

/// Every line of the audit log, parsed; an error names a line that is not one JSON object.
fn audit_lines(log: &Path) -> Result<Vec<serde_json::Value>, String> {
    let text = std::fs::read_to_string(log).map_err(|e| format!("no audit log: {e}"))?;
    check(text.is_empty() || text.ends_with('\n'), || {
        format!("the log ends in a partial line: {text:?}")
    })?;
    text.lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .filter(|v| v.is_object())
                .ok_or_else(|| format!("not a JSON line: {l:?} in {text:?}"))
        })
        .collect()
}

/// A setuid caller SIGKILLs its own launcher once the command runs: the write-ahead start record
/// is already in the log (valid JSON, with the call id); the end record never comes. Control: an
/// undisturbed call leaves start and end with one call id and the exit status.
pub fn setuid_killed_launcher_leaves_the_start_record() -> Result<(), String> {
    let su = setuid_prereqs()?;
    let dir = TempDir::new("audit-kill");
    let log = dir.path().join("audit.jsonl");
    let _policy = SystemPolicy::install(&audit_policy(&log), 0o644, 0o755)?;
    // Control.
    as_caller(
        su.path(),
        false,
        &[],
        &["--ctx", "open", "--", "sh", "-c", "exit 3"],
    )
    .expect_code(3, "an undisturbed call")?;
    let lines = audit_lines(&log)?;
    check(
        lines.len() == 2
            && lines[0]["event"] == "start"
            && lines[1]["event"] == "end"
            && lines[0]["call"] == lines[1]["call"]
            && lines[1]["status"] == 3,
        || format!("control: {lines:?}"),
    )?;
    let mark = marker("auditkill");
    let mut child = Cmd::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            su.path(),
            "--ctx",
            "open",
            "--",
            "bash",
            "-c",
            &format!("exec -a {mark} sleep 60"),
        ])
        .spawn();
    let started = wait_until(Duration::from_secs(10), || process_argv0(&mark).is_some());
    // The caller kills its launcher (setpriv exec'd into it: same pid).
    let kill = Cmd::new("setpriv")
        .command_args(&[
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            "kill",
            "-KILL",
            &child.id().to_string(),
        ])
        .run();
    let status = child.wait().map_err(|e| e.to_string())?;
    check(started, || "the command never started".to_string())?;
    kill.expect_code(0, "the caller kills its launcher")?;
    check(
        std::os::unix::process::ExitStatusExt::signal(&status) == Some(9),
        || format!("launcher not killed: {status:?}"),
    )?;
    let lines = audit_lines(&log)?;
    check(lines.len() == 3, || format!("{lines:?}"))?;
    let last = &lines[2];
    check(
        last["event"] == "start"
            && last["context"] == "open"
            && last["argv0"] == "bash"
            && last["uid"] == 65534
            && last["call"].as_str().is_some_and(|c| c.len() == 16)
            && last["call"] != lines[0]["call"],
        || format!("start record of the killed call: {last}"),
    )
}

/// A setuid caller lowers RLIMIT_FSIZE to just above the log's size, so a record would be cut
/// (and SIGXFSZ kill the launcher) mid-line. sbx-exec lifts the limit for its own writes: whole
/// lines are written, the command gets the caller's limit back, and the next call's records are
/// valid separate lines. With the hard limit lowered too (no CAP_SYS_RESOURCE to lift it), the
/// launch is refused with 125 and no partial line is written. Control: every line parses.
pub fn setuid_file_size_limit_cannot_cut_the_audit_log() -> Result<(), String> {
    let su = setuid_prereqs()?;
    let dir = TempDir::new("audit-fsize");
    let log = dir.path().join("audit.jsonl");
    let _policy = SystemPolicy::install(&audit_policy(&log), 0o644, 0o755)?;
    let call = |fsize: Option<String>| {
        let mut c = Cmd::new("prlimit");
        let limit = fsize.unwrap_or_else(|| "unlimited:unlimited".into());
        c.command().args([
            &format!("--fsize={limit}"),
            "setpriv",
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            su.path(),
            "--ctx",
            "open",
            "--",
            "sh",
            "-c",
            "ulimit -f",
        ]);
        c.run()
    };
    call(None).expect_code(0, "control call")?;
    let size = std::fs::metadata(&log).map_err(|e| e.to_string())?.len();
    let soft = size + 100;
    let r = call(Some(format!("{soft}:unlimited")));
    r.expect_code(0, "call with the soft limit just above the log")?;
    check(r.stdout.trim() == (soft / 1024).to_string(), || {
        format!(
            "the command did not get the caller's limit {soft}: {}",
            r.show()
        )
    })?;
    let lines = audit_lines(&log)?;
    check(
        lines.len() == 4 && lines[2]["event"] == "start" && lines[3]["event"] == "end",
        || format!("{lines:?}"),
    )?;
    let size = std::fs::metadata(&log).map_err(|e| e.to_string())?.len();
    let hard = size + 100;
    let r = call(Some(format!("{hard}:{hard}")));
    check(
        r.code == Some(0) || (r.code == Some(125) && r.stderr.contains("audit log")),
        || format!("hard limit just above the log: {}", r.show()),
    )?;
    check(!r.stderr.contains(log.to_str().unwrap()), || {
        format!(
            "the root-only audit path was shown to the caller: {}",
            r.show()
        )
    })?;
    audit_lines(&log)?;
    // The next call writes valid, separate lines.
    call(None).expect_code(0, "the next call")?;
    let lines = audit_lines(&log)?;
    let n = lines.len();
    check(
        lines[n - 2]["event"] == "start" && lines[n - 1]["event"] == "end",
        || format!("{lines:?}"),
    )
}

/// A policy whose admission lists and audit path are root's business.
const SECRET_POLICY: &str = r#"version = 1
audit = "/var/log/sbx-hidden-audit-7d2.jsonl"
[context.staff]
namespaces = ["pid", "mount"]
allow_callers = { uids = [4711], gids = [4242] }
[context.admins]
namespaces = ["pid", "mount"]
allow_callers = { uids = [0, 4712] }
"#;

/// As nobody, `policy show` read a 0600 system policy with root's rights, and refusals and
/// `probe --json` listed allow_callers. Now `policy show` reads as the caller (refused for 0600,
/// shown for 0644), and a caller that is not admitted sees "not admitted", never the lists or the
/// audit path. Control: root sees all of it.
pub fn setuid_caller_sees_nothing_root_only() -> Result<(), String> {
    let su = setuid_prereqs()?;
    let leaks = |s: &str| {
        ["4711", "4712", "sbx-hidden-audit"]
            .iter()
            .any(|n| s.contains(n))
    };
    {
        let _p = SystemPolicy::install(SECRET_POLICY, 0o600, 0o755)?;
        let r = as_caller(su.path(), false, &[], &["policy", "show"]);
        check(
            r.code == Some(125) && !leaks(&r.stdout) && !leaks(&r.stderr),
            || format!("nobody read a 0600 policy: {}", r.show()),
        )?;
        // Control: root reads it.
        let root = Cmd::sbx(["policy", "show"]).run();
        root.expect_code(0, "root policy show")?;
        check(
            root.stdout.contains("4711") && root.stdout.contains("sbx-hidden-audit"),
            || root.show(),
        )?;
    }
    let _p = SystemPolicy::install(SECRET_POLICY, 0o644, 0o755)?;
    // Control: a world-readable policy is shown to the caller as it is.
    let shown = as_caller(su.path(), false, &[], &["policy", "show"]);
    shown.expect_code(0, "nobody reads a 0644 policy")?;
    check(shown.stdout.contains("[context.staff]"), || shown.show())?;
    // A refusal says "not admitted", without the lists.
    let r = as_caller(su.path(), false, &[], &["--ctx", "admins", "--", "true"]);
    r.expect_code(125, "caller not admitted")?;
    check(
        r.stderr.contains("not admitted") && !leaks(&r.stderr),
        || r.show(),
    )?;
    // probe --json: the contexts are unavailable to nobody, their lists not shown.
    let p = as_caller(su.path(), false, &[], &["probe", "--json"]);
    check(
        p.stdout.contains("\"mode\":\"setuid\"")
            && p.stdout.contains("not admitted")
            && !leaks(&p.stdout)
            && !leaks(&p.stderr),
        || p.show(),
    )?;
    // Control: an admitted caller (group 4242) runs in staff.
    as_caller(su.path(), true, &[], &["--ctx", "staff", "--", "true"])
        .expect_code(0, "admitted caller")?;
    Ok(())
}
