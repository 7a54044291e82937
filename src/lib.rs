//! sbx-exec: a small, strict sandbox launcher. The crate is a binary first; this library exists so
//! the binary stays one call deep and the tests outside `src/` can drive its parts. It is not a
//! stable API.
//!
//! # Layers
//! Arrows point down only; a module never imports one above it (tests/unit/layers.rs checks this
//! on every `use crate::` line):
//!
//! ```text
//! commands   the entry point: setuid stage 1, the command line, dispatch (commands.rs, cli.rs)
//!   │        and `probe`, which asks the same planning a launch does
//! run        mechanisms applying a plan: launch (one-shot), init (the one sandbox pid 1 for
//!   │        one-shot calls and persistent keepers), target (caps → nnp → Landlock → seccomp →
//!   │        exec), control, persist/{join, keeper, state, ctl}, apply/{mounts, dev,
//!   │        procfs, namespaces, capabilities, cgroup, secret_files, landlock, seccomp},
//!   │        masking, audit
//! plan       pure functions from (policy, request, privilege mode, host facts) to what will be
//!   │        done: namespaces, mounts, environment, exec checks, capabilities, seccomp program,
//!   │        Landlock rules, cgroup plan, secret files, the whole launch (plan::launch)
//! privilege  how sbx-exec was started (Mode), the setuid stages, the trust rule for files,
//!   │        rootless id maps: one folder to audit
//! secrets    the secrets read from --secrets-fd (zeroized) and the pure output mask
//!   │
//! model      the policy: types, parsing, validation, cross-key rules (pure data)
//!   │
//! sys, error raw system calls (all `unsafe` lives in sys.rs) and exit codes
//! ```

pub mod cli;
pub mod commands;
pub mod error;
pub mod model;
pub mod plan;
pub mod privilege;
pub mod probe;
pub mod run;
pub mod secrets;
pub mod sys;
