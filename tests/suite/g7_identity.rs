//! G7, no identity that means anything outside: user code is root inside its sandbox, but the
//! host sees it as an unprivileged uid (`identity`, the shipped `user` maps 0.. onto 100000..).
//! A filesystem socket's peer credential, a file it chowns and marks setuid, and everything it
//! writes carry the mapped uid; the control side (root outside) still reads and writes its work
//! area. Each attack has its control outside.
//!
//! The work area is a stand-in for /workspace made by the test under /var/lib (the sandbox's /tmp
//! and /var/tmp are private), owned by the mapped uid as the image makes /workspace; only sentinel files are
//! written.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::*;
use crate::policy_tests::{write_policy, DEFAULT_TOML};

/// The host uid and gid of the shipped `user` context's root.
const MAPPED: u32 = 100000;
const PY: &str = "/usr/bin/python3";

/// A stand-in for /workspace owned by the mapped uid (as the image makes it), the default policy
/// naming it in place of /workspace, and a root-owned scratch directory for the controls.
struct Work {
    dir: PathBuf,
    outside: PathBuf,
    _keep: TempDir,
    policy: PathBuf,
}

impl Work {
    fn new(tag: &str) -> Work {
        let dir = Path::new("/var/lib").join(marker(tag));
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(MAPPED), Some(MAPPED)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let outside = Path::new("/var/lib").join(marker(&format!("{tag}-ctl")));
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o700)).unwrap();
        let keep = TempDir::new(tag);
        let text = DEFAULT_TOML.replace("\"/workspace\"", &format!("\"{}\"", dir.display()));
        let policy = write_policy(keep.path(), &text);
        Work {
            dir,
            outside,
            _keep: keep,
            policy,
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// `sh -c script` in the `user` context, in the work area.
    fn user(&self, script: &str) -> Run {
        let mut c = Cmd::sbx([
            "--policy",
            self.policy.to_str().unwrap(),
            "--ctx",
            "user",
            "--",
            "/bin/sh",
            "-c",
            script,
        ]);
        c.command().current_dir(&self.dir);
        c.limit(Duration::from_secs(120)).run()
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(&self.outside);
    }
}

