//! The gate's DNS service: one UDP socket the sandbox's pid 1 bound on port 53 of every address
//! of its namespace (every address is local there, so whatever server the sandbox's
//! `/etc/resolv.conf` names, or a client names itself, the query lands here). Each query is
//! answered by the [`Resolver`] from the address it was sent to (the packet-info control
//! message), so a client that checks where its answer came from accepts it.
//!
//! At most [`IN_FLIGHT`] queries are answered at once (a lookup outside may take seconds); beyond
//! that a query is answered SERVFAIL at once, never queued without bound.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use nix::sys::socket::{
    recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags, SockaddrStorage,
};

use super::dns::{self, Rcode};
use super::resolver::{Decision, Resolver};

/// Queries answered at once.
pub const IN_FLIGHT: usize = 16;

/// Where a decision goes (the audit log).
pub type Report = Arc<dyn Fn(&Decision) + Send + Sync>;

/// Where a query came from and was sent to.
#[derive(Clone, Copy)]
enum Info {
    V4(libc::in_pktinfo),
    V6(libc::in6_pktinfo),
    None,
}

/// Serve queries on `sock` until the process ends (runs on the calling thread).
pub fn serve(sock: OwnedFd, resolver: Arc<Resolver>, report: Report) {
    let sock = Arc::new(sock);
    let busy = Arc::new(AtomicUsize::new(0));
    loop {
        let mut buf = vec![0u8; dns::MAX_QUERY + 1];
        let Some((n, from, info)) = receive(&sock, &mut buf) else {
            std::thread::sleep(std::time::Duration::from_millis(20));
            continue;
        };
        buf.truncate(n);
        if busy.fetch_add(1, Ordering::SeqCst) >= IN_FLIGHT {
            busy.fetch_sub(1, Ordering::SeqCst);
            if let Ok(q) = dns::parse_query(&buf) {
                let answer = dns::answer(&q, Rcode::ServFail, &[], 0);
                send(&sock, &answer, &from, info);
            }
            continue;
        }
        let (s, r, rep, b) = (sock.clone(), resolver.clone(), report.clone(), busy.clone());
        let spawned = std::thread::Builder::new()
            .name("sbx-gate-dns".into())
            .stack_size(128 * 1024)
            .spawn(move || {
                if let Some((answer, decision)) = r.respond(&buf) {
                    send(&s, &answer, &from, info);
                    if let Some(d) = decision {
                        rep(&d);
                    }
                }
                b.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            busy.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn receive(sock: &OwnedFd, buf: &mut [u8]) -> Option<(usize, SockaddrStorage, Info)> {
    let mut space = nix::cmsg_space!(libc::in6_pktinfo);
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrStorage>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .ok()?;
    let mut info = Info::None;
    for c in msg.cmsgs().ok()? {
        match c {
            ControlMessageOwned::Ipv4PacketInfo(i) => info = Info::V4(i),
            ControlMessageOwned::Ipv6PacketInfo(i) => info = Info::V6(i),
            _ => {}
        }
    }
    let from = msg.address?;
    // A datagram larger than a query is cut (MSG_TRUNC) and not answered.
    if msg.flags.contains(MsgFlags::MSG_TRUNC) {
        return None;
    }
    Some((msg.bytes, from, info))
}

/// Answer `to`, from the address the query was sent to.
fn send(sock: &OwnedFd, answer: &[u8], to: &SockaddrStorage, info: Info) {
    let iov = [std::io::IoSlice::new(answer)];
    let v4;
    let v6;
    let cmsgs: Vec<ControlMessage> = match info {
        Info::V4(i) => {
            // ipi_spec_dst: the source of the answer.
            let mut i = i;
            i.ipi_spec_dst = i.ipi_addr;
            i.ipi_ifindex = 0;
            v4 = i;
            vec![ControlMessage::Ipv4PacketInfo(&v4)]
        }
        Info::V6(i) => {
            let mut i = i;
            i.ipi6_ifindex = 0;
            v6 = i;
            vec![ControlMessage::Ipv6PacketInfo(&v6)]
        }
        Info::None => Vec::new(),
    };
    let _ = sendmsg(
        sock.as_raw_fd(),
        &iov,
        &cmsgs,
        MsgFlags::MSG_DONTWAIT,
        Some(to),
    );
}
