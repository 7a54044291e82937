//! Who owns what the tool writes, and the tool in every kind of context: platform (Landlock
//! limits execution to system directories; the binary under test lies elsewhere), a context
//! whose `exec.allow` does not list sbx-exec, a persistent context, and a setuid caller.

use std::os::unix::fs::OpenOptionsExt;

use super::*;
use crate::support::Policy;

/// A file `file write` makes for `user` is owned by its identity outside (host uid 100000, root
/// inside), so user code can append to it, and a directory `file mkdir` makes takes its files.
/// Control: a file root writes there (0644, as a root-side writeFile does) cannot be changed by
/// user code, and `file write` as `user` cannot change it either (it is no stronger than the code).
pub fn what_the_control_plane_writes_belongs_to_user_code() -> Result<(), String> {
    needs_isolation()?;
    let w = Work::new("g8fown");
    w.file(
        "user",
        &["write", &w.path("x")],
        b"from the control plane\n",
    )
    .expect_code(0, "file write x")?;
    w.file("user", &["mkdir", &w.path("dir")], b"")
        .expect_code(0, "file mkdir dir")?;
    for name in ["x", "dir"] {
        let m = std::fs::metadata(w.path(name)).unwrap();
        check(m.uid() == MAPPED && m.gid() == MAPPED, || {
            format!(
                "{name} is owned by {}:{} outside, not the context's identity",
                m.uid(),
                m.gid()
            )
        })?;
    }
    let r = w.file("user", &["stat", &w.path("x")], b"");
    check(
        r.stdout.contains("\"uid\":0") && r.stdout.contains("\"gid\":0"),
        || format!("inside, x should be root's: {}", r.show()),
    )?;
    w.user("echo from user code >> x && echo made > dir/f")?;
    check(
        std::fs::read_to_string(w.path("x")).unwrap() == "from the control plane\nfrom user code\n",
        || "user code's append is missing".into(),
    )?;

    // Control: what root writes itself is root's, and stays out of user code's reach.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(w.path("rootfile"))
        .unwrap();
    f.write_all(b"root's\n").unwrap();
    drop(f);
    let r = w.run("user", "echo from user code >> rootfile");
    check(!r.ok() && r.stderr.contains("ermission denied"), || {
        format!("user code changed a file root wrote: {}", r.show())
    })?;
    let r = w.file("user", &["write", "--append", &w.path("rootfile")], b"x\n");
    typed(
        &r,
        3,
        &["permission_denied"],
        "file write of root's file as user",
    )?;
    check(
        std::fs::read_to_string(w.path("rootfile")).unwrap() == "root's\n",
        || "root's file changed".into(),
    )
}

/// The tool runs in contexts that limit what executes: `platform` (Landlock `exec_only_under`
/// the system directories, while the binary under test is staged elsewhere; `nosymfollow` on the
/// work area, so even a link in a middle component is refused there) and one whose `exec.allow`
/// lists only /usr/bin/true (the control: a command it does not list is refused), and one that
/// requires a secret of every command (the tool takes none). In a persistent context a file
/// written to its private /tmp is there for the next call's code.
pub fn every_confined_context_runs_the_tool() -> Result<(), String> {
    needs_isolation()?;
    crate::persist::runtime()?;
    let w = Work::with_policy("g8fctx", |text| {
        format!(
            "{text}\n[context.only-true]\nextends = \"user\"\n[context.only-true.exec]\nallow = [\"/usr/bin/true\"]\n\
             [context.needs-token]\nextends = \"platform\"\n[context.needs-token.secrets]\nrequire = [\"API_TOKEN\"]\n"
        )
    });
    // platform: root in its mount view, Landlock on execution.
    w.file("platform", &["write", &w.path("p")], b"platform\n")
        .expect_code(0, "file write in platform")?;
    let m = std::fs::metadata(w.path("p")).unwrap();
    check(m.uid() == 0, || {
        format!("platform wrote as uid {}", m.uid())
    })?;
    w.user(&format!("ln -s {} d", w.root_only.display()))?;
    let r = w.file(
        "platform",
        &["write", &format!("{}/d/new", w.dir.display())],
        b"x",
    );
    typed(
        &r,
        3,
        &["symlink"],
        "platform: a link in the middle under nosymfollow",
    )?;
    let r = w.file("platform", &["read", "/etc/hostname"], b"");
    r.expect_code(0, "file read in platform")?;

    // exec.allow lists only /usr/bin/true: file operations still run; a command it does not list
    // does not.
    w.file("only-true", &["write", &w.path("t")], b"ok\n")
        .expect_code(0, "file write where exec.allow is /usr/bin/true")?;
    let r = w.run("only-true", "true");
    r.expect_code(125, "control: /bin/sh is not in exec.allow")?;
    // secrets.require is for the context's commands: the tool takes no secrets.
    w.file("needs-token", &["read", &w.path("t")], b"")
        .expect_code(0, "file read where secrets.require names a secret")?;
    let r = w.run("needs-token", "true");
    r.expect_code(125, "control: a command without the required secret")?;

    // A persistent context: its /tmp lives as long as it does.
    let name = unique_name("g8fp");
    let keep = TempDir::new("g8fp");
    let pol = Policy::new()
        .persistent(&name)
        .in_context(
            &name,
            "identity = { uid = 100000, gid = 100000, count = 65536 }\nfs.tmpfs = [\"/tmp\"]\n",
        )
        .write(keep.path());
    let pol_s = pol.display().to_string();
    let result = (|| {
        let fc = |args: &[&str], stdin: &[u8]| {
            file_call(&["--policy", &pol_s, "file", "--ctx", &name], args, stdin)
        };
        fc(&["write", "/tmp/note"], b"kept\n")
            .expect_code(0, "file write in a persistent context")?;
        let r = crate::support::run_in(
            &pol_s,
            &name,
            &["/bin/sh", "-c", "cat /tmp/note && echo more >> /tmp/note"],
        );
        r.expect_code(0, "user code of the persistent context")?;
        check(r.stdout == "kept\n", || r.show())?;
        let r = fc(&["read", "/tmp/note"], b"");
        r.expect_code(0, "file read in a persistent context")?;
        check(r.stdout == "kept\nmore\n", || r.show())
    })();
    crate::support::stop(&pol_s, &name);
    result
}

