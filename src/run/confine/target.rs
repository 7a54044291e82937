//! The target: everything between the fork and the exec, [`super::TARGET_ORDER`], run by
//! [`run`]. Prepared in advance as a [`Target`] plan, so nothing here allocates but the error
//! path and the exec's argument arrays.

use std::os::fd::{AsRawFd, RawFd};

use anyhow::{Context as _, Result};

use super::{target_steps, Host, Kernel, TargetStep};
use crate::error::{EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND};
use crate::model::RunAs;
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

/// Why the target did not become its program.
#[derive(Debug)]
pub enum Failed {
    /// A step refused (125).
    Setup(anyhow::Error),
    /// The exec itself (126, or 127 when not found).
    Exec(std::io::Error),
}

impl Target {
    /// Drop to the target's privileges and exec it. Never returns: on failure it reports and exits
    /// 125 (setup), 126 or 127 (exec).
    pub fn exec(&self) -> ! {
        self.exec_with(Links::default())
    }

    /// [`Target::exec`] with the links to its parent.
    pub fn exec_with(&self, links: Links) -> ! {
        match run(&Host, self, links) {
            Failed::Setup(e) => {
                let msg = format!("{e:#}");
                eprintln!("sbx-exec: {msg}");
                crate::run::status::tell_setup_error(links.errors, &msg);
                sys::exit_now(crate::error::EXIT_SBX)
            }
            Failed::Exec(err) => {
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
        }
    }
}

/// What the steps hand on to the later ones: the parent's pipes once lifted, and whom the target
/// becomes when its identity degrades (`none`: the empty set it keeps then).
struct State<'a> {
    handshake: Option<(RawFd, RawFd)>,
    alive: Option<RawFd>,
    keep: Option<&'a caps::CapsHashSet>,
    run_as: Option<RunAs>,
    none: &'a caps::CapsHashSet,
}

/// Run the target's steps ([`target_steps`]) in order, the last its exec. Returns only if it
/// failed.
pub fn run<K: Kernel>(k: &K, t: &Target, links: Links) -> Failed {
    let none = caps::CapsHashSet::new();
    let mut state = State {
        handshake: links.handshake,
        alive: links.parent_alive,
        keep: t.caps.as_ref(),
        run_as: t.run_as,
        none: &none,
    };
    for step in target_steps(t, &links) {
        if step == TargetStep::Exec {
            return Failed::Exec(exec(k, t));
        }
        if let Err(e) = one(k, t, &links, &mut state, step) {
            return Failed::Setup(e);
        }
    }
    Failed::Setup(anyhow::anyhow!("the target's steps end without an exec"))
}

/// One step.
fn one<'a, K: Kernel>(
    k: &K,
    t: &'a Target,
    links: &Links,
    st: &mut State<'a>,
    step: TargetStep,
) -> Result<()> {
    match step {
        TargetStep::NewSession => k.new_session(),
        TargetStep::LiftLinks | TargetStep::PassFds | TargetStep::CloseFds => {
            fds(k, t, links, st, step)
        }
        TargetStep::ResetSignals => k.reset_signals(&t.sigmask),
        TargetStep::UserNamespace => user_namespace(k, t, st),
        TargetStep::BecomeCaller => match &t.drop_to {
            Some(id) => k.become_for_good(id),
            None => Ok(()),
        },
        TargetStep::CallerWorkdir => match &t.chdir_after_drop {
            Some(dir) => dir.enter(|d| k.chdir(d), |d| d.to_string_lossy().into_owned()),
            None => Ok(()),
        },
        TargetStep::Capabilities => match st.keep {
            Some(keep) => k.capabilities(keep, t.no_new_privs, st.run_as),
            None => Ok(()),
        },
        TargetStep::NoNewPrivs => k.no_new_privs(),
        TargetStep::ParentDeath => match st.alive {
            // A change of uid (identity, run_as, the setuid caller) clears the parent-death
            // signal: armed again now that the ids are final, then the parent checked (it may
            // have died in between), so the command never outlives its caller.
            Some(fd) if !k.die_with_parent(fd)? => {
                anyhow::bail!("the caller is gone; the command does not start")
            }
            _ => Ok(()),
        },
        TargetStep::WorkdirInRoot => match &t.cwd_in_root {
            // Resolved inside the context's root: a link on the way that leaves it fails.
            Some(dir) => dir.enter(|d| k.chdir_in_root(d), |d| d.to_string_lossy().into_owned()),
            None => Ok(()),
        },
        TargetStep::Landlock => t.landlock.as_ref().map_or(Ok(()), |p| k.landlock(p)),
        TargetStep::Seccomp => t.seccomp.as_ref().map_or(Ok(()), |p| k.seccomp(p)),
        TargetStep::Exec => unreachable!("run() execs"),
    }
}

