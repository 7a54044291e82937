//! Nothing lost under faults (issue #19), continued: what callers control (the secrets writer, the
//! status pipe, fd and pids limits), `ctx stop` and keeper deaths with calls in flight, and a
//! runtime directory or /proc that is not what sbx-exec expects. See [`crate::faults`].
//!
//! One file per kind of fault: [`callers`] (what a caller controls: the secrets writer, the
//! status stream, the policy file), [`in_flight`] (`ctx stop` and a keeper's death with calls in
//! flight), [`runtime`] (the runtime directory, limits, /proc, a crash-looping control plane),
//! [`refused`] (refused calls leave nothing). The tests are re-exported here.

mod callers;
mod in_flight;
mod refused;
mod runtime;

pub use callers::*;
pub use in_flight::*;
pub use refused::*;
pub use runtime::*;

use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::faults::{nothing_left, policy, recorded_keeper, snapshot};
use crate::harness::*;
use crate::support::{run_in, stop};

/// `bash -c SCRIPT` with `$0` = sbx-exec and `$1` = the policy.
fn bash(script: &str, pol: &str, limit: u64) -> Run {
    let mut c = Cmd::new("/bin/bash");
    c.command().args(["-c", script, bin(), pol]);
    c.limit(Duration::from_secs(limit)).run()
}
