//! `--status-fd N`: JSON lines about the launch for the program that called sbx-exec, as
//! bubblewrap's `--json-status-fd`: `{"child-pid":N}` once the command runs, `{"exit-code":N}` at
//! the end.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use anyhow::{bail, Context as _, Result};

/// The status stream (a private duplicate of the caller's fd, close-on-exec).
pub struct StatusFd(File);

impl StatusFd {
    /// The status stream on fd `fd`, taken over by [`crate::sys::claim_named_fds`]: made
    /// close-on-exec, so it reaches no child.
    pub fn open(fd: RawFd, owned: Option<OwnedFd>) -> Result<StatusFd> {
        let Some(owned) = owned else {
            bail!("--status-fd {fd}: file descriptor {fd} is not open; open it for writing, e.g. {fd}>status.jsonl");
        };
        nix::fcntl::fcntl(
            owned.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )
        .with_context(|| format!("--status-fd {fd}"))?;
        Ok(StatusFd(File::from(owned)))
    }

    pub fn line(&self, json: &str) {
        let _ = (&self.0).write_all(format!("{json}\n").as_bytes());
    }
}

/// Write `json` to the status stream, if there is one.
pub fn report(status: Option<&StatusFd>, json: &str) {
    if let Some(s) = status {
        s.line(json);
    }
}
