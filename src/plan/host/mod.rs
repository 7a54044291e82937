//! Host facts: the one module of `model` and `plan` that reads the system (files, /proc, the
//! kernel's answers). Everything else there is pure: a launch gathers these facts first
//! ([`crate::plan::launch::Facts`]) and plans from them ([`crate::plan::launch::plan`]); `probe`
//! asks the same functions.
//!
//! - [`exec`]: the command resolved in PATH, checked against `[exec]` and opened once (the checked
//!   program handle);
//! - [`cgroup`]: the cgroup hierarchy and this process's own cgroups;
//! - [`local_addrs`]: the container's own addresses (the egress gate asks at each connection);
//! - [`landlock_abi`], [`current_dir`], [`current_exe`].

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{Context as _, Result};

pub mod cgroup;
pub mod exec;

/// The Landlock ABI of the running kernel (0: none).
pub fn landlock_abi() -> i32 {
    // landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)
    crate::sys::landlock_abi()
}

/// The current directory (the caller's, where a command starts unless told otherwise).
pub fn current_dir() -> Result<PathBuf> {
    std::env::current_dir().context("cannot read the current directory")
}

/// The sbx-exec binary (kept read-only inside every sandbox), if the kernel says where it is.
pub fn current_exe() -> Option<PathBuf> {
    std::env::current_exe().ok()
}

/// The addresses of this network namespace's interfaces (the container's own addresses, when
/// called by the outer sbx-exec), to refuse as destinations.
pub fn local_addrs() -> nix::Result<Vec<IpAddr>> {
    let mut out = Vec::new();
    for ifa in nix::ifaddrs::getifaddrs()? {
        let Some(addr) = ifa.address else { continue };
        let ip = if let Some(v4) = addr.as_sockaddr_in() {
            IpAddr::V4(v4.ip())
        } else if let Some(v6) = addr.as_sockaddr_in6() {
            IpAddr::V6(v6.ip())
        } else {
            continue;
        };
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn local_addrs_include_loopback() {
        let addrs = super::local_addrs().unwrap();
        assert!(addrs.contains(&"127.0.0.1".parse().unwrap()), "{addrs:?}");
    }
}
