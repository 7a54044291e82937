//! The whole launch as data, made before any process is created: what the sandbox's pid 1 sets up
//! ([`Sandbox`]) and what the target does between fork and exec ([`Target`]). One-shot calls,
//! persistent keepers and control mode all run from these two plans.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use caps::CapsHashSet;
use nix::sys::signal::SigSet;
use seccompiler::BpfProgram;

use crate::model::{self, Context, IdRange, Namespace, RunAs, SeccompMode};
use crate::plan::env::TargetEnv;
use crate::plan::mounts;
use crate::plan::namespaces::{self, Kind};
use crate::plan::secret_files::Files;
use crate::privilege::{IdMap, Identity, SetuidLaunch};

/// Everything pid 1 of the sandbox does before it forks the target (or, for a persistent
/// context, before it says "ready").
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub kinds: Vec<Kind>,
    pub mounts: Option<mounts::Plan>,
    /// Bring up `lo` in the new network namespace.
    pub loopback: bool,
    /// `net = "private"` with egress or published ports: what the outer process runs for it
    /// (pid 1 binds the proxy's listener inside when `egress` is set).
    pub net: Option<crate::plan::net::Plan>,
    /// The working directory pid 1 enters; `None` with mounts: `/` (setuid mode enters the
    /// caller's directory later, in the target, as the caller).
    pub cwd: Option<Workdir>,
    pub degrade: bool,
    /// Secrets written as files on a private tmpfs (`secrets.files`).
    pub creds: Option<Files>,
    /// Rootless mode: the user namespace's id map, written first by pid 1.
    pub userns: Option<IdMap>,
    /// Inherited fds pid 1 keeps open for the target (`--keep-fd`, `--listen-fd`), sorted.
    pub keep_fds: Vec<RawFd>,
}

impl Sandbox {
    /// What decides a persistent context's namespaces and mounts, as a stable 64-bit FNV-1a hash
    /// of a canonical text (the same on every build and Rust version): a call made with a
    /// different plan must not silently join a keeper built from the old one.
    pub fn fingerprint(&self) -> u64 {
        let mut text = String::new();
        for k in &self.kinds {
            text.push_str(k.name);
            text.push(',');
        }
        text.push('|');
        if let Some(m) = &self.mounts {
            text.push_str(&m.canonical());
            // Who owns the private tmpfs mounts (identity): a keeper made for another owner
            // would give the call a HOME it cannot write. Absent: the text is as before.
            if let Some((uid, gid)) = m.tmpfs_owner {
                text.push_str(&format!("|owner {uid}:{gid}"));
            }
        }
        text.push_str(if self.loopback { "|lo" } else { "|-" });
        if let Some(net) = &self.net {
            text.push_str("|net:");
            text.push_str(&net.canonical());
        }
        fnv1a(text.as_bytes())
    }
}

/// FNV-1a, 64 bit: a stable hash for fingerprints (not for security; the state file holding it is
/// root-only).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

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
    /// The write end of the pipe on which the target's own setup errors reach the outer process
    /// (close-on-exec: gone once the program runs), so that a refusal is reported as one.
    pub errors: Option<RawFd>,
    /// Root mode with `identity`: the target enters a user namespace of its own mapping its ids
    /// onto this host range (its parent writes the maps); `degrade` as the context says.
    pub identity: Option<Mapped>,
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

