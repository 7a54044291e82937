//! `[context.NAME.supervise]`: control mode, sbx-exec as the container's PID 1 supervising the
//! control plane and its services.

use serde::{Deserialize, Serialize};

use super::{values, ContextName};

/// Control mode: how sbx-exec supervises the control plane.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Supervise {
    /// TCP ports bound (IPv4 and IPv6) before the control plane starts, handed to it as LISTEN_FDS.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// When to restart the control plane: "on-failure" (default), "always", "never".
    #[serde(default)]
    pub restart: Restart,
    /// Give up after this many restarts within `restart_window` seconds (default 5 in 60).
    #[serde(default = "default_max_restarts")]
    pub max_restarts: u32,
    #[serde(
        default = "default_restart_window",
        deserialize_with = "values::seconds"
    )]
    pub restart_window: u64,
    /// First restart delay in milliseconds; doubles on each restart in the window, up to 10 s.
    #[serde(default = "default_restart_delay", deserialize_with = "values::millis")]
    pub restart_delay_ms: u64,
    /// Seconds between SIGTERM and SIGKILL when stopping (default 10).
    #[serde(default = "default_stop_timeout", deserialize_with = "values::seconds")]
    pub stop_timeout: u64,
    /// Further services started after the control plane, each confined in its own context with
    /// some of the reserved ports (the control plane gets the others); stopped in reverse order.
    #[serde(default)]
    pub services: Vec<Service>,
}

/// A service control mode runs besides the control plane: `sbx-exec --ctx CTX --listen-fd PORT
/// ... -- CMD`, restarted with backoff while control keeps holding its ports.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// A name for messages (e.g. "jupyter").
    pub name: String,
    /// The context it runs in; it must list every port of the service in `listen`.
    pub ctx: ContextName,
    /// The command: an absolute program path and its arguments.
    pub cmd: Vec<String>,
    /// Reserved ports (from `supervise.ports`) handed to this service instead of the control plane.
    #[serde(default)]
    pub ports: Vec<u16>,
}

fn default_max_restarts() -> u32 {
    5
}
fn default_restart_window() -> u64 {
    60
}
fn default_restart_delay() -> u64 {
    200
}
fn default_stop_timeout() -> u64 {
    10
}

/// Restart policy of the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    #[default]
    OnFailure,
    Always,
    Never,
}
