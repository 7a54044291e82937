//! Error types that decide sbx-exec's exit status.
//!
//! Callers branch on [`Refusal`] (what went wrong, and which exit code it maps to); everything else
//! is an `anyhow` error with context and exits 125. No variant ever carries a secret value.

use thiserror::Error;

/// Exit status for sbx-exec's own failures (bad policy, refused isolation, malformed secrets).
pub const EXIT_SBX: i32 = 125;
/// The command was found but could not be executed.
pub const EXIT_NOT_EXECUTABLE: i32 = 126;
/// The command was not found.
pub const EXIT_NOT_FOUND: i32 = 127;
/// The context's `timeout` ran out (as `timeout(1)`).
pub const EXIT_TIMEOUT: i32 = 124;

/// A refusal that maps to a specific exit status. Messages say what, why and how to change it.
#[derive(Debug, Error)]
pub enum Refusal {
    #[error("command not found: {name} (searched PATH={path})")]
    NotFound { name: String, path: String },
    #[error("cannot execute {path}: {why}")]
    NotExecutable { path: String, why: String },
}

impl Refusal {
    pub fn exit_code(&self) -> i32 {
        match self {
            Refusal::NotFound { .. } => EXIT_NOT_FOUND,
            Refusal::NotExecutable { .. } => EXIT_NOT_EXECUTABLE,
        }
    }
}

/// Exit status for an error that reached `main`.
pub fn exit_code_of(err: &anyhow::Error) -> i32 {
    err.chain()
        .find_map(|e| e.downcast_ref::<Refusal>())
        .map_or(EXIT_SBX, Refusal::exit_code)
}
