//! Walls that the launch-cost work (bench/PROFILING.md) touched: the capability sets after the
//! batched drop, a read-only /sys in every context, whether sbx-exec remounted it or the
//! read-only root already covered it, and the binary's own hardening after the static build.

use crate::harness::{bin, check, needs_isolation, Cmd, Run};

/// The default policy's kept capabilities (CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID,
/// SETUID, SETPCAP, NET_BIND_SERVICE, SYS_CHROOT, AUDIT_WRITE) as /proc/PID/status shows them.
const KEPT: &str = "00000000200405fb";

fn field<'a>(r: &'a Run, name: &str) -> &'a str {
    r.stdout
        .lines()
        .find_map(|l| l.strip_prefix(name).map(str::trim))
        .unwrap_or("missing")
}

pub fn caps_are_cut_to_the_kept_set() -> Result<(), String> {
    needs_isolation()?;
    let mut c = Cmd::new("grep");
    c.command().args(["^Cap", "/proc/self/status"]);
    let c = c.run();
    check(
        field(&c, "CapBnd:") != KEPT && field(&c, "CapBnd:") != "missing",
        || {
            format!(
                "control: the suite's own bounding set is already cut: {}",
                c.show()
            )
        },
    )?;
    for ctx in ["user", "platform"] {
        let r = Cmd::sbx(["--ctx", ctx, "--", "grep", "^Cap", "/proc/self/status"]).run();
        r.expect_code(0, ctx)?;
        for (name, want) in [
            ("CapBnd:", KEPT),
            ("CapPrm:", KEPT),
            ("CapEff:", KEPT),
            ("CapInh:", "0000000000000000"),
            ("CapAmb:", "0000000000000000"),
        ] {
            check(field(&r, name) == want, || {
                format!("{ctx}: {name} is not {want}: {}", r.show())
            })?;
        }
    }
    Ok(())
}

/// Mount points at or below /sys with the per-mount options of the mount that is visible there
/// (the last one mounted on that point).
fn sys_mounts(mountinfo: &str) -> Vec<(String, String)> {
    let mut seen: Vec<(String, String)> = Vec::new();
    for line in mountinfo.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let (point, opts) = (
            f.get(4).copied().unwrap_or(""),
            f.get(5).copied().unwrap_or(""),
        );
        if point == "/sys" || point.starts_with("/sys/") {
            seen.retain(|(p, _)| p != point);
            seen.push((point.to_string(), opts.to_string()));
        }
    }
    seen
}

pub fn every_sys_mount_is_read_only() -> Result<(), String> {
    needs_isolation()?;
    let outside = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    let host = sys_mounts(&outside);
    check(
        host.iter().any(|(_, o)| o.split(',').any(|x| x == "rw")),
        || format!("control: no writable mount under /sys outside: {host:?}"),
    )?;
    for ctx in ["user", "platform"] {
        let r = Cmd::sbx(["--ctx", ctx, "--", "cat", "/proc/self/mountinfo"]).run();
        r.expect_code(0, ctx)?;
        let inside = sys_mounts(&r.stdout);
        check(inside.len() >= host.len(), || {
            format!("{ctx}: fewer /sys mounts than outside: {inside:?}")
        })?;
        for (point, opts) in &inside {
            check(opts.split(',').any(|x| x == "ro"), || {
                format!("{ctx}: {point} is mounted {opts}")
            })?;
        }
    }
    Ok(())
}

/// What an ELF file's program headers say: (position-independent, has a program interpreter,
/// has GNU_RELRO, stack executable). `None` if it is not a 64-bit little-endian ELF file.
fn elf_facts(path: &str) -> Option<(bool, bool, bool, bool)> {
    let b = std::fs::read(path).ok()?;
    if b.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?));
    let pie = u16_at(16)? == 3; // e_type ET_DYN
    let (phoff, phentsize, phnum) = (u64_at(32)? as usize, u16_at(54)? as usize, u16_at(56)?);
    let (mut interp, mut relro, mut exec_stack) = (false, false, true);
    for i in 0..phnum as usize {
        let at = phoff + i * phentsize;
        match u32_at(at)? {
            3 => interp = true,                                   // PT_INTERP
            0x6474_e552 => relro = true,                          // PT_GNU_RELRO
            0x6474_e551 => exec_stack = u32_at(at + 4)? & 1 != 0, // PT_GNU_STACK, PF_X
            _ => {}
        }
    }
    Some((pie, interp, relro, exec_stack))
}

/// The launcher is static-pie (.cargo/config.toml): no program interpreter, so no dynamic loader,
/// library path or preload can reach it (setuid or not), and it keeps its hardening: position-
/// independent (ASLR), RELRO, a non-executable stack. Control: the same reading of a dynamic
/// program (`true`) finds its interpreter.
pub fn the_launcher_loads_no_shared_library() -> Result<(), String> {
    let true_path = ["/usr/bin/true", "/bin/true"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("/usr/bin/true");
    let control = elf_facts(true_path);
    check(control.is_some_and(|(_, interp, _, _)| interp), || {
        format!("control: no interpreter found in {true_path}: {control:?}")
    })?;
    let facts = elf_facts(bin());
    check(facts == Some((true, false, true, false)), || {
        format!("{} is not a static-pie with RELRO and a non-executable stack (pie, interp, relro, exec stack) = {facts:?}", bin())
    })
}

/// A read-only path needs no bind of its own (`plan::mounts::already_read_only`), but a policy
/// file given through a symlink still goes to the bind, which refuses a path that goes through a
/// link (its target could be in a writable area the bind would not protect). Control: the same
/// policy by its real path runs.
pub fn a_policy_through_a_symlink_is_still_refused() -> Result<(), String> {
    needs_isolation()?;
    let dir = std::path::PathBuf::from(format!("/var/lib/sbx-suite-{}-polink", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let real = dir.join("policy.toml");
    let link = dir.join("link.toml");
    let shown = Cmd::sbx(["policy", "show"]).run();
    let text: String = shown
        .stdout
        .lines()
        .skip(1)
        .map(|l| format!("{l}\n"))
        .collect();
    let made = std::fs::write(&real, text).and_then(|()| std::os::unix::fs::symlink(&real, &link));
    let run = |p: &std::path::Path| {
        Cmd::sbx([
            "--policy",
            &p.display().to_string(),
            "--ctx",
            "user",
            "--",
            "true",
        ])
        .run()
    };
    let (direct, linked) = (run(&real), run(&link));
    let _ = std::fs::remove_dir_all(&dir);
    made.map_err(|e| e.to_string())?;
    direct.expect_code(0, "control: the policy by its real path")?;
    linked.expect_code(125, "the policy through a symlink")?;
    check(linked.stderr.contains("symbolic link"), || {
        format!("the refusal does not name the link: {}", linked.show())
    })
}
