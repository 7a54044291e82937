//! Calls into a context of a test policy, and `ctx stop`.

use std::time::Duration;

use crate::harness::{Cmd, Run};

/// `sbx-exec --policy POL --ctx CTX -- CMD...`, to end within 20 s (a call here is short; one
/// that takes longer has hung).
pub fn run_in(pol: &str, ctx: &str, cmd: &[&str]) -> Run {
    let mut args = vec!["--policy", pol, "--ctx", ctx, "--"];
    args.extend_from_slice(cmd);
    Cmd::sbx(args).limit(Duration::from_secs(20)).run()
}

/// `sbx-exec ctx stop CTX --timeout 2 --policy POL`.
pub fn stop(pol: &str, ctx: &str) -> Run {
    Cmd::sbx(["ctx", "stop", ctx, "--timeout", "2", "--policy", pol]).run()
}
