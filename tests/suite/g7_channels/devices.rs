//! Devices: no host device node is reachable, the standard devices work, a device node or setuid
//! bit in a shared work area is inert, and `fs.devices` is checked at launch.

use super::*;

/// (b) The host device nodes the attacks used are absent from `user`'s /dev, which holds only
/// what the private /dev puts there. Control: the same paths exist and open outside (those this
/// host has).
pub fn host_device_nodes_are_unreachable() -> Result<(), String> {
    needs_isolation()?;
    let present: Vec<&str> = HOST_DEVICES
        .iter()
        .copied()
        .filter(|p| Path::new(p).exists())
        .collect();
    let outside = probe_open(false, &present);
    let opened_outside = present
        .iter()
        .filter(|p| opened(&outside, p).is_some_and(|(ro, wo)| ro == "ok" || wo == "ok"))
        .count();
    check(opened_outside >= 3, || {
        format!(
            "control: fewer than 3 of {present:?} open outside, the test shows nothing here: {}",
            outside.show()
        )
    })?;
    let inside = probe_open(true, HOST_DEVICES);
    inside.expect_code(0, "probe in user")?;
    for p in HOST_DEVICES {
        check(opened(&inside, p) == Some(("ENOENT", "ENOENT")), || {
            format!("{p} is reachable from user: {}", inside.show())
        })?;
    }
    // Nothing else of the host's /dev either: exactly the private /dev's entries.
    let ls = Cmd::sbx([
        "--ctx",
        "user",
        "--",
        "python3",
        "-c",
        "import os; print(' '.join(sorted(os.listdir('/dev'))), '|', ' '.join(sorted(os.listdir('/dev/pts'))))",
    ])
    .run();
    check(
        ls.stdout.trim()
            == "fd full null ptmx pts random shm stderr stdin stdout tty urandom zero | ptmx",
        || format!("user's /dev is not the private one: {}", ls.show()),
    )?;
    // The nodes are made in the private /dev (no host node is mounted there), which is read-only,
    // nosuid and noexec (never nodev: they must open).
    let mi = Cmd::sbx(["--ctx", "user", "--", "cat", "/proc/self/mountinfo"]).run();
    let dev = mi
        .stdout
        .lines()
        .rfind(|l| l.split(' ').nth(4) == Some("/dev"))
        .map(|l| l.split(' ').nth(5).unwrap_or("").to_string());
    check(
        dev.as_ref().is_some_and(|o| {
            let has = |f: &str| o.split(',').any(|x| x == f);
            has("ro") && has("nosuid") && has("noexec") && !has("nodev")
        }),
        || format!("the private /dev is not ro,nosuid,noexec without nodev: {dev:?}"),
    )?;
    for node in ["null", "zero", "full", "random", "urandom", "tty"] {
        let mount_point = format!(" /dev/{node} ");
        check(!mi.stdout.lines().any(|l| l.contains(&mount_point)), || {
            format!(
                "/dev/{node} is a mount (a host node bound in): {}",
                mi.show()
            )
        })?;
    }
    // Each is the character device it should be and works (control); root in `user` cannot add a
    // node or a file there, not even a copy of /dev/null (the attack).
    const NODES: &str = r#"
import os, stat
for n in ["null", "zero", "full", "random", "urandom", "tty"]:
    st = os.stat("/dev/" + n)
    print(n, stat.S_ISCHR(st.st_mode), os.major(st.st_rdev), os.minor(st.st_rdev))
with open("/dev/null", "w") as f:
    f.write("x")
with open("/dev/zero", "rb") as f:
    print("zero-read", len(f.read(4)))
for what, make in [
    ("mknod", lambda: os.mknod("/dev/sbx-planted", stat.S_IFCHR | 0o666, os.makedev(1, 3))),
    ("create", lambda: open("/dev/sbx-planted", "w")),
    ("unlink", lambda: os.unlink("/dev/null")),
]:
    try:
        make()
        print(what, "DONE")
    except OSError as e:
        print(what, "refused", e.errno)
"#;
    let nodes = Cmd::sbx(["--ctx", "user", "--", "python3", "-c", NODES]).run();
    nodes.expect_code(0, "device nodes in user")?;
    let want = [
        "null True 1 3",
        "zero True 1 5",
        "full True 1 7",
        "random True 1 8",
        "urandom True 1 9",
        "tty True 5 0",
        "zero-read 4",
    ];
    for w in want {
        check(nodes.stdout.lines().any(|l| l == w), || {
            format!("control: no {w:?} in user: {}", nodes.show())
        })?;
    }
    for what in ["mknod", "create", "unlink"] {
        check(
            nodes
                .stdout
                .lines()
                .any(|l| l.starts_with(&format!("{what} refused"))),
            || format!("{what} in user's /dev was not refused: {}", nodes.show()),
        )?;
    }
    // Root with DAC_OVERRIDE and no identity (`platform`) meets the read-only mount itself.
    let plat = Cmd::sbx(["--ctx", "platform", "--", "python3", "-c", NODES]).run();
    plat.expect_code(0, "device nodes in platform")?;
    let erofs = format!("create refused {}", libc::EROFS);
    check(plat.stdout.lines().any(|l| l == erofs), || {
        format!("platform's /dev is not read-only: {}", plat.show())
    })?;
    Ok(())
}

