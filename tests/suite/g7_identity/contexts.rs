//! The mapping in every kind of call: persistent ones (first and joined), a launch without user
//! namespaces that degrades to the host uid, and the shipped agent and notebook contexts.

use super::*;

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
