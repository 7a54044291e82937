//! The output-masking process (`[context.NAME.secrets] redact = true`).
//!
//! Before the sandbox is created, the outer process makes two pipes and forks this small process
//! (non-dumpable like its parent, signals blocked), which holds the secret values in zeroizing
//! memory, reads both pipes with `poll` and writes what [`crate::secrets::mask::Filter`] lets through to
//! the real stdout and stderr until both pipes reach end of file. The sandbox inherits the pipes'
//! write ends as fds 1 and 2; the outer process then takes its own stdout/stderr back, so the
//! pipes close when the last sandboxed process exits, and waits for this process before exiting
//! so no output is lost.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use anyhow::{Context as _, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::unistd::{dup2, ForkResult, Pid};

use crate::secrets::mask::Filter;
use crate::secrets::{expose, SecretSet};
use crate::sys;

/// A running masking process, while the outer process's stdout/stderr point at its pipes.
pub struct Redactor {
    pid: Pid,
    saved: [OwnedFd; 2],
}

/// Fork the masking process and point this process's fds 1 and 2 at its pipes (so a sandbox
/// created next inherits them). Call [`Redactor::detach`] right after the sandbox exists.
pub fn start(secrets: &SecretSet) -> Result<Redactor> {
    let pairs: Vec<(&str, &[u8])> = secrets
        .iter()
        .map(|s| (s.name.as_str(), expose(s).as_bytes()))
        .collect();
    let (out_filter, short) = Filter::new(pairs.iter().copied());
    let (err_filter, _) = Filter::new(pairs.iter().copied());
    drop(pairs);
    for name in short {
        eprintln!(
            "sbx-exec: warning: secret {name} is shorter than {} bytes and is not masked in the output (secrets.redact)",
            crate::secrets::mask::MIN_LEN
        );
    }
    let cloexec = nix::fcntl::OFlag::O_CLOEXEC;
    let (out_r, out_w) = nix::unistd::pipe2(cloexec).context("pipe")?;
    let (err_r, err_w) = nix::unistd::pipe2(cloexec).context("pipe")?;
    match sys::fork().context("cannot fork the output-masking process")? {
        ForkResult::Child => {
            drop(out_w);
            drop(err_w);
            let (Ok(out_to), Ok(err_to)) = (sys::dup_cloexec(1), sys::dup_cloexec(2)) else {
                sys::exit_now(crate::error::EXIT_SBX)
            };
            let mut keep = [
                out_r.as_raw_fd(),
                err_r.as_raw_fd(),
                out_to.as_raw_fd(),
                err_to.as_raw_fd(),
            ];
            keep.sort_unstable();
            let _ = sys::close_fds_from(3, &keep, false);
            pump([(out_r, out_filter, out_to), (err_r, err_filter, err_to)]);
            sys::exit_now(0)
        }
        ForkResult::Parent { child } => {
            drop((out_r, err_r, out_filter, err_filter));
            let saved = [sys::dup_cloexec(1)?, sys::dup_cloexec(2)?];
            dup2(out_w.as_raw_fd(), 1).context("dup2 stdout")?;
            dup2(err_w.as_raw_fd(), 2).context("dup2 stderr")?;
            Ok(Redactor { pid: child, saved })
        }
    }
}

impl Redactor {
    /// Give this process its own stdout/stderr back: from now on only the sandbox holds the
    /// pipes' write ends.
    pub fn detach(&self) {
        let _ = dup2(self.saved[0].as_raw_fd(), 1);
        let _ = dup2(self.saved[1].as_raw_fd(), 2);
    }

    /// Wait until every byte has been written out.
    pub fn wait(self) {
        self.detach();
        while let Err(nix::errno::Errno::EINTR) = nix::sys::wait::waitpid(self.pid, None) {}
    }
}

/// Copy each pipe, filtered, to its fd until both are at end of file.
fn pump(streams: [(OwnedFd, Filter, OwnedFd); 2]) {
    let mut open: Vec<(File, Filter, File)> = streams
        .into_iter()
        .map(|(fd, f, to)| (File::from(fd), f, File::from(to)))
        .collect();
    let mut buf = zeroize::Zeroizing::new(vec![0u8; 64 * 1024]);
    while !open.is_empty() {
        let mut fds: Vec<PollFd> = open
            .iter()
            .map(|(f, _, _)| PollFd::new(f.as_fd(), PollFlags::POLLIN))
            .collect();
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        let mut closed = Vec::new();
        for (i, (file, filter, to)) in open.iter_mut().enumerate() {
            if !ready[i] {
                continue;
            }
            match file.read(&mut buf[..]) {
                Ok(0) | Err(_) => {
                    write_to(to, &filter.finish());
                    closed.push(i);
                }
                Ok(n) => write_to(to, &filter.push(&buf[..n])),
            }
        }
        for i in closed.into_iter().rev() {
            open.remove(i);
        }
    }
}

/// Write everything to `to` (errors such as a closed reader are ignored: the pipes are drained
/// regardless, so the target never blocks on them).
fn write_to(mut to: &File, bytes: &[u8]) {
    if !bytes.is_empty() {
        let _ = to.write_all(bytes);
    }
}