/// (d) The standard devices work inside.
pub fn standard_devices_work() -> Result<(), String> {
    needs_isolation()?;
    let script = "head -c 16 /dev/urandom | wc -c; head -c 16 /dev/random | wc -c; \
                  head -c 4 /dev/zero | od -An -tx1; echo gone > /dev/null && echo null-ok; \
                  cat /dev/null | wc -c; (echo x > /dev/full) 2>/dev/null || echo full-refused; \
                  ls -l /dev/ptmx /dev/fd/ | head -1; echo shm > /dev/shm/probe && cat /dev/shm/probe; \
                  readlink /dev/stdin /dev/stdout /dev/stderr /dev/ptmx";
    let r = Cmd::sbx(["--ctx", "user", "--", "sh", "-c", script]).run();
    r.expect_code(0, "standard devices")?;
    let want = [
        "16\n16\n",
        " 00 00 00 00\n",
        "null-ok\n0\nfull-refused\n",
        "shm\n/proc/self/fd/0\n/proc/self/fd/1\n/proc/self/fd/2\npts/ptmx\n",
    ];
    for w in want {
        check(r.stdout.contains(w), || {
            format!("missing {w:?}: {}", r.show())
        })?;
    }
    Ok(())
}

/// A directory outside /tmp (which `user`-like contexts cover with a tmpfs), removed on drop.
struct WorkDir(PathBuf);

