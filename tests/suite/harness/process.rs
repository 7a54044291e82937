//! Every process the suite starts goes through here, with a deadline: [`Cmd::run`] (to the end)
//! or [`Cmd::spawn`] (in the background, as a [`Spawned`]). Each starts as the leader of a process
//! group of its own and is listed as live until it is reaped, so that past its deadline, or past
//! its test's ([`kill_live`], called by the runner's watchdog), its whole group is killed and the
//! failure says what hung.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{bin, SUITE_PATH};

/// A process the suite started and has not reaped: its group, what it is, when it started.
struct Live {
    pgid: i32,
    what: String,
    started: Instant,
}

fn live() -> std::sync::MutexGuard<'static, BTreeMap<u64, Live>> {
    static LIVE: Mutex<BTreeMap<u64, Live>> = Mutex::new(BTreeMap::new());
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// Is `pid` running (there, and not a zombie waiting to be reaped)?
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 1..].trim_start().to_string()))
        .is_some_and(|rest| !rest.starts_with('Z') && !rest.starts_with('X'))
}

/// SIGKILL the process group of every process the suite started that is still running, and say
/// what each was. The runner calls it when a test passes its deadline (what the test waits for is
/// then gone) and after every test (nothing a test started outlives it). A group whose leader has
/// exited is left alone: what is left in it was made to outlive its parent (a keeper).
pub(crate) fn kill_live() -> Vec<String> {
    let all = std::mem::take(&mut *live());
    all.into_values()
        .filter(|l| running(l.pgid))
        .map(|l| {
            let _ = kill(Pid::from_raw(-l.pgid), Signal::SIGKILL);
            format!(
                "pid {} (running {} s): {}",
                l.pgid,
                l.started.elapsed().as_secs(),
                l.what
            )
        })
        .collect()
}

/// A finished run of a command.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Ends the stderr of a [`Run`] whose command outlived its time limit.
const HUNG: &str = "\n[suite: hung: still running at its time limit; its process group was killed]";

impl Run {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// Did the command outlive its time limit (and get killed, with its process group)?
    pub fn hung(&self) -> bool {
        self.signal == Some(9) && self.stderr.ends_with(HUNG)
    }

    /// Describe this run for an error message.
    pub fn show(&self) -> String {
        format!(
            "code {:?} signal {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.signal, self.stdout, self.stderr
        )
    }

    /// Fail unless the exit code is `code`.
    pub fn expect_code(&self, code: i32, what: &str) -> Result<&Self, String> {
        if self.code == Some(code) {
            Ok(self)
        } else {
            Err(format!("{what}: expected exit {code}, got {}", self.show()))
        }
    }
}

/// A command to run with a clean, predictable environment (PATH and LANG only, cwd `/`), stdin,
/// stdout and stderr on /dev/null unless set, and a time limit (60 s unless set).
pub struct Cmd {
    cmd: Command,
    limit: Duration,
}

impl Cmd {
    pub fn new(program: impl AsRef<OsStr>) -> Cmd {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("PATH", SUITE_PATH)
            .env("LANG", "C.UTF-8")
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        Cmd {
            cmd,
            limit: Duration::from_secs(60),
        }
    }

    /// `sbx-exec ARGS...`
    pub fn sbx<I, S>(args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = Cmd::new(bin());
        c.cmd.args(args);
        c
    }

    /// `sh -c SCRIPT` (outside any sandbox: the control side of a test).
    pub fn sh(script: &str) -> Cmd {
        let mut c = Cmd::new("/bin/sh");
        c.cmd.args(["-c", script]);
        c
    }

    /// `sh -c SCRIPT ARGS...` in a mount namespace of its own (`unshare --mount --propagation
    /// private`, and `--net`: a network namespace too), so that what the script mounts or
    /// configures is gone with it; the script's `$0`, `$1`, ... are `args`.
    pub fn sh_in_own_mounts<S: AsRef<OsStr>>(net: bool, script: &str, args: &[S]) -> Cmd {
        let mut c = Cmd::new("unshare");
        if net {
            c.cmd.arg("--net");
        }
        c.cmd
            .args([
                "--mount",
                "--propagation",
                "private",
                "--",
                "/bin/sh",
                "-c",
                script,
            ])
            .args(args);
        c
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Cmd {
        self.cmd.arg(arg);
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd.args(args);
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Cmd {
        self.cmd.env(k, v);
        self
    }

    pub fn limit(mut self, d: Duration) -> Cmd {
        self.limit = d;
        self
    }

    /// Standard output and error piped, to read from a [`Spawned`] or keep in the [`Run`].
    pub fn piped(mut self) -> Cmd {
        self.cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        self
    }

    pub fn command(&mut self) -> &mut Command {
        &mut self.cmd
    }

    /// Start in the background: the returned [`Spawned`] is waited for within the time limit, and
    /// its process group killed when it is dropped.
    pub fn spawn(mut self) -> Spawned {
        let what = format!("{:?}", self.cmd);
        self.cmd.process_group(0);
        // Spawned and registered under one hold of the lock: kill_live never misses it.
        let mut all = live();
        let child = self
            .cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let id = NEXT.fetch_add(1, Ordering::SeqCst);
        let started = Instant::now();
        all.insert(
            id,
            Live {
                pgid: child.id() as i32,
                what: what.clone(),
                started,
            },
        );
        drop(all);
        Spawned {
            child,
            id,
            what,
            deadline: started + self.limit,
            limit: self.limit,
            reaped: false,
        }
    }

    /// Run to completion with stdout and stderr kept (its process group killed if it exceeds its
    /// time limit: the run then says it hung).
    pub fn run(self) -> Run {
        self.piped().spawn().output()
    }
}

/// Why a wait ended without a status.
enum Ended {
    /// Past the deadline: the group was killed.
    Hung,
    /// The status is gone (reaped elsewhere).
    Lost(std::io::Error),
}

/// A process the suite started in the background ([`Cmd::spawn`]). `wait` and `output` give up
/// at its deadline (killing its process group); dropping it while it runs kills the group. The
/// [`Child`] is there for its pipes and for signals to the process alone ([`Child::kill`] is one).
pub struct Spawned {
    child: Child,
    id: u64,
    what: String,
    deadline: Instant,
    limit: Duration,
    reaped: bool,
}

impl std::ops::Deref for Spawned {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.child
    }
}

impl std::ops::DerefMut for Spawned {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Spawned {
    /// SIGKILL the whole process group.
    pub fn kill_group(&self) {
        let _ = kill(Pid::from_raw(-(self.child.id() as i32)), Signal::SIGKILL);
    }

