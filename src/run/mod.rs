//! The mechanisms: each applies a plan made in [`crate::plan`]. `launch` is a call (gather,
//! plan, audit, apply; a one-shot sandbox), `init` the one sandbox pid 1 (used by one-shot calls
//! and by persistent keepers), `confine` the confinement order (pid 1's steps and the target's,
//! written once), `control` the container's supervised PID 1, `persist` the keepers of
//! persistent contexts, `file` file operations run inside a context (sbx-exec itself as its
//! target), `apply/` one file per kernel facility.

pub mod apply;
pub mod audit;
pub mod confine;
pub mod control;
pub mod file;
pub mod gate;
pub mod inherited;
pub mod init;
pub mod launch;
pub mod masking;
pub mod net;
pub mod persist;
pub mod pool;
pub mod ports;
pub mod proxy;
pub mod reaper;
pub mod status;
