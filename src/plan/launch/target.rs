//! What the target does between fork and exec ([`Target`], its steps in order:
//! [`crate::run::confine::TARGET_ORDER`]), where it starts ([`Workdir`]), and who owns the secret
//! files it reads.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use caps::CapsHashSet;
use nix::sys::signal::SigSet;
use seccompiler::BpfProgram;

use crate::model::{Context, IdRange, RunAs};
use crate::plan::env::TargetEnv;
use crate::plan::fds::Passed;
use crate::privilege::{IdMap, Identity, SetuidLaunch};

/// Everything the target does between fork and exec, prepared in advance.
pub struct Target {
    /// The path as found, for messages; what runs is `program`.
    pub path: CString,
    /// The checked program, opened once (`O_PATH`, close-on-exec; kept through the fd cleanup
    /// and listed in `keep_fds`): the target executes it with `execveat`.
    pub program: OwnedFd,
    pub argv: Vec<CString>,
    pub env: TargetEnv,
    /// Capabilities kept; `None` leaves them as they are.
    pub caps: Option<CapsHashSet>,
    pub no_new_privs: bool,
    /// User and group to switch to (after the bounding set is cut).
    pub run_as: Option<RunAs>,
    pub landlock: Option<crate::plan::landlock_rules::Plan>,
    pub seccomp: Option<BpfProgram>,
    /// Signal mask to restore (the caller's), since sbx-exec blocks signals it forwards.
    pub sigmask: SigSet,
    /// Fds besides 0, 1, 2 that reach the target (sorted).
    pub keep_fds: Vec<RawFd>,
    /// Inherited fds placed on 3, 4, ... in this order just before exec (`--keep-fd`).
    pub pass_fds: Vec<RawFd>,
    /// Fill in LISTEN_PID with the target's own pid (as it sees it) just before exec.
    pub listen_pid: bool,
    /// Setuid mode: become this user for good (after cutting the whole bounding set).
    pub drop_to: Option<Identity>,
    /// Setuid mode: the working directory, entered as the caller after `drop_to`.
    pub chdir_after_drop: Option<Workdir<CString>>,
    /// A join of a persistent context: the working directory, entered after the capabilities are
    /// dropped and resolved inside the context's root without magic links (a link through
    /// `/proc/PID/root` planted by code in the context leads nowhere).
    pub cwd_in_root: Option<Workdir<CString>>,
    /// Root mode with `identity`: the target enters a user namespace of its own mapping its ids
    /// onto this host range (its parent writes the maps); `degrade` as the context says.
    pub identity: Option<Mapped>,
}

impl std::fmt::Debug for Target {
    /// What it runs and drops; the environment by names only (values may be secrets).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("path", &self.path)
            .field("program", &self.program.as_raw_fd())
            .field("argv", &self.argv.len())
            .field("env", &self.env)
            .field("caps", &self.caps)
            .field("no_new_privs", &self.no_new_privs)
            .field("run_as", &self.run_as)
            .field("landlock", &self.landlock)
            .field("seccomp", &self.seccomp.as_ref().map(Vec::len))
            .field("keep_fds", &self.keep_fds)
            .field("pass_fds", &self.pass_fds)
            .field("listen_pid", &self.listen_pid)
            .field("drop_to", &self.drop_to)
            .field("chdir_after_drop", &self.chdir_after_drop)
            .field("cwd_in_root", &self.cwd_in_root)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// Where the command starts: the first of `candidates` that exists inside the context. With
/// `requested` (`--cwd`) only the first counts, and its absence is a refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workdir<P = PathBuf> {
    pub candidates: Vec<P>,
    pub requested: bool,
    /// The policy named the workdir (`workdir`): its absence is a refusal too.
    pub named: bool,
}

impl Workdir {
    /// The plan: `--cwd DIR` (made absolute) alone; else the caller's directory unless
    /// `--in-workdir`, then the context's workdir candidates.
    pub fn plan(ctx: &Context, requested: Option<PathBuf>, caller: Option<PathBuf>) -> Workdir {
        if let Some(dir) = requested {
            return Workdir {
                candidates: vec![dir],
                requested: true,
                named: false,
            };
        }
        Workdir {
            candidates: caller.into_iter().chain(ctx.workdir_candidates()).collect(),
            requested: false,
            named: ctx.workdir.is_some(),
        }
    }

