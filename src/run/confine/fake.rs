//! A recording [`Kernel`] for the tests: every call in one sequence (youki's test syscall keeps
//! one list per call; one sequence is what an order test needs), with the arguments that matter,
//! answering as a kernel that grants everything would, except where a test says otherwise.

use std::cell::{Cell, RefCell};
use std::ffi::CStr;
use std::os::fd::{OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use caps::CapsHashSet;
use nix::sys::signal::SigSet;
use seccompiler::BpfProgram;

use super::Kernel;
use crate::model::RunAs;
use crate::plan::landlock_rules::Plan as Landlock;
use crate::plan::mounts::Plan as Mounts;
use crate::plan::net::Plan as Net;
use crate::plan::secret_files::Files;
use crate::privilege::{IdMap, Identity};

/// One call, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    NewSession,
    CloseFdsFrom(RawFd, Vec<RawFd>),
    JoinCgroup(usize),
    IdMaps(u32, u32),
    DieWithParent(RawFd),
    SetName(String),
    OomScoreAdj(String),
    NonDumpable,
    SecretMountPoint,
    Mounts(usize),
    SecretFiles(usize),
    LoopbackUp,
    HandOutNetwork(RawFd),
    ChdirPath(PathBuf),
    DetachStdio,
    DupAbove(RawFd, RawFd),
    ArrangeFds(Vec<RawFd>, Vec<RawFd>),
    ResetSignals,
    UserNamespace {
        degrade: bool,
    },
    BecomeForGood(u32, u32),
    Chdir(String),
    Capabilities {
        kept: usize,
        no_new_privs: bool,
        run_as: Option<(u32, u32)>,
    },
    NoNewPrivs,
    ChdirInRoot(String),
    Landlock,
    Seccomp(usize),
    Execveat(RawFd, usize),
}

impl Call {
    /// The call's name, as [`Recorder::failing`] takes it.
    pub fn name(&self) -> &'static str {
        match self {
            Call::NewSession => "new_session",
            Call::CloseFdsFrom(..) => "close_fds_from",
            Call::JoinCgroup(_) => "join_cgroup",
            Call::IdMaps(..) => "write_id_maps",
            Call::DieWithParent(_) => "die_with_parent",
            Call::SetName(_) => "set_name",
            Call::OomScoreAdj(_) => "oom_score_adj",
            Call::NonDumpable => "non_dumpable",
            Call::SecretMountPoint => "secret_mount_point",
            Call::Mounts(_) => "mounts",
            Call::SecretFiles(_) => "secret_files",
            Call::LoopbackUp => "loopback_up",
            Call::HandOutNetwork(_) => "hand_out_network",
            Call::ChdirPath(_) => "chdir_path",
            Call::DetachStdio => "detach_stdio",
            Call::DupAbove(..) => "dup_above",
            Call::ArrangeFds(..) => "arrange_fds",
            Call::ResetSignals => "reset_signals",
            Call::UserNamespace { .. } => "user_namespace",
            Call::BecomeForGood(..) => "become_for_good",
            Call::Chdir(_) => "chdir",
            Call::Capabilities { .. } => "capabilities",
            Call::NoNewPrivs => "no_new_privs",
            Call::ChdirInRoot(_) => "chdir_in_root",
            Call::Landlock => "landlock",
            Call::Seccomp(_) => "seccomp",
            Call::Execveat(..) => "execveat",
        }
    }
}

/// The recording kernel.
#[derive(Debug)]
pub struct Recorder {
    pub calls: RefCell<Vec<Call>>,
    /// The kernel grants the identity's user namespace (else it refuses it).
    pub userns: bool,
    /// The parent is still there when asked.
    pub parent: bool,
    /// This call fails (by name).
    pub failing: Option<&'static str>,
    pub next_fd: Cell<RawFd>,
}

impl Default for Recorder {
    fn default() -> Recorder {
        Recorder {
            calls: RefCell::new(Vec::new()),
            userns: true,
            parent: true,
            failing: None,
            next_fd: Cell::new(50),
        }
    }
}

impl Recorder {
    pub fn calls(&self) -> Vec<Call> {
        self.calls.borrow().clone()
    }

    fn record(&self, call: Call) -> Result<()> {
        let name = call.name();
        self.calls.borrow_mut().push(call);
        if self.failing == Some(name) {
            bail!("{name} failed (as the test asked)");
        }
        Ok(())
    }
}

fn text(s: &CStr) -> String {
    s.to_string_lossy().into_owned()
}

