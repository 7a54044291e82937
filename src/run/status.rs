//! `--status-fd N`: JSON lines about the launch for the program that called sbx-exec, as
//! bubblewrap's `--json-status-fd`: `{"child-pid":N}` once the command runs, `{"exit-code":N}` at
//! the end.

use std::fs::File;
use std::io::Write;
use std::os::fd::RawFd;

use anyhow::{bail, Context as _, Result};

use crate::sys;

/// The status stream (a private duplicate of the caller's fd, close-on-exec).
pub struct StatusFd(File);

impl StatusFd {
    pub fn open(fd: RawFd) -> Result<StatusFd> {
        if nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).is_err() {
            bail!("--status-fd {fd}: file descriptor {fd} is not open; open it for writing, e.g. {fd}>status.jsonl");
        }
        let dup = sys::dup_cloexec(fd).with_context(|| format!("--status-fd {fd}"))?;
        Ok(StatusFd(File::from(dup)))
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