/// Turn the context into plans: what pid 1 mounts, and what the target drops before exec.
pub fn prepare(
    ctx_name: &str,
    ctx: &Context,
    source: &model::Source,
    program: crate::plan::exec::Program,
    mut env: TargetEnv,
) -> Result<(Sandbox, Target)> {
    let mounts = ctx.has(Namespace::Mount).then(|| {
        let exe = std::env::current_exe().ok();
        let protect: Vec<&Path> = exe.as_deref().into_iter().chain(source.path()).collect();
        mounts::plan(
            &ctx.fs,
            &protect,
            ctx.has(Namespace::Pid),
            ctx.private_dev(),
        )
    });
    let seccomp = match ctx.security.seccomp {
        SeccompMode::Default => Some(crate::plan::seccomp::build(&ctx.security)?),
        SeccompMode::None => None,
    };
    let cwd = match ctx.has(Namespace::Mount) {
        true => Some(Workdir::plan(
            ctx,
            None,
            Some(std::env::current_dir().context("cannot read the current directory")?),
        )),
        false => None,
    };
    let net = crate::plan::net::plan(ctx_name, ctx);
    if net.as_ref().is_some_and(|n| n.egress.is_some()) {
        for (name, value) in crate::plan::net::proxy_env() {
            env.set_var(name, &value);
        }
    }
    let sandbox = Sandbox {
        kinds: namespaces::wanted(ctx),
        mounts,
        loopback: ctx.net.own_namespace(),
        net,
        cwd,
        degrade: ctx.degrade,
        creds: None,
        userns: None,
        keep_fds: Vec::new(),
    };
    let target = Target {
        path: CString::new(program.shown.as_os_str().as_bytes())
            .context("program path contains NUL")?,
        argv: crate::plan::exec::argv(&program.argv)?,
        keep_fds: vec![program.fd.as_raw_fd()],
        program: program.fd,
        env,
        caps: crate::plan::capabilities::kept(&ctx.security),
        no_new_privs: ctx.security.no_new_privs,
        run_as: ctx.security.run_as,
        landlock: crate::plan::landlock_rules::plan(&ctx.security, ctx.degrade),
        seccomp,
        sigmask: SigSet::empty(),
        pass_fds: Vec::new(),
        listen_pid: false,
        drop_to: None,
        chdir_after_drop: None,
        cwd_in_root: None,
        errors: None,
        identity: None,
    };
    Ok((sandbox, target))
}

impl Target {
    /// Renumber the program's handle to `min` or above (passed fds and control mode's ports are
    /// placed on 3.. and must not overwrite it); `keep_fds` becomes `others` (sorted, all below
    /// `min`) and it.
    pub fn move_program_above(&mut self, min: RawFd, others: Vec<RawFd>) -> std::io::Result<()> {
        if self.program.as_raw_fd() < min {
            self.program = crate::sys::dup_cloexec_above(self.program.as_raw_fd(), min)?;
        }
        self.keep_fds = others;
        self.keep_fds.push(self.program.as_raw_fd());
        self.keep_fds.extend(self.errors);
        self.keep_fds.sort_unstable();
        Ok(())
    }

    /// Hand the target the write end of the set-up error pipe (kept through its fd clean-up,
    /// closed by its `exec`).
    pub fn set_errors(&mut self, fd: Option<RawFd>) {
        self.keep_fds.retain(|f| Some(*f) != self.errors);
        self.errors = fd;
        self.keep_fds.extend(fd);
        self.keep_fds.sort_unstable();
    }
}

/// Inherited fds for the target: pid 1 keeps them, the target places them on 3, 4, ... and, for
/// socket activation, fills in LISTEN_PID.
pub fn add_passed_fds(
    sandbox: &mut Sandbox,
    target: &mut Target,
    passed: &crate::plan::fds::Passed,
) -> std::io::Result<()> {
    sandbox.keep_fds = passed.fds.clone();
    sandbox.keep_fds.sort_unstable();
    pass_fds(target, passed)
}

