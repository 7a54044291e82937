//! Issue 4's attack suite: hostile code running as root in the `user` context. Each case shows the
//! attack fail inside and the same action succeed outside (or in the right context).
//!
//! Writes are probed by opening for append and writing nothing; the only files created are
//! sentinels this suite made; the only processes signalled are ones it started.

use std::path::{Path, PathBuf};

use crate::g2_visibility::Bystander;
use crate::harness::*;

/// Python that probes each argument for writing without changing it and prints `path=ok` or
/// `path=ERRNO`: a file is opened for append (nothing written); an executable that may be running
/// (where open would answer ETXTBSY before the read-only check) gets a chmod to its current mode.
const PROBE_WRITE: &str = r#"
import os, sys, errno
for p in sys.argv[1:]:
    try:
        if os.access(p, os.X_OK) and os.path.isfile(p):
            os.chmod(p, os.stat(p).st_mode & 0o7777)
        else:
            fd = os.open(p, os.O_WRONLY | os.O_APPEND)
            os.close(fd)
        print(p + "=ok")
    except OSError as e:
        print(p + "=" + errno.errorcode.get(e.errno, str(e.errno)))
"#;

fn probe_write(inside: bool, ctx: &str, paths: &[&Path]) -> Run {
    let mut c = if inside {
        Cmd::sbx(["--ctx", ctx, "--", "python3", "-c", PROBE_WRITE])
    } else {
        Cmd::new("python3")
    };
    if !inside {
        c.command().args(["-c", PROBE_WRITE]);
    }
    c.command().args(paths);
    c.run()
}

fn result_of<'a>(r: &'a Run, p: &Path) -> &'a str {
    let key = format!("{}=", p.display());
    r.stdout
        .lines()
        .find_map(|l| l.strip_prefix(key.as_str()))
        .unwrap_or("missing")
}

/// A sentinel file created by this test in `dir` (a system directory), removed on drop.
struct Sentinel(PathBuf);