/// A service outside on a filesystem socket (mode 0666, so any uid can connect): it answers each
/// peer with the uid SO_PEERCRED shows, for `n` peers, then exits.
const PEERCRED_SERVER: &str = r#"
import os, socket, struct, sys
path, n = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_UNIX)
s.bind(path)
os.chmod(path, 0o666)
s.listen(4)
s.settimeout(60)
print("listening", flush=True)
for _ in range(n):
    c, _ = s.accept()
    pid, uid, gid = struct.unpack("3i", c.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    c.sendall(str(uid).encode())
    c.close()
"#;

/// A client: become `uid` if asked (printing whether that worked), connect, print what was seen.
const PEERCRED_CLIENT: &str = r#"
import os, socket, sys
path, uid = sys.argv[1], int(sys.argv[2])
if uid >= 0:
    try:
        os.setgid(uid); os.setuid(uid); print("setuid", uid, "ok")
    except OSError as e:
        print("setuid", uid, "failed", e)
s = socket.socket(socket.AF_UNIX)
s.connect(path)
print("seen", s.recv(64).decode())
"#;

fn seen(out: &str) -> Option<u32> {
    out.lines()
        .find_map(|l| l.strip_prefix("seen "))
        .and_then(|v| v.trim().parse().ok())
}

/// (1) A filesystem-socket service outside never sees uid 0 or a real account's uid from user
/// code, even after it switches to uid 1000; a process outside that does the same is seen as 1000.
pub fn socket_peers_see_the_mapped_uid() -> Result<(), String> {
    needs_isolation()?;
    require_tool(PY)?;
    let w = Work::new("g7sock");
    let sock = w.path("svc.sock");
    let script = w.dir.join("client.py");
    std::fs::write(&script, PEERCRED_CLIENT).unwrap();
    let mut server = std::process::Command::new(PY)
        .args(["-c", PEERCRED_SERVER, &sock, "3"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the service: {e}"))?;
    let up = wait_until(Duration::from_secs(10), || Path::new(&sock).exists());
    let result = (|| {
        check(up, || "the service did not start".into())?;
        let client = script.display().to_string();
        // Control: outside, setuid(1000) is what the service sees.
        let r = Cmd::new(PY).command_args(&[&client, &sock, "1000"]).run();
        r.expect_code(0, "control client outside")?;
        check(seen(&r.stdout) == Some(1000), || r.show())?;
        // Inside: root as the sandbox sees it, the mapped uid as the service sees it.
        let r = w.user(&format!("{PY} {client} {sock} -1"));
        r.expect_code(0, "client in user")?;
        check(seen(&r.stdout) == Some(MAPPED), || r.show())?;
        // setuid(1000) inside works (it is root there) but stays in the mapped range.
        let r = w.user(&format!("{PY} {client} {sock} 1000"));
        r.expect_code(0, "client in user after setuid(1000)")?;
        let uid = seen(&r.stdout);
        check(
            r.stdout.contains("setuid 1000 ok") && uid == Some(MAPPED + 1000),
            || {
                format!(
                    "expected {} after setuid(1000): {}",
                    MAPPED + 1000,
                    r.show()
                )
            },
        )?;
        check(uid != Some(0) && uid != Some(1000), || r.show())
    })();
    let _ = server.kill();
    let _ = server.wait();
    result
}

/// (2) A file user code chowns to 0:0 (or to a real account) and marks 4755 in its work area is
/// not setuid-root (or setuid to that account) outside; root outside can make one (the control).
pub fn setuid_bits_set_inside_are_not_root_outside() -> Result<(), String> {
    needs_isolation()?;
    let w = Work::new("g7suid");
    let r = w.user(
        "cp /bin/true suid-root && chown 0:0 suid-root && chmod 4755 suid-root && \
         cp /bin/true suid-user && chown 1000:1000 suid-user && chmod 4755 suid-user && \
         stat -c '%n %u %a' suid-root suid-user",
    );
    r.expect_code(0, "chown and chmod 4755 inside")?;
    check(
        r.stdout.contains("suid-root 0 4755") && r.stdout.contains("suid-user 1000 4755"),
        || {
            format!(
                "inside, the files look like root's and 1000's: {}",
                r.show()
            )
        },
    )?;
    for (name, inside) in [("suid-root", 0), ("suid-user", 1000)] {
        let m = std::fs::metadata(w.dir.join(name)).map_err(|e| format!("{name}: {e}"))?;
        check(
            m.uid() == MAPPED + inside && m.gid() == MAPPED + inside,
            || format!("{name} is owned by {}:{} outside", m.uid(), m.gid()),
        )?;
        check(m.uid() != 0 && m.uid() != 1000, || {
            format!("{name}: uid {}", m.uid())
        })?;
    }
    // Control: root outside makes a setuid-root file (in its own directory), then removes it.
    let ctl = w.outside.join("suid-ctl");
    std::fs::copy("/bin/true", &ctl).unwrap();
    std::os::unix::fs::chown(&ctl, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&ctl, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let m = std::fs::metadata(&ctl).unwrap();
    std::fs::remove_file(&ctl).unwrap();
    check(m.uid() == 0 && m.mode() & 0o4000 != 0, || {
        format!("control: uid {} mode {:o}", m.uid(), m.mode())
    })
}

/// (3) User code writes the work area; root outside reads and changes what it wrote, and what root
/// made there and handed over (owner, or group-writable for the mapped gid), user code changes.
/// A root-only file root did not hand over stays root's.
pub fn work_area_is_shared_with_the_control_side() -> Result<(), String> {
    needs_isolation()?;
    let w = Work::new("g7share");
    let r = w.user("echo from-user > by-user.txt && mkdir -p sub && echo nested > sub/n.txt");
    r.expect_code(0, "user writes its work area")?;
    let by_user = w.dir.join("by-user.txt");
    let text = std::fs::read_to_string(&by_user).map_err(|e| e.to_string())?;
    check(text == "from-user\n", || format!("read outside: {text:?}"))?;
    std::fs::write(&by_user, "changed-by-control\n").map_err(|e| e.to_string())?;
    std::fs::write(w.dir.join("sub/ctl.txt"), "ctl\n").map_err(|e| e.to_string())?;
    // Made by root and handed over, two ways.
    let given = w.dir.join("given.txt");
    std::fs::write(&given, "given\n").unwrap();
    std::os::unix::fs::chown(&given, Some(MAPPED), Some(MAPPED)).unwrap();
    let group = w.dir.join("group.txt");
    std::fs::write(&group, "group\n").unwrap();
    std::os::unix::fs::chown(&group, Some(0), Some(MAPPED)).unwrap();
    std::fs::set_permissions(&group, std::fs::Permissions::from_mode(0o664)).unwrap();
    let secret = w.dir.join("root-only.txt");
    std::fs::write(&secret, "sentinel-g7-root-only\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let r = w.user(
        "cat by-user.txt sub/ctl.txt && echo again >> by-user.txt && echo u >> given.txt && \
         echo u >> group.txt && rm sub/ctl.txt && echo ok-rw; \
         cat root-only.txt; echo x >> root-only.txt; stat -c '%U' root-only.txt",
    );
    check(
        r.stdout.contains("changed-by-control") && r.stdout.contains("ctl\n"),
        || r.show(),
    )?;
    check(r.stdout.contains("ok-rw"), || r.show())?;
    check(
        !r.stdout.contains("sentinel-g7-root-only") && r.stdout.contains("nobody"),
        || format!("a root-only file root did not hand over: {}", r.show()),
    )?;
    let after = std::fs::read_to_string(&by_user).unwrap();
    check(after == "changed-by-control\nagain\n", || after.clone())?;
    check(
        std::fs::read_to_string(&given).unwrap() == "given\nu\n"
            && std::fs::read_to_string(&group).unwrap() == "group\nu\n"
            && std::fs::read_to_string(&secret).unwrap() == "sentinel-g7-root-only\n"
            && !w.dir.join("sub/ctl.txt").exists(),
        || "files after the round trip".into(),
    )?;
    let m = std::fs::metadata(w.dir.join("sub/n.txt")).unwrap();
    check(m.uid() == MAPPED && m.gid() == MAPPED, || {
        format!("written inside, owned by {}:{} outside", m.uid(), m.gid())
    })
}

/// Work areas root made (0755, as `mkdir /workspace` leaves them on a fresh machine) are writable
/// by user code with no chown: sbx-exec grants the context's host ids an ACL on the area, whose
/// default entries files root puts there later inherit. What user code writes belongs to host uid
/// 100000 (no root-owned or setuid-root file); the control side reads it.
pub fn fresh_root_made_work_areas_are_writable() -> Result<(), String> {
    needs_isolation()?;
    require_tool("setpriv")?;
    let areas: Vec<PathBuf> = ["ws", "home"]
        .iter()
        .map(|t| Path::new("/var/lib").join(unique_name(&format!("fresh{t}"))))
        .collect();
    for a in &areas {
        std::fs::create_dir_all(a).unwrap();
        std::fs::set_permissions(a, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let cleanup = || {
        for a in &areas {
            let _ = std::fs::remove_dir_all(a);
        }
    };
    // Control: before any launch, host uid 100000 cannot write there (the wall this removes).
    let as_mapped = |dir: &Path| {
        let mut c = Cmd::new("setpriv");
        c.command()
            .args([
                "--reuid=100000",
                "--regid=100000",
                "--clear-groups",
                "/bin/sh",
                "-c",
            ])
            .arg("touch probe-by-mapped && echo wrote")
            .current_dir(dir);
        c.run()
    };
    let before = as_mapped(&areas[0]);
    let dir = TempDir::new("fresh");
    let text = format!(
        "version = 1\n[context.user]\nextends = \"user\"\nfs.writable = [{}]\n",
        areas
            .iter()
            .map(|a| format!("\"{}\"", a.display()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let policy = write_policy(dir.path(), &text);
    let run = |script: &str| {
        Cmd::sbx([
            "--policy",
            policy.to_str().unwrap(),
            "--ctx",
            "user",
            "--in-workdir",
            "--",
            "/bin/sh",
            "-c",
            script,
        ])
        .run()
    };
    let first = run(&format!(
        "pwd && echo from-user > made.txt && mkdir sub && echo n > sub/n.txt && \
         echo h > {}/home.txt && chmod u+s made.txt && echo ok",
        areas[1].display()
    ));
    // The control plane (root) puts a file and a directory there afterwards...
    let by_root = areas[0].join("by-root.txt");
    let _ = std::fs::write(&by_root, "from-root\n");
    let _ = std::fs::create_dir(areas[0].join("root-dir"));
    let second = run("echo more >> by-root.txt && touch root-dir/x && cat by-root.txt && echo ok2");
    let after = as_mapped(&areas[0]);
    let made = std::fs::metadata(areas[0].join("made.txt"));
    let home = std::fs::read_to_string(areas[1].join("home.txt")).unwrap_or_default();
    let read_back = std::fs::read_to_string(&by_root).unwrap_or_default();
    cleanup();
    check(!before.stdout.contains("wrote"), || {
        format!(
            "control: host uid 100000 could write a root-made 0755 area: {}",
            before.show()
        )
    })?;
    first.expect_code(0, "user writes fresh work areas")?;
    check(
        first
            .stdout
            .starts_with(&format!("{}\n", areas[0].display())),
        || format!("not started in the first work area: {}", first.show()),
    )?;
    let made = made.map_err(|e| e.to_string())?;
    check(made.uid() == MAPPED && made.gid() == MAPPED, || {
        format!(
            "written inside, owned by {}:{} outside",
            made.uid(),
            made.gid()
        )
    })?;
    check(made.mode() & 0o4000 == 0 || made.uid() != 0, || {
        "a setuid-root file".into()
    })?;
    check(home == "h\n", || format!("second area: {home:?}"))?;
    second.expect_code(0, "user writes what root put there later")?;
    check(read_back == "from-root\nmore\n", || {
        format!("read outside: {read_back:?}")
    })?;
    check(after.stdout.contains("wrote"), || {
        format!(
            "after the grant, host uid 100000 still cannot write: {}",
            after.show()
        )
    })
}

/// (4) Inside, the command is still root (with the kept capabilities, a writable HOME), so tools
/// that expect root keep working; its map is the range.
pub fn inside_it_is_still_root() -> Result<(), String> {
    needs_isolation()?;
    let w = Work::new("g7id");
    let r = w.user(
        "id -u; id -g; id -G; cat /proc/self/uid_map; grep CapEff /proc/self/status; \
         touch /root/.x && echo home-ok; touch /tmp/x && echo tmp-ok; stat -c '%u' /root",
    );
    r.expect_code(0, "id in user")?;
    let lines: Vec<&str> = r.stdout.lines().collect();
    check(
        lines.len() >= 3 && lines[0] == "0" && lines[1] == "0" && lines[2] == "0",
        || format!("uid, gid and groups inside: {}", r.show()),
    )?;
    let map: Vec<&str> = lines.get(3).unwrap_or(&"").split_whitespace().collect();
    check(map == ["0", "100000", "65536"], || r.show())?;
    check(
        !r.stdout.contains("CapEff:\t0000000000000000")
            && r.stdout.contains("home-ok")
            && r.stdout.contains("tmp-ok"),
        || r.show(),
    )
}

/// A wheel with one module, built by hand (a zip with the module and its dist-info).
fn tiny_wheel(dir: &Path) -> Result<(), String> {
    let script = r#"
import base64, hashlib, sys, zipfile
out = sys.argv[1] + "/sbxdemo-1.0-py3-none-any.whl"
files = {
    "sbxdemo.py": "ANSWER = 'wheel-ok-g7'\n",
    "sbxdemo-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: sbxdemo\nVersion: 1.0\n",
    "sbxdemo-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = []
with zipfile.ZipFile(out, "w") as z:
    for name, text in files.items():
        data = text.encode()
        z.writestr(name, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append("sbxdemo-1.0.dist-info/RECORD,,")
    z.writestr("sbxdemo-1.0.dist-info/RECORD", "\n".join(record) + "\n")
"#;
    let r = Cmd::new(PY)
        .command_args(&["-c", script, dir.to_str().unwrap()])
        .run();
    r.expect_code(0, "build the wheel").map(drop)
}

/// (5) Python, pip installing a wheel from a local directory, and git init/commit work in the work
/// area; root outside reads the repository (naming it safe: it belongs to the mapped uid).
pub fn python_pip_and_git_work() -> Result<(), String> {
    needs_isolation()?;
    require_tool(PY)?;
    let git = require_tool("git")?;
    let w = Work::new("g7tools");
    let pip = Cmd::new(PY).command_args(&["-m", "pip", "--version"]).run();
    if !pip.ok() {
        return Err(if in_ci() {
            format!(
                "pip is not installed (apt-get install python3-pip): {}",
                pip.show()
            )
        } else {
            format!("{SKIP_HOST}pip is not installed (apt-get install python3-pip)")
        });
    }
    let wheels = w.dir.join("wheels");
    std::fs::create_dir_all(&wheels).unwrap();
    tiny_wheel(&wheels)?;
    let r = w.user(&format!(
        "{PY} -m pip install -q --disable-pip-version-check --no-index --find-links wheels \
           --target site sbxdemo && PYTHONPATH=site {PY} -c 'import sbxdemo; print(sbxdemo.ANSWER)' && \
         mkdir repo && cd repo && {git} init -q && echo hi > f && {git} add f && \
         {git} -c user.name=t -c user.email=t@example.invalid commit -q -m first && \
         {git} log --format=%s"
    ));
    r.expect_code(0, "pip and git in user")?;
    check(
        r.stdout.contains("wheel-ok-g7") && r.stdout.contains("first"),
        || r.show(),
    )?;
    let m = std::fs::metadata(w.dir.join("site/sbxdemo.py")).map_err(|e| e.to_string())?;
    check(m.uid() == MAPPED, || {
        format!("installed file uid {}", m.uid())
    })?;
    let repo = w.path("repo");
    let r = Cmd::new(&git)
        .command_args(&["-c", "safe.directory=*", "-C", &repo, "log", "--format=%s"])
        .run();
    r.expect_code(0, "git log outside")?;
    check(r.stdout.contains("first"), || r.show())
}

trait Args {
    fn command_args(self, args: &[&str]) -> Self;
}

impl Args for Cmd {
    fn command_args(mut self, args: &[&str]) -> Cmd {
        self.command().args(args);
        self
    }
}

/// A persistent context with `identity`: every call (the first, which starts the keeper, and one
/// that joins it) runs in a user namespace mapped by its parent, and what it writes lands as the
/// mapped uid.
pub fn persistent_calls_are_mapped_too() -> Result<(), String> {
    needs_isolation()?;
    let w = Work::new("g7keep");
    let name = format!("g7keep{}", std::process::id());
    let text = format!(
        "version = 1\n[context.{name}]\nnamespaces = [\"pid\", \"mount\"]\npersist = true\n\
         identity = {{ uid = 200000, gid = 200000, count = 65536 }}\n\
         fs.read_only = [\"/\"]\nfs.writable = [\"{dir}\"]\nfs.tmpfs = [\"/tmp\"]\nfs.hide = [\"/run/sbx\"]\n\
         security.caps = [\"CHOWN\", \"SETUID\", \"SETGID\", \"KILL\"]\nsecurity.seccomp = \"default\"\n",
        dir = w.dir.display()
    );
    std::os::unix::fs::chown(&w.dir, Some(200000), Some(200000)).unwrap();
    let keep = TempDir::new("g7keep-policy");
    let policy = write_policy(keep.path(), &text);
    let policy = policy.to_str().unwrap();
    let call = |n: u32| {
        let script = format!("id -u; cat /proc/self/uid_map; echo {n} > call{n}");
        let mut c = Cmd::sbx([
            "--policy", policy, "--ctx", &name, "--", "/bin/sh", "-c", &script,
        ]);
        c.command().current_dir(&w.dir);
        c.limit(Duration::from_secs(60)).run()
    };
    let result = (|| {
        for n in [1, 2] {
            let r = call(n);
            r.expect_code(0, &format!("call {n}"))?;
            let lines: Vec<&str> = r.stdout.lines().collect();
            let map: Vec<&str> = lines.get(1).unwrap_or(&"").split_whitespace().collect();
            check(
                lines.first() == Some(&"0") && map == ["0", "200000", "65536"],
                || r.show(),
            )?;
            let m = std::fs::metadata(w.dir.join(format!("call{n}"))).map_err(|e| e.to_string())?;
            check(m.uid() == 200000, || {
                format!("call {n} wrote as uid {}", m.uid())
            })?;
        }
        Ok(())
    })();
    let _ = Cmd::sbx(["ctx", "stop", "--policy", policy, &name]).run();
    result
}

/// Where the kernel refuses user namespaces (here: sbx-exec run inside a sandbox whose seccomp
/// filter denies them), a context with `identity` and `degrade = true` runs the command as the
/// range's host uid with no capabilities: the same identity outside, not root inside; probe says
/// so. The same context without `degrade` is refused (125).
pub fn without_user_namespaces_degrade_runs_as_the_host_uid() -> Result<(), String> {
    needs_isolation()?;
    let w = Work::new("g7degrade");
    let keep = TempDir::new("g7degrade-policy");
    let outer = keep.path().join("outer.toml");
    std::fs::write(
        &outer,
        "version = 1\n[context.outer]\nsecurity.caps = [\"ALL\"]\nsecurity.seccomp = \"default\"\n",
    )
    .unwrap();
    let ids = "identity = { uid = 100000, gid = 100000, count = 65536 }";
    let inner = keep.path().join("inner.toml");
    std::fs::write(
        &inner,
        format!(
            "version = 1\n[context.soft]\nnamespaces = [\"pid\", \"mount\"]\ndegrade = true\n{ids}\n\
             security.caps = [\"CHOWN\", \"SETUID\", \"DAC_OVERRIDE\"]\n\
             [context.strict]\nnamespaces = [\"pid\", \"mount\"]\n{ids}\n"
        ),
    )
    .unwrap();
    let (outer, inner) = (outer.to_str().unwrap(), inner.to_str().unwrap());
    let nested = |args: &[&str]| {
        let mut all = vec!["--policy", outer, "--ctx", "outer", "--", bin()];
        all.extend(args);
        let mut c = Cmd::sbx(all);
        c.command().current_dir(&w.dir);
        c.limit(Duration::from_secs(60)).run()
    };
    let r = nested(&[
        "--policy",
        inner,
        "--ctx",
        "soft",
        "--",
        "/bin/sh",
        "-c",
        "id -u; grep CapEff /proc/self/status; echo x > degraded.txt",
    ]);
    r.expect_code(0, "degraded identity")?;
    check(
        r.stdout.starts_with("100000\n")
            && r.stdout.contains("CapEff:\t0000000000000000")
            && r.stderr.contains("no user namespace"),
        || r.show(),
    )?;
    let m = std::fs::metadata(w.dir.join("degraded.txt")).map_err(|e| e.to_string())?;
    check(m.uid() == MAPPED, || format!("written as uid {}", m.uid()))?;
    let r = nested(&["--policy", inner, "--ctx", "strict", "--", "true"]);
    r.expect_code(125, "identity without user namespaces and without degrade")?;
    let p = nested(&["probe", "--policy", inner]);
    check(
        p.stdout.contains("identity of soft: degraded")
            && p.stdout.contains("identity of strict: unavailable"),
        || p.show(),
    )
}

/// Every shipped context that runs code a user or an agent wrote is nobody outside (G7): in
/// sandbox-sdk's `agent` and `notebook`, what their code writes in the work area belongs to host
/// uid 100000 (not root), and /etc/shadow is unreadable. Control: `platform` (trusted, host root)
/// reads /etc/shadow, and its file in the same work area is root's.
pub fn agent_and_notebook_are_nobody_outside() -> Result<(), String> {
    needs_isolation()?;
    let area = Path::new("/var/lib").join(unique_name("sdkwork"));
    std::fs::create_dir_all(&area).unwrap();
    let dir = TempDir::new("sdkident");
    let sdk = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/sandbox-sdk.toml"),
    )
    .unwrap()
    .replace("\"/workspace\"", &format!("\"{}\"", area.display()));
    let policy = write_policy(dir.path(), &sdk);
    // The control's platform is the default policy's (sandbox-sdk's runs listed tools only).
    let dir2 = TempDir::new("sdkident2");
    let default = write_policy(
        dir2.path(),
        &DEFAULT_TOML.replace("\"/workspace\"", &format!("\"{}\"", area.display())),
    );
    let run = |ctx: &str| {
        let p = if ctx == "platform" { &default } else { &policy };
        Cmd::sbx([
            "--policy",
            p.to_str().unwrap(),
            "--ctx",
            ctx,
            "--in-workdir",
            "--",
            "/bin/sh",
            "-c",
            &format!("head -c 4 /etc/shadow >/dev/null 2>&1 && echo shadow:read || echo shadow:denied; touch {}/by-{ctx} && echo wrote", area.display()),
        ])
        .run()
    };
    let (agent, notebook, platform) = (run("agent"), run("notebook"), run("platform"));
    let owner = |ctx: &str| std::fs::metadata(area.join(format!("by-{ctx}"))).map(|m| m.uid());
    let owners = (owner("agent"), owner("notebook"), owner("platform"));
    let _ = std::fs::remove_dir_all(&area);
    for (ctx, r) in [("agent", &agent), ("notebook", &notebook)] {
        r.expect_code(0, ctx)?;
        check(
            r.stdout.contains("shadow:denied") && r.stdout.contains("wrote"),
            || format!("{ctx}: {}", r.show()),
        )?;
    }
    check(matches!(owners, (Ok(MAPPED), Ok(MAPPED), Ok(0))), || {
        format!("owners (agent, notebook, platform): {owners:?}")
    })?;
    // Control: the trusted context is root outside and reads it.
    check(platform.stdout.contains("shadow:read"), || platform.show())
}
