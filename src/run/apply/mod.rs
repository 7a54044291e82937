//! One file per kernel facility, each applying its part of a plan: called by the sandbox's pid 1
//! ([`crate::run::confine::pid1`]) or by the target just before exec
//! ([`crate::run::confine::target`]), in the order of [`crate::run::confine`].

pub mod capabilities;
pub mod cgroup;
pub mod dev;
pub mod fs;
pub mod identity;
pub mod landlock;
pub mod mounts;
pub mod namespaces;
pub mod procfs;
pub mod seccomp;
pub mod secret_files;
pub mod sysfs;
pub mod workareas;
