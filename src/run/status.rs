//! `--status-fd N`: JSON lines about the launch for the program that called sbx-exec, as
//! bubblewrap's `--json-status-fd`: `{"child-pid":N}` once the command runs, and at the end
//! `{"exit-code":N,"reason":..}` ([`End`]; `exit-code` stays the first key), or
//! `{"exit-code":125,"reason":"refused","message":..}` when sbx-exec refused the launch. Each line
//! is a [`Record`], serialized by serde; the format is public (sbx-exec(1), docs/usage.md, the
//! clients), so its field names, their order and which are present stay as they are.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::MsgFlags;

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

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

/// One line of the status stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Record {
    /// The command runs: `{"child-pid":N}`.
    Started(Started),
    /// The command ended: `{"exit-code":N,"reason":R,...}`.
    Ended(Ended),
    /// sbx-exec did not start the command: `{"exit-code":N,"reason":"refused","message":M}`.
    Refused(Refused),
}

impl Record {
    /// The line, without its newline.
    pub fn line(&self) -> String {
        serde_json::to_string(self).expect("a status record always serializes")
    }

    /// A line read back (what a client of the status fd does).
    pub fn parse(line: &str) -> serde_json::Result<Record> {
        serde_json::from_str(line)
    }
}

/// `{"child-pid":N}`: the command's pid, as seen from outside the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Started {
    #[serde(rename = "child-pid")]
    pub child_pid: i32,
}

/// The end record of a command that ran. `exit-code` stays the first key, for parsers that only
/// read it; `signal` only for a signal death, `peak_memory` only when it was measured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ended {
    #[serde(rename = "exit-code")]
    pub exit_code: i32,
    pub reason: Reason,
    /// The signal's name (`SIGKILL`; `SIG34` for one without a name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    pub wall_ms: u64,
    pub cpu_ms: u64,
    /// Bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_memory: Option<u64>,
}

/// The end record of a launch sbx-exec refused (or could not start): its exit code (125, or 127
/// and 126 for a command not found or not executable) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refused {
    #[serde(rename = "exit-code")]
    pub exit_code: i32,
    pub reason: RefusedReason,
    pub message: String,
}

/// The `reason` of a [`Refused`] record: always `"refused"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefusedReason {
    #[serde(rename = "refused")]
    Refused,
}

/// Why a call ended, as the end record's `reason` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Exited,
    Signaled,
    Timeout,
    Oom,
    PidsLimit,
    /// A persistent context was stopped (`ctx stop`) while the command ran.
    Stopped,
    /// A persistent context's keeper died (was killed) while the command ran.
    KeeperDied,
}

/// The end of a call: what `{"exit-code":..}` records say after the command ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct End {
    pub code: i32,
    pub timed_out: bool,
    /// Processes the OOM killer killed in the call's cgroup.
    pub oom_kills: u64,
    /// Forks refused at `pids_max`.
    pub pids_refused: u64,
    pub wall_ms: u64,
    pub cpu_ms: u64,
    pub peak_memory: Option<u64>,
    /// Set when the call's context ended under it ([`Reason::Stopped`], [`Reason::KeeperDied`]).
    pub context_ended: Option<Reason>,
}

impl End {
    /// The reason, and the signal for a signal death (128+N, as a shell reports it). Order: the
    /// policy's timeout, then an OOM kill, then a fork refused at pids_max (when the command
    /// failed), then the signal, else a plain exit.
    pub fn reason(&self) -> (Reason, Option<i32>) {
        let signal = (self.code > 128 && self.code < 128 + 65).then_some(self.code - 128);
        let reason = if let Some(r) = self.context_ended {
            r
        } else if self.timed_out {
            Reason::Timeout
        } else if self.oom_kills > 0 {
            Reason::Oom
        } else if self.pids_refused > 0 && self.code != 0 {
            Reason::PidsLimit
        } else if signal.is_some() {
            Reason::Signaled
        } else {
            Reason::Exited
        };
        (reason, signal.filter(|_| reason != Reason::Exited))
    }

    /// The end record.
    pub fn record(&self) -> Ended {
        let (reason, signal) = self.reason();
        Ended {
            exit_code: self.code,
            reason,
            signal: signal.map(|n| match nix::sys::signal::Signal::try_from(n) {
                Ok(s) => s.as_str().to_string(),
                Err(_) => format!("SIG{n}"),
            }),
            wall_ms: self.wall_ms,
            cpu_ms: self.cpu_ms,
            peak_memory: self.peak_memory,
        }
    }

    /// One JSON line; `exit-code` stays the first key for parsers that only read it.
    pub fn json(&self) -> String {
        Record::Ended(self.record()).line()
    }
}

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

/// The record of a launch sbx-exec refused (or could not start): its exit code and message.
pub fn refused_json(code: i32, message: &str) -> String {
    Record::Refused(Refused {
        exit_code: code,
        reason: RefusedReason::Refused,
        message: message.to_string(),
    })
    .line()
}

