//! The dialer ("sbx-gate-dial"): in the sandbox's network namespace, unprivileged, it connects to
//! the sandbox's 127.0.0.1:PORT for the gate (a published port's connection) and hands the socket
//! over. It reads two bytes per request and nothing else; it holds no secret.

use std::os::fd::AsRawFd;

use anyhow::{anyhow, Result};

/// The dialer's main. Never returns.
pub fn main() -> ! {
    if let Err(e) = run() {
        eprintln!("sbx-exec: the egress gate's dialer: {e:#}");
    }
    crate::sys::exit_now(crate::error::EXIT_SBX)
}

fn run() -> Result<()> {
    super::harden(super::DIAL)?;
    let launcher: i32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| anyhow!("no launcher pid"))?;
    if nix::unistd::getppid().as_raw() != launcher {
        return Err(anyhow!("the launcher is gone"));
    }
    crate::run::apply::landlock::confine_gate(&[])?;
    let prog = crate::plan::gate_seccomp::build(nix::unistd::getpid().as_raw())?;
    seccompiler::apply_filter(&prog).map_err(|e| anyhow!("seccomp: {e}"))?;
    let sock = super::placed_fd(super::DIAL, super::config::CONFIG_FD)?;
    let mut req = [0u8; 2];
    loop {
        match nix::unistd::read(sock.as_raw_fd(), &mut req) {
            Ok(2) => {}
            Ok(0) => return Ok(()), // the gate is gone
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let port = u16::from_be_bytes(req);
        let sent = match super::serve::connect_inside(port) {
            Ok(s) => crate::sys::send_fds(sock.as_raw_fd(), &[s.as_raw_fd()]),
            Err(_) => crate::sys::send_fds(sock.as_raw_fd(), &[]),
        };
        if sent.is_err() {
            return Ok(());
        }
    }
}
