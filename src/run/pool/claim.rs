//! A call's side of the pool: ask the server for a prepared sandbox ([`claim`]), and the wire
//! format both sides share ([`Reply`]).

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, UnixAddr};
use nix::unistd::Pid;
use zeroize::Zeroizing;

use crate::run::proxy::bound::CaParts;
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
    /// A context with bound secrets: the CA the server made for this sandbox, whose
    /// certificate its pid 1 wrote into the sandbox's CA bundle (key and certificate only).
    pub ca: Option<CaParts>,
}

/// The server's answer to a claim, as text: `ok PID NET USER CGROUPS CA` then one cgroup
/// directory a line, then (`CA` 1) the CA's key and certificate in hex on one line; the fds go
/// with it in [`Reply::parse`]'s order. `none` when it has no such sandbox.
pub struct Reply;

impl Reply {
    pub fn text(
        pid: Pid,
        (net, user): (bool, bool),
        dirs: &[PathBuf],
        ca: Option<&CaParts>,
    ) -> Zeroizing<String> {
        // Room for all of it at once: no copy of the CA's key is left behind by a reallocation.
        let room = 64
            + dirs.iter().map(|d| d.as_os_str().len() + 1).sum::<usize>()
            + ca.map_or(0, |c| 2 * (c.key.len() + c.cert.len()) + 2);
        let mut t = Zeroizing::new(String::with_capacity(room));
        t.push_str(&format!(
            "ok {} {} {} {} {}\n",
            pid.as_raw(),
            u8::from(net),
            u8::from(user),
            dirs.len(),
            u8::from(ca.is_some())
        ));
        for d in dirs {
            t.push_str(&d.to_string_lossy());
            t.push('\n');
        }
        if let Some(ca) = ca {
            hex_into(&mut t, &ca.key);
            t.push(' ');
            hex_into(&mut t, &ca.cert);
            t.push('\n');
        }
        t
    }

    /// Parse an answer with its fds (ctl, pidfd, the namespaces, the bridge, the user
    /// namespace, the cgroups).
    pub fn parse(text: &str, fds: Vec<OwnedFd>) -> Option<Claimed> {
        let mut lines = text.lines();
        let head: Vec<&str> = lines.next()?.split(' ').collect();
        let ["ok", pid, net, user, n, ca] = head.as_slice() else {
            return None;
        };
        let pid: i32 = pid.parse().ok().filter(|p| *p > 1)?;
        let flag = |f: &str| match f {
            "0" => Some(false),
            "1" => Some(true),
            _ => None,
        };
        let (net, user, has_ca) = (flag(net)?, flag(user)?, flag(ca)?);
        let n: usize = n.parse().ok()?;
        let dirs: Vec<PathBuf> = lines.by_ref().take(n).map(PathBuf::from).collect();
        let ca = match has_ca {
            true => {
                let (key, cert) = lines.next()?.split_once(' ')?;
                Some(CaParts {
                    key: unhex(key)?,
                    cert: unhex(cert)?.to_vec(),
                    pem: Vec::new(),
                })
            }
            false => None,
        };
        if lines.next().is_some() {
            return None;
        }
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
            ca,
        })
    }
}

fn hex_into(t: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        t.push(char::from(HEX[usize::from(b >> 4)]));
        t.push(char::from(HEX[usize::from(b & 15)]));
    }
}

/// Lowercase hex (non-empty) to bytes, wiped when dropped.
fn unhex(s: &str) -> Option<Zeroizing<Vec<u8>>> {
    if s.is_empty() || !s.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = Zeroizing::new(Vec::with_capacity(s.len() / 2));
    for pair in s.as_bytes().chunks(2) {
        out.push(digit(pair[0])? << 4 | digit(pair[1])?);
    }
    Some(out)
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
    // Room for the cgroup directories and a CA whose certificate names many bound hosts.
    let mut buf = Zeroizing::new(vec![0u8; 16384]);
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
        let ca = CaParts {
            key: Zeroizing::new(vec![0, 1, 0xab]),
            cert: vec![0xff, 0x10],
            pem: b"not sent".to_vec(),
        };
        let text = Reply::text(Pid::from_raw(42), (true, true), &dirs, Some(&ca));
        // Written in the room reserved for it (never moved, so never copied, while it grew).
        assert!(text.len() <= text.capacity() && text.capacity() < text.len() + 64);
        let c = Reply::parse(&text, fds(2 + NS_COUNT + 1 + 1 + 1)).unwrap();
        assert_eq!(c.pid.as_raw(), 42);
        assert!(c.outer.is_some() && c.userns.is_some());
        assert_eq!((c.ns.len(), c.cgroup_procs.len()), (NS_COUNT, 1));
        assert_eq!(c.cgroup_dirs, dirs);
        let got = c.ca.unwrap();
        assert_eq!(
            (&got.key[..], &got.cert[..]),
            (&[0, 1, 0xab][..], &[0xff, 0x10][..])
        );
        assert!(got.pem.is_empty());
        // One fd short or one too many, and the answer is refused (the call builds its own).
        assert!(Reply::parse(&text, fds(2 + NS_COUNT + 2)).is_none());
        assert!(Reply::parse(&text, fds(2 + NS_COUNT + 4)).is_none());
        let plain = Reply::text(Pid::from_raw(7), (false, false), &[], None);
        let c = Reply::parse(&plain, fds(2 + NS_COUNT)).unwrap();
        assert!(c.outer.is_none() && c.userns.is_none() && c.ca.is_none());
        for bad in [
            "none",
            "ok 1 0 0 0 0\n",
            "ok 5 2 0 0 0\n",
            "ok x 0 0 0 0\n",
            "ok 5 0 0 1 0\n",
            "ok 5 0 0 0\n",
            "ok 5 0 0 0 1\n",
            "ok 5 0 0 0 1\nab\n",
            "ok 5 0 0 0 1\nab c\n",
            "ok 5 0 0 0 1\nAB 01\n",
            "ok 5 0 0 0 0\nextra\n",
            "",
        ] {
            assert!(Reply::parse(bad, fds(2 + NS_COUNT)).is_none(), "{bad:?}");
        }
    }
}
