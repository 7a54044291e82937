//! Privilege modes (docs/DESIGN.md section 6): setuid root with a hostile caller, rootless with a user
//! namespace, and `probe` agreeing with what launches really do.
//!
//! The unprivileged caller is uid 65534 (via setpriv), with supplementary group 4242 where a test
//! needs one. The setuid copy of the binary lives in a root-owned 0755 directory on a mount without
//! `nosuid`. A test system policy goes on a private tmpfs mounted on /etc/sbx inside the suite's
//! own mount namespace (the host's /etc is not touched, except creating an empty /etc/sbx when it
//! is missing, removed again afterwards).

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::*;

const NOBODY: &str = "65534";
const GROUP: &str = "4242";

/// A setuid-root copy of sbx-exec in a directory the unprivileged caller can reach.
struct SetuidCopy {
    dir: PathBuf,
    bin: PathBuf,
}

/// Is `dir` on a mount that honours the setuid bit (no `nosuid` in /proc/self/mountinfo)?
fn suid_capable(dir: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut best: Option<(usize, bool)> = None;
    for line in info.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let (Some(mp), Some(opts)) = (f.get(4), f.get(5)) else {
            continue;
        };
        if dir.starts_with(mp) && best.is_none_or(|(len, _)| mp.len() >= len) {
            best = Some((mp.len(), opts.split(',').any(|o| o == "nosuid")));
        }
    }
    best.is_some_and(|(_, nosuid)| !nosuid)
}

impl SetuidCopy {
    fn new() -> Result<SetuidCopy, String> {
        // The suite runs in its own pid namespace, so its pid repeats across concurrent suites
        // on one host: the start time keeps their copies apart.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let tag = format!("sbx-suite-{}-{nanos}-setuid", std::process::id());
        let parents = [std::env::temp_dir(), "/var/tmp".into(), "/opt".into()];
        let Some(parent) = parents.iter().find(|p| suid_capable(p)) else {
            return Err("no directory on a mount without nosuid for the setuid copy".into());
        };
        let dir = parent.join(tag);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
        std::fs::set_permissions(&dir, PermissionsExt::from_mode(0o755)).unwrap();
        let bin = dir.join("sbx-exec");
        std::fs::copy(crate::harness::bin(), &bin).map_err(|e| e.to_string())?;
        std::fs::set_permissions(&bin, PermissionsExt::from_mode(0o4755)).unwrap();
        Ok(SetuidCopy { dir, bin })
    }

    fn path(&self) -> &str {
        self.bin.to_str().unwrap()
    }
}

impl Drop for SetuidCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Run `program args` as uid/gid 65534, with group 4242 when `group`, and extra variables.
fn as_caller(program: &str, group: bool, env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut c = Cmd::new("setpriv");
    let groups = if group {
        format!("--groups={GROUP}")
    } else {
        "--clear-groups".to_string()
    };
    c.command()
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            &groups,
            program,
        ])
        .args(args);
    for (k, v) in env {
        c = c.env(k, v);
    }
    c.run()
}

/// A test system policy at /etc/sbx/policy.toml, on a private tmpfs; gone when dropped.
struct SystemPolicy {
    created_dir: bool,
}

impl SystemPolicy {
    fn install(text: &str, file_mode: u32, dir_mode: u32) -> Result<SystemPolicy, String> {
        let created_dir = !Path::new("/etc/sbx").exists();
        if created_dir {
            std::fs::create_dir("/etc/sbx").map_err(|e| format!("mkdir /etc/sbx: {e}"))?;
        }
        let guard = SystemPolicy { created_dir };
        let r = Cmd::new("mount")
            .command_args(&[
                "-t",
                "tmpfs",
                "-o",
                "mode=755,size=1m",
                "sbx-test",
                "/etc/sbx",
            ])
            .run();
        r.expect_code(0, "mount tmpfs on /etc/sbx")?;
        std::fs::write("/etc/sbx/policy.toml", text).unwrap();
        std::fs::set_permissions("/etc/sbx/policy.toml", PermissionsExt::from_mode(file_mode))
            .unwrap();
        std::fs::set_permissions("/etc/sbx", PermissionsExt::from_mode(dir_mode)).unwrap();
        Ok(guard)
    }
}

impl Drop for SystemPolicy {
    fn drop(&mut self) {
        let _ = Cmd::new("umount").command_args(&["/etc/sbx"]).run();
        if self.created_dir {
            let _ = std::fs::remove_dir("/etc/sbx");
        }
    }
}

