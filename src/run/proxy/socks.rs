//! SOCKS5 (no authentication, CONNECT) and the byte splice of every tunnel.

use super::*;

/// SOCKS5 (RFC 1928), no authentication, CONNECT only.
pub(super) fn socks5(shared: &Shared, id: u64, mut inb: Inbound<'_>) {
    let client = inb.stream;
    let reply = |code: u8| {
        let _ = (&*client).write_all(&[5, code, 0, 1, 0, 0, 0, 0, 0, 0]);
    };
    // A refusal before any destination is checked, audited with the HTTP status that stands for
    // its reply code.
    let refuse = |to: Option<(&str, u16)>, (status, code): (u16, u8), why: &str| {
        shared.refused(Protocol::Socks5, to, status, why);
        reply(code);
    };
    if inb.fill(2).is_err() {
        return;
    }
    let n = usize::from(inb.buf[1]);
    if inb.fill(2 + n).is_err() {
        return;
    }
    if !inb.buf[2..2 + n].contains(&0) {
        shared.refused(
            Protocol::Socks5,
            None,
            400,
            "SOCKS5 without the no-authentication method",
        );
        let _ = (&*client).write_all(&[5, 0xff]);
        return;
    }
    if (&*client).write_all(&[5, 0]).is_err() {
        return;
    }
    let at = 2 + n;
    if inb.fill(at + 5).is_err() {
        return;
    }
    let (ver, cmd, atyp) = (inb.buf[at], inb.buf[at + 1], inb.buf[at + 3]);
    let addr_len = match atyp {
        1 => 4,
        4 => 16,
        3 => 1 + usize::from(inb.buf[at + 4]),
        _ => return refuse(None, (501, 0x08), "SOCKS5 address type not supported"),
    };
    let end = at + 4 + addr_len + 2;
    if ver != 5 || inb.fill(end).is_err() {
        return;
    }
    let a = &inb.buf[at + 4..end - 2];
    let port = u16::from_be_bytes([inb.buf[end - 2], inb.buf[end - 1]]);
    let host = match atyp {
        1 => std::net::Ipv4Addr::new(a[0], a[1], a[2], a[3]).to_string(),
        4 => {
            let b: [u8; 16] = a.try_into().unwrap_or([0; 16]);
            format!("[{}]", std::net::Ipv6Addr::from(b))
        }
        _ => match std::str::from_utf8(&a[1..]) {
            Ok(s) => s.to_string(),
            Err(_) => return refuse(None, (400, 0x01), "a SOCKS5 host name that is not text"),
        },
    };
    if cmd != 1 {
        let why = "a SOCKS5 command other than CONNECT";
        return refuse(Some((&host, port)), (501, 0x07), why);
    }
    if port == 0 {
        return refuse(Some((&host, port)), (400, 0x01), "SOCKS5 to port 0");
    }
    if let Some(b) = &shared.bound {
        b.check_host(shared, Protocol::Socks5, &host, port);
    }
    let upstream = match open_upstream(shared, id, Protocol::Socks5, &host, port) {
        Ok(u) => u,
        Err(d) => return reply(d.socks),
    };
    let _ = client.set_read_timeout(None);
    // The bound address is not disclosed (it would be the container's own address).
    reply(0);
    if (&upstream).write_all(&inb.buf[end..]).is_ok() {
        splice(client, &upstream, false, shared.limits.idle_timeout);
    }
}

/// Copy both ways until both directions end, or nothing moves for `idle`. A direction that ends
/// (EOF) is passed on as a half-close; an error ends both. With `end_with_upstream` the end of
/// the upstream's data ends the connection.
pub fn splice(client: &TcpStream, upstream: &TcpStream, end_with_upstream: bool, idle: Duration) {
    let wait = PollTimeout::try_from(idle).unwrap_or(PollTimeout::MAX);
    let mut buf = vec![0u8; SPLICE_BUF];
    let mut up_open = true; // client → upstream still flowing
    let mut down_open = true; // upstream → client still flowing
    while up_open || down_open {
        let (mut ready_up, mut ready_down) = (false, false);
        {
            let mut fds = Vec::with_capacity(2);
            if up_open {
                fds.push(PollFd::new(client.as_fd(), PollFlags::POLLIN));
            }
            if down_open {
                fds.push(PollFd::new(upstream.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, wait) {
                Ok(0) => break, // idle for too long
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            }
            let ready = |fd: &PollFd| fd.any().unwrap_or(true);
            let mut it = fds.iter();
            if up_open {
                ready_up = it.next().is_some_and(ready);
            }
            if down_open {
                ready_down = it.next().is_some_and(ready);
            }
        }
        if ready_up && !pump(client, upstream, &mut buf, &mut up_open) {
            break;
        }
        if ready_down && !pump(upstream, client, &mut buf, &mut down_open) {
            break;
        }
        if end_with_upstream && !down_open {
            break;
        }
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = upstream.shutdown(Shutdown::Both);
}

/// One read from `from`, written to `to`. False on an error (end everything); on EOF, the
/// direction is marked closed and `to` is half-closed.
pub(super) fn pump(
    mut from: &TcpStream,
    mut to: &TcpStream,
    buf: &mut [u8],
    open: &mut bool,
) -> bool {
    match from.read(buf) {
        Ok(0) => {
            *open = false;
            let _ = to.shutdown(Shutdown::Write);
            true
        }
        Ok(n) => to.write_all(&buf[..n]).is_ok(),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => true,
        Err(_) => false,
    }
}
