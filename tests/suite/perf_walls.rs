//! Walls that the launch-cost work (bench/PROFILING.md) touched: the capability sets after the
//! batched drop, and a read-only /sys in every context, whether sbx-exec remounted it or the
//! read-only root already covered it.

use crate::harness::{check, needs_isolation, Cmd, Run};

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