trait CommandArgs {
    fn command_args(self, args: &[&str]) -> Self;
}

impl CommandArgs for Cmd {
    fn command_args(mut self, args: &[&str]) -> Cmd {
        self.command().args(args);
        self
    }
}

fn setuid_prereqs() -> Result<SetuidCopy, String> {
    needs_isolation()?;
    if !nix::unistd::geteuid().is_root() {
        return Err(format!("{SKIP}needs root to install a setuid copy"));
    }
    SetuidCopy::new()
}

/// The value of a `/proc/self/status` line, whitespace-normalized.
fn status_field(out: &str, key: &str) -> Option<String> {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
}

pub fn setuid_caller_runs_as_itself_without_capabilities() -> Result<(), String> {
    let su = setuid_prereqs()?;
    // The copy really runs in setuid mode for the caller.
    let p = as_caller(su.path(), true, &[], &["probe", "--json"]);
    check(p.stdout.contains("\"mode\":\"setuid\""), || p.show())?;
    for ctx in ["user", "platform"] {
        let r = as_caller(
            su.path(),
            true,
            &[],
            &["--ctx", ctx, "--", "cat", "/proc/self/status"],
        );
        r.expect_code(0, &format!("setuid caller in {ctx}"))?;
        let want = [
            ("Uid", "65534 65534 65534 65534"),
            ("Gid", "65534 65534 65534 65534"),
            ("Groups", GROUP),
            ("CapEff", "0000000000000000"),
            ("CapPrm", "0000000000000000"),
            ("CapBnd", "0000000000000000"),
            ("CapAmb", "0000000000000000"),
            ("NoNewPrivs", "1"),
        ];
        for (k, v) in want {
            check(status_field(&r.stdout, k).as_deref() == Some(v), || {
                format!("{ctx}: {k} is not {v:?}: {}", r.show())
            })?;
        }
    }
    // The private tmpfs HOME is the caller's; the host's /root stays root's.
    let home_owner = || std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/root").unwrap());
    let before = home_owner();
    let r = as_caller(
        su.path(),
        true,
        &[],
        &[
            "--ctx",
            "user",
            "--",
            "sh",
            "-c",
            "touch \"$HOME/probe\" && stat -c %u \"$HOME\"",
        ],
    );
    r.expect_code(0, "the caller writes its private HOME")?;
    check(r.stdout.trim() == NOBODY, || r.show())?;
    check(home_owner() == before, || {
        "the host's /root changed owner".into()
    })?;
    // Control: root running the same binary (real uid 0: root mode) keeps uid 0 and the context's
    // bounding set, so the checks above can tell the difference.
    let r = Cmd::new(su.path())
        .command_args(&["--ctx", "user", "--", "cat", "/proc/self/status"])
        .run();
    r.expect_code(0, "root with the same binary")?;
    check(
        status_field(&r.stdout, "Uid").as_deref() == Some("0 0 0 0")
            && status_field(&r.stdout, "CapBnd").as_deref() != Some("0000000000000000"),
        || r.show(),
    )
}

pub fn setuid_refuses_policy_flag() -> Result<(), String> {
    let su = setuid_prereqs()?;
    let d = TempDir::new("suidpolicy");
    let p = crate::policy_tests::write_policy(d.path(), crate::policy_tests::DEFAULT_TOML);
    std::fs::set_permissions(d.path(), PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&p, PermissionsExt::from_mode(0o644)).unwrap();
    let args = [
        "--policy",
        p.to_str().unwrap(),
        "--ctx",
        "user",
        "--",
        "true",
    ];
    let r = as_caller(su.path(), false, &[], &args);
    r.expect_code(125, "--policy from a setuid caller")?;
    check(
        r.stderr.contains("--policy") && r.stderr.contains("/etc/sbx/policy.toml"),
        || r.show(),
    )?;
    // Control: root may use --policy with the same file and binary.
    Cmd::new(su.path())
        .command_args(&args)
        .run()
        .expect_code(0, "root with --policy")?;
    Ok(())
}

const PERSIST_POLICY: &str = r#"version = 1
[context.shared]
namespaces = ["pid", "mount"]
persist = true
fs.hide = ["/run/sbx"]
"#;

