//! What the host sees of user code: a socket peer's credentials, a file it marks setuid, and its
//! work area (shared with the control side, writable when root made it) all carry the mapped uid.

use super::*;

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
    let mut server = Cmd::new(PY)
        .args(["-c", PEERCRED_SERVER, &sock, "3"])
        .spawn();
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
