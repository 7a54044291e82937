//! The net helper's control channel: how `sbx-exec ctx net` hands a running persistent context
//! its new egress rules.
//!
//! ```text
//! ctx net (root) ── connect /run/sbx/NAME.net ──> net helper (root, its poll loop)
//!   {"allow":["pypi.org","192.0.2.10/32"]}\n      peer is root (SO_PEERCRED)? request whole
//!                                                 within 2 s, at most 256 KiB? rules parse?
//!                                                 gate ended, a new one started with them
//!   <── {"applied":{"allow":[...]}} or {"refused":{"error":"..."}} ── then closed
//! ```
//! One request per connection: the whole new rule list, as written, on one line (or ended by
//! the client's end of file); one reply. Both are read strictly (an unknown field is an error).
//! The socket is bound by the net helper when it starts (a replacement helper binds it again),
//! in the runtime directory (root-only, 0700, hidden from every context), mode 0600. The helper
//! never waits on a client: the listener and at most one client are in its poll set, read without
//! blocking; a client that has not sent its whole request within [`CLIENT_DEADLINE`] is dropped.

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use serde::{Deserialize, Serialize};

/// The most bytes of a request (the rules, as written) the helper reads, and of a reply the
/// client reads.
pub const MAX_REQUEST: usize = 256 * 1024;
/// How long a client has to send its whole request.
const CLIENT_DEADLINE: Duration = Duration::from_secs(2);
/// How long `ctx net` waits for the helper's reply (ending one gate and starting another).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// `ctx net`'s request: the whole new list of egress rules, as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub allow: Vec<String>,
}

/// The helper's reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Reply {
    /// The gate now enforces these rules.
    Applied { allow: Vec<String> },
    /// Nothing changed, because of `error`.
    Refused { error: String },
}

impl Request {
    /// One line: the JSON object and a newline.
    pub fn line(&self) -> Vec<u8> {
        line(self)
    }

    /// A request as the helper reads it: one JSON object (a newline after it allowed).
    pub fn parse(bytes: &[u8]) -> std::result::Result<Request, String> {
        parse(bytes, "request")
    }
}

impl Reply {
    pub fn line(&self) -> Vec<u8> {
        line(self)
    }

    pub fn parse(bytes: &[u8]) -> std::result::Result<Reply, String> {
        parse(bytes, "reply")
    }
}

fn line<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = serde_json::to_vec(v).expect("a control message always serializes");
    out.push(b'\n');
    out
}

fn parse<T: for<'de> Deserialize<'de>>(bytes: &[u8], what: &str) -> std::result::Result<T, String> {
    if bytes.len() > MAX_REQUEST {
        return Err(format!("the {what} is over {MAX_REQUEST} bytes"));
    }
    let one = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if one.contains(&b'\n') {
        return Err(format!("the {what} is more than one line"));
    }
    serde_json::from_slice(one).map_err(|e| format!("not a {what} of the net helper: {e}"))
}

/// Where context `ctx_name`'s net helper listens.
pub fn path(dir: &Path, ctx_name: &str) -> PathBuf {
    dir.join(format!("{ctx_name}.net"))
}

/// Remove context `ctx_name`'s control socket (the context has ended).
pub fn remove(dir: &Path, ctx_name: &str) {
    let p = path(dir, ctx_name);
    if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_socket()) {
        let _ = std::fs::remove_file(p);
    }
}

/// The helper's end: the listener, and the one client being read.
pub struct Control {
    listener: UnixListener,
    path: PathBuf,
    /// The socket's inode: the helper removes the path when it ends only if it is still its own.
    ino: u64,
    client: Option<Client>,
}

struct Client {
    stream: UnixStream,
    got: Vec<u8>,
    deadline: Instant,
}

/// What the helper's loop does with a message.
pub enum Ready {
    /// Nothing complete yet.
    Nothing,
    /// A whole request from a root client: apply it, then [`Control::answer`].
    Request(Request),
}

impl Control {
    /// Bind the control socket of context `ctx_name` in the runtime directory `dir` (a socket
    /// left there by a helper that died is replaced; anything else is refused).
    pub fn bind(dir: &Path, ctx_name: &str) -> Result<Control> {
        let path = path(dir, ctx_name);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_socket() => std::fs::remove_file(&path)
                .with_context(|| format!("cannot remove the old {}", path.display()))?,
            Ok(_) => bail!("{} exists and is not a socket; remove it", path.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot inspect {}", path.display())),
        }
        let listener = UnixListener::bind(&path)
            .with_context(|| format!("cannot listen on {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot make {} root-only", path.display()))?;
        listener
            .set_nonblocking(true)
            .context("cannot make the control socket non-blocking")?;
        let ino = std::fs::symlink_metadata(&path)
            .with_context(|| format!("cannot inspect {}", path.display()))?
            .ino();
        Ok(Control {
            listener,
            path,
            ino,
            client: None,
        })
    }

