//! What the calls of one persistent context share (their processes, one keeper even for
//! concurrent first calls), and what other contexts do not see.

use super::*;

pub fn background_process_survives_and_is_killed_later() -> Result<(), String> {
    needs_isolation()?;
    runtime()?;
    let dir = TempDir::new("persist1");
    let pol = policy(&dir, &["keep1"], None);
    let mark = marker("bg");
    start_sleeper(&pol, "keep1", &mark, "first call")?;
    let seen = run_in(&pol, "keep1", &["ps", "-eo", "args"]);
    seen.expect_code(0, "ps in a later call")?;
    check(seen.stdout.lines().any(|l| l.starts_with(&mark)), || {
        format!(
            "a later call of the same context does not see it: {}",
            seen.show()
        )
    })?;
    // Control: a one-shot context with the same isolation sees only itself.
    let other = run_in(&pol, "oneshot", &["ps", "-eo", "args"]);
    other.expect_code(0, "ps in a one-shot context")?;
    check(
        other.stdout.contains("ps -eo args") && !other.stdout.contains(&mark),
        || format!("one-shot context: {}", other.show()),
    )?;
    let kill = format!(
        "pid=$(ps -eo pid=,args= | awk -v m={mark} '$2 == m {{print $1}}'); [ -n \"$pid\" ] && kill $pid && echo killed $pid"
    );
    let k = run_in(&pol, "keep1", &["sh", "-c", &kill]);
    k.expect_code(0, "kill in a later call")?;
    check(
        wait_until(Duration::from_secs(5), || !alive_argv0(&mark)),
        || format!("kill from a later call did not end it: {}", k.show()),
    )?;
    stop(&pol, "keep1").expect_code(0, "ctx stop")?;
    Ok(())
}

pub fn other_contexts_do_not_see_it() -> Result<(), String> {
    needs_isolation()?;
    runtime()?;
    let dir = TempDir::new("persist2");
    let pol = policy(&dir, &["keep2a", "keep2b"], None);
    let mark = marker("vis");
    start_sleeper(&pol, "keep2a", &mark, "start in keep2a")?;
    let same = run_in(&pol, "keep2a", &["ps", "-eo", "args"]);
    check(same.stdout.contains(&mark), || {
        format!("control: keep2a: {}", same.show())
    })?;
    for ctx in ["keep2b", "platform", "oneshot"] {
        let r = run_in(&pol, ctx, &["ps", "-eo", "args"]);
        r.expect_code(0, ctx)?;
        check(!r.stdout.contains(&mark), || {
            format!("{ctx} sees keep2a's process: {}", r.show())
        })?;
    }
    check(alive_argv0(&mark), || {
        "keep2a's process was killed from outside".into()
    })?;
    stop(&pol, "keep2a").expect_code(0, "stop keep2a")?;
    stop(&pol, "keep2b").expect_code(0, "stop keep2b")?;
    check(!alive_argv0(&mark), || {
        "still running after ctx stop".into()
    })
}

pub fn concurrent_first_calls_make_one_keeper() -> Result<(), String> {
    needs_isolation()?;
    runtime()?;
    let dir = TempDir::new("persist3");
    let pol = policy(&dir, &["conc"], None);
    let before = keepers();
    let threads: Vec<_> = (0..20)
        .map(|_| {
            let pol = pol.clone();
            std::thread::spawn(move || run_in(&pol, "conc", &["readlink", "/proc/self/ns/pid"]))
        })
        .collect();
    let runs: Vec<Run> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    for r in &runs {
        r.expect_code(0, "concurrent call")?;
    }
    let mut ns: Vec<&str> = runs.iter().map(|r| r.stdout.trim()).collect();
    ns.sort();
    ns.dedup();
    check(ns.len() == 1, || {
        format!("the calls ran in {} pid namespaces: {ns:?}", ns.len())
    })?;
    let listed = listed("conc")?;
    check(listed.len() == 1 && listed[0].1, || {
        format!("ctx list: {listed:?}")
    })?;
    let after = keepers();
    let new: Vec<&i32> = after.iter().filter(|p| !before.contains(p)).collect();
    check(new == vec![&listed[0].0], || {
        format!("keepers in /proc: before {before:?}, after {after:?}, listed {listed:?}")
    })?;
    stop(&pol, "conc").expect_code(0, "ctx stop")?;
    Ok(())
}

/// A join that changes ids (an `identity` context: the target's user namespace is mapped by the
/// outer process in a handshake over pipes, issue 33 item 2) completes under `strace -f`, which
/// a handshake that polled /proc for a stopped state never did (a traced stop reads `t`, not
/// `T`). The control: the same join without strace, and a first call that started the keeper.
pub fn a_join_that_changes_ids_completes_under_strace() -> Result<(), String> {
    needs_isolation()?;
    runtime()?;
    let strace = require_tool("strace")?;
    let dir = TempDir::new("persist-strace");
    let pol = Policy::new()
        .persistent("keepid")
        .in_context(
            "keepid",
            "identity = { uid = 100000, gid = 100000, count = 65536 }\n",
        )
        .write(dir.path())
        .display()
        .to_string();
    let first = run_in(&pol, "keepid", &["true"]);
    first.expect_code(0, "the first call (starts the keeper)")?;
    let plain = run_in(&pol, "keepid", &["sh", "-c", "id -u; echo joined"]);
    plain.expect_code(0, "the control: a join without strace")?;
    check(plain.stdout == "0\njoined\n", || {
        format!("the control join: {}", plain.show())
    })?;
    let trace = dir.path().join("join.trace");
    let traced = Cmd::new(&strace)
        .args(["-f", "-o", trace.to_str().unwrap(), bin()])
        .args(["--policy", pol.as_str(), "--ctx", "keepid", "--"])
        .args(["sh", "-c", "id -u; echo joined"])
        .limit(Duration::from_secs(30))
        .run();
    let stopped = stop(&pol, "keepid");
    check(
        !traced.hung() && traced.ok() && traced.stdout == "0\njoined\n",
        || format!("the join under strace -f: {}", traced.show()),
    )?;
    // strace really followed the join: the target's exec of sh is in the trace.
    let text = std::fs::read_to_string(&trace).unwrap_or_default();
    check(text.contains("execve") && text.lines().count() > 50, || {
        format!("strace traced little: {} lines", text.lines().count())
    })?;
    stopped.expect_code(0, "ctx stop").map(|_| ())
}