impl Kernel for Recorder {
    fn new_session(&self) -> Result<()> {
        self.record(Call::NewSession)
    }
    fn close_fds_from(&self, first: RawFd, keep: &[RawFd]) -> Result<()> {
        self.record(Call::CloseFdsFrom(first, keep.to_vec()))
    }
    fn join_cgroup(&self, procs: &[OwnedFd]) -> Result<()> {
        self.record(Call::JoinCgroup(procs.len()))
    }
    fn write_id_maps(&self, map: &IdMap) -> Result<()> {
        self.record(Call::IdMaps(map.uid, map.gid))
    }
    fn die_with_parent(&self, alive: RawFd) -> Result<bool> {
        self.record(Call::DieWithParent(alive))?;
        Ok(self.parent)
    }
    fn set_name(&self, name: &CStr) {
        let _ = self.record(Call::SetName(text(name)));
    }
    fn oom_score_adj(&self, value: &[u8]) -> std::io::Result<()> {
        let v = String::from_utf8_lossy(value).into_owned();
        self.record(Call::OomScoreAdj(v))
            .map_err(std::io::Error::other)
    }
    fn non_dumpable(&self) -> Result<()> {
        self.record(Call::NonDumpable)
    }
    fn secret_mount_point(&self) -> Result<()> {
        self.record(Call::SecretMountPoint)
    }
    fn mounts(&self, plan: &Mounts, _degrade: bool) -> Result<()> {
        self.record(Call::Mounts(plan.steps.len()))
    }
    fn secret_files(&self, files: &Files) -> Result<()> {
        self.record(Call::SecretFiles(
            files.entries.len() + usize::from(files.ca.is_some()),
        ))
    }
    fn loopback_up(&self) -> Result<()> {
        self.record(Call::LoopbackUp)
    }
    fn hand_out_network(&self, sock: RawFd, _plan: &Net) -> Result<()> {
        self.record(Call::HandOutNetwork(sock))
    }
    fn chdir_path(&self, dir: &Path) -> std::io::Result<()> {
        self.record(Call::ChdirPath(dir.to_path_buf()))
            .map_err(std::io::Error::other)
    }
    fn detach_stdio(&self) -> Result<()> {
        self.record(Call::DetachStdio)
    }
    fn dup_above(&self, fd: RawFd, min: RawFd) -> Result<RawFd> {
        self.record(Call::DupAbove(fd, min))?;
        let n = self.next_fd.get().max(min);
        self.next_fd.set(n + 1);
        Ok(n)
    }
    fn arrange_fds(&self, fds: &[RawFd], keep: &[RawFd]) -> Result<()> {
        self.record(Call::ArrangeFds(fds.to_vec(), keep.to_vec()))
    }
    fn reset_signals(&self, _mask: &SigSet) -> Result<()> {
        self.record(Call::ResetSignals)
    }
    fn user_namespace(&self, degrade: bool, _ends: (RawFd, RawFd)) -> Result<bool> {
        self.record(Call::UserNamespace { degrade })?;
        if !self.userns && !degrade {
            bail!("cannot create the user namespace that identity asks for");
        }
        Ok(self.userns)
    }
    fn become_for_good(&self, id: &Identity) -> Result<()> {
        self.record(Call::BecomeForGood(id.uid, id.gid))
    }
    fn chdir(&self, dir: &CStr) -> nix::Result<()> {
        self.record(Call::Chdir(text(dir)))
            .map_err(|_| nix::errno::Errno::ENOENT)
    }
    fn capabilities(
        &self,
        keep: &CapsHashSet,
        no_new_privs: bool,
        run_as: Option<RunAs>,
    ) -> Result<()> {
        self.record(Call::Capabilities {
            kept: keep.len(),
            no_new_privs,
            run_as: run_as.map(|r| (r.uid, r.gid)),
        })
    }
    fn no_new_privs(&self) -> Result<()> {
        self.record(Call::NoNewPrivs)
    }
    fn chdir_in_root(&self, dir: &CStr) -> std::io::Result<()> {
        self.record(Call::ChdirInRoot(text(dir)))
            .map_err(std::io::Error::other)
    }
    fn landlock(&self, _plan: &Landlock) -> Result<()> {
        self.record(Call::Landlock)
    }
    fn seccomp(&self, prog: &BpfProgram) -> Result<()> {
        self.record(Call::Seccomp(prog.len()))
    }
    fn execveat(
        &self,
        fd: RawFd,
        argv: &[*const libc::c_char],
        _envp: &[*const libc::c_char],
    ) -> std::io::Error {
        let _ = self.record(Call::Execveat(fd, argv.len() - 1));
        std::io::Error::from_raw_os_error(libc::ENOENT)
    }
}