pub fn setuid_refuses_persistent_contexts() -> Result<(), String> {
    let su = setuid_prereqs()?;
    // The control starts a keeper: its state goes to the suite's private /run/sbx.
    crate::persist::runtime()?;
    let _policy = SystemPolicy::install(PERSIST_POLICY, 0o644, 0o755)?;
    let args = ["--ctx", "shared", "--", "true"];
    let r = as_caller(su.path(), false, &[], &args);
    r.expect_code(125, "persistent context from a setuid caller")?;
    check(r.stderr.contains("persist"), || r.show())?;
    // Control: root runs the same context from the same system policy, then stops it.
    let root = Cmd::new(su.path()).command_args(&args).run();
    let stop = Cmd::new(su.path())
        .command_args(&["ctx", "stop", "shared", "--timeout", "2"])
        .run();
    root.expect_code(0, "root in the persistent context")?;
    stop.expect_code(0, "ctx stop")?;
    Ok(())
}

const OPEN_POLICY: &str = r#"version = 1
[context.open]
namespaces = ["pid", "mount"]
env.allow = ["*"]
env.hygiene = false
"#;

pub fn setuid_environment_is_allowlist_only() -> Result<(), String> {
    let su = setuid_prereqs()?;
    let _policy = SystemPolicy::install(OPEN_POLICY, 0o644, 0o755)?;
    // A directory the caller controls, with a program named like one it hopes to hijack.
    let evil = TempDir::new("evilpath");
    std::fs::set_permissions(evil.path(), PermissionsExt::from_mode(0o755)).unwrap();
    let tool = evil.path().join("sbxprobetool");
    std::fs::write(&tool, "#!/bin/sh\necho hijacked\n").unwrap();
    std::fs::set_permissions(&tool, PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:/usr/bin:/bin", evil.path().display());
    let env = [
        ("LD_PRELOAD", "/nonexistent/sbx-test.so"),
        ("BASH_ENV", "/nonexistent/bashenv"),
        ("SBXMARK", "visible"),
        ("PATH", path.as_str()),
    ];
    let shown = |r: &Run, k: &str| r.stdout.lines().any(|l| l.starts_with(&format!("{k}=")));
    // Control: root, same policy (hygiene off, allow all): the variables and PATH come through.
    let mut root = Cmd::new(su.path());
    for (k, v) in env {
        root = root.env(k, v);
    }
    let r = root
        .command_args(&["--ctx", "open", "--", "/usr/bin/env"])
        .run();
    r.expect_code(0, "root in open")?;
    check(
        shown(&r, "BASH_ENV") && shown(&r, "SBXMARK") && r.stdout.contains(&path),
        || format!("control: variables did not pass for root: {}", r.show()),
    )?;
    let mut root = Cmd::new(su.path());
    root = root.env("PATH", &path);
    let r = root
        .command_args(&["--ctx", "open", "--", "sbxprobetool"])
        .run();
    r.expect_code(0, "root resolves in its PATH")?;
    check(r.stdout.contains("hijacked"), || r.show())?;
    // The setuid caller: hygiene forced, PATH from the policy.
    let r = as_caller(
        su.path(),
        false,
        &env,
        &["--ctx", "open", "--", "/usr/bin/env"],
    );
    r.expect_code(0, "setuid caller in open")?;
    check(shown(&r, "SBXMARK"), || r.show())?;
    for k in ["LD_PRELOAD", "BASH_ENV"] {
        check(!shown(&r, k), || {
            format!("{k} reached the target: {}", r.show())
        })?;
    }
    check(
        !r.stdout.contains(evil.path().to_str().unwrap()) && shown(&r, "PATH"),
        || format!("the caller's PATH reached the target: {}", r.show()),
    )?;
    let r = as_caller(
        su.path(),
        false,
        &env,
        &["--ctx", "open", "--", "sbxprobetool"],
    );
    r.expect_code(127, "the caller's PATH is not searched")?;
    check(!r.stdout.contains("hijacked"), || r.show())
}

const CALLERS_POLICY: &str = r#"version = 1
[context.staff]
namespaces = ["pid", "mount"]
allow_callers = { gids = [4242] }
[context.admins]
namespaces = ["pid", "mount"]
allow_callers = { uids = [0] }
"#;

pub fn allow_callers_admits_only_listed() -> Result<(), String> {
    let su = setuid_prereqs()?;
    let _policy = SystemPolicy::install(CALLERS_POLICY, 0o644, 0o755)?;
    as_caller(su.path(), true, &[], &["--ctx", "staff", "--", "true"])
        .expect_code(0, "caller in group 4242 uses staff")?;
    let r = as_caller(su.path(), true, &[], &["--ctx", "admins", "--", "true"]);
    r.expect_code(125, "caller not in admins")?;
    check(
        r.stderr.contains("\"admins\"") && r.stderr.contains("allow_callers"),
        || r.show(),
    )?;
    // Without the group the same caller is refused staff too.
    let r = as_caller(su.path(), false, &[], &["--ctx", "staff", "--", "true"]);
    r.expect_code(125, "caller without group 4242")?;
    check(r.stderr.contains("\"staff\""), || r.show())
}

pub fn system_policy_writable_by_others_is_refused() -> Result<(), String> {
    let su = setuid_prereqs()?;
    let args = ["--ctx", "staff", "--", "true"];
    {
        let _p = SystemPolicy::install(CALLERS_POLICY, 0o666, 0o755)?;
        let r = as_caller(su.path(), true, &[], &args);
        r.expect_code(125, "policy mode 0666")?;
        check(
            r.stderr.contains("writable by group or others") && r.stderr.contains("666"),
            || r.show(),
        )?;
    }
    {
        let _p = SystemPolicy::install(CALLERS_POLICY, 0o644, 0o777)?;
        let r = as_caller(su.path(), true, &[], &args);
        r.expect_code(125, "policy directory mode 0777")?;
        check(r.stderr.contains("/etc/sbx "), || r.show())?;
    }
    // Control: the same file, root-owned 0644 in a 0755 directory, is accepted.
    let _p = SystemPolicy::install(CALLERS_POLICY, 0o644, 0o755)?;
    as_caller(su.path(), true, &[], &args).expect_code(0, "policy mode 0644")?;
    Ok(())
}

/// A uid with no account, distinct from the overflow uid (65534) that unmapped ids show as.
const ROOTLESS_UID: &str = "4243";

/// Run sbx-exec as uid/gid 4243 with no capabilities (no setuid bit): rootless where user
/// namespaces are allowed.
fn as_plain_user(args: &[&str]) -> Run {
    let mut c = Cmd::new("setpriv");
    c.command()
        .args([
            &format!("--reuid={ROOTLESS_UID}"),
            &format!("--regid={ROOTLESS_UID}"),
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            bin(),
        ])
        .args(args);
    c.run()
}

/// Run sbx-exec as uid 65534 with no capabilities where user namespaces really cannot be created:
/// inside a user namespace (mapping 0 and 65534) whose `user.max_user_namespaces` is 0.
pub fn as_nobody_without_userns(args: &[&str]) -> Run {
    let inner = "echo 0 > /proc/sys/user/max_user_namespaces || exit 99; \
                 exec setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all \"$@\"";
    // Wait (bounded) for the map, then exec again: only an exec as the mapped uid 0 gets
    // capabilities in the namespace, needed to lower its limit.
    let outer = "i=0; while [ -z \"$(cat /proc/self/uid_map)\" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; \
                 exec /bin/sh -c \"$0\" sh \"$@\"";
    let mut cmd = Command::new("unshare");
    cmd.args(["--user", "--", "/bin/sh", "-c", outer, inner, bin()])
        .args(args)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("LANG", "C.UTF-8")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn unshare");
    let pid = child.id();
    let mine = std::fs::read_link("/proc/self/ns/user").ok();
    let entered = wait_until(Duration::from_secs(10), || {
        std::fs::read_link(format!("/proc/{pid}/ns/user")).ok() != mine
    });
    if entered {
        for map in ["uid_map", "gid_map"] {
            let _ = std::fs::write(
                format!("/proc/{pid}/{map}"),
                format!("0 0 1\n{NOBODY} {NOBODY} 1\n"),
            );
        }
    }
    let (mut out, mut err) = (String::new(), String::new());
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t = std::thread::spawn(move || {
        let mut e = String::new();
        let _ = se.read_to_string(&mut e);
        e
    });
    let _ = so.read_to_string(&mut out);
    err.push_str(&t.join().unwrap_or_default());
    let status = child.wait().expect("wait");
    use std::os::unix::process::ExitStatusExt;
    Run {
        code: status.code(),
        signal: status.signal(),
        stdout: out,
        stderr: err,
    }
}

pub fn rootless_runs_for_an_unprivileged_user() -> Result<(), String> {
    needs_isolation()?;
    if !nix::unistd::geteuid().is_root() {
        return Err(format!("{SKIP}needs root to drop to an unprivileged uid"));
    }
    let p = as_plain_user(&["probe", "--json"]);
    if !p.stdout.contains("\"mode\":\"rootless\"") {
        return Err(format!(
            "{SKIP}unprivileged user namespaces are not allowed here: {}",
            p.show()
        ));
    }
    // A sentinel the caller owns, below a path the user context makes read-only.
    let dir = PathBuf::from(format!(
        "/var/lib/sbx-suite-{}-rootless",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sentinel = dir.join("sentinel");
    std::fs::write(&sentinel, "").unwrap();
    let own = |p: &Path| {
        let id: u32 = ROOTLESS_UID.parse().unwrap();
        nix::unistd::chown(p, Some(id.into()), Some(id.into())).unwrap();
    };
    own(&dir);
    own(&sentinel);
    let probe = format!(
        "if ( : >> {} ) 2>/dev/null; then echo WRITABLE; else echo REFUSED; fi",
        sentinel.display()
    );
    let cleanup = || std::fs::remove_dir_all(&dir);
    // Control: the same user outside the sandbox can open it for writing.
    let mut outside = Cmd::new("setpriv");
    outside.command().args([
        &format!("--reuid={ROOTLESS_UID}"),
        &format!("--regid={ROOTLESS_UID}"),
        "--clear-groups",
        "sh",
        "-c",
        &probe,
    ]);
    let o = outside.run();
    let inside = as_plain_user(&[
        "--ctx",
        "user",
        "--",
        "sh",
        "-c",
        &format!(
            "{probe}; echo uid_map $(cat /proc/self/uid_map); id -u; \
             echo x > /dev/null && echo devnull-ok; grep ' /dev/null ' /proc/self/mountinfo | cut -d' ' -f6; \
             ps -e -o pid=,comm="
        ),
    ]);
    let _ = cleanup();
    check(o.stdout.contains("WRITABLE"), || {
        format!("control: {}", o.show())
    })?;
    inside.expect_code(0, "rootless launch")?;
    check(inside.stdout.contains("REFUSED"), || inside.show())?;
    // In a user namespace mapping the caller to itself, running as the caller.
    let map = format!("uid_map {ROOTLESS_UID} {ROOTLESS_UID} 1");
    check(inside.stdout.lines().any(|l| l.trim() == map), || {
        format!(
            "no user namespace mapping {ROOTLESS_UID} to itself: {}",
            inside.show()
        )
    })?;
    check(
        inside.stdout.lines().any(|l| l.trim() == ROOTLESS_UID),
        || format!("the target is not uid {ROOTLESS_UID}: {}", inside.show()),
    )?;
    // No CAP_MKNOD in a user namespace: the private /dev binds the host's nodes instead (each
    // nosuid, noexec), and they work.
    check(inside.stdout.lines().any(|l| l == "devnull-ok"), || {
        format!("/dev/null does not work rootless: {}", inside.show())
    })?;
    check(
        inside
            .stdout
            .lines()
            .any(|l| l.starts_with("ro,") && l.contains("nosuid") && l.contains("noexec")),
        || {
            format!(
                "rootless /dev/null is not a nosuid,noexec bind: {}",
                inside.show()
            )
        },
    )?;
    // ps inside shows the sandbox only: its pid 1 (sbx-exec), the shell and ps.
    let procs: Vec<&str> = inside
        .stdout
        .lines()
        .filter(|l| {
            l.trim_start()
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit())
        })
        .filter(|l| l.split_whitespace().count() == 2)
        .collect();
    check(
        procs.len() <= 3 && procs.iter().any(|l| l.trim() == "1 sbx-exec"),
        || {
            format!(
                "ps sees more than the sandbox: {procs:?}\n{}",
                inside.show()
            )
        },
    )?;
    // The same launch with the context saying userns = "never" is refused, and probe agrees.
    let d = TempDir::new("usernsnever");
    let p = crate::policy_tests::default_with(d.path(), "user", "userns = \"never\"\n");
    std::fs::set_permissions(d.path(), PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&p, PermissionsExt::from_mode(0o644)).unwrap();
    let p = p.to_str().unwrap();
    let r = as_plain_user(&["--policy", p, "--ctx", "user", "--", "true"]);
    r.expect_code(125, "userns = never")?;
    check(r.stderr.contains("userns = \"never\""), || r.show())?;
    let probe = as_plain_user(&["probe", "--json", "--policy", p]);
    let json: serde_json::Value = serde_json::from_str(&probe.stdout).unwrap_or_default();
    let user = &json["contexts"]["user"];
    check(
        user["degrade"] == false && user["missing"][0] == "pid namespace",
        || probe.show(),
    )
}

/// Launch every context `probe --json` reported and check the launch agrees: "full" exits 0
/// without a warning, "degraded" exits 0 with one warning naming what is missing, "unavailable"
/// exits 125. `control` is left out: it would hold the real ports 8080/8888 on the host network
/// (g3_control covers it).
fn launches_agree(
    probe: &Run,
    launch: impl Fn(&str) -> Run,
) -> Result<Vec<(String, String)>, String> {
    let v: serde_json::Value = serde_json::from_str(probe.stdout.trim())
        .map_err(|e| format!("probe --json is not JSON ({e}): {}", probe.show()))?;
    let ctxs = v["contexts"].as_object().ok_or_else(|| probe.show())?;
    check(!ctxs.is_empty(), || probe.show())?;
    let all_full = ctxs.values().all(|c| c["status"] == "full");
    probe.expect_code(if all_full { 0 } else { 1 }, "probe exit status")?;
    let mut seen = Vec::new();
    for (name, c) in ctxs {
        let status = c["status"].as_str().unwrap_or("?").to_string();
        seen.push((name.clone(), status.clone()));
        if name == "control" {
            continue;
        }
        let r = launch(name);
        let warnings = r.stderr.lines().filter(|l| l.contains("warning")).count();
        match status.as_str() {
            "full" => {
                r.expect_code(0, &format!("probe said {name} runs fully"))?;
                check(warnings == 0, || format!("{name}: {}", r.show()))?;
            }
            "degraded" => {
                r.expect_code(0, &format!("probe said {name} runs degraded"))?;
                check(warnings == 1, || {
                    format!("{name}: not one warning: {}", r.show())
                })?;
                for m in c["missing"].as_array().into_iter().flatten() {
                    let ns = m.as_str().unwrap_or("").trim_end_matches(" namespace");
                    check(r.stderr.contains(ns), || {
                        format!("{name}: warning does not name {ns}: {}", r.show())
                    })?;
                }
            }
            _ => {
                r.expect_code(125, &format!("probe said {name} cannot run"))?;
            }
        }
    }
    Ok(seen)
}

pub fn probe_agrees_with_launches() -> Result<(), String> {
    needs_isolation()?;
    if !nix::unistd::geteuid().is_root() {
        return Err(format!("{SKIP}needs root to drop to an unprivileged uid"));
    }
    // As root: everything the default policy asks for is available, and runs.
    let probe = Cmd::sbx(["probe", "--json"]).run();
    let seen = launches_agree(&probe, |ctx| Cmd::sbx(["--ctx", ctx, "--", "true"]).run())?;
    check(seen.iter().any(|(n, s)| n == "user" && s == "full"), || {
        format!("user is not available as root: {}", probe.show())
    })?;
    // An unprivileged caller where user namespaces cannot be created, with a policy whose user
    // context degrades: user is degraded, platform unavailable, and the launches agree.
    let d = TempDir::new("probedegrade");
    let text = crate::policy_tests::DEFAULT_TOML.replacen(
        "[context.user]\n",
        "[context.user]\ndegrade = true\n",
        1,
    );
    let p = crate::policy_tests::write_policy(d.path(), &text);
    std::fs::set_permissions(d.path(), PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&p, PermissionsExt::from_mode(0o644)).unwrap();
    let p = p.to_str().unwrap().to_string();
    let probe = as_nobody_without_userns(&["probe", "--json", "--policy", &p]);
    check(probe.stdout.contains("\"mode\":\"unprivileged\""), || {
        probe.show()
    })?;
    let seen = launches_agree(&probe, |ctx| {
        as_nobody_without_userns(&["--policy", &p, "--ctx", ctx, "--", "true"])
    })?;
    for (name, want) in [("user", "degraded"), ("platform", "unavailable")] {
        check(seen.iter().any(|(n, s)| n == name && s == want), || {
            format!("{name} is not {want}: {}", probe.show())
        })?;
    }
    Ok(())
}

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
    let mut child = Command::new("setpriv")
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
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
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
