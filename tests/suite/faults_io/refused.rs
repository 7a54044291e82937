//! Refused calls leave nothing behind: no cgroup leaf for a one-shot call refused at launch, no
//! run for a call that lacks a required secret.

use super::*;

/// The cgroup leaves (`sbx-NAME-PID`) of context `name`, anywhere in the cgroup tree.
fn leaves_of(name: &str) -> Vec<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, depth: usize, prefix: &str, out: &mut Vec<std::path::PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if e.file_name().to_string_lossy().starts_with(prefix) {
                out.push(e.path());
            }
            if depth > 0 {
                walk(&e.path(), depth - 1, prefix, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(
        std::path::Path::new("/sys/fs/cgroup"),
        8,
        &format!("sbx-{name}-"),
        &mut out,
    );
    out
}

/// Issue #26: a one-shot call that fails after its cgroup is made removes it before returning:
/// here `net.publish` of a port the test holds on 127.0.0.1 (refused saying it is in use), and
/// the same port with too few fds left to bind it (refused naming EMFILE and the limit, not a
/// port in use). Control: the same context with the port free makes its leaf while it runs.
pub fn refused_one_shot_calls_leave_no_cgroup() -> Result<(), String> {
    needs_isolation()?;
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let v1 = std::path::Path::new("/sys/fs/cgroup/pids/cgroup.procs").exists();
    if !(v1 || v2) {
        return Err(format!("{SKIP_HOST}no pids cgroup controller here"));
    }
    let dir = TempDir::new("faults-pubcg");
    let name = unique_name("fkpub");
    let port = crate::g3_control::free_ports().0;
    let text = format!(
        "version = 1\n[context.{name}]\nnamespaces = [\"pid\", \"mount\", \"ipc\", \"uts\"]\n\
         env.allow = [\"PATH\"]\nfs.hide = [\"/run/sbx\"]\nsecurity.seccomp = \"default\"\n\
         net = {{ mode = \"private\", publish = [{port}] }}\n[context.{name}.limits]\npids_max = 64\n"
    );
    let pol = dir.file("policy.toml", &text).display().to_string();
    let before = snapshot();
    // Control: the port free, the call makes its leaf and removes it at the end.
    let mut call = Cmd::sbx(["--policy", &pol, "--ctx", &name, "--", "sleep", "1"]).spawn();
    let seen = wait_until(Duration::from_secs(5), || !leaves_of(&name).is_empty());
    let code = call.wait().map_err(|e| e.to_string())?.code();
    check(seen && code == Some(0), || {
        format!("control: leaf seen {seen}, exit {code:?}")
    })?;
    check(leaves_of(&name).is_empty(), || {
        format!("control: leaves left: {:?}", leaves_of(&name))
    })?;
    // The port in use.
    let held = std::net::TcpListener::bind(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    let r = run_in(&pol, &name, &["true"]);
    let left = leaves_of(&name);
    r.expect_code(125, "a published port in use")?;
    check(
        r.stderr.contains(&format!("cannot publish port {port}")) && r.stderr.contains("in use"),
        || r.show(),
    )?;
    check(left.is_empty(), || {
        format!("a call refused for a port in use left {left:?}")
    })?;
    drop(held);
    // Too few fds: some limit lets the launch reach the bind and no further.
    let mut reached = Vec::new();
    for n in 8..64 {
        let script = format!("ulimit -n {n} && exec \"$0\" --policy \"$1\" --ctx {name} -- true");
        let r = bash(&script, &pol, 10);
        let left = leaves_of(&name);
        check(left.is_empty(), || {
            format!("a call with {n} fds left {left:?}: {}", r.show())
        })?;
        if r.stderr.contains(&format!("cannot publish port {port}")) {
            check(
                r.code == Some(125)
                    && r.stderr.contains("EMFILE")
                    && r.stderr.contains("RLIMIT_NOFILE")
                    && !r.stderr.contains("in use"),
                || format!("with {n} fds: {}", r.show()),
            )?;
            reached.push(n);
        }
        if r.code == Some(0) {
            break;
        }
    }
    check(!reached.is_empty(), || {
        "no fd limit made the bind of the published port fail".into()
    })?;
    nothing_left(&before, "after refused one-shot calls with limits")
}

/// Issue #26: a context that names the secrets it needs (`secrets.require`) refuses, with 125 and
/// before anything runs, a call without `--secrets-fd`, with an empty stream or with one that
/// lacks a required name, naming the missing ones and never a value. Control: every required
/// secret handed, the command runs and gets them.
pub fn required_secrets_refuse_calls_that_lack_them() -> Result<(), String> {
    needs_isolation()?;
    let dir = TempDir::new("faults-require");
    let text = "version = 1\n[context.req]\nnamespaces = [\"pid\", \"mount\", \"ipc\", \"uts\"]\n\
                env.allow = [\"PATH\"]\nfs.hide = [\"/run/sbx\"]\nsecurity.seccomp = \"default\"\n\
                [context.req.secrets]\nallow = [\"PGPASSWORD\", \"TOKEN\", \"EXTRA\"]\n\
                require = [\"PGPASSWORD\", \"TOKEN\"]\n";
    let pol = dir.file("policy.toml", text).display().to_string();
    const VALUE: &str = "sekrit-value-9f2c";
    let status = dir.path().join("status");
    let call = |secrets: Option<&str>| {
        let (fd, redirect) = match secrets {
            Some(s) => {
                let f = dir.file("secrets", s);
                ("--secrets-fd 3", format!("3<{}", f.display()))
            }
            None => ("", String::new()),
        };
        let script = format!(
            "exec \"$0\" --policy \"$1\" --ctx req --status-fd 4 {fd} -- sh -c 'echo \"ran:$PGPASSWORD:$TOKEN\"' {redirect} 4>{}",
            status.display()
        );
        let r = bash(&script, &pol, 20);
        let records = std::fs::read_to_string(&status).unwrap_or_default();
        (r, records)
    };
    for (what, secrets, says) in [
        (
            "no --secrets-fd",
            None,
            "requires the secrets PGPASSWORD, TOKEN ([context.req.secrets] require), but no --secrets-fd was given",
        ),
        (
            "an empty stream",
            Some(""),
            "requires the secrets PGPASSWORD, TOKEN ([context.req.secrets] require), but the secrets stream is empty",
        ),
        (
            "one of two",
            Some(&format!("PGPASSWORD={VALUE}\nEXTRA={VALUE}\n")[..]),
            "requires the secret TOKEN ([context.req.secrets] require), but the secrets stream has only PGPASSWORD, EXTRA",
        ),
        (
            "one of two, as JSON",
            Some(&format!("{{\"TOKEN\": \"{VALUE}\"}}")[..]),
            "requires the secret PGPASSWORD ([context.req.secrets] require)",
        ),
    ] {
        let (r, records) = call(secrets);
        check(
            r.code == Some(125)
                && r.stderr.contains(says)
                && r.stderr.contains("nothing was run")
                && !r.stdout.contains("ran:"),
            || format!("{what}: {}", r.show()),
        )?;
        check(
            !records.contains("child-pid") && records.contains("\"reason\":\"refused\""),
            || format!("{what}: the command was started: {records}"),
        )?;
        check(
            !r.stderr.contains(VALUE) && !records.contains(VALUE),
            || format!("{what}: a value was echoed: {} {records}", r.show()),
        )?;
    }
    let (r, records) = call(Some(&format!("TOKEN=t-{VALUE}\nPGPASSWORD=p-{VALUE}\n")));
    r.expect_code(0, "every required secret handed")?;
    check(
        r.stdout.trim() == format!("ran:p-{VALUE}:t-{VALUE}") && records.contains("child-pid"),
        || format!("{}: {records}", r.show()),
    )
}
