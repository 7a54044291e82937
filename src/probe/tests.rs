//! Unit tests of the probe's verdicts.

use super::*;

#[test]
fn status_from_verdict() {
    let v = |m: &[&str], b: &[&str], d| Verdict {
        missing: m.iter().map(|s| s.to_string()).collect(),
        blocked: b.iter().map(|s| s.to_string()).collect(),
        skipped: Vec::new(),
        unwritable: Vec::new(),
        degrade: d,
        identity: None,
    };
    assert_eq!(v(&[], &[], false).status(), "full");
    assert_eq!(v(&["pid namespace"], &[], true).status(), "degraded");
    assert_eq!(v(&["pid namespace"], &[], false).status(), "unavailable");
    assert_eq!(v(&[], &["allow_callers"], true).status(), "unavailable");
    // A work area its code cannot write: it runs, not fully.
    let mut w = v(&[], &[], false);
    w.unwritable.push("work area /x not writable inside".into());
    assert_eq!(w.status(), "degraded");
}
