//! G7 (no shared channel), /sys: `user` (`fs.sys = "private"`) gets a fresh sysfs. The
//! container's /sys showed its network interfaces and their counters, and under /sys/fs/cgroup the
//! counters of every cgroup: the control plane's, the container's, every other call's. Inside,
//! /sys/class/net shows only the sandbox's own `lo`, and /sys/fs/cgroup only the call's own
//! cgroups, read-only (runtimes still find their limits). Each attack has its control: the same
//! look from outside the sandbox does see the interface or the other call's cgroup.

use std::time::Duration;

use crate::harness::*;

/// A network interface the sandbox must not see: a veth pair made in a network namespace of the
/// test's own (no packet is sent), with a sysfs of that namespace on /sys in a mount namespace
/// of the test's own, as a container has it.
pub fn sys_shows_only_the_sandboxs_own_network() -> Result<(), String> {
    needs_isolation()?;
    require_tool("ip")?;
    require_tool("unshare")?;
    let script = format!(
        "set -u\nip link add sbxmark0 type veth peer name sbxmark1 || exit 3\nmount -t sysfs sysfs /sys || exit 4\n\
         echo outside:$(ls /sys/class/net | tr '\\n' ' ')\n\
         {} --ctx user -- sh -c 'echo inside:$(ls /sys/class/net | tr \"\\n\" \" \")'\n",
        bin()
    );
    let r = Cmd::sh_in_own_mounts::<&str>(true, &script, &[])
        .limit(Duration::from_secs(30))
        .run();
    r.expect_code(0, "the /sys network scenario")?;
    // Control: outside the sandbox the interface is there.
    check(
        r.stdout.contains("outside:") && r.stdout.contains("sbxmark0"),
        || r.show(),
    )?;
    check(
        r.stdout.lines().any(|l| l.trim_end() == "inside:lo"),
        || {
            format!(
                "user sees more than its own lo in /sys/class/net:\n{}",
                r.show()
            )
        },
    )
}

/// What `user` finds of its own cgroups and of the others' in /sys/fs/cgroup.
const CGROUP_LOOK: &str = r#"
own=$(awk -F: '$2=="pids" || $2=="" {print $3; exit}' /proc/self/cgroup)
f=/sys/fs/cgroup/pids$own/pids.max
[ -e "$f" ] || f=/sys/fs/cgroup$own/pids.max
echo "limit:$(cat "$f")"
python3 -c '
import os, sys
try:
    os.close(os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND))
    print("write:ok")
except OSError as e:
    print("write:errno" + str(e.errno))
' "$f"
find /sys/fs/cgroup -type d -name 'sbx-*' | sed 's/^/seen:/'
"#;

/// Another call's cgroup, and the container's counters, are not in `user`'s /sys; its own limit
/// is, read-only.
pub fn sys_shows_only_the_calls_own_cgroups() -> Result<(), String> {
    needs_isolation()?;
    require_tool("python3")?;
    let (other, r) =
        look_while_another_call_runs(&["--ctx", "user", "--", "sh", "-c", CGROUP_LOOK])?;
    r.expect_code(0, "the /sys cgroup look")?;
    sees_only_its_own(&r, "1024", &other)
}

/// Another call that runs while `look` runs in `args`: its cgroup, seen from outside first (the
/// control), and what `look` printed.
fn look_while_another_call_runs(args: &[&str]) -> Result<(String, Run), String> {
    let mut other = Cmd::sbx(["--ctx", "user", "--", "sleep", "5"]).spawn();
    let leaf = format!("sbx-user-{}", other.id());
    let find_outside = || {
        Cmd::sh(&format!("find /sys/fs/cgroup -type d -name {leaf}"))
            .run()
            .stdout
    };
    let seen_outside = wait_until(Duration::from_secs(5), || !find_outside().is_empty());
    let r = Cmd::sbx(args).run();
    let _ = other.kill();
    let _ = other.wait();
    check(seen_outside, || {
        format!("no cgroup {leaf} outside the sandbox: this host made none for the call")
    })?;
    Ok((leaf, r))
}

/// What `look_while_another_call_runs` must show: the own limit `limit`, read-only, and only one
/// cgroup name (its own), not `other`.
fn sees_only_its_own(r: &Run, limit: &str, other: &str) -> Result<(), String> {
    check(r.stdout.contains(&format!("limit:{limit}\n")), || {
        format!("the sandbox cannot read its own pids limit:\n{}", r.show())
    })?;
    check(
        r.stdout.contains("write:errno") && !r.stdout.contains("write:ok"),
        || {
            format!(
                "the sandbox could open its own cgroup limit for writing:\n{}",
                r.show()
            )
        },
    )?;
    let seen: Vec<&str> = r
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("seen:"))
        .collect();
    check(!seen.iter().any(|p| p.contains(other)), || {
        format!(
            "the sandbox sees the other call's cgroup {other}:\n{}",
            r.show()
        )
    })?;
    let names: std::collections::BTreeSet<&str> =
        seen.iter().filter_map(|p| p.rsplit('/').next()).collect();
    check(names.len() == 1, || {
        format!("the sandbox sees cgroups other than its own:\n{}", r.show())
    })
}

/// A persistent context (its keeper mounts the /sys) on the container's network (no network
/// namespace: the same sysfs, without what is mounted below it): its own context cgroup only,
/// with the limit it set, read-only; another call's cgroup is seen outside, not inside.
pub fn persistent_context_on_the_host_network_sees_only_its_own_cgroups() -> Result<(), String> {
    needs_isolation()?;
    crate::persist::runtime()?;
    require_tool("python3")?;
    let dir = TempDir::new("g7syspersist");
    let pol = dir.file(
        "policy.toml",
        "version = 1\n[context.keep]\nnamespaces = [\"pid\", \"mount\", \"ipc\", \"uts\"]\npersist = true\n\
         env.allow = [\"PATH\"]\nfs.hide = [\"/run/sbx\"]\nfs.sys = \"private\"\n\
         [context.keep.limits]\npids_max = 77\n",
    );
    let pol = pol.to_str().unwrap();
    let looked = look_while_another_call_runs(&[
        "--policy",
        pol,
        "--ctx",
        "keep",
        "--",
        "sh",
        "-c",
        CGROUP_LOOK,
    ]);
    let stopped = Cmd::sbx(["ctx", "stop", "keep", "--timeout", "2", "--policy", pol]).run();
    let (other, r) = looked?;
    r.expect_code(0, "a call of the persistent context")?;
    stopped.expect_code(0, "ctx stop keep")?;
    sees_only_its_own(&r, "77", &other)
}

/// Legitimate use: a runtime that sizes itself from its cgroup limits still finds `user`'s memory
/// limit (2 GiB in the embedded default) in the private /sys: Bun's `process.constrainedMemory()`.
pub fn a_runtime_still_finds_its_memory_limit() -> Result<(), String> {
    needs_isolation()?;
    let bun = require_tool("bun")?;
    let r = Cmd::sbx([
        "--ctx",
        "user",
        "--",
        bun.as_str(),
        "-e",
        "console.log('limit:' + process.constrainedMemory())",
    ])
    .run();
    r.expect_code(0, "bun in user")?;
    check(r.stdout.contains("limit:2147483648"), || {
        format!("bun does not see user's 2 GiB memory limit:\n{}", r.show())
    })
}
