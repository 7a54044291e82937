//! The trusted side of platform operations (`ops`, docs/ops.md): the gate, unprivileged, cannot
//! reach the control plane's root-only socket ([`OPS_SOCKET`]), so it asks whoever started it
//! for a connection over a SOCK_SEQPACKET pair: one message (its byte is never read here) per
//! call, answered with one connection (SCM_RIGHTS) on which the header line — the context, the
//! call id and the context's ops, written here before the gate holds the connection — is already
//! written, or with a message without fd: no control plane.
//!
//! Served by the outer process of a one-shot call on SIGIO (it is single-threaded and waits for
//! signals; [`crate::run::reaper::supervise`]), and by a persistent context's net helper from its
//! poll loop. Each connect is non-blocking: a control plane whose backlog is full is reported as
//! absent instead of stalling the launcher.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use anyhow::{Context as _, Result};
use nix::sys::socket::{self, socketpair, AddressFamily, SockFlag, SockType, UnixAddr};

use crate::model::validate::OPS_SOCKET;
use crate::sys;

/// The dialer's outer end, with the header line every connection starts with.
pub(super) struct OpsDialer {
    sock: OwnedFd,
    header: Vec<u8>,
}

/// The header line: `{"sbx_ops":1,"context":…,"call":…,"ops":[…]}` and a newline.
pub fn header(context: &str, call: &str, ops: &[String]) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Header<'a> {
        sbx_ops: u32,
        context: &'a str,
        call: &'a str,
        ops: &'a [String],
    }
    let h = Header {
        sbx_ops: 1,
        context,
        call,
        ops,
    };
    let mut line = serde_json::to_vec(&h).expect("a header always serializes");
    line.push(b'\n');
    line
}

impl OpsDialer {
    /// A new pair: the outer end (non-blocking; with `signal`, input on it raises SIGIO for
    /// this process) and the gate's.
    pub(super) fn pair(header: Vec<u8>, signal: bool) -> Result<(OpsDialer, OwnedFd)> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        )
        .context("cannot make the platform operations' socket pair")?;
        // The gate's end blocks: it waits for each answer.
        set_nonblocking(theirs.as_fd(), false)?;
        if signal {
            sys::notify_on_input(ours.as_fd(), true)
                .context("cannot watch the platform operations' socket")?;
        }
        Ok((OpsDialer { sock: ours, header }, theirs))
    }

    pub(super) fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// Answer every request waiting (never blocks on the gate); false once the gate is gone.
    pub(super) fn serve(&self) -> bool {
        let mut byte = [0u8; 1];
        loop {
            match nix::unistd::read(self.sock.as_raw_fd(), &mut byte) {
                Ok(0) => return false,
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::EAGAIN) => return true,
                Err(_) => return false,
            }
            let sent = match connect(&self.header) {
                Some(conn) => sys::send_fds(self.sock.as_raw_fd(), &[conn.as_raw_fd()]),
                None => sys::send_fds(self.sock.as_raw_fd(), &[]),
            };
            if sent.is_err() {
                return false;
            }
        }
    }
}

/// A connection to the control plane with `header` written, blocking again for the gate; `None`
/// if nothing listens, the runtime directory is not root's alone, or the connect or the write
/// would block.
fn connect(header: &[u8]) -> Option<OwnedFd> {
    // A socket in a directory someone else could write to could be anyone's.
    crate::run::persist::state::dir(false).ok()??;
    let sock = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .ok()?;
    let addr = UnixAddr::new(OPS_SOCKET).ok()?;
    socket::connect(sock.as_raw_fd(), &addr).ok()?;
    // A fresh connection's buffer takes a line this short whole.
    let n = sys::write_raw(sock.as_raw_fd(), header).ok()?;
    if n != header.len() {
        return None;
    }
    set_nonblocking(sock.as_fd(), false).ok()?;
    Some(sock)
}

fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let mut flags = OFlag::from_bits_truncate(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL)?);
    flags.set(OFlag::O_NONBLOCK, on);
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_one_json_line() {
        let h = header("user", "00ab", &["deploy".into(), "migrate".into()]);
        let text = String::from_utf8(h).unwrap();
        assert_eq!(
            text,
            "{\"sbx_ops\":1,\"context\":\"user\",\"call\":\"00ab\",\"ops\":[\"deploy\",\"migrate\"]}\n"
        );
    }

    /// A request is answered with a connection, or (nothing listening here) a message without
    /// fd; the gate's end closed ends serving.
    #[test]
    fn requests_are_answered_and_the_end_is_seen() {
        let (d, gate) = OpsDialer::pair(header("c", "1", &[]), false).unwrap();
        assert!(d.serve(), "nothing asked yet");
        sys::write_raw(gate.as_raw_fd(), &[7]).unwrap();
        assert!(d.serve());
        let got = sys::recv_fds(gate.as_raw_fd(), 1).unwrap();
        if !std::path::Path::new(OPS_SOCKET).exists() {
            assert!(got.is_empty());
        }
        drop(gate);
        assert!(!d.serve());
    }
}
