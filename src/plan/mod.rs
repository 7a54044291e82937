//! Planning: pure functions from (policy, request, privilege mode, host facts) to what a launch
//! will do. Nothing here changes the process or the system, and only [`host`] reads it (the host
//! facts); `probe` and launches ask the same functions, so they cannot disagree. Each file is one
//! facility; `launch` puts them together.

pub mod bound;
pub mod capabilities;
pub mod cgroup;
pub mod env;
pub mod fds;
pub mod gate_seccomp;
pub mod host;
pub mod landlock_rules;
pub mod launch;
pub mod live_rules;
pub mod mounts;
pub mod namespaces;
pub mod net;
pub mod request;
pub mod seccomp;
pub mod secret_files;
pub mod workareas;
