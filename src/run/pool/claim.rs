//! A call's side of the pool: ask the server for a prepared sandbox ([`claim`]), and the wire
//! format both sides share ([`Reply`]).

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, UnixAddr};
use nix::unistd::Pid;

use crate::sys;

/// The longest a call waits for the server's answer before it builds its sandbox itself.
const ANSWER_TIMEOUT: Duration = Duration::from_millis(100);

/// The namespaces a prepared sandbox hands out, in [`crate::run::persist::nssock::KINDS`]' order.
pub const NS_COUNT: usize = crate::run::persist::nssock::KINDS.len();

/// A claimed sandbox: everything the call needs to run its target in it. Dropping it closes
/// `ctl`: the sandbox's pid 1 ends, and with it whatever still runs inside.
pub struct Claimed {
    /// Pid 1, as the call sees it, and its pidfd (readable once it has ended).
    pub pid: Pid,
    pub pidfd: OwnedFd,
    pub ctl: OwnedFd,
    /// net, ipc, uts, pid, mnt.
    pub ns: Vec<OwnedFd>,
    /// The outer end of the sandbox's network bridge (its listeners queued on it), with
    /// `net = "private"` and egress.
    pub outer: Option<OwnedFd>,
    /// `identity`: a user namespace made and mapped for this sandbox alone, which the target
    /// enters instead of making its own.
    pub userns: Option<OwnedFd>,
    /// The sandbox's cgroup: its `cgroup.procs` files and directories.
    pub cgroup_procs: Vec<OwnedFd>,
    pub cgroup_dirs: Vec<PathBuf>,
}

/// The server's answer to a claim, as text: `ok PID NET USER CGROUPS` then one cgroup directory
/// a line; the fds go with it in [`Reply::fds`]' order. `none` when it has no such sandbox.
pub struct Reply;

impl Reply {
    pub fn text(pid: Pid, (net, user): (bool, bool), dirs: &[PathBuf]) -> String {
        let mut t = format!(
            "ok {} {} {} {}\n",
            pid.as_raw(),
            u8::from(net),
            u8::from(user),
            dirs.len()
        );
        for d in dirs {
            t.push_str(&d.to_string_lossy());
            t.push('\n');
        }
        t
    }

    /// Parse an answer with its fds (ctl, pidfd, the namespaces, the bridge, the user
    /// namespace, the cgroups).
    pub fn parse(text: &str, fds: Vec<OwnedFd>) -> Option<Claimed> {
        let mut lines = text.lines();
        let head: Vec<&str> = lines.next()?.split(' ').collect();
        let ["ok", pid, net, user, n] = head.as_slice() else {
            return None;
        };
        let pid: i32 = pid.parse().ok().filter(|p| *p > 1)?;
        let flag = |f: &str| match f {
            "0" => Some(false),
            "1" => Some(true),
            _ => None,
        };
        let (net, user) = (flag(net)?, flag(user)?);
        let n: usize = n.parse().ok()?;
        let dirs: Vec<PathBuf> = lines.map(PathBuf::from).collect();
        let want = 2 + NS_COUNT + usize::from(net) + usize::from(user) + n;
        if dirs.len() != n || fds.len() != want {
            return None;
        }
        let mut fds = fds.into_iter();
        let ctl = fds.next()?;
        let pidfd = fds.next()?;
        let ns: Vec<OwnedFd> = fds.by_ref().take(NS_COUNT).collect();
        let outer = if net { fds.next() } else { None };
        let userns = if user { fds.next() } else { None };
        Some(Claimed {
            pid: Pid::from_raw(pid),
            pidfd,
            ctl,
            ns,
            outer,
            userns,
            cgroup_procs: fds.collect(),
            cgroup_dirs: dirs,
        })
    }
}

/// Claim a prepared sandbox of `ctx_name` made from the plan whose key is `key` from the
/// server in `dir`. `None`: no server for that plan, none ready, an answer that does not parse,
/// or no answer within [`ANSWER_TIMEOUT`]; the call then builds its own.
pub fn claim(dir: &Path, ctx_name: &str, key: u64) -> Option<Claimed> {
    let sock = socket::socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .ok()?;
    let addr = UnixAddr::new(&super::socket(dir, ctx_name, key)).ok()?;
    let timeout = nix::sys::time::TimeVal::new(0, ANSWER_TIMEOUT.as_micros() as i64);
    socket::setsockopt(&sock, socket::sockopt::ReceiveTimeout, &timeout).ok()?;
    socket::setsockopt(&sock, socket::sockopt::SendTimeout, &timeout).ok()?;
    socket::connect(sock.as_raw_fd(), &addr).ok()?;
    sys::send_msg(sock.as_raw_fd(), b"claim", &[]).ok()?;
    let mut buf = [0u8; 4096];
    let (n, fds) = sys::recv_msg(sock.as_raw_fd(), &mut buf, 64).ok()?;
    Reply::parse(std::str::from_utf8(&buf[..n]).ok()?, fds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fds(n: usize) -> Vec<OwnedFd> {
        (0..n)
            .map(|_| std::fs::File::open("/dev/null").unwrap().into())
            .collect()
    }

    #[test]
    fn an_answer_parses_only_with_its_fds() {
        let dirs = vec![PathBuf::from("/sys/fs/cgroup/pids/sbx/sbx-user.pool1-9")];
        let text = Reply::text(Pid::from_raw(42), (true, true), &dirs);
        let c = Reply::parse(&text, fds(2 + NS_COUNT + 1 + 1 + 1)).unwrap();
        assert_eq!(c.pid.as_raw(), 42);
        assert!(c.outer.is_some() && c.userns.is_some());
        assert_eq!((c.ns.len(), c.cgroup_procs.len()), (NS_COUNT, 1));
        assert_eq!(c.cgroup_dirs, dirs);
        // One fd short or one too many, and the answer is refused (the call builds its own).
        assert!(Reply::parse(&text, fds(2 + NS_COUNT + 2)).is_none());
        assert!(Reply::parse(&text, fds(2 + NS_COUNT + 4)).is_none());
        let plain = Reply::text(Pid::from_raw(7), (false, false), &[]);
        let c = Reply::parse(&plain, fds(2 + NS_COUNT)).unwrap();
        assert!(c.outer.is_none() && c.userns.is_none());
        for bad in [
            "none",
            "ok 1 0 0 0\n",
            "ok 5 2 0 0\n",
            "ok x 0 0 0\n",
            "ok 5 0 0 1\n",
            "ok 5 0 0\n",
            "",
        ] {
            assert!(Reply::parse(bad, fds(2 + NS_COUNT)).is_none(), "{bad:?}");
        }
    }
}