    fn reaped(&mut self) {
        self.reaped = true;
        live().remove(&self.id);
    }

    /// Wait for the exit until the deadline; past it, the group is killed and reaped, and the
    /// error says what hung.
    pub fn wait(&mut self) -> Result<ExitStatus, String> {
        self.wait_until_deadline().map_err(|e| match e {
            Ended::Hung => self.hung(),
            Ended::Lost(e) => format!("waiting for {}: {e}", self.what),
        })
    }

    fn wait_until_deadline(&mut self) -> Result<ExitStatus, Ended> {
        let mut pause = Duration::from_millis(1);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.reaped();
                    return Ok(status);
                }
                Ok(None) => {}
                // Reaped by someone else (the suite is pid 1 and reaps orphans).
                Err(e) => {
                    self.reaped();
                    return Err(Ended::Lost(e));
                }
            }
            if Instant::now() >= self.deadline {
                self.kill_group();
                let _ = self.child.wait();
                self.reaped();
                return Err(Ended::Hung);
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    fn hung(&self) -> String {
        format!(
            "hung: {} did not end within {:?}; its process group was killed",
            self.what, self.limit
        )
    }

    /// [`Spawned::output`] with the deadline moved to `limit` from now.
    pub fn output_within(mut self, limit: Duration) -> Run {
        self.deadline = Instant::now() + limit;
        self.limit = limit;
        self.output()
    }

    /// Wait (until the deadline) and collect what it wrote on the pipes it has; a process that
    /// hung is killed and comes back saying so ([`Run::hung`], and at the end of its stderr).
    pub fn output(mut self) -> Run {
        // As `Child::wait_with_output`: our end of its stdin closed first.
        drop(self.child.stdin.take());
        let reader = |pipe: Option<Box<dyn Read + Send>>| {
            let buf = Arc::new(Mutex::new(Vec::new()));
            let b = buf.clone();
            let t = pipe.map(|mut p| {
                std::thread::spawn(move || {
                    let mut chunk = [0u8; 8192];
                    while let Ok(n) = p.read(&mut chunk) {
                        if n == 0 {
                            break;
                        }
                        b.lock().unwrap().extend_from_slice(&chunk[..n]);
                    }
                })
            });
            (buf, t)
        };
        let out = reader(self.child.stdout.take().map(|p| Box::new(p) as _));
        let err = reader(self.child.stderr.take().map(|p| Box::new(p) as _));
        let waited = self.wait_until_deadline();
        // What it started outside its group (a daemon) may keep a pipe open: read on a little,
        // not forever.
        let until = Instant::now() + Duration::from_secs(2);
        for t in [&out.1, &err.1].into_iter().flatten() {
            while !t.is_finished() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let text =
            |b: &Arc<Mutex<Vec<u8>>>| String::from_utf8_lossy(&b.lock().unwrap()).into_owned();
        let mut run = Run {
            code: None,
            signal: None,
            stdout: text(&out.0),
            stderr: text(&err.0),
        };
        match waited {
            Ok(s) => (run.code, run.signal) = (s.code(), s.signal()),
            Err(Ended::Hung) => {
                run.signal = Some(9);
                run.stderr.push_str(HUNG);
            }
            Err(Ended::Lost(e)) => run
                .stderr
                .push_str(&format!("\n[suite: exit status lost: {e}]")),
        }
        run
    }
}

impl Drop for Spawned {
    /// Still running: its group is killed, and it is reaped. Exited: only reaped (what it left in
    /// its group was made to outlive it).
    fn drop(&mut self) {
        if !self.reaped {
            if matches!(self.child.try_wait(), Ok(None)) {
                self.kill_group();
            }
            let _ = self.child.wait();
            live().remove(&self.id);
        }
    }
}
