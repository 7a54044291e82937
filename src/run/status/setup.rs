//! Set-up errors of the sandbox, told to the outer process so that its end record is a refusal.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use anyhow::{Context as _, Result};

use super::record::{refused_json, End};

/// The pipe on which the sandbox's own set-up (its pid 1, a join's joiner, the target before
/// `exec`) says why it gave up with 125, so that the end record reports a refusal with its
/// message rather than a command that exited 125. The write end is close-on-exec: once the
/// program runs it holds none, so a command's own exit 125 stays an exit.
pub struct SetupErrors {
    read: OwnedFd,
    write: Option<OwnedFd>,
}

impl SetupErrors {
    /// A new pipe whose write end sits at `above` or higher (clear of the fds the target places
    /// on 3, 4, ...).
    pub fn new(above: RawFd) -> Result<SetupErrors> {
        let flags = nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK;
        let (read, write) = nix::unistd::pipe2(flags).context("cannot make a pipe")?;
        let write = crate::sys::dup_cloexec_above(write.as_raw_fd(), above)
            .context("cannot place the set-up error pipe")?;
        Ok(SetupErrors {
            read,
            write: Some(write),
        })
    }

    /// The write end, for the sandbox's processes (kept through their fd clean-up).
    pub fn write_fd(&self) -> Option<RawFd> {
        self.write.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// After the clone or fork: this process never writes, so the reader sees end of file once
    /// the sandbox's processes are gone or have exec'd.
    pub fn close_write(&mut self) {
        self.write = None;
    }

    /// What the sandbox said, if anything (read without waiting: its writers are gone by now).
    pub fn message(&self) -> Option<String> {
        let mut buf = vec![0u8; 8192];
        let mut got = 0;
        while got < buf.len() {
            match nix::unistd::read(self.read.as_raw_fd(), &mut buf[got..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        let text = String::from_utf8_lossy(&buf[..got]).trim_end().to_string();
        (!text.is_empty()).then_some(text)
    }

    /// The end record of a call: a refusal with the sandbox's message when it gave up with 125
    /// before the command ran, else `end` as it is.
    pub fn end_json(&self, end: &End) -> String {
        match self.message() {
            Some(m) if end.code == crate::error::EXIT_SBX => refused_json(end.code, &m),
            _ => end.json(),
        }
    }
}

/// In the sandbox, before `exit(125)`: say why on the set-up error pipe (best effort, never
/// blocking: the pipe is non-blocking and a message fits in it).
pub fn tell_setup_error(fd: Option<RawFd>, message: &str) {
    if let Some(fd) = fd {
        let bytes = message.as_bytes();
        let _ = crate::sys::write_raw(fd, &bytes[..bytes.len().min(4096)]);
    }
}
