//! The answer of an intercepted request, on its way back: read strictly and scrubbed of every
//! encoding of the call's real values ([`super::scrub`]) before the sandbox sees a byte; and the
//! client's TLS stream the request came on ([`Clocked`]).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use rustls::{ClientConnection, ServerConnection, StreamOwned};
use zeroize::Zeroizing;

use super::scrub::{Needles, Scrubber};
use crate::run::proxy::http::{self, Bad, Framing};

pub(super) type Client<'a> = StreamOwned<ServerConnection, Clocked<'a>>;

/// The client's socket, whose reads end at a deadline while it has one (the TLS handshake and
/// the request head: each read waits only for what is left of it, so bytes trickled one at a
/// time do not keep the connection), then each within the idle timeout.
pub(super) struct Clocked<'a> {
    pub(super) sock: &'a TcpStream,
    pub(super) deadline: Option<Instant>,
}

impl Clocked<'_> {
    /// From here, each read within `idle` (the request body, once the head is in).
    pub(super) fn idle(&mut self, idle: Duration) {
        self.deadline = None;
        let _ = self.sock.set_read_timeout(Some(idle));
    }
}

impl Read for Clocked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(deadline) = self.deadline {
            let left = deadline
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
                .ok_or(io::ErrorKind::TimedOut)?;
            self.sock.set_read_timeout(Some(left))?;
        }
        match self.sock.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(io::ErrorKind::TimedOut.into()),
            other => other,
        }
    }
}

impl Write for Clocked<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sock.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sock.flush()
    }
}
pub(super) type Upstream = StreamOwned<ClientConnection, TcpStream>;

/// The response, scrubbed: its head (status line and every header) and its body (de-chunked,
/// scrubbed as one stream, chunked again) with every form of every real value replaced by its
/// placeholder's. A compressed or upgraded response is refused (502), not relayed. Once the
/// client has been sent a byte, a failure only ends the connection (the client sees a response
/// cut short, never an error appended to it).
pub(super) fn relay(
    up: &mut Upstream,
    client: &mut Client<'_>,
    needles: &Needles,
    method: &str,
) -> Result<(), Bad> {
    let mut started = false;
    match relay_inner(up, client, needles, method, &mut started) {
        Err(_) if started => Ok(()),
        other => other,
    }
}

fn relay_inner(
    up: &mut Upstream,
    client: &mut Client<'_>,
    needles: &Needles,
    method: &str,
    started: &mut bool,
) -> Result<(), Bad> {
    let mut from = BufReader::new(up);
    loop {
        let head = read_response_head(&mut from)?;
        let parsed = http::parse_response(&head)?;
        if parsed.status == 101 {
            return Err((502, "the host switched protocols; not relayed".into()));
        }
        if parsed
            .get("content-encoding")
            .is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity"))
        {
            return Err((502, "the host answered with a compressed body though identity was asked for; refused, since a real value could hide in it".into()));
        }
        let framing = http::response_framing(method, &parsed)?;
        let (clean, _) = Scrubber::all(needles, &head);
        *started = true;
        write(client, &clean)?;
        if (100..200).contains(&parsed.status) {
            continue; // an interim response; the final one follows
        }
        let mut scrub = Scrubber::new(needles);
        match framing {
            Framing::None => {}
            Framing::Length(n) => {
                let mut out = Vec::new();
                let mut left = n;
                let mut buf = Zeroizing::new(vec![0u8; 16 * 1024]);
                while left > 0 {
                    let want = buf.len().min(left as usize);
                    let got = read_some(&mut from, &mut buf[..want])?;
                    left -= got as u64;
                    scrub.feed(&buf[..got], &mut out);
                    write(client, &out)?;
                    out.clear();
                }
                scrub.finish(&mut out);
                write(client, &out)?;
            }
            Framing::Close => {
                let mut out = Vec::new();
                let mut buf = Zeroizing::new(vec![0u8; 16 * 1024]);
                loop {
                    match from.read(&mut buf) {
                        Ok(0) => break,
                        Ok(got) => {
                            scrub.feed(&buf[..got], &mut out);
                            write(client, &out)?;
                            out.clear();
                        }
                        // A close without TLS close_notify ends the body too (it was asked to close).
                        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                        Err(e) => return Err((502, e.to_string())),
                    }
                }
                scrub.finish(&mut out);
                write(client, &out)?;
            }
            Framing::Chunked => relay_chunked(&mut from, client, needles, &mut scrub)?,
        }
        return Ok(());
    }
}

/// A chunked body: the payload scrubbed as one stream and sent on in chunks of its own sizes;
/// the trailers scrubbed too.
fn relay_chunked(
    from: &mut impl BufRead,
    client: &mut Client<'_>,
    needles: &Needles,
    scrub: &mut Scrubber<'_>,
) -> Result<(), Bad> {
    let bad = |e: io::Error| (502, format!("the response's chunked body: {e}"));
    let mut out = Vec::new();
    let send = |client: &mut Client<'_>, out: &mut Vec<u8>| -> Result<(), Bad> {
        if !out.is_empty() {
            write(client, format!("{:x}\r\n", out.len()).as_bytes())?;
            write(client, out)?;
            write(client, b"\r\n")?;
            out.clear();
        }
        Ok(())
    };
    loop {
        let line = http::read_line(from).map_err(bad)?;
        let size = http::chunk_size(&line).map_err(bad)?;
        if size == 0 {
            break;
        }
        let mut left = size;
        let mut buf = Zeroizing::new(vec![0u8; 16 * 1024]);
        while left > 0 {
            let want = buf.len().min(left as usize);
            let got = read_some(from, &mut buf[..want])?;
            left -= got as u64;
            scrub.feed(&buf[..got], &mut out);
            send(client, &mut out)?;
        }
        if http::read_line(from).map_err(bad)? != b"\r\n" {
            return Err((
                502,
                "a chunk of the response is not followed by CRLF".into(),
            ));
        }
    }
    scrub.finish(&mut out);
    send(client, &mut out)?;
    let mut trailers = Vec::new();
    http::copy_trailers(from, &mut trailers).map_err(bad)?;
    write(client, b"0\r\n")?;
    write(client, &Scrubber::all(needles, &trailers).0)
}

/// A response head, through its blank line (at most 64 KiB).
fn read_response_head(from: &mut impl BufRead) -> Result<Vec<u8>, Bad> {
    let mut head = Vec::new();
    loop {
        let line = http::read_line(from).map_err(|e| (502, format!("the response head: {e}")))?;
        head.extend_from_slice(&line);
        if line == b"\r\n" && head.len() > 2 {
            return Ok(head);
        }
        if head.len() > 64 * 1024 {
            return Err((502, "the response head is too large".into()));
        }
    }
}

fn read_some(from: &mut impl Read, buf: &mut [u8]) -> Result<usize, Bad> {
    match from.read(buf) {
        Ok(0) => Err((502, "the response ended early".into())),
        Ok(n) => Ok(n),
        Err(e) => Err((502, e.to_string())),
    }
}

pub(super) fn write(client: &mut Client<'_>, data: &[u8]) -> Result<(), Bad> {
    client.write_all(data).map_err(|e| (499, e.to_string()))
}
