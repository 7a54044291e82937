//! `--status-fd N`: JSON lines about the launch for the program that called sbx-exec, as
//! bubblewrap's `--json-status-fd`: `{"child-pid":N}` once the command runs, and at the end
//! `{"exit-code":N,"reason":..}` ([`End`]; `exit-code` stays the first key), or
//! `{"exit-code":125,"reason":"refused","message":..}` when sbx-exec refused the launch. Each line
//! is a [`Record`], serialized by serde; the format is public (sbx-exec(1), docs/usage.md, the
//! clients), so its field names, their order and which are present stay as they are.
//!
//! Here: the stream itself ([`StatusFd`]); the records in `record.rs`; the pipe on which the
//! sandbox's set-up says why it gave up in `setup.rs`.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::MsgFlags;

use anyhow::{bail, Context as _, Result};

mod record;
mod setup;

pub use record::{
    refused_json, started_json, End, Ended, Reason, Record, Refused, RefusedReason, Started,
};
pub use setup::{tell_setup_error, SetupErrors};

/// The status stream (the caller's fd, close-on-exec). Writing to it never blocks the call for
/// long, whatever the fd is: a pipe, FIFO or terminal is reopened through /proc/self/fd with
/// `O_NONBLOCK` (a description of sbx-exec's own, so the caller's stays as it was), a socket is
/// written with `MSG_DONTWAIT`, anything else that a reader can hold up (a terminal that cannot be
/// reopened, a pty master, another device) only when `poll` says there is room within
/// [`WRITABLE_WAIT`]; a regular file (or block device) waits for no reader. A record that does not
/// fit (nobody reads, or the terminal's output is stopped) is dropped with a warning on stderr.
pub struct StatusFd {
    file: File,
    fd: RawFd,
    how: Writes,
    /// What it is, for the warning: "pipe", "terminal" or "stream".
    what: &'static str,
}

/// How long a record waits for room on a stream that cannot be written without blocking.
pub const WRITABLE_WAIT: Duration = Duration::from_millis(500);

/// How records are written without blocking.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Writes {
    /// A regular file or a block device: a plain write (no reader holds it up).
    Plain,
    /// Our own non-blocking description of the caller's pipe or terminal.
    NonBlocking,
    /// A stream that could not be reopened: written only when `poll` says there is room, waiting
    /// at most [`WRITABLE_WAIT`].
    WhenWritable,
    /// A socket: `send` with `MSG_DONTWAIT`.
    Socket,
}

impl StatusFd {
    /// The status stream on fd `fd`, taken over by [`crate::sys::claim_named_fds`]: made
    /// close-on-exec, so it reaches no child. It must be open for writing (not `O_PATH` or
    /// read-only: sbx-exec never makes a writable handle of one).
    pub fn open(fd: RawFd, owned: Option<OwnedFd>) -> Result<StatusFd> {
        let Some(owned) = owned else {
            bail!("--status-fd {fd}: file descriptor {fd} is not open; open it for writing, e.g. {fd}>status.jsonl");
        };
        nix::fcntl::fcntl(
            owned.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )
        .with_context(|| format!("--status-fd {fd}"))?;
        let flags = nix::fcntl::fcntl(owned.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL)
            .with_context(|| format!("--status-fd {fd}"))?;
        let writable = flags & libc::O_PATH == 0
            && matches!(flags & libc::O_ACCMODE, libc::O_WRONLY | libc::O_RDWR);
        if !writable {
            bail!("--status-fd {fd}: file descriptor {fd} is not open for writing; open it for writing, e.g. {fd}>status.jsonl");
        }
        let st = nix::sys::stat::fstat(owned.as_raw_fd()).ok();
        let kind = st.map_or(0, |st| st.st_mode & libc::S_IFMT);
        let terminal =
            kind == libc::S_IFCHR && nix::unistd::isatty(owned.as_raw_fd()).unwrap_or(false);
        let (file, how) = match kind {
            libc::S_IFIFO => match reopen_nonblocking(fd, st) {
                Some(f) => (f, Writes::NonBlocking),
                None => (File::from(owned), Writes::WhenWritable),
            },
            libc::S_IFSOCK => (File::from(owned), Writes::Socket),
            libc::S_IFREG | libc::S_IFBLK => (File::from(owned), Writes::Plain),
            _ => match st.filter(|st| terminal && !multiplexer(st.st_rdev)) {
                Some(_) => match reopen_nonblocking(fd, st) {
                    Some(f) => (f, Writes::NonBlocking),
                    None => (File::from(owned), Writes::WhenWritable),
                },
                None => (File::from(owned), Writes::WhenWritable),
            },
        };
        let what = match kind {
            libc::S_IFIFO => "pipe",
            _ if terminal => "terminal",
            _ => "stream",
        };
        Ok(StatusFd {
            file,
            fd,
            how,
            what,
        })
    }