/// A hostile setuid caller (uid 65534 through a setuid-root copy): `file` is admitted as a command
/// is (`allow_callers`; `--policy` refused), runs as the caller (a root-only directory stays
/// closed to it), and the tool's role name on the setuid copy (`exec -a sbx-file`) is refused
/// before anything is opened. Controls: the admitted context reads a file.
pub fn setuid_callers_are_admitted_as_for_commands() -> Result<(), String> {
    needs_isolation()?;
    if !nix::unistd::geteuid().is_root() {
        return Err(format!("{SKIP}needs root to install a setuid copy"));
    }
    let setpriv = require_tool("setpriv")?;
    let w = Work::new("g8fsuid");
    let sentinel = w.sentinel("sentinel", "SENTINEL-setuid\n");
    let copy = SetuidCopy::new(&w)?;
    let _policy = SystemPolicy::install(
        "version = 1\n[context.staff]\nnamespaces = [\"pid\", \"mount\"]\nallow_callers = { gids = [4242] }\n\
         [context.admins]\nnamespaces = [\"pid\", \"mount\"]\nallow_callers = { uids = [0] }\n",
    )?;
    let caller = |args: &[&str]| {
        Cmd::new(&setpriv)
            .args(["--reuid=65534", "--regid=65534", "--groups=4242", &copy.bin])
            .args(args)
            .run()
    };
    let r = caller(&["file", "--ctx", "staff", "read", "/etc/hostname"]);
    r.expect_code(0, "control: staff admits group 4242")?;
    check(
        r.stdout == std::fs::read_to_string("/etc/hostname").unwrap(),
        || r.show(),
    )?;
    let r = caller(&["file", "--ctx", "admins", "read", "/etc/hostname"]);
    let e = typed(&r, 125, &["refused"], "admins does not admit the caller")?;
    check(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("allow_callers")),
        || r.show(),
    )?;
    let r = caller(&[
        "--policy",
        w.policy(),
        "file",
        "--ctx",
        "user",
        "read",
        "/etc/hostname",
    ]);
    typed(&r, 125, &["refused"], "--policy in setuid mode")?;
    let new = w.root_only.join("new").display().to_string();
    let r = caller(&["file", "--ctx", "staff", "write", &new]);
    typed(
        &r,
        3,
        &["permission_denied"],
        "the caller writing a root-only directory",
    )?;
    check(!w.root_only.join("new").exists(), || {
        "a root-only directory was written".into()
    })?;
    // The role name on the setuid copy: refused, the sentinel untouched.
    let script = format!("exec -a sbx-file {} write -- {}", copy.bin, sentinel.path());
    let r = Cmd::new(&setpriv)
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/bin/bash",
            "-c",
            &script,
        ])
        .run();
    r.expect_code(125, "exec -a sbx-file on the setuid copy")?;
    check(r.stderr.contains("never with privileges"), || r.show())?;
    sentinel.unchanged("exec -a sbx-file on the setuid copy")
}

/// A setuid-root copy of the binary under test, in a root-owned 0755 directory on a mount that
/// honours setuid bits (under /var/lib: /var/lib is not nosuid where the suite runs); removed on
/// drop.
struct SetuidCopy {
    dir: PathBuf,
    bin: String,
}

impl SetuidCopy {
    fn new(w: &Work) -> Result<SetuidCopy, String> {
        let dir = w.root_only.join("bin");
        std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let bin = dir.join("sbx-exec");
        std::fs::copy(crate::harness::bin(), &bin).map_err(|e| e.to_string())?;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o4755)).unwrap();
        let probe = Cmd::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin)
            .arg("--version")
            .run();
        let copy = SetuidCopy {
            dir,
            bin: bin.display().to_string(),
        };
        match probe.ok() {
            true => Ok(copy),
            false => Err(format!(
                "{SKIP}the setuid copy does not run here: {}",
                probe.show()
            )),
        }
    }
}

impl Drop for SetuidCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A test system policy at /etc/sbx/policy.toml, on a private tmpfs in the suite's own mount
/// namespace; unmounted when dropped.
struct SystemPolicy {
    created_dir: bool,
}

impl SystemPolicy {
    fn install(text: &str) -> Result<SystemPolicy, String> {
        let created_dir = !Path::new("/etc/sbx").exists();
        if created_dir {
            std::fs::create_dir("/etc/sbx").map_err(|e| format!("mkdir /etc/sbx: {e}"))?;
        }
        let guard = SystemPolicy { created_dir };
        Cmd::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                "mode=755,size=1m",
                "sbx-test",
                "/etc/sbx",
            ])
            .run()
            .expect_code(0, "mount a tmpfs on /etc/sbx")?;
        std::fs::write("/etc/sbx/policy.toml", text).unwrap();
        std::fs::set_permissions(
            "/etc/sbx/policy.toml",
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        Ok(guard)
    }
}

impl Drop for SystemPolicy {
    fn drop(&mut self) {
        let _ = Cmd::new("umount").arg("/etc/sbx").run();
        if self.created_dir {
            let _ = std::fs::remove_dir("/etc/sbx");
        }
    }
}