    /// The fd the helper's loop polls: the client's while one is read, else the listener's (more
    /// clients wait in its queue meanwhile).
    pub fn fd(&self) -> BorrowedFd<'_> {
        match &self.client {
            Some(c) => c.stream.as_fd(),
            None => self.listener.as_fd(),
        }
    }

    /// How long the helper's poll may wait at most, for the client's deadline.
    pub fn wait(&self) -> Option<Duration> {
        self.client
            .as_ref()
            .map(|c| c.deadline.saturating_duration_since(Instant::now()))
    }

    /// After the poll: accept a client, read what it sent, drop one past its deadline. Never
    /// blocks.
    pub fn step(&mut self) -> Ready {
        if self.client.is_none() {
            let Ok((stream, _)) = self.listener.accept() else {
                return Ready::Nothing;
            };
            match peer_is_us(&stream) {
                true => {}
                false => {
                    // Refused at once (the directory is root-only: this is a second wall).
                    let _ = answer_on(
                        stream,
                        &Reply::Refused {
                            error: "the net helper takes requests from root only".into(),
                        },
                    );
                    return Ready::Nothing;
                }
            }
            if stream.set_nonblocking(true).is_err() {
                return Ready::Nothing;
            }
            self.client = Some(Client {
                stream,
                got: Vec::new(),
                deadline: Instant::now() + CLIENT_DEADLINE,
            });
        }
        let Some(c) = self.client.as_mut() else {
            return Ready::Nothing;
        };
        let mut buf = [0u8; 16 * 1024];
        let ended = loop {
            match c.stream.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => {
                    c.got.extend_from_slice(&buf[..n]);
                    if c.got.contains(&b'\n') || c.got.len() > MAX_REQUEST {
                        break true;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
                Err(_) => {
                    self.client = None;
                    return Ready::Nothing;
                }
            }
        };
        if !ended {
            if Instant::now() >= c.deadline {
                self.client = None;
            }
            return Ready::Nothing;
        }
        match Request::parse(&c.got) {
            Ok(r) => Ready::Request(r),
            Err(error) => {
                self.answer(&Reply::Refused { error });
                Ready::Nothing
            }
        }
    }

    /// Answer the client whose request [`Control::step`] returned, and close it.
    pub fn answer(&mut self, reply: &Reply) {
        if let Some(c) = self.client.take() {
            let _ = answer_on(c.stream, reply);
        }
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        // Only its own: a replacement helper's socket at the same path stays.
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == self.ino) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Write `reply` (a few KiB at most: the socket's buffer takes it) within half a second.
fn answer_on(stream: UnixStream, reply: &Reply) -> std::io::Result<()> {
    let mut stream = stream;
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(Duration::from_millis(500)))?;
    stream.write_all(&reply.line())
}

/// Is the process at the other end (its credentials when it connected) of this process's uid:
/// root, for the net helper and the keeper (persistent contexts are root's alone)?
pub(super) fn peer_is_us(stream: &UnixStream) -> bool {
    nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials)
        .is_ok_and(|c| c.uid() == nix::unistd::geteuid().as_raw())
}

/// The request did not reach the helper whole: it changed nothing.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotReached(String);