/// The fd steps: the parent's pipes lifted above where the kept fds go (close-on-exec copies),
/// the kept fds placed on 3, 4, ..., every other fd closed.
fn fds<K: Kernel>(
    k: &K,
    t: &Target,
    links: &Links,
    st: &mut State,
    step: TargetStep,
) -> Result<()> {
    let top = 3 + t.pass_fds.len() as RawFd;
    let h = st.handshake;
    match step {
        TargetStep::LiftLinks => {
            let lift = |fd: RawFd| match fd < top {
                true => k.dup_above(fd, top),
                false => Ok(fd),
            };
            st.handshake = match h {
                Some((r, g)) => Some((lift(r)?, lift(g)?)),
                None => None,
            };
            st.alive = st.alive.map(lift).transpose()?;
            Ok(())
        }
        TargetStep::PassFds => {
            let keep = [
                t.program.as_raw_fd(),
                links.errors.unwrap_or(-1),
                h.map_or(-1, |h| h.0),
                h.map_or(-1, |h| h.1),
                st.alive.unwrap_or(-1),
            ];
            k.arrange_fds(&t.pass_fds, &keep)
        }
        _ => {
            let extra = [h.map(|h| h.0), h.map(|h| h.1), st.alive];
            let mut keep = t.keep_fds.clone();
            keep.extend(links.errors);
            keep.extend(extra.into_iter().flatten());
            keep.sort_unstable();
            k.close_fds_from(3, &keep)
        }
    }
}

/// `identity`: its own user namespace, mapped by the parent; refused by the kernel with
/// `degrade`, the range's host ids and no capabilities instead.
fn user_namespace<'a, K: Kernel>(k: &K, t: &'a Target, st: &mut State<'a>) -> Result<()> {
    let m = t.identity.as_ref().context("identity without its plan")?;
    let ends = st
        .handshake
        .context("identity without its handshake with the parent")?;
    if !k.user_namespace(m.degrade, ends)? {
        let inside = t.run_as.unwrap_or(RunAs { uid: 0, gid: 0 });
        st.run_as = Some(RunAs {
            uid: m.range.uid + inside.uid,
            gid: m.range.gid + inside.gid,
        });
        st.keep = Some(st.none);
    }
    Ok(())
}

/// The last step: the handle checked before the launch is executed, not the path (a link swapped
/// since runs nothing else; close-on-exec, it is gone once the program runs). Returns the error.
fn exec<K: Kernel>(k: &K, t: &Target) -> std::io::Error {
    let argv: Vec<*const libc::c_char> = t
        .argv
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let mut envp = t.env.as_ptrs();
    // LISTEN_PID is this process's pid as the target sees it (in a pid namespace, not the
    // number sbx-exec sees), written into a stack buffer: nothing allocated after the fork.
    let mut listen_pid = [0u8; 32];
    if t.listen_pid {
        if let Some(i) = t.env.position("LISTEN_PID") {
            pid_entry(&mut listen_pid, std::process::id());
            envp[i] = listen_pid.as_ptr().cast();
        }
    }
    k.execveat(t.program.as_raw_fd(), &argv, &envp)
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