    pub fn line(&self, json: &str) {
        let data = format!("{json}\n");
        let raw = self.file.as_raw_fd();
        let written = match self.how {
            Writes::Plain => (&self.file).write_all(data.as_bytes()).map(|()| data.len()),
            Writes::NonBlocking => (&self.file).write(data.as_bytes()),
            Writes::WhenWritable => match writable_within(&self.file, WRITABLE_WAIT) {
                true => (&self.file).write(data.as_bytes()),
                false => Err(std::io::ErrorKind::WouldBlock.into()),
            },
            Writes::Socket => {
                let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
                nix::sys::socket::send(raw, data.as_bytes(), flags).map_err(Into::into)
            }
        };
        match written {
            Ok(n) if n == data.len() => {}
            Ok(_) => eprintln!(
                "sbx-exec: warning: --status-fd {}: a status record was cut short (the reader is not keeping up)",
                self.fd
            ),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => eprintln!(
                "sbx-exec: warning: --status-fd {}: the {} is full or stopped (nobody reads it); a status record was dropped",
                self.fd, self.what
            ),
            // A reader that went away (EPIPE) or a closed stream: nothing to tell anyone.
            Err(_) => {}
        }
    }
}

/// Does `poll` say `file` has room within `wait` (signals that interrupt it count against it)?
fn writable_within(file: &File, wait: Duration) -> bool {
    let end = Instant::now() + wait;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let ms = PollTimeout::try_from(left).unwrap_or(PollTimeout::ZERO);
        let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLOUT)];
        match poll(&mut fds, ms) {
            Ok(n) => return n > 0,
            Err(nix::errno::Errno::EINTR) if !left.is_zero() => continue,
            Err(_) => return false,
        }
    }
}

/// A character device whose every open makes a new one (`/dev/ptmx`, a pty master's, 5:2) or
/// means the opener's own terminal (`/dev/tty`, 5:0): reopening it would not reach the same stream.
fn multiplexer(rdev: libc::dev_t) -> bool {
    libc::major(rdev) == 5 && matches!(libc::minor(rdev), 0 | 2)
}

/// A write-only, non-blocking, close-on-exec description of the pipe or terminal on `fd` of
/// sbx-exec's own (never the controlling terminal: `O_NOCTTY`); `None` unless it is the same file
/// (`st`, the caller's).
fn reopen_nonblocking(fd: RawFd, st: Option<nix::sys::stat::FileStat>) -> Option<File> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(format!("/proc/self/fd/{fd}"))
        .ok()?;
    let (st, now) = (st?, nix::sys::stat::fstat(f.as_raw_fd()).ok()?);
    let same = (st.st_dev, st.st_ino, st.st_rdev) == (now.st_dev, now.st_ino, now.st_rdev);
    same.then_some(f)
}

/// Write `json` to the status stream, if there is one.
pub fn report(status: Option<&StatusFd>, json: &str) {
    if let Some(s) = status {
        s.line(json);
    }
}

/// CPU time of this process's waited-for children, in ms (user + system).
pub fn children_cpu_ms() -> u64 {
    match nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN) {
        Ok(u) => {
            let ms = |t: nix::sys::time::TimeVal| {
                (t.tv_sec().max(0) as u64) * 1000 + (t.tv_usec().max(0) as u64) / 1000
            };
            ms(u.user_time()) + ms(u.system_time())
        }
        Err(_) => 0,
    }
}