/// The target places `passed` on 3, 4, ... just before exec, and gets their LISTEN_* variables
/// (the caller's are always removed). The program's handle moves above them.
pub fn pass_fds(target: &mut Target, passed: &crate::plan::fds::Passed) -> std::io::Result<()> {
    target.listen_pid = crate::plan::fds::set_env(&mut target.env, passed);
    target.pass_fds = passed.fds.clone();
    let top = 3 + passed.fds.len() as RawFd;
    target.move_program_above(top, (3..top).collect())
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

/// Rootless mode: the sandbox starts in a user namespace mapping the caller to itself.
pub fn add_userns(sandbox: &mut Sandbox, map: Option<IdMap>) {
    if let Some(map) = map {
        sandbox.kinds.insert(0, namespaces::USER);
        sandbox.userns = Some(map);
    }
}

/// Root mode with `identity`: the target gets a user namespace of its own, and the private tmpfs
/// mounts it writes (HOME) belong to its root's host ids.
pub fn add_identity(sandbox: &mut Sandbox, target: &mut Target, range: Option<IdRange>) {
    let Some(range) = range else { return };
    if let Some(m) = &mut sandbox.mounts {
        m.tmpfs_owner = Some((range.uid, range.gid));
    }
    target.identity = Some(Mapped {
        range,
        degrade: sandbox.degrade,
    });
}

/// Setuid mode: the target becomes the caller for good, with no capabilities; it enters the
/// working directory only afterwards, so root's access never resolves a path the caller chose.
/// Private tmpfs mounts (HOME) are given to the caller.
pub fn add_setuid(sandbox: &mut Sandbox, target: &mut Target, s: SetuidLaunch) -> Result<()> {
    if let Some(m) = &mut sandbox.mounts {
        m.tmpfs_owner = Some((s.identity.uid, s.identity.gid));
    }
    target.drop_to = Some(s.identity);
    target.caps = Some(Default::default());
    target.run_as = None;
    target.no_new_privs = true;
    target.chdir_after_drop = sandbox.cwd.take().map(|d| d.to_c()).transpose()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox(mounts: Option<mounts::Plan>, loopback: bool) -> Sandbox {
        Sandbox {
            kinds: vec![namespaces::PID, namespaces::MOUNT],
            mounts,
            loopback,
            net: None,
            cwd: None,
            degrade: false,
            creds: None,
            userns: None,
            keep_fds: Vec::new(),
        }
    }

    #[test]
    fn workdir_falls_back_unless_asked_for() {
        let mut ctx = Context::default();
        ctx.fs.writable = vec![
            model::AbsPath("/workspace".into()),
            model::AbsPath("/home".into()),
        ];
        let here = PathBuf::from("/root/repo");
        let w = Workdir::plan(&ctx, None, Some(here.clone()));
        let want: Vec<PathBuf> = ["/root/repo", "/workspace", "/home", "/"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(w.candidates, want);
        // The caller's directory and /workspace are missing inside: /home is entered.
        let exists = |p: &PathBuf| match p.as_path() == Path::new("/home") {
            true => Ok(()),
            false => Err("missing"),
        };
        let mut entered = Vec::new();
        w.enter(
            |p| {
                entered.push(p.clone());
                exists(p)
            },
            |p| p.display().to_string(),
        )
        .unwrap();
        assert_eq!(entered.last().unwrap(), Path::new("/home"));
        // --cwd: only that, and missing is a refusal naming it.
        let asked = Workdir::plan(&ctx, Some("/nope".into()), Some(here.clone()));
        let e = asked
            .enter(exists, |p| p.display().to_string())
            .unwrap_err();
        assert!(e.to_string().contains("--cwd /nope"), "{e}");
        // --in-workdir: the caller's directory is not a candidate.
        assert_eq!(
            Workdir::plan(&ctx, None, None).candidates[0],
            Path::new("/workspace")
        );
        // A named workdir alone; missing, it is refused by name.
        ctx.workdir = Some(model::AbsPath("/srv/app".into()));
        let named = Workdir::plan(&ctx, None, Some(here));
        assert_eq!(named.candidates.len(), 2);
        let e = named
            .enter(exists, |p| p.display().to_string())
            .unwrap_err();
        assert!(e.to_string().contains("workdir /srv/app"), "{e}");
    }

    #[test]
    fn fingerprint_is_stable_and_sees_every_part() {
        // The value itself is fixed: a keeper recorded by one build is recognised by the next.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        let plan = mounts::plan(&model::FsPolicy::default(), &[], true, false);
        let a = sandbox(Some(plan.clone()), false);
        assert_eq!(
            a.fingerprint(),
            sandbox(Some(plan.clone()), false).fingerprint()
        );
        assert_ne!(
            a.fingerprint(),
            sandbox(Some(plan.clone()), true).fingerprint()
        );
        assert_ne!(a.fingerprint(), sandbox(None, false).fingerprint());
        let mut other = sandbox(Some(plan), false);
        other.kinds.push(namespaces::IPC);
        assert_ne!(a.fingerprint(), other.fingerprint());
        let mut owned = sandbox(a.mounts.clone(), false);
        owned.mounts.as_mut().unwrap().tmpfs_owner = Some((100000, 100000));
        assert_ne!(a.fingerprint(), owned.fingerprint());
    }
}