/// `ctx net`'s end: send `request` to the helper listening at `path`, wait (at most
/// [`REPLY_TIMEOUT`]) for its reply. An error that is a [`NotReached`] changed nothing; any other
/// came after the whole request was sent.
pub fn ask(path: &Path, request: &Request) -> Result<Reply> {
    let bytes = request.line();
    if bytes.len() > MAX_REQUEST {
        return Err(anyhow!(NotReached(format!(
            "the rules take {} bytes, over the {MAX_REQUEST} a request may hold",
            bytes.len()
        ))));
    }
    let not_reached = |what: &str, e: std::io::Error| {
        anyhow!(NotReached(format!(
            "{what} {}: {}",
            path.display(),
            crate::error::cause(&e)
        )))
    };
    let mut stream = UnixStream::connect(path).map_err(|e| {
        anyhow!(NotReached(format!(
            "cannot connect to the net helper's control socket {}: {} (a net helper started by an sbx-exec \
             without `ctx net` has none: stop the context and call it again)",
            path.display(),
            crate::error::cause(&e)
        )))
    })?;
    stream
        .set_write_timeout(Some(REPLY_TIMEOUT))
        .and_then(|()| stream.set_read_timeout(Some(REPLY_TIMEOUT)))
        .map_err(|e| not_reached("cannot set a timeout on", e))?;
    stream
        .write_all(&bytes)
        .map_err(|e| not_reached("cannot send the rules to the net helper at", e))?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut got = Vec::new();
    let read = (&mut stream)
        .take(MAX_REQUEST as u64 + 1)
        .read_to_end(&mut got);
    match read {
        Ok(_) => {}
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            bail!(
                "the net helper did not answer within {} s (is it stopped?); the next call of the context replaces a stopped helper",
                REPLY_TIMEOUT.as_secs()
            )
        }
        Err(e) => return Err(e).context("cannot read the net helper's reply"),
    }
    if got.is_empty() {
        return Err(anyhow!(
            "the net helper closed the connection without a reply"
        ));
    }
    Reply::parse(&got).map_err(|e| anyhow!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_strict_json_line() {
        let r = Request {
            allow: vec!["pypi.org".into(), "192.0.2.10/32".into()],
        };
        assert_eq!(
            r.line(),
            b"{\"allow\":[\"pypi.org\",\"192.0.2.10/32\"]}\n".to_vec()
        );
        assert_eq!(Request::parse(&r.line()), Ok(r.clone()));
        // Without the newline (the client's end of file ended it).
        assert_eq!(
            Request::parse(br#"{"allow":[]}"#),
            Ok(Request { allow: vec![] })
        );
        for bad in [
            &b""[..],
            b"{}",
            b"{\"allow\":\"pypi.org\"}",
            b"{\"allow\":[1]}",
            b"{\"allow\":[],\"extra\":1}",
            b"{\"allow\":[]}\n{\"allow\":[]}\n",
            b"{\"allow\":[]}\n\n",
            b"[]",
            b"{\"allow\":[\"\xff\"]}",
        ] {
            assert!(
                Request::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let big = format!("{{\"allow\":[\"{}\"]}}", "a".repeat(MAX_REQUEST));
        assert!(Request::parse(big.as_bytes()).unwrap_err().contains("over"));

        let ok = Reply::Applied {
            allow: vec!["pypi.org".into()],
        };
        assert_eq!(
            ok.line(),
            b"{\"applied\":{\"allow\":[\"pypi.org\"]}}\n".to_vec()
        );
        let no = Reply::Refused {
            error: "net.allow entry \"x\": ...".into(),
        };
        assert_eq!(
            no.line(),
            b"{\"refused\":{\"error\":\"net.allow entry \\\"x\\\": ...\"}}\n".to_vec()
        );
        for r in [ok, no] {
            assert_eq!(Reply::parse(&r.line()), Ok(r));
        }
        for bad in [
            &b"{\"applied\":{}}"[..],
            b"{\"applied\":{\"allow\":[],\"x\":0}}",
            b"{\"done\":{\"allow\":[]}}",
            b"{\"applied\":{\"allow\":[]},\"refused\":{\"error\":\"\"}}",
            b"\"applied\"",
        ] {
            assert!(
                Reply::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// The helper's side without the helper: a request read whole without blocking, answered;
    /// a client that sends half a request is not waited for; a bad request gets a refusal.
    #[test]
    fn the_helper_reads_without_blocking_and_answers() {
        let dir = std::env::temp_dir().join(format!("sbx-netctl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut control = Control::bind(&dir, "t").unwrap();
        let p = path(&dir, "t");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Nobody there: nothing, at once.
        let t = Instant::now();
        assert!(matches!(control.step(), Ready::Nothing));
        // A client that sends half a request and waits: not waited for.
        let mut slow = UnixStream::connect(&p).unwrap();
        slow.write_all(b"{\"allow\":").unwrap();
        assert!(matches!(control.step(), Ready::Nothing));
        assert!(t.elapsed() < Duration::from_millis(500));
        assert!(control.wait().is_some_and(|w| w <= CLIENT_DEADLINE));
        // The rest arrives: read, answered.
        slow.write_all(b"[\"pypi.org\"]}\n").unwrap();
        let Ready::Request(r) = control.step() else {
            panic!("no request")
        };
        assert_eq!(r.allow, vec!["pypi.org".to_string()]);
        control.answer(&Reply::Applied { allow: r.allow });
        let mut got = String::new();
        slow.read_to_string(&mut got).unwrap();
        assert_eq!(got, "{\"applied\":{\"allow\":[\"pypi.org\"]}}\n");
        // A bad request: refused by the channel itself.
        let mut bad = UnixStream::connect(&p).unwrap();
        bad.write_all(b"{\"allow\":[],\"x\":1}\n").unwrap();
        assert!(matches!(control.step(), Ready::Nothing));
        let mut got = String::new();
        bad.read_to_string(&mut got).unwrap();
        assert!(
            got.starts_with("{\"refused\":{\"error\":\"not a request"),
            "{got}"
        );
        // Through `ask`, from another thread (this one plays the helper).
        let asker = {
            let p = p.clone();
            std::thread::spawn(move || {
                ask(
                    &p,
                    &Request {
                        allow: vec!["crates.io".into()],
                    },
                )
            })
        };
        let r = loop {
            if let Ready::Request(r) = control.step() {
                break r;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        control.answer(&Reply::Refused {
            error: format!("no {}", r.allow[0]),
        });
        assert_eq!(
            asker.join().unwrap().unwrap(),
            Reply::Refused {
                error: "no crates.io".into()
            }
        );
        // Its socket goes with it.
        drop(control);
        assert!(!p.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
