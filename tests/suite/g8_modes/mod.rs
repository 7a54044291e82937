//! Privilege modes (docs/DESIGN.md section 6): setuid root with a hostile caller, rootless with a user
//! namespace, and `probe` agreeing with what launches really do.
//!
//! The unprivileged caller is uid 65534 (via setpriv), with supplementary group 4242 where a test
//! needs one. The setuid copy of the binary lives in a root-owned 0755 directory on a mount without
//! `nosuid`. A test system policy goes on a private tmpfs mounted on /etc/sbx inside the suite's
//! own mount namespace (the host's /etc is not touched, except creating an empty /etc/sbx when it
//! is missing, removed again afterwards).
//!
//! One file per mode: [`setuid`], [`setuid_process`] and [`setuid_audit`] (the hostile caller's
//! setup in [`caller`]), [`rootless`], [`sys_admin`] (CAP_SYS_ADMIN alone), and [`probe`]. The
//! tests are re-exported here, under
//! `g8_modes::`, as tests/suite/main.rs registers them.

mod caller;
mod probe;
mod rootless;
mod setuid;
mod setuid_audit;
mod setuid_process;
mod sys_admin;

pub use probe::*;
pub use rootless::*;
pub use setuid::*;
pub use setuid_audit::*;
pub use setuid_process::*;
pub use sys_admin::*;
