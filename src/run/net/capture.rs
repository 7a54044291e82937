//! The sockets pid 1 makes for capture, in the sandbox's network namespace once every address in
//! it is local ([`crate::sys::route::all_addresses_local`]): one listener per captured port and
//! one DNS socket, each on every address of both families where the namespace has IPv6 (one
//! dual-stack socket: an IPv4 peer shows as `::ffff:a.b.c.d`), of IPv4 alone where it has not.
//! They are handed to the gate like the proxy's listener; the sandbox's code can neither accept
//! on them nor bind those ports itself.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;

use anyhow::{Context as _, Result};
use nix::sys::socket::{
    bind, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType,
    SockaddrIn, SockaddrIn6,
};

/// A socket of `kind` bound to `port` on every address: dual-stack where IPv6 exists. A listener
/// takes `SO_REUSEADDR` (as std's listeners do): the gate closes captured connections first, so
/// their ends on this port linger in TIME_WAIT, and a persistent context's replacement net helper
/// binds the port again in the same namespace ([`super::Bridge::reattach`]); another listener
/// on it is still refused.
fn bound(kind: SockType, port: u16) -> nix::Result<OwnedFd> {
    let reuse = |fd: &OwnedFd| match kind {
        SockType::Stream => setsockopt(fd, sockopt::ReuseAddr, &true),
        _ => Ok(()),
    };
    let v6 = socket(AddressFamily::Inet6, kind, SockFlag::SOCK_CLOEXEC, None).and_then(|fd| {
        setsockopt(&fd, sockopt::Ipv6V6Only, &false)?;
        reuse(&fd)?;
        bind_to(&fd, SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)))?;
        Ok(fd)
    });
    match v6 {
        Ok(fd) => Ok(fd),
        Err(nix::errno::Errno::EAFNOSUPPORT | nix::errno::Errno::EADDRNOTAVAIL) => {
            let fd = socket(AddressFamily::Inet, kind, SockFlag::SOCK_CLOEXEC, None)?;
            reuse(&fd)?;
            bind_to(&fd, SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))?;
            Ok(fd)
        }
        Err(e) => Err(e),
    }
}

fn bind_to(fd: &OwnedFd, addr: SocketAddr) -> nix::Result<()> {
    use std::os::fd::AsRawFd;
    match addr {
        SocketAddr::V4(a) => bind(fd.as_raw_fd(), &SockaddrIn::from(a)),
        SocketAddr::V6(a) => bind(fd.as_raw_fd(), &SockaddrIn6::from(a)),
    }
}

/// The listener for captured connections to `port`.
pub fn listener(port: u16) -> Result<OwnedFd> {
    let fd = bound(SockType::Stream, port)
        .and_then(|fd| {
            listen(&fd, Backlog::new(128).unwrap_or(Backlog::MAXCONN))?;
            Ok(fd)
        })
        .with_context(|| {
            format!("cannot listen on port {port} in the sandbox for captured connections")
        })?;
    Ok(fd)
}

/// The DNS socket: UDP port 53 on every address, telling each datagram's destination (the
/// answer goes out from it).
pub fn dns_socket() -> Result<OwnedFd> {
    let fd = bound(SockType::Datagram, 53).context("cannot bind the sandbox's DNS port 53")?;
    let dual = nix::sys::socket::getsockname::<nix::sys::socket::SockaddrStorage>(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
    )
    .ok()
    .and_then(|a| a.as_sockaddr_in6().map(|_| ()))
    .is_some();
    match dual {
        true => setsockopt(&fd, sockopt::Ipv6RecvPacketInfo, &true),
        false => setsockopt(&fd, sockopt::Ipv4PacketInfo, &true),
    }
    .context("cannot ask for the DNS datagrams' destinations")?;
    Ok(fd)
}
