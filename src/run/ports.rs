//! Reserved ports: bound by sbx-exec before anything else runs, on IPv4 `0.0.0.0` and IPv6 `::`
//! (V6ONLY, so both families are held; never SO_REUSEPORT, so nobody can share them), listening,
//! and kept for as long as sbx-exec lives, across control-plane restarts. The control plane gets
//! them as inherited fds 3.. with `LISTEN_FDS`, `LISTEN_PID` and `LISTEN_FDNAMES`, the systemd
//! socket-activation protocol, so it never binds and there is never a window.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use anyhow::{Context as _, Result};

use crate::plan::launch::Target;
use nix::sys::socket::{
    bind, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType,
    SockaddrIn, SockaddrIn6,
};

/// The listening sockets held for the control plane, in the order they are handed over.
#[derive(Debug, Default)]
pub struct ReservedPorts {
    sockets: Vec<(OwnedFd, String)>,
}

impl ReservedPorts {
    /// Bind and listen on every port, IPv4 and IPv6. IPv6 is skipped (with a note) only where the
    /// kernel has no IPv6 at all, since then nobody else can bind it either.
    pub fn bind(ports: &[u16]) -> Result<ReservedPorts> {
        let mut sockets = Vec::new();
        for &port in ports {
            sockets.push((bind_v4(port)?, format!("{port}")));
            match bind_v6(port) {
                Ok(fd) => sockets.push((fd, format!("{port}v6"))),
                Err(e) if is_no_ipv6(&e) => {
                    eprintln!(
                        "sbx-exec: note: no IPv6 on this host; port {port} is held on IPv4 only"
                    )
                }
                Err(e) => return Err(e),
            }
        }
        Ok(ReservedPorts { sockets })
    }

    /// The sockets of `ports` (IPv4 and IPv6), or with `except`, those of every other port, in
    /// order, with their `LISTEN_FDNAMES` names: the port number for IPv4, the port number and
    /// `v6` for IPv6.
    pub fn handed(&self, ports: &[u16], except: bool) -> Handed {
        let mut h = Handed::default();
        for (fd, name) in &self.sockets {
            let port: u16 = name.trim_end_matches("v6").parse().unwrap_or(0);
            if ports.contains(&port) != except {
                h.fds.push(fd.as_raw_fd());
                h.names.push(name.clone());
            }
        }
        h
    }
}

/// Some of the reserved sockets, as handed to one process (fds 3.. in this order).
#[derive(Debug, Clone, Default)]
pub struct Handed {
    pub fds: Vec<RawFd>,
    pub names: Vec<String>,
}

impl Handed {
    /// `target` given them: placed on 3.. just before exec, with LISTEN_FDS, LISTEN_FDNAMES and
    /// LISTEN_PID (filled in with the target's pid) in its environment; its program's handle is
    /// moved above them first.
    pub fn give_to(&self, target: Target) -> std::io::Result<Target> {
        let passed = crate::plan::fds::Passed {
            fds: self.fds.clone(),
            listen_names: (!self.fds.is_empty()).then(|| self.names.clone()),
        };
        let top = 3 + self.fds.len() as RawFd;
        let target = match target.program.as_raw_fd() < top {
            true => Target {
                program: crate::sys::dup_cloexec_above(target.program.as_raw_fd(), top)?,
                ..target
            },
            false => target,
        };
        Ok(target.passing(&passed))
    }
}

fn is_no_ipv6(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<nix::Error>()
            .is_some_and(|e| matches!(e, nix::Error::EAFNOSUPPORT | nix::Error::EADDRNOTAVAIL))
    })
}

fn listening(family: AddressFamily) -> Result<OwnedFd> {
    // CLOEXEC here; the fds are duplicated without it onto 3.. in the control plane only.
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    // SO_REUSEADDR only lets sbx-exec itself rebind right after a restart of its own; a listening
    // socket still excludes every other bind. SO_REUSEPORT is never set.
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    Ok(fd)
}

fn bind_v4(port: u16) -> Result<OwnedFd> {
    let fd = listening(AddressFamily::Inet).context("socket")?;
    bind(fd.as_raw_fd(), &SockaddrIn::new(0, 0, 0, 0, port))
        .map_err(|e| in_use(e, port, "0.0.0.0"))?;
    listen(&fd, Backlog::new(1024)?).with_context(|| format!("cannot listen on port {port}"))?;
    Ok(fd)
}

fn bind_v6(port: u16) -> Result<OwnedFd> {
    let fd = listening(AddressFamily::Inet6)?;
    setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
    let any = std::net::SocketAddrV6::new(std::net::Ipv6Addr::UNSPECIFIED, port, 0, 0);
    bind(fd.as_raw_fd(), &SockaddrIn6::from(any)).map_err(|e| in_use(e, port, "[::]"))?;
    listen(&fd, Backlog::new(1024)?).with_context(|| format!("cannot listen on [::]:{port}"))?;
    Ok(fd)
}

fn in_use(e: nix::Error, port: u16, addr: &str) -> anyhow::Error {
    let hint = if e == nix::Error::EADDRINUSE {
        format!(
            "; another process already holds it (find it with `ss -ltnp 'sport = :{port}'`); control mode must start before anything else binds its ports"
        )
    } else if e == nix::Error::EACCES {
        "; ports below 1024 need root or CAP_NET_BIND_SERVICE (or lower the sysctl net.ipv4.ip_unprivileged_port_start), or change supervise.ports".to_string()
    } else {
        String::new()
    };
    anyhow::Error::new(e).context(format!("cannot reserve port {addr}:{port}{hint}"))
}