impl Sentinel {
    fn new(dir: &str) -> Option<Sentinel> {
        let p = Path::new(dir).join(marker("sentinel"));
        std::fs::write(&p, b"sentinel\n").ok()?;
        Some(Sentinel(p))
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub fn system_files_cannot_be_written() -> Result<(), String> {
    needs_isolation()?;
    require_tool("python3")?;
    let mut sentinels = Vec::new();
    for dir in ["/etc", "/usr/local/bin", "/usr/bin", "/opt", "/var/lib"] {
        if let Some(s) = Sentinel::new(dir) {
            sentinels.push(s);
        }
    }
    check(sentinels.len() >= 3, || {
        "could not create sentinels in system directories".into()
    })?;
    let mut paths: Vec<&Path> = sentinels.iter().map(|s| s.0.as_path()).collect();
    let exe = Path::new(bin());
    paths.push(exe);
    // Control: outside, every one of them opens for writing.
    let c = probe_write(false, "", &paths);
    for p in &paths {
        check(result_of(&c, p) == "ok", || {
            format!(
                "control cannot open {} for writing: {}",
                p.display(),
                c.show()
            )
        })?;
    }
    let r = probe_write(true, "user", &paths);
    r.expect_code(0, "probe")?;
    for p in &paths {
        check(refused(&r, p, "user"), || {
            format!("user can write {}: {}", p.display(), r.show())
        })?;
    }
    Ok(())
}

pub fn ld_so_preload_cannot_be_created() -> Result<(), String> {
    needs_isolation()?;
    if Path::new("/etc/ld.so.preload").exists() {
        return Err(format!(
            "{SKIP}/etc/ld.so.preload exists on this host; not touching it"
        ));
    }
    // Control: outside, root creates a file in /etc (a sentinel, removed at once).
    check(Sentinel::new("/etc").is_some(), || {
        "control: cannot create a file in /etc outside".into()
    })?;
    // Inside: creating it fails.
    let r = Cmd::sbx([
        "--ctx",
        "user",
        "--",
        "sh",
        "-c",
        "touch /etc/ld.so.preload; echo rc=$?",
    ])
    .run();
    let created = Path::new("/etc/ld.so.preload").exists();
    if created {
        let _ = std::fs::remove_file("/etc/ld.so.preload");
    }
    check(!created && r.stdout.contains("rc=1"), || {
        format!("user created /etc/ld.so.preload: {}", r.show())
    })
}

pub fn launcher_and_policy_are_read_only_in_platform_too() -> Result<(), String> {
    needs_isolation()?;
    require_tool("python3")?;
    // A policy file outside /tmp (which is private in user), so both contexts can see it.
    let dir = PathBuf::from(format!("/var/lib/{}", marker("policydir")));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = crate::policy_tests::write_policy(&dir, crate::policy_tests::DEFAULT_TOML);
    let paths: Vec<&Path> = vec![Path::new(bin()), policy.as_path()];
    let c = probe_write(false, "", &paths);
    let mut result = Ok(());
    for p in &paths {
        if result_of(&c, p) != "ok" {
            result = Err(format!("control cannot open {}: {}", p.display(), c.show()));
        }
    }
    for ctx in ["platform", "user"] {
        let mut cmd = Cmd::sbx([
            "--policy",
            policy.to_str().unwrap(),
            "--ctx",
            ctx,
            "--",
            "python3",
            "-c",
            PROBE_WRITE,
        ]);
        cmd.command().args(&paths);
        let r = cmd.run();
        for p in &paths {
            if result.is_ok() && !refused(&r, p, ctx) {
                result = Err(format!("{ctx} can write {}: {}", p.display(), r.show()));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The write to `p` was refused: EROFS (the read-only mount). In `user`, whose root is an
/// unprivileged uid outside (`identity`), the permission check refuses first (EACCES) for files of
/// the host's root; the read-only mount is then a second wall, proven with EROFS in `platform`.
fn refused(r: &Run, p: &Path, ctx: &str) -> bool {
    let got = result_of(r, p);
    got == "EROFS" || (ctx == "user" && got == "EACCES")
}

pub fn proc_and_sys_cannot_be_written() -> Result<(), String> {
    needs_isolation()?;
    require_tool("python3")?;
    let candidates = [
        "/proc/sys/kernel/core_pattern",
        "/proc/sys/vm/drop_caches",
        "/proc/sysrq-trigger",
        "/sys/kernel/mm/transparent_hugepage/enabled",
    ];
    let paths: Vec<&Path> = candidates
        .iter()
        .map(Path::new)
        .filter(|p| p.exists())
        .collect();
    check(paths.len() >= 2, || "no /proc/sys files to probe".into())?;
    let c = probe_write(false, "", &paths);
    for p in &paths {
        check(result_of(&c, p) == "ok", || {
            format!("control cannot open {}: {}", p.display(), c.show())
        })?;
    }
    for ctx in ["user", "platform"] {
        let r = probe_write(true, ctx, &paths);
        for p in &paths {
            check(refused(&r, p, ctx), || {
                format!("{ctx} can write {}: {}", p.display(), r.show())
            })?;
        }
    }
    Ok(())
}

pub fn kernel_files_are_masked() -> Result<(), String> {
    needs_isolation()?;
    // Outside they have content (root reads them); inside they read as empty. /proc/self/status is
    // the control inside: the same read of an unmasked file has content.
    let masked = ["/proc/keys", "/proc/timer_list", "/proc/kcore"];
    let present: Vec<&str> = masked
        .into_iter()
        .filter(|p| Path::new(p).exists())
        .collect();
    check(!present.is_empty(), || "nothing to check".into())?;
    let script = present
        .iter()
        .chain(&["/proc/self/status"])
        .map(|p| format!("printf '%s=' {p}; head -c 64 {p} 2>/dev/null | wc -c"))
        .collect::<Vec<_>>()
        .join("; ");
    let bytes = |r: &Run, p: &str| -> Option<u64> {
        r.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{p}=")))
            .and_then(|n| n.trim().parse().ok())
    };
    let c = Cmd::sh(&script).run();
    let r = Cmd::sbx(["--ctx", "user", "--", "sh", "-c", &script]).run();
    r.expect_code(0, "reads inside")?;
    check(
        bytes(&r, "/proc/self/status").is_some_and(|n| n > 0),
        || {
            format!(
                "control: an unmasked /proc file reads as empty inside: {}",
                r.show()
            )
        },
    )?;
    let mut with_content_outside = 0;
    for p in &present {
        check(bytes(&r, p) == Some(0), || {
            format!("{p} readable inside: {}", r.show())
        })?;
        if bytes(&c, p).is_some_and(|n| n > 0) {
            with_content_outside += 1;
        }
    }
    check(with_content_outside > 0, || {
        format!(
            "control: every masked file is empty outside too: {}",
            c.show()
        )
    })
}

pub fn cgroups_cannot_be_created() -> Result<(), String> {
    needs_isolation()?;
    // Find a cgroup directory where the control (outside) can create and remove a child.
    let name = marker("cg");
    let base = [
        "/sys/fs/cgroup",
        "/sys/fs/cgroup/unified",
        "/sys/fs/cgroup/pids",
        "/sys/fs/cgroup/memory",
    ]
    .into_iter()
    .find(|b| {
        let p = Path::new(b).join(&name);
        std::fs::create_dir(&p).is_ok() && std::fs::remove_dir(&p).is_ok()
    });
    let Some(base) = base else {
        return Err(format!("{SKIP}no writable cgroup hierarchy here"));
    };
    let target = format!("{base}/{name}");
    let r = Cmd::sbx([
        "--ctx",
        "user",
        "--",
        "sh",
        "-c",
        &format!("mkdir {target}; echo rc=$?"),
    ])
    .run();
    let created = Path::new(&target).exists();
    if created {
        let _ = std::fs::remove_dir(&target);
    }
    check(!created && r.stdout.contains("rc=1"), || {
        format!("user created a cgroup: {}", r.show())
    })
}

/// Python that tries three mount operations with the raw syscalls and prints `name=ok` or
/// `name=ERRNO` for each: a tmpfs on /mnt, making / writable (a per-mount bind remount, so the
/// control cannot change the filesystem itself), and detaching /proc.
const MOUNT_ATTEMPTS: &str = r#"
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
MS_RDONLY, MS_REMOUNT, MS_BIND, MNT_DETACH = 1, 32, 4096, 2
def res(rc):
    return "ok" if rc == 0 else errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
print("tmpfs=" + res(libc.mount(b"none", b"/mnt", b"tmpfs", 0, None)))
print("remount=" + res(libc.mount(None, b"/", None, MS_REMOUNT | MS_BIND, None)))
print("umount=" + res(libc.umount2(b"/proc", MNT_DETACH)))
"#;

pub fn mount_fails_inside() -> Result<(), String> {
    needs_isolation()?;
    require_tool("python3")?;
    let outcomes = |r: &Run| -> Vec<String> {
        ["tmpfs=", "remount=", "umount="]
            .iter()
            .map(|k| {
                let v = r.stdout.lines().find_map(|l| l.strip_prefix(k));
                format!("{k}{}", v.unwrap_or("missing"))
            })
            .collect()
    };
    // Control: root in a throwaway mount namespace of its own (inside the suite's) makes the same
    // three calls, and each succeeds.
    let mut c = Cmd::new("unshare");
    c.command().args([
        "--mount",
        "--propagation",
        "private",
        "--",
        "python3",
        "-c",
        MOUNT_ATTEMPTS,
    ]);
    let c = c.run();
    c.expect_code(0, "control mounts")?;
    check(
        outcomes(&c) == ["tmpfs=ok", "remount=ok", "umount=ok"],
        || {
            format!(
                "control: the mounts fail where they are allowed: {}",
                c.show()
            )
        },
    )?;
    // Inside user (and platform): each is refused with EPERM (no CAP_SYS_ADMIN, and seccomp).
    for ctx in ["user", "platform"] {
        let r = Cmd::sbx(["--ctx", ctx, "--", "python3", "-c", MOUNT_ATTEMPTS]).run();
        r.expect_code(0, ctx)?;
        check(
            outcomes(&r) == ["tmpfs=EPERM", "remount=EPERM", "umount=EPERM"],
            || {
                format!(
                    "{ctx}: a mount call was not refused with EPERM: {}",
                    r.show()
                )
            },
        )?;
    }
    Ok(())
}

/// Shell probes of /proc/PID (`environ`, `exe` by readlink, `exe` for writing, `mem`), each
/// printed as `NAME=0` (it worked) or another status.
fn proc_probes(pid: &str) -> String {
    format!(
        "cat /proc/{pid}/environ >/dev/null 2>&1; echo environ=$?; \
         readlink /proc/{pid}/exe >/dev/null 2>&1; echo exe=$?; \
         python3 -c 'import os\ntry:\n os.open(\"/proc/{pid}/exe\", os.O_WRONLY); print(\"open=0\")\nexcept OSError as e: print(\"open=\",e.errno)'; \
         python3 -c 'import os\ntry:\n os.open(\"/proc/{pid}/mem\", os.O_RDONLY); print(\"mem=0\")\nexcept OSError as e: print(\"mem=\",e.errno)'"
    )
}

fn probe_result<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(str::trim)
        .unwrap_or("missing")
}

pub fn pid1_of_sandbox_is_untouchable() -> Result<(), String> {
    needs_isolation()?;
    require_tool("python3")?;
    let script = format!("{}; echo ---; {}", proc_probes("1"), proc_probes("self"));
    let r = Cmd::sbx(["--ctx", "user", "--", "sh", "-c", &script]).run();
    r.expect_code(0, "probes")?;
    let (one, own) = r.stdout.split_once("---\n").ok_or_else(|| r.show())?;
    for key in ["environ", "exe", "open", "mem"] {
        let v = probe_result(one, key);
        check(v != "0" && v != "missing", || {
            format!("{key}={v}: pid 1 reachable: {}", r.show())
        })?;
    }
    // Control: the same reads of the target's own /proc entries work (writing a running
    // executable never does: ETXTBSY).
    for key in ["environ", "exe", "mem"] {
        check(probe_result(own, key) == "0", || {
            format!("control: own {key} unreadable: {}", r.show())
        })?;
    }
    // ptrace: strace attaches to a process the test started outside (control), not to pid 1 inside.
    let st = require_tool("strace")?;
    let b = Bystander::start("pid1strace");
    let c = Cmd::sh(&format!(
        "timeout -s INT 1 {st} -p {} -e trace=none; echo rc=$?",
        b.pid()
    ))
    .run();
    check(c.stderr.contains("attached"), || {
        format!("control strace did not attach: {}", c.show())
    })?;
    let r = Cmd::sbx(["--ctx", "user", "--", st.as_str(), "-p", "1"])
        .limit(std::time::Duration::from_secs(10))
        .run();
    check(
        r.code.is_some_and(|c| c != 0) && !r.stderr.contains("attached"),
        || format!("strace -p 1 worked: {}", r.show()),
    )
}

/// Three ways to create a user namespace: unshare(1), unshare(1) with a PID namespace and /proc,
/// and the raw unshare(2) from Python. Prints `a=STATUS`, `b=STATUS`, `py=ok` or `py=ERRNO`.
const USERNS_ATTEMPTS: &str = "unshare -Ur true; echo a=$?; unshare -Urpf --mount-proc true; echo b=$?; \
     python3 -c 'import ctypes, errno\nlibc = ctypes.CDLL(None, use_errno=True)\nrc = libc.unshare(0x10000000)\nprint(\"py=ok\" if rc == 0 else \"py=\" + errno.errorcode[ctypes.get_errno()])'";

pub fn user_namespaces_cannot_be_created() -> Result<(), String> {
    needs_isolation()?;
    require_tool("python3")?;
    let lines = |r: &Run| r.stdout.lines().map(String::from).collect::<Vec<_>>();
    // Control: outside, the same three attempts create user namespaces.
    let c = Cmd::sh(USERNS_ATTEMPTS).run();
    check(lines(&c) == ["a=0", "b=0", "py=ok"], || {
        format!(
            "control: user namespaces cannot be created outside: {}",
            c.show()
        )
    })?;
    let r = Cmd::sbx(["--ctx", "user", "--", "sh", "-c", USERNS_ATTEMPTS]).run();
    r.expect_code(0, "attempts")?;
    check(lines(&r) == ["a=1", "b=1", "py=EPERM"], || {
        format!(
            "user namespace created, or refused another way: {}",
            r.show()
        )
    })
}

pub fn tiocsti_cannot_inject_into_callers_tty() -> Result<(), String> {
    needs_isolation()?;
    require_tool("python3")?;
    // A pty stands in for the caller's terminal. Outside, TIOCSTI pushes "X" into it (control);
    // through sbx-exec the ioctl fails.
    let inject = "import fcntl,termios\ntry:\n fcntl.ioctl(0, termios.TIOCSTI, b'X'); print('injected')\nexcept OSError as e: print('refused', e.errno)";
    let driver = |cmd: Vec<String>| -> Run {
        let py = "import os,pty,sys\npid,fd=pty.fork()\nif pid==0:\n os.execvp(sys.argv[1], sys.argv[1:])\nout=b''\nwhile True:\n try: d=os.read(fd,1024)\n except OSError: break\n if not d: break\n out+=d\nos.waitpid(pid,0)\nprint(out.decode(errors='replace'))";
        let mut c = Cmd::new("python3");
        c.command().args(["-c", py]).args(cmd);
        c.run()
    };
    let c = driver(vec!["python3".into(), "-c".into(), inject.into()]);
    // The suite runs as root with CAP_SYS_ADMIN, which TIOCSTI allows even where
    // dev.tty.legacy_tiocsti is 0: the control must inject.
    check(c.stdout.contains("injected"), || {
        format!("control could not inject: {}", c.show())
    })?;
    let r = driver(vec![
        bin().into(),
        "--ctx".into(),
        "user".into(),
        "--".into(),
        "python3".into(),
        "-c".into(),
        inject.into(),
    ]);
    check(
        r.stdout.contains("refused") && !r.stdout.contains("injected"),
        || format!("TIOCSTI worked inside: {}", r.show()),
    )
}

/// The hex mask of the line that starts with `line` (such as `CapEff:`) in `/proc/PID/status` output.
fn cap_mask(out: &str, line: &str) -> Option<u64> {
    out.lines()
        .find_map(|l| l.strip_prefix(line))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

pub fn nested_sbx_exec_gives_nothing_back() -> Result<(), String> {
    needs_isolation()?;
    let b = Bystander::start("nested");
    // The default policy with free ports for control (not the host's 8080/8888), in a directory
    // outside /tmp so that the nested calls inside user see it too; removed on drop.
    let (p1, p2) = crate::g3_control::free_ports();
    let text = crate::policy_tests::DEFAULT_TOML.replacen(
        "ports = [8080, 8888]",
        &format!("ports = [{p1}, {p2}]"),
        1,
    );
    check(text != crate::policy_tests::DEFAULT_TOML, || {
        "could not set the ports".into()
    })?;
    let dir = ProgramDir::new("/var/lib");
    let policy = crate::policy_tests::write_policy(&dir.0, &text);
    let pol = policy.to_str().unwrap();
    let me = format!("{} --policy {pol}", bin());
    // Controls, read live: the suite's own effective set, and what `control` gets when started
    // from here (all of it) and sees (the bystander).
    let own = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    let full = cap_mask(&own, "CapEff:").ok_or("no CapEff in /proc/self/status")?;
    let c = Cmd::sbx([
        "--policy",
        pol,
        "--ctx",
        "control",
        "--",
        "sh",
        "-c",
        "grep CapEff /proc/self/status; ps -eo args",
    ])
    .run();
    c.expect_code(0, "control from the suite")?;
    check(cap_mask(&c.stdout, "CapEff:") == Some(full), || {
        format!(
            "control: the control context does not get {full:016x}: {}",
            c.show()
        )
    })?;
    check(c.stdout.contains(&b.mark), || {
        format!(
            "control: the control context does not see the bystander: {}",
            c.show()
        )
    })?;
    // From inside user: platform (with a secret) cannot be created; control has no namespaces of
    // its own but gains no capability user lacks and sees no process outside user.
    let script = format!(
        "echo 'T=nested-secret' > /tmp/s; {me} --ctx platform --secrets-fd 3 -- sh -c 'echo got=$T' 3</tmp/s; echo platform=$?; \
         grep CapEff /proc/self/status | sed 's/^/user/'; \
         {me} --ctx control -- sh -c 'grep CapEff /proc/self/status; ps -eo args' ; echo control=$?"
    );
    let r = Cmd::sbx(["--policy", pol, "--ctx", "user", "--", "sh", "-c", &script]).run();
    check(!r.stdout.contains("got=nested-secret"), || {
        format!("nested platform got the secret: {}", r.show())
    })?;
    check(r.stdout.contains("platform=125"), || {
        format!("nested platform did not refuse: {}", r.show())
    })?;
    check(r.stdout.contains("control=0"), || {
        format!(
            "nested control did not run (so what it saw proves nothing): {}",
            r.show()
        )
    })?;
    check(!r.stdout.contains(&b.mark), || {
        format!("nested control sees outside: {}", r.show())
    })?;
    let user = cap_mask(&r.stdout, "userCapEff:").ok_or_else(|| r.show())?;
    let nested = cap_mask(&r.stdout, "CapEff:").ok_or_else(|| r.show())?;
    check(user != full, || {
        format!(
            "user already has every capability ({full:016x}): {}",
            r.show()
        )
    })?;
    check(nested & !user == 0, || {
        format!(
            "nested control gained capabilities: {nested:016x} beyond user's {user:016x}: {}",
            r.show()
        )
    })?;
    // Control: the same platform call outside works.
    let (cmd, _d) = sbx_with_secrets(
        "T=nested-secret\n",
        &[
            "--ctx",
            "platform",
            "--secrets-fd",
            "3",
            "--",
            "sh",
            "-c",
            "echo got=$T",
        ],
    );
    let c = cmd.run();
    check(c.stdout.contains("got=nested-secret"), || {
        format!("control platform failed: {}", c.show())
    })
}

pub fn hidden_cwd_is_not_leaked() -> Result<(), String> {
    needs_isolation()?;
    // runc CVE-2024-21626: a cwd that the sandbox should not see must not be inherited by handle.
    // The command starts in the context's workdir instead: the hidden directory is neither its
    // working directory nor reachable through /proc/self/cwd.
    let d = TempDir::new("cwd");
    let secret_file = d.file("private.txt", "outside-only");
    let r = Cmd::sbx([
        "--ctx",
        "user",
        "--",
        "sh",
        "-c",
        "cat private.txt; cat /proc/self/cwd/private.txt; readlink /proc/self/cwd",
    ])
    .run_in(d.path());
    check(
        !r.stdout.contains("outside-only")
            && !r.stdout.contains(&d.path().display().to_string())
            && r.stderr.contains("private.txt"),
        || r.show(),
    )?;
    // Control: a context that shares /tmp (platform has its own since G8) runs in the same cwd.
    let text = "version = 1\n[context.shared]\nnamespaces = [\"pid\", \"mount\"]\n";
    let p = crate::policy_tests::write_policy(d.path(), text);
    let c = Cmd::sbx([
        "--policy",
        p.to_str().unwrap(),
        "--ctx",
        "shared",
        "--",
        "cat",
        "private.txt",
    ])
    .run_in(d.path());
    check(c.stdout.contains("outside-only"), || {
        format!("control: {} {}", secret_file.display(), c.show())
    })
}

pub fn symlinked_policy_paths_are_refused() -> Result<(), String> {
    needs_isolation()?;
    let d = TempDir::new("link");
    let link = d.path().join("etc-link");
    std::os::unix::fs::symlink("/etc", &link).unwrap();
    let text = format!("version = 1\n[context.x]\nnamespaces = [\"pid\", \"mount\"]\n[context.x.fs]\ntmpfs = [\"{}\"]\n", link.display());
    let p = crate::policy_tests::write_policy(d.path(), &text);
    let r = Cmd::sbx(["--policy", p.to_str().unwrap(), "--ctx", "x", "--", "true"]).run();
    r.expect_code(125, "symlinked mount target")?;
    check(r.stderr.contains("symbolic link"), || r.show())?;
    // Control: the real path is accepted.
    let text = text.replace(&link.display().to_string(), &d.path().display().to_string());
    let p = crate::policy_tests::write_policy(d.path(), &text);
    Cmd::sbx(["--policy", p.to_str().unwrap(), "--ctx", "x", "--", "true"])
        .run()
        .expect_code(0, "real path")?;
    Ok(())
}

trait RunIn {
    fn run_in(self, dir: &Path) -> Run;
}

impl RunIn for Cmd {
    fn run_in(mut self, dir: &Path) -> Run {
        self.command().current_dir(dir);
        self.run()
    }
}

/// A directory under /var/lib with a small program in it, removed on drop.
struct ProgramDir(PathBuf);

impl ProgramDir {
    fn new(parent: &str) -> ProgramDir {
        use std::os::unix::fs::PermissionsExt;
        let dir = Path::new(parent).join(marker("progdir"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let prog = dir.join("tool");
        std::fs::write(&prog, "#!/bin/sh\necho tool-ran\n").unwrap();
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
        ProgramDir(dir)
    }

    fn tool(&self) -> String {
        self.0.join("tool").display().to_string()
    }

    fn give_to(&self, id: u32) {
        for p in [self.0.clone(), self.0.join("tool")] {
            std::os::unix::fs::chown(&p, Some(id), Some(id)).unwrap();
        }
    }
}

impl Drop for ProgramDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn platform_refuses_tampered_programs() -> Result<(), String> {
    needs_isolation()?;
    use std::os::unix::fs::PermissionsExt;
    let good = ProgramDir::new("/var/lib");
    // Control: a root-owned program in a root-owned 0755 directory runs in platform.
    let r = Cmd::sbx(["--ctx", "platform", "--", good.tool().as_str()]).run();
    r.expect_code(0, "root-owned program")?;
    check(r.stdout.contains("tool-ran"), || r.show())?;
    // A directory another user owns: someone else could have replaced the program.
    let owned = ProgramDir::new("/var/lib");
    std::os::unix::fs::chown(&owned.0, Some(65534), Some(65534)).unwrap();
    // A world-writable directory.
    let writable = ProgramDir::new("/var/lib");
    std::fs::set_permissions(&writable.0, std::fs::Permissions::from_mode(0o777)).unwrap();
    for (d, why) in [
        (&owned, "not root"),
        (&writable, "writable by group or others"),
    ] {
        let r = Cmd::sbx(["--ctx", "platform", "--", d.tool().as_str()]).run();
        r.expect_code(125, "tampered program")?;
        check(
            r.stderr.contains(why)
                && r.stderr.contains("verify_owner")
                && !r.stdout.contains("tool-ran"),
            || r.show(),
        )?;
        // The user context has no secrets to protect and runs it.
        let u = Cmd::sbx(["--ctx", "user", "--", d.tool().as_str()]).run();
        check(u.stdout.contains("tool-ran"), || {
            format!("control (user) did not run it: {}", u.show())
        })?;
    }
    Ok(())
}

pub fn platform_refuses_programs_user_code_can_write() -> Result<(), String> {
    needs_isolation()?;
    if !Path::new("/home").is_dir() {
        return Err(format!("{SKIP}no /home here"));
    }
    let d = ProgramDir::new("/home");
    // The image hands /home to the uid user code is outside (the shipped identity's).
    d.give_to(100000);
    // Control: user code can write there (and so could have planted this program).
    let u = Cmd::sbx([
        "--ctx",
        "user",
        "--",
        "sh",
        "-c",
        &format!("{} && : >> {}", d.tool(), d.tool()),
    ])
    .run();
    check(u.stdout.contains("tool-ran") && u.ok(), || {
        format!("control: user cannot write /home: {}", u.show())
    })?;
    let r = Cmd::sbx(["--ctx", "platform", "--", d.tool().as_str()]).run();
    r.expect_code(125, "program under /home")?;
    check(
        r.stderr.contains("deny_under") && !r.stdout.contains("tool-ran"),
        || r.show(),
    )
}

pub fn run_as_switches_user_for_good() -> Result<(), String> {
    needs_isolation()?;
    let d = TempDir::new("runas");
    let text = crate::policy_tests::DEFAULT_TOML.replacen(
        "[context.user.security]\ncaps = [\"CHOWN\", \"DAC_OVERRIDE\", \"FOWNER\", \"FSETID\", \"KILL\", \"SETGID\", \"SETUID\", \"SETPCAP\",\n        \"NET_BIND_SERVICE\", \"SYS_CHROOT\", \"AUDIT_WRITE\"]\n",
        "[context.user.security]\nrun_as = { uid = 65534, gid = 65534 }\n",
        1,
    );
    check(text.contains("run_as"), || {
        "could not build the run_as policy".into()
    })?;
    let p = crate::policy_tests::write_policy(d.path(), &text);
    let script = "id -u; id -g; id -G; grep -E '^Cap(Eff|Prm|Bnd)' /proc/self/status; \
                  python3 -c 'import os\ntry:\n os.setuid(0); print(\"regained root\")\nexcept OSError as e: print(\"setuid refused\", e.errno)'";
    // Control: the default user context runs as root with its capability set.
    let c = Cmd::sbx(["--ctx", "user", "--", "sh", "-c", script]).run();
    check(c.stdout.starts_with("0\n0\n"), || {
        format!("control: {}", c.show())
    })?;
    let r = Cmd::sbx([
        "--policy",
        p.to_str().unwrap(),
        "--ctx",
        "user",
        "--",
        "sh",
        "-c",
        script,
    ])
    .run();
    r.expect_code(0, "run_as")?;
    check(r.stdout.starts_with("65534\n65534\n65534\n"), || {
        format!("not switched: {}", r.show())
    })?;
    check(
        r.stdout.contains("CapEff:\t0000000000000000")
            && r.stdout.contains("CapPrm:\t0000000000000000"),
        || r.show(),
    )?;
    check(
        r.stdout.contains("setuid refused") && !r.stdout.contains("regained root"),
        || r.show(),
    )
}
