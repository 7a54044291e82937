//! One rtnetlink request: make every address local in the sandbox's own network namespace
//! (`ip route add local 0.0.0.0/0 dev lo table local`, and `::/0`), so that a connection to any
//! address lands on a socket inside the namespace, where the egress gate's capture listeners take
//! it (its original destination is the accepted socket's own address). Written with plain
//! sockets and bytes (no `unsafe`): an `nlmsghdr`, an `rtmsg`, one `RTA_OIF` attribute.

use std::io;
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    bind, recv, send, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol,
    SockType,
};

const RTM_NEWROUTE: u16 = 24;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const RT_TABLE_LOCAL: u8 = 255;
const RTPROT_STATIC: u8 = 4;
const RT_SCOPE_HOST: u8 = 254;
const RTN_LOCAL: u8 = 2;
const RTA_OIF: u16 = 4;

/// The request for `family` (AF_INET or AF_INET6): a local route for the whole address space on
/// interface `ifindex`, in the local table.
fn request(family: u8, ifindex: u32, seq: u32) -> Vec<u8> {
    let mut m = Vec::with_capacity(36);
    let len: u32 = 16 + 12 + 8;
    m.extend_from_slice(&len.to_ne_bytes());
    m.extend_from_slice(&RTM_NEWROUTE.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel fills it
                                              // rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags (u32).
    m.extend_from_slice(&[
        family,
        0,
        0,
        0,
        RT_TABLE_LOCAL,
        RTPROT_STATIC,
        RT_SCOPE_HOST,
        RTN_LOCAL,
    ]);
    m.extend_from_slice(&0u32.to_ne_bytes());
    // RTA_OIF: rta_len 8, type, the interface index.
    m.extend_from_slice(&8u16.to_ne_bytes());
    m.extend_from_slice(&RTA_OIF.to_ne_bytes());
    m.extend_from_slice(&ifindex.to_ne_bytes());
    m
}

/// The kernel's answer to request `seq`: `Ok` for an ACK (error 0).
fn acked(answer: &[u8], seq: u32) -> io::Result<()> {
    let field = |at: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(answer.get(at..at + 4)?.try_into().ok()?))
    };
    let kind = answer.get(4..6).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    match (kind, field(8), field(16)) {
        (Some(NLMSG_ERROR), Some(s), Some(err)) if s == seq => match err as i32 {
            0 => Ok(()),
            e => Err(io::Error::from_raw_os_error(-e)),
        },
        _ => Err(io::Error::other("an unexpected rtnetlink answer")),
    }
}

/// Make every IPv4 and IPv6 address local on `lo`, in the calling process's network namespace.
/// Done already is done (EEXIST); IPv6 is skipped when the namespace has none (EAFNOSUPPORT);
/// every other error is returned.
pub fn all_addresses_local() -> io::Result<()> {
    let ifindex = nix::net::if_::if_nametoindex("lo").map_err(io::Error::from)?;
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )
    .map_err(io::Error::from)?;
    bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0)).map_err(io::Error::from)?;
    for (seq, family) in [(1u32, libc::AF_INET as u8), (2, libc::AF_INET6 as u8)] {
        send(
            fd.as_raw_fd(),
            &request(family, ifindex, seq),
            MsgFlags::empty(),
        )
        .map_err(io::Error::from)?;
        let mut buf = [0u8; 512];
        let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()).map_err(io::Error::from)?;
        match acked(&buf[..n], seq) {
            // Made before (a persistent context's sockets made again).
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e)
                if family == libc::AF_INET6 as u8
                    && e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_an_rtmsg_with_one_attribute() {
        let m = request(libc::AF_INET as u8, 1, 7);
        assert_eq!(m.len(), 36);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 36);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), RTM_NEWROUTE);
        assert_eq!(u32::from_ne_bytes(m[8..12].try_into().unwrap()), 7);
        assert_eq!(&m[16..24], &[2, 0, 0, 0, 255, 4, 254, 2]);
        assert_eq!(u16::from_ne_bytes([m[30], m[31]]), RTA_OIF);
        assert_eq!(u32::from_ne_bytes(m[32..36].try_into().unwrap()), 1);
    }

    #[test]
    fn acks_and_errors_are_read() {
        let answer = |err: i32, seq: u32| {
            let mut a = vec![0u8; 36];
            a[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
            a[8..12].copy_from_slice(&seq.to_ne_bytes());
            a[16..20].copy_from_slice(&err.to_ne_bytes());
            a
        };
        assert!(acked(&answer(0, 3), 3).is_ok());
        assert_eq!(
            acked(&answer(-libc::EEXIST, 3), 3)
                .unwrap_err()
                .raw_os_error(),
            Some(libc::EEXIST)
        );
        assert!(acked(&answer(0, 4), 3).is_err());
        assert!(acked(&[1, 2], 3).is_err());
    }
}