impl WorkDir {
    fn new(tag: &str) -> WorkDir {
        let p = PathBuf::from(format!("/var/lib/{}", marker(tag)));
        std::fs::create_dir_all(&p).unwrap();
        WorkDir(p)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// (e) A setuid-root program and a device node placed in a shared writable area are inert inside
/// (nosuid, nodev), while the same in a read-only (not nosuid/nodev) area of the same sandbox still
/// work: the check can fail. The target runs as nobody without no_new_privs, so only the mount
/// flags stand between it and euid 0.
pub fn setuid_and_device_nodes_in_shared_areas_are_inert() -> Result<(), String> {
    needs_isolation()?;
    let shared = WorkDir::new("g7-shared");
    let other = WorkDir::new("g7-other");
    for d in [&shared, &other] {
        let ok = Cmd::sh(&format!(
            "cp /usr/bin/id {0}/id-suid && chown 0:0 {0}/id-suid && chmod 4755 {0}/id-suid && \
             chmod 755 {0} && mknod -m 666 {0}/null c 1 3",
            d.0.display()
        ))
        .run();
        ok.expect_code(0, "set up the setuid copy and the device node")?;
    }
    let policy_dir = TempDir::new("g7-policy");
    let policy = crate::policy_tests::write_policy(
        policy_dir.path(),
        &format!(
            "version = 1\n[context.t]\nnamespaces = [\"pid\", \"mount\", \"ipc\", \"uts\"]\n\
             env.allow = [\"PATH\"]\n\
             [context.t.fs]\nread_only = [\"/\"]\nwritable = [\"{}\"]\n\
             [context.t.security]\nno_new_privs = false\nrun_as = {{ uid = 65534, gid = 65534 }}\n",
            shared.0.display()
        ),
    );
    let script = format!(
        "for d in {} {}; do echo \"$d euid=$($d/id-suid -u)\"; \
         if echo x > $d/null 2>/dev/null; then echo \"$d node=ok\"; else echo \"$d node=refused\"; fi; done",
        shared.0.display(),
        other.0.display()
    );
    let r = Cmd::sbx([
        "--policy",
        policy.to_str().unwrap(),
        "--ctx",
        "t",
        "--",
        "sh",
        "-c",
        &script,
    ])
    .run();
    r.expect_code(0, "setuid probe")?;
    let has = |d: &WorkDir, what: &str| r.stdout.contains(&format!("{} {what}\n", d.0.display()));
    if !has(&other, "euid=0") {
        return Err(format!(
            "{SKIP}the host's filesystem does not honour setuid here (nosuid?), so the control cannot show it: {}",
            r.show()
        ));
    }
    check(has(&other, "node=ok"), || {
        format!(
            "control: a device node outside the shared area did not open: {}",
            r.show()
        )
    })?;
    check(has(&shared, "euid=65534"), || {
        format!(
            "a setuid-root program in the shared area gave root: {}",
            r.show()
        )
    })?;
    check(has(&shared, "node=refused"), || {
        format!("a device node in the shared area opened: {}", r.show())
    })?;
    // And the default user context cannot make a device node at all (no CAP_MKNOD).
    let m = Cmd::sbx([
        "--ctx",
        "user",
        "--",
        "sh",
        "-c",
        "mknod /tmp/n c 1 3 2>/dev/null && echo made || echo refused",
    ])
    .limit(Duration::from_secs(30))
    .run();
    check(m.stdout.trim() == "refused", || m.show())
}

/// `fs.devices` adds a host character device on purpose; a block device or a missing one is
/// refused at launch with 125, naming it.
pub fn fs_devices_are_checked_at_launch() -> Result<(), String> {
    needs_isolation()?;
    let chr = ["/dev/fuse", "/dev/net/tun", "/dev/kmsg"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let blk = ["/dev/loop0", "/dev/vda", "/dev/sda"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let dir = TempDir::new("g7-devices");
    let launch = |device: &str| {
        let policy = crate::policy_tests::write_policy(
            dir.path(),
            &format!(
                "version = 1\n[context.t]\nnamespaces = [\"pid\", \"mount\"]\n\
                 [context.t.fs]\ndevices = [\"{device}\"]\n"
            ),
        );
        Cmd::sbx([
            "--policy",
            policy.to_str().unwrap(),
            "--ctx",
            "t",
            "--",
            "ls",
            "-lR",
            "/dev",
        ])
        .run()
    };
    if let Some(chr) = chr {
        let r = launch(chr);
        r.expect_code(0, chr)?;
        let name = Path::new(chr).file_name().unwrap().to_string_lossy();
        check(r.stdout.contains(&*name), || {
            format!("{chr} was not added: {}", r.show())
        })?;
    }
    if let Some(blk) = blk {
        let r = launch(blk);
        r.expect_code(125, blk)?;
        check(r.stderr.contains("block device"), || r.show())?;
    }
    let r = launch("/dev/sbx-no-such-device");
    r.expect_code(125, "a missing device")?;
    check(r.stderr.contains("/dev/sbx-no-such-device"), || r.show())
}
