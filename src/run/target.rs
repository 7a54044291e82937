//! The target: everything between the fork and the exec, in this order: a new session, only the
//! fds allowed, signals reset, (setuid) become the caller and enter its directory, capabilities,
//! `no_new_privs`, Landlock, seccomp, exec. Prepared in advance as a [`Target`] plan, so nothing
//! here allocates but the error path.

use nix::sys::signal::{sigprocmask, SigmaskHow, Signal};

use std::os::fd::{AsRawFd, IntoRawFd, RawFd};

use anyhow::Result;

use crate::error::{EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND};
use crate::plan::launch::Target;
use crate::sys;

/// What the target's own parent hands it besides the plan: the identity handshake's ends
/// ([`crate::run::apply::identity::Handshake`]), for a join the read end of a pipe its parent
/// (the joiner) holds open for its life, and the write end of the pipe on which its own set-up
/// errors reach the outer process (close-on-exec: gone once the program runs), so that a refusal
/// is reported as one ([`crate::run::status::SetupErrors`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Links {
    pub handshake: Option<(RawFd, RawFd)>,
    pub parent_alive: Option<RawFd>,
    pub errors: Option<RawFd>,
}

impl Target {
    /// Drop to the target's privileges and exec it. Never returns: on failure it reports and exits
    /// 125 (setup), 126 or 127 (exec).
    pub fn exec(&self) -> ! {
        self.exec_with(Links::default())
    }

    /// [`Target::exec`] with the links to its parent.
    pub fn exec_with(&self, links: Links) -> ! {
        if let Err(e) = self.prepare(links) {
            let msg = format!("{e:#}");
            eprintln!("sbx-exec: {msg}");
            crate::run::status::tell_setup_error(links.errors, &msg);
            sys::exit_now(crate::error::EXIT_SBX);
        }
        let argv: Vec<*const libc::c_char> = self
            .argv
            .iter()
            .map(|a| a.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        let mut envp = self.env.as_ptrs();
        // LISTEN_PID is this process's pid as the target sees it (in a pid namespace, not the
        // number sbx-exec sees), written into a stack buffer: nothing allocated after the fork.
        let mut listen_pid = [0u8; 32];
        if self.listen_pid {
            if let Some(i) = self.env.position("LISTEN_PID") {
                pid_entry(&mut listen_pid, std::process::id());
                envp[i] = listen_pid.as_ptr().cast();
            }
        }
        // The handle checked before the launch, not the path: a link swapped since runs nothing
        // else. (Close-on-exec: it is gone once the program runs.)
        let err = sys::execveat_fd(self.program.as_raw_fd(), &argv, &envp);
        let code = match err.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => EXIT_NOT_FOUND,
            _ => EXIT_NOT_EXECUTABLE,
        };
        eprintln!(
            "sbx-exec: cannot execute {}: {err}",
            self.path.to_string_lossy()
        );
        sys::exit_now(code)
    }

