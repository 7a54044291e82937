//! sbx-exec: a small, strict sandbox launcher. The crate is a binary first; this library exists so
//! the binary stays one call deep and the tests outside `src/` can drive its parts. It is not a
//! stable API.
//!
//! # Layers
//! Arrows point down only: a module never names one above it, and no chain of modules leads back
//! to where it started. tests/unit/layers.rs checks both on the module tree from this file down
//! its `mod` declarations, reading every path a module names from `crate::`, `super::` or
//! `self::` (in a `use` or in code; comments and literals left out):
//!
//! ```text
//! commands   the entry point: setuid stage 1, dispatch (commands.rs) and `probe`, which asks the
//!   │        same planning a launch does
//! run        mechanisms applying a plan: launch (gather → plan → audit → apply; a one-shot
//!   │        sandbox), init (the one sandbox pid 1 for one-shot calls and persistent keepers),
//!   │        confine (the confinement order written once: pid 1's steps and the target's, run
//!   │        through one Kernel trait), control/{mod, service} (supervised PID 1),
//!   │        persist/{join, keeper, nethelper, state, ctl}, proxy/ and gate/ (the egress gate),
//!   │        apply/{mounts, fs, procfs, dev, namespaces, capabilities, cgroup, identity,
//!   │        secret_files, landlock, seccomp, workareas}, masking, audit, status, ports, reaper
//! plan       pure functions from (policy, request, privilege mode, host facts) to what will be
//!   │        done: the whole launch as one value (plan::launch), namespaces, mounts, environment,
//!   │        per-call requests, passed fds, capabilities, seccomp program, Landlock rules, cgroup
//!   │        plan, network, secret files; host/ is the one module of model and plan that reads
//!   │        the system (the host facts: the checked program handle, cgroup layout, addresses)
//! privilege  how sbx-exec was started (Mode), the setuid stages, dropping privileges for good,
//!   │        the trust rule for files, rootless id maps: one folder to audit
//! secrets    the secrets read from --secrets-fd (one-pass JSON, zeroized) and the output mask
//!   │
//! model, cli the policy (types, parsing, validation, cross-key rules: pure data) and the
//!   │        command line
//! sys, error raw system calls (all `unsafe` lives in sys/) and exit codes
//! ```

// Every `unsafe` block lives in `sys`, each with its SAFETY note; the compiler keeps it there.
#![deny(unsafe_code)]

pub mod cli;
pub mod commands;
pub mod error;
pub mod model;
pub mod plan;
pub mod privilege;
pub mod probe;
pub mod run;
pub mod secrets;
#[allow(unsafe_code)]
pub mod sys;
