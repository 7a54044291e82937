//! The proxy's one accept thread: it waits on the proxy's listener and the captured ports' at
//! once, counts each new connection against the limits before a byte is read, and gives it a
//! thread of its own.

use super::*;

/// The key captured connections are counted under: they all share the context's total, not a
/// call's share (their local address is where they were going, not a call's address).
const CAPTURED: std::net::IpAddr = std::net::IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED);

pub(super) fn accept_loop(shared: &Arc<Shared>) {
    let listeners: Vec<&TcpListener> = std::iter::once(&shared.listener)
        .chain(&shared.capture)
        .collect();
    loop {
        let mut fds: Vec<PollFd> = listeners
            .iter()
            .map(|l| PollFd::new(l.as_fd(), PollFlags::POLLIN))
            .collect();
        let polled = poll(&mut fds, PollTimeout::from(1000u16));
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        if polled.is_err() {
            thread::sleep(Duration::from_millis(20));
            continue;
        }
        let ready: Vec<usize> = fds
            .iter()
            .enumerate()
            .filter(|(_, f)| f.revents().is_some_and(|r| !r.is_empty()))
            .map(|(i, _)| i)
            .collect();
        for i in ready {
            match listeners[i].accept() {
                Ok((client, _)) => admit(shared, client, i > 0),
                Err(e) if e.kind() == io::ErrorKind::InvalidInput => return, // not listening
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    // ECONNABORTED, EMFILE, ENOBUFS...: do not spin.
                    thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}

/// Count `client` against the limits (503 at once if over), then serve it on a thread of its
/// own: as a proxy client, or as a captured connection.
fn admit(shared: &Arc<Shared>, client: TcpStream, captured: bool) {
    let _ = client.set_nonblocking(false);
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    // The address the client reached the proxy on names its call.
    let call = match captured {
        true => CAPTURED,
        false => client
            .local_addr()
            .map_or(std::net::IpAddr::from([0u8; 4]), |a| a.ip()),
    };
    {
        let mut open = shared.open();
        if let Some(why) = over_limit(shared, &open, call, captured) {
            drop(open);
            // Refused before a byte is read (that is what keeps the limit cheap): the
            // destination is not known, and the audit line names none.
            let protocol = if captured {
                Protocol::Captured
            } else {
                Protocol::Http
            };
            shared.refused(protocol, None, 503, &why);
            // Told, not silently dropped: a 503 written without waiting for the client (a
            // captured client that does not speak HTTP just sees the connection close).
            let _ = client.set_nonblocking(true);
            if !captured {
                request::respond(&client, 503, &why);
            }
            return;
        }
        let Ok(clone) = client.try_clone() else {
            return;
        };
        open.insert(id, (call, vec![clone]));
    }
    let s = shared.clone();
    let reply = client.try_clone().ok();
    let spawned = thread::Builder::new()
        .name("sbx-proxy-conn".into())
        .stack_size(THREAD_STACK)
        .spawn(move || {
            match captured {
                true => captured::captured(&s, id, client),
                false => handle(&s, id, client),
            }
            s.open().remove(&id);
        });
    if let Err(e) = spawned {
        shared.open().remove(&id);
        if let Some(client) = reply {
            // Most often the context's limits.pids_max: the gate's threads count there.
            let why = format!(
                "sbx-exec: the egress gate cannot start a thread for this connection ({e}); \
                 is the context's limits.pids_max reached?"
            );
            shared.refused(Protocol::Http, None, 503, &why);
            let _ = client.set_nonblocking(true);
            if !captured {
                request::respond(&client, 503, &why);
            }
        }
    }
}

/// Why a new connection is over the limits, if it is: the context's total, or (for a proxy
/// client) its call's share.
fn over_limit(
    shared: &Shared,
    open: &HashMap<u64, (std::net::IpAddr, Vec<TcpStream>)>,
    call: std::net::IpAddr,
    captured: bool,
) -> Option<String> {
    if open.len() >= shared.limits.max_connections {
        return Some(format!(
            "the context has {} connections through the egress gate (limit {}: [context.{}.net] limits.connections)",
            open.len(),
            shared.limits.max_connections,
            shared.policy.context
        ));
    }
    let of_call = open.values().filter(|(c, _)| *c == call).count();
    if !captured && of_call >= shared.limits.per_call {
        return Some(format!(
            "this call has {of_call} connections through the egress gate (limit {}: [context.{}.net] limits.per_call)",
            shared.limits.per_call, shared.policy.context
        ));
    }
    None
}