    fn prepare(&self, links: Links) -> Result<()> {
        use anyhow::Context as _;
        // A new session: no controlling terminal to push keystrokes into (TIOCSTI).
        nix::unistd::setsid().context("cannot start a new session")?;
        // The links to the parent, above the numbers the kept fds go to (close-on-exec copies).
        let top = 3 + self.pass_fds.len() as RawFd;
        let lift = |fd: RawFd| -> Result<RawFd> {
            match fd < top {
                true => Ok(sys::dup_cloexec_above(fd, top)
                    .context("cannot keep the parent's pipes")?
                    .into_raw_fd()),
                false => Ok(fd),
            }
        };
        let handshake = match links.handshake {
            Some((r, g)) => Some((lift(r)?, lift(g)?)),
            None => None,
        };
        let alive = links.parent_alive.map(lift).transpose()?;
        let extra = [
            handshake.map_or(-1, |h| h.0),
            handshake.map_or(-1, |h| h.1),
            alive.unwrap_or(-1),
        ];
        // Kept fds move to 3, 4, ...; only they and 0, 1, 2 reach the target.
        if !self.pass_fds.is_empty() {
            let keep = [
                self.program.as_raw_fd(),
                links.errors.unwrap_or(-1),
                extra[0],
                extra[1],
                extra[2],
            ];
            sys::arrange_fds(&self.pass_fds, &keep)
                .context("cannot pass the kept file descriptors")?;
        }
        let mut keep_fds = self.keep_fds.clone();
        keep_fds.extend(links.errors);
        keep_fds.extend(extra.iter().copied().filter(|f| *f >= 0));
        keep_fds.sort_unstable();
        sys::close_fds_from(3, &keep_fds, false)
            .context("cannot close inherited file descriptors")?;
        // Rust ignores SIGPIPE for itself; the target gets the default back.
        sys::signal_default(Signal::SIGPIPE).context("cannot reset SIGPIPE")?;
        sigprocmask(SigmaskHow::SIG_SETMASK, Some(&self.sigmask), None)
            .context("cannot restore the signal mask")?;
        // `identity`: a user namespace of its own, mapped by the parent (before the fds are
        // closed: nothing here needs one). Refused by the kernel with `degrade`: the range's host
        // ids, no capabilities.
        let no_caps = caps::CapsHashSet::new();
        let (mut keep, mut run_as) = (self.caps.as_ref(), self.run_as);
        if let Some(m) = &self.identity {
            let ends = handshake.context("identity without its handshake with the parent")?;
            if !crate::run::apply::identity::enter(m.degrade, ends)? {
                let inside = self
                    .run_as
                    .unwrap_or(crate::model::RunAs { uid: 0, gid: 0 });
                run_as = Some(crate::model::RunAs {
                    uid: m.range.uid + inside.uid,
                    gid: m.range.gid + inside.gid,
                });
                keep = Some(&no_caps);
            }
        }
        if let Some(id) = &self.drop_to {
            crate::privilege::drop::drop_privs(id)?;
        }
        if let Some(dir) = &self.chdir_after_drop {
            dir.enter(
                |d| nix::unistd::chdir(d.as_c_str()),
                |d| d.to_string_lossy().into_owned(),
            )?;
        }
        if let Some(keep) = keep {
            crate::run::apply::capabilities::drop_to(keep, self.no_new_privs, run_as)?;
        }
        if self.no_new_privs {
            crate::run::apply::capabilities::set_no_new_privs()?;
        }
        // A change of uid (identity, run_as, the setuid caller) clears the parent-death signal:
        // armed again now that the ids are final, then the parent checked (it may have died in
        // between), so the command never outlives its caller.
        if let Some(fd) = alive {
            let here = sys::die_with_parent(sys::borrow_raw(fd))
                .context("cannot set the parent-death signal")?;
            if !here {
                anyhow::bail!("the caller is gone; the command does not start");
            }
        }
        if let Some(dir) = &self.cwd_in_root {
            // Resolved inside the context's root: a link on the way that leaves it fails.
            dir.enter(
                |d| sys::chdir_in_root(d),
                |d| d.to_string_lossy().into_owned(),
            )?;
        }
        if let Some(plan) = &self.landlock {
            crate::run::apply::landlock::install(plan)?;
        }
        if let Some(prog) = &self.seccomp {
            crate::run::apply::seccomp::install(prog)?;
        }
        Ok(())
    }
}

/// Write `LISTEN_PID=<pid>\0` into `buf` (large enough for any pid).
fn pid_entry(buf: &mut [u8; 32], pid: u32) {
    const NAME: &[u8] = b"LISTEN_PID=";
    buf[..NAME.len()].copy_from_slice(NAME);
    let mut digits = [0u8; 10];
    let (mut n, mut len) = (pid, 0);
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        buf[NAME.len() + i] = digits[len - 1 - i];
    }
    buf[NAME.len() + len] = 0;
}

#[cfg(test)]
mod tests {
    #[test]
    fn pid_entry_is_a_c_string() {
        for (pid, want) in [(2, "LISTEN_PID=2"), (4_194_304, "LISTEN_PID=4194304")] {
            let mut buf = [0xffu8; 32];
            super::pid_entry(&mut buf, pid);
            let got = std::ffi::CStr::from_bytes_until_nul(&buf).unwrap();
            assert_eq!(got.to_str().unwrap(), want);
        }
    }
}