/// The record of a command that runs, with its pid as seen from outside.
pub fn started_json(pid: i32) -> String {
    Record::Started(Started { child_pid: pid }).line()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_records_keep_exit_code_first_and_name_the_reason() {
        let e = End {
            code: 0,
            wall_ms: 5,
            ..End::default()
        };
        assert_eq!(
            e.json(),
            "{\"exit-code\":0,\"reason\":\"exited\",\"wall_ms\":5,\"cpu_ms\":0}"
        );
        let k = End {
            code: 137,
            peak_memory: Some(10),
            ..End::default()
        };
        assert!(k
            .json()
            .starts_with("{\"exit-code\":137,\"reason\":\"signaled\",\"signal\":\"SIGKILL\""));
        assert!(k.json().ends_with(",\"peak_memory\":10}"));
        let oom = End {
            code: 137,
            oom_kills: 1,
            ..End::default()
        };
        assert_eq!(oom.reason(), (Reason::Oom, Some(9)));
        let pids = End {
            code: 1,
            pids_refused: 4,
            ..End::default()
        };
        assert_eq!(pids.reason(), (Reason::PidsLimit, None));
        let t = End {
            code: 124,
            timed_out: true,
            ..End::default()
        };
        assert_eq!(t.reason().0, Reason::Timeout);
        let r = refused_json(125, "no \"such\" context");
        let v: serde_json::Value = serde_json::from_str(&r).unwrap();
        assert_eq!(v["reason"], "refused");
        assert!(r.starts_with("{\"exit-code\":125,"));
    }

    #[test]
    fn each_record_has_its_exact_wire_format() {
        assert_eq!(started_json(4242), r#"{"child-pid":4242}"#);
        let all = End {
            code: 137,
            oom_kills: 1,
            wall_ms: 470,
            cpu_ms: 115,
            peak_memory: Some(67108864),
            ..End::default()
        };
        assert_eq!(
            all.json(),
            r#"{"exit-code":137,"reason":"oom","signal":"SIGKILL","wall_ms":470,"cpu_ms":115,"peak_memory":67108864}"#
        );
        let pids = End {
            code: 2,
            pids_refused: 1,
            wall_ms: 87,
            cpu_ms: 4,
            ..End::default()
        };
        assert_eq!(
            pids.json(),
            r#"{"exit-code":2,"reason":"pids_limit","wall_ms":87,"cpu_ms":4}"#
        );
        let stopped = End {
            code: 143,
            context_ended: Some(Reason::Stopped),
            ..End::default()
        };
        assert_eq!(
            stopped.json(),
            r#"{"exit-code":143,"reason":"stopped","signal":"SIGTERM","wall_ms":0,"cpu_ms":0}"#
        );
        let died = End {
            code: 137,
            context_ended: Some(Reason::KeeperDied),
            ..End::default()
        };
        assert!(died
            .json()
            .contains(r#""reason":"keeper_died","signal":"SIGKILL""#));
        // A real-time signal has no name of its own.
        let rt = End {
            code: 128 + 34,
            ..End::default()
        };
        assert!(rt
            .json()
            .contains(r#""reason":"signaled","signal":"SIG34""#));
        // Escaped as JSON strings are: quotes, backslashes, newlines, control characters.
        assert_eq!(
            refused_json(127, "no \"such\" \\ command\n\u{1}"),
            r#"{"exit-code":127,"reason":"refused","message":"no \"such\" \\ command\n\u0001"}"#
        );
    }

    #[test]
    fn records_read_back_as_they_were_written() {
        let records = [
            Record::Started(Started { child_pid: 7 }),
            Record::Ended(
                End {
                    code: 137,
                    oom_kills: 2,
                    peak_memory: Some(1 << 20),
                    ..End::default()
                }
                .record(),
            ),
            Record::Ended(
                End {
                    code: 3,
                    wall_ms: 12,
                    ..End::default()
                }
                .record(),
            ),
            Record::Refused(Refused {
                exit_code: 125,
                reason: RefusedReason::Refused,
                message: "unknown context \"nope\"".into(),
            }),
        ];
        for r in records {
            assert_eq!(Record::parse(&r.line()).unwrap(), r, "{}", r.line());
        }
        // Each kind is told apart by its fields, and a line of none is no record.
        assert!(matches!(
            Record::parse(r#"{"exit-code":125,"reason":"refused","message":"m"}"#),
            Ok(Record::Refused(_))
        ));
        for bad in [
            r#"{"child-pid":"7"}"#,
            r#"{"exit-code":1,"reason":"exited"}"#,
            r#"{"exit-code":1,"reason":"nope","wall_ms":1,"cpu_ms":1}"#,
            r#"{"exit-code":1,"reason":"exited","wall_ms":1,"cpu_ms":1,"extra":1}"#,
            "garbage",
        ] {
            assert!(Record::parse(bad).is_err(), "{bad}");
        }
    }
}
