//! Calls in flight when their context is stopped or its keeper dies: each ends with a message
//! naming the cause, on stderr and in its end record.

use super::*;

/// Start `sbx-exec --status-fd 3 ... -- CMD` in the background with fd 3 on the file `status`.
fn in_flight(pol: &str, ctx: &str, status: &std::path::Path, cmd: &[&str]) -> Spawned {
    let mut c = Cmd::new("/bin/sh")
        .args([
            "-c",
            "s=$1; shift; exec \"$0\" --status-fd 3 \"$@\" 3>\"$s\"",
            bin(),
        ])
        .arg(status)
        .args(["--policy", pol, "--ctx", ctx, "--"])
        .args(cmd);
    c.command().stderr(Stdio::piped());
    c.spawn()
}

/// The exit code and stderr of an in-flight call, which must end within `limit` from now.
fn finish(call: Spawned, limit: Duration) -> Result<(Option<i32>, String), String> {
    let r = call.output_within(limit);
    if r.hung() {
        return Err(format!(
            "an in-flight call did not end within {limit:?}: {}",
            r.show()
        ));
    }
    Ok((r.code, r.stderr))
}

/// Regression (#19, "silent ends"): `ctx stop` sticks (calls arriving while it runs get 125 and
/// start no keeper), and a call in flight says on stderr and in its end record that it was stopped.
pub fn stop_sticks_and_tells_calls_in_flight() -> Result<(), String> {
    needs_isolation()?;
    crate::persist::runtime()?;
    let dir = TempDir::new("faults-stop");
    let pol = policy(&dir, &["fkstop"], "");
    let before = snapshot();
    run_in(&pol, "fkstop", &["true"]).expect_code(0, "first call")?;
    let status = dir.path().join("status");
    let call = in_flight(
        &pol,
        "fkstop",
        &status,
        &["sh", "-c", "trap '' TERM; sleep 30 & wait; wait"],
    );
    std::thread::sleep(Duration::from_millis(300));
    let stopper = std::thread::spawn({
        let pol = pol.clone();
        move || stop(&pol, "fkstop")
    });
    std::thread::sleep(Duration::from_millis(500));
    let late = run_in(&pol, "fkstop", &["true"]);
    let s = stopper.join().unwrap();
    s.expect_code(0, "ctx stop")?;
    late.expect_code(125, "a call during ctx stop")?;
    check(late.stderr.contains("is being stopped"), || late.show())?;
    check(recorded_keeper("fkstop").is_none(), || {
        "a call during ctx stop started a new keeper".into()
    })?;
    let (code, err) = finish(call, Duration::from_secs(10))?;
    check(code.is_some_and(|c| c > 128), || {
        format!("in flight: {code:?} {err}")
    })?;
    check(
        err.contains("context \"fkstop\" was stopped (ctx stop) while this command ran"),
        || format!("in flight, no message: {code:?} {err}"),
    )?;
    let records = std::fs::read_to_string(&status).unwrap_or_default();
    check(records.contains("\"reason\":\"stopped\""), || {
        format!("status records: {records}")
    })?;
    nothing_left(&before, "after ctx stop with a call in flight")
}

/// A keeper killed with joins in flight: they end with a message naming the cause, and the next
/// call starts a new keeper.
pub fn killed_keeper_ends_calls_in_flight_with_a_message() -> Result<(), String> {
    needs_isolation()?;
    crate::persist::runtime()?;
    let dir = TempDir::new("faults-keeper");
    let pol = policy(&dir, &["fkkeep"], "");
    let before = snapshot();
    run_in(&pol, "fkkeep", &["true"]).expect_code(0, "first call")?;
    let keeper = recorded_keeper("fkkeep").ok_or("no keeper")?;
    let calls: Vec<_> = (0..3)
        .map(|i| {
            let st = dir.path().join(format!("status{i}"));
            (in_flight(&pol, "fkkeep", &st, &["sleep", "30"]), st)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(400));
    kill(Pid::from_raw(keeper), Signal::SIGKILL).map_err(|e| e.to_string())?;
    for (call, st) in calls {
        let (code, err) = finish(call, Duration::from_secs(10))?;
        check(code == Some(137), || format!("in flight: {code:?} {err}"))?;
        check(err.contains("keeper of context \"fkkeep\" died"), || {
            format!("no message: {err}")
        })?;
        let records = std::fs::read_to_string(&st).unwrap_or_default();
        check(records.contains("\"reason\":\"keeper_died\""), || records)?;
    }
    run_in(&pol, "fkkeep", &["true"]).expect_code(0, "the next call")?;
    check(
        recorded_keeper("fkkeep").is_some_and(|k| k != keeper),
        || "no new keeper".into(),
    )?;
    stop(&pol, "fkkeep").expect_code(0, "ctx stop")?;
    nothing_left(&before, "after a keeper killed with calls in flight")
}