    /// The same, as C strings for the target (which allocates nothing after the fork).
    pub fn to_c(&self) -> Result<Workdir<CString>> {
        let candidates = self
            .candidates
            .iter()
            .map(|p| CString::new(p.as_os_str().as_bytes()))
            .collect::<std::result::Result<_, _>>()
            .context("the working directory contains a NUL byte")?;
        Ok(Workdir {
            candidates,
            requested: self.requested,
            named: self.named,
        })
    }
}

impl<P> Workdir<P> {
    /// Enter the first candidate `enter` accepts. `Err` names the directory the caller asked for
    /// (`--cwd`) or the policy's `workdir`, with the last error.
    pub fn enter<E: std::fmt::Display>(
        &self,
        mut enter: impl FnMut(&P) -> std::result::Result<(), E>,
        show: impl Fn(&P) -> String,
    ) -> Result<()> {
        let mut last = None;
        for (i, dir) in self.candidates.iter().enumerate() {
            match enter(dir) {
                Ok(()) => return Ok(()),
                Err(e) if self.requested => {
                    anyhow::bail!(
                        "--cwd {}: no such directory inside the context, or it cannot be entered there ({e}); \
                         name a directory the context has (its workdir, a writable area such as /workspace), \
                         or leave --cwd out to start in the context's workdir",
                        show(dir)
                    )
                }
                Err(e) => last = Some((i, e)),
            }
        }
        match (last, self.candidates.last()) {
            (Some((_, e)), Some(dir)) if self.named => anyhow::bail!(
                "the context's workdir {} does not exist inside it, or cannot be entered ({e}); \
                 create it, or change `workdir` in the policy",
                show(dir)
            ),
            (Some((_, e)), Some(dir)) => anyhow::bail!(
                "no working directory can be entered inside the context (the last tried, {}: {e})",
                show(dir)
            ),
            _ => Ok(()),
        }
    }
}

/// The target's user namespace (`identity`): the host range, and whether a kernel that refuses
/// the namespace degrades to running as the range's host uid without capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapped {
    pub range: IdRange,
    pub degrade: bool,
}

impl Target {
    /// A target that runs `program` with `argv` and `env` and changes nothing else (control
    /// mode's services: sbx-exec itself again, which confines them).
    pub fn plain(
        path: CString,
        program: OwnedFd,
        argv: Vec<CString>,
        env: TargetEnv,
        sigmask: SigSet,
    ) -> Target {
        Target {
            keep_fds: vec![program.as_raw_fd()],
            path,
            program,
            argv,
            env,
            caps: None,
            no_new_privs: false,
            run_as: None,
            landlock: None,
            seccomp: None,
            sigmask,
            pass_fds: Vec::new(),
            listen_pid: false,
            drop_to: None,
            chdir_after_drop: None,
            cwd_in_root: None,
            identity: None,
        }
    }

    /// This target placing `passed` on 3, 4, ... just before exec, with their LISTEN_*
    /// variables (the caller's are always removed); it keeps those and its program's handle,
    /// which must lie above them (the launch opens it there; control mode moves it).
    pub fn passing(mut self, passed: &Passed) -> Target {
        self.listen_pid = crate::plan::fds::set_env(&mut self.env, passed);
        self.pass_fds = passed.fds.clone();
        let top = 3 + passed.fds.len() as RawFd;
        debug_assert!(self.program.as_raw_fd() >= top);
        self.keep_fds = (3..top).collect();
        self.keep_fds.push(self.program.as_raw_fd());
        self.keep_fds.sort_unstable();
        self
    }
}

/// Who owns secret files: the setuid caller, the rootless caller (mapped to itself; uid 0 does
/// not exist in its user namespace), the host ids of the target under `identity`, or
/// `security.run_as`.
pub fn files_owner(
    setuid: Option<&SetuidLaunch>,
    userns: Option<&IdMap>,
    identity: Option<&IdRange>,
    ctx: &Context,
) -> Option<RunAs> {
    if let Some(range) = identity {
        let inside = ctx.security.run_as.unwrap_or(RunAs { uid: 0, gid: 0 });
        return Some(RunAs {
            uid: range.uid + inside.uid,
            gid: range.gid + inside.gid,
        });
    }
    match (setuid, userns) {
        (Some(s), _) => Some(RunAs {
            uid: s.identity.uid,
            gid: s.identity.gid,
        }),
        (None, Some(map)) => Some(RunAs {
            uid: map.uid,
            gid: map.gid,
        }),
        (None, None) => ctx.security.run_as,
    }
}
