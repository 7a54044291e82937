//! Services control mode runs besides the control plane (`supervise.services`): each is
//! `sbx-exec [--policy FILE] --ctx CTX --listen-fd PORT --listen-fd PORTv6 -- CMD`, sbx-exec
//! itself again (`/proc/self/exe`, so the same binary even if the file was replaced), with only
//! its own reserved sockets on fds 3.. and LISTEN_FDS. That child confines the command like any
//! launch and checks that its context may serve those ports (`listen`). When a service ends it is
//! restarted with backoff, its ports held by control meanwhile; after `max_restarts` within
//! `restart_window` it is left stopped.

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use nix::sys::signal::SigSet;
use nix::unistd::{ForkResult, Pid};

use crate::model::{self, EnvPattern, Supervise};
use crate::plan::launch::Target;
use crate::run::ports::Handed;
use crate::sys;

/// The pool's server, as control mode names it in its messages.
static POOL_SERVER: std::sync::LazyLock<model::Service> =
    std::sync::LazyLock::new(|| model::Service {
        name: "pool".into(),
        ctx: model::ContextName("control".into()),
        cmd: Vec::new(),
        ports: Vec::new(),
    });

/// One supervised service and its restart state.
pub struct Service<'a> {
    pub spec: &'a model::Service,
    target: Target,
    pub pid: Option<Pid>,
    restarts: Vec<Instant>,
    restart_at: Option<Instant>,
}

impl<'a> Service<'a> {
    /// Prepare the re-exec of sbx-exec for `spec`, with `handed` (its ports) and control's own
    /// environment (the child filters it by the service context's `env.allow`).
    pub fn prepare(
        spec: &'a model::Service,
        policy: Option<&Path>,
        handed: &Handed,
        sigmask: SigSet,
    ) -> Result<Service<'a>> {
        let allow_all = model::EnvPolicy {
            allow: vec![EnvPattern("*".into())],
            hygiene: false,
            ..Default::default()
        };
        let env = crate::plan::env::build(std::env::vars_os(), &allow_all);
        let argv = argv(spec, policy, &handed.names);
        let target = own_binary(&argv, env, sigmask).context("cannot start a service")?;
        let target = handed
            .give_to(target)
            .context("cannot place a service's sockets")?;
        Ok(Service {
            spec,
            target,
            pid: None,
            restarts: Vec::new(),
            restart_at: None,
        })
    }

    /// The pool's server (`sbx-exec [--policy FILE] pool serve`, [`crate::run::pool`]), started
    /// and restarted like a service, with control's environment and no sockets.
    pub fn pool_server(policy: Option<&Path>, sigmask: SigSet) -> Result<Service<'static>> {
        let mut argv: Vec<OsString> = vec!["sbx-exec".into()];
        if let Some(p) = policy {
            argv.extend(["--policy".into(), p.as_os_str().to_owned()]);
        }
        argv.extend(["pool".into(), "serve".into()]);
        let env = crate::plan::env::build(std::env::vars_os(), &model::EnvPolicy::default());
        let target = own_binary(&argv, env, sigmask).context("cannot start the pool's server")?;
        Ok(Service {
            spec: &POOL_SERVER,
            target,
            pid: None,
            restarts: Vec::new(),
            restart_at: None,
        })
    }

    /// Start it (a failed fork is retried like a crash).
    pub fn start(&mut self, sup: &Supervise) {
        self.restart_at = None;
        match sys::fork() {
            Ok(ForkResult::Child) => self.target.exec(),
            Ok(ForkResult::Parent { child }) => self.pid = Some(child),
            Err(e) => {
                eprintln!("sbx-exec: cannot start service {:?}: {e}", self.spec.name);
                self.ended(crate::error::EXIT_SBX, sup);
            }
        }
    }

    /// It ended with `code`: schedule the restart, or give up after too many.
    pub fn ended(&mut self, code: i32, sup: &Supervise) {
        self.pid = None;
        let now = Instant::now();
        let window = Duration::from_secs(sup.restart_window);
        self.restarts.retain(|t| now.duration_since(*t) < window);
        if self.restarts.len() as u32 >= sup.max_restarts {
            eprintln!(
                "sbx-exec: service {:?} ended (status {code}) {} times within {}s; leaving it stopped, its ports still held \
                 (max_restarts / restart_window in [supervise])",
                self.spec.name,
                self.restarts.len() + 1,
                sup.restart_window
            );
            return;
        }
        self.restarts.push(now);
        let delay = super::backoff(sup.restart_delay_ms, self.restarts.len());
        eprintln!(
            "sbx-exec: service {:?} ended (status {code}); restarting in {} ms, its ports still held",
            self.spec.name,
            delay.as_millis()
        );
        self.restart_at = Some(now + delay);
    }

    /// When it is to be restarted, if it is.
    pub fn restart_at(&self) -> Option<Instant> {
        self.restart_at
    }
}

/// This very binary with `argv`, by handle (as every target is executed), even if the file was
/// replaced.
fn own_binary(
    argv: &[OsString],
    env: crate::plan::env::TargetEnv,
    sigmask: SigSet,
) -> Result<Target> {
    let argv = argv
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<std::result::Result<Vec<_>, _>>()
        .context("an argument contains a NUL byte")?;
    let program = std::fs::File::open("/proc/self/exe").context("cannot open /proc/self/exe")?;
    Ok(Target::plain(
        CString::from(c"/proc/self/exe"),
        program.into(),
        argv,
        env,
        sigmask,
    ))
}

/// `sbx-exec [--policy FILE] --ctx CTX --listen-fd NAME... -- CMD...`
fn argv(spec: &model::Service, policy: Option<&Path>, names: &[String]) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec!["sbx-exec".into()];
    if let Some(p) = policy {
        a.extend(["--policy".into(), p.as_os_str().to_owned()]);
    }
    a.extend(["--ctx".into(), spec.ctx.0.clone().into()]);
    for n in names {
        a.extend(["--listen-fd".into(), n.into()]);
    }
    a.push("--".into());
    a.extend(spec.cmd.iter().map(OsString::from));
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_is_sbx_exec_with_its_own_sockets() {
        let spec = model::Service {
            name: "jupyter".into(),
            ctx: model::ContextName("notebook".into()),
            cmd: vec!["/usr/bin/python3".into(), "serve.py".into()],
            ports: vec![8888],
        };
        let names = ["8888".to_string(), "8888v6".to_string()];
        let a = argv(&spec, Some(Path::new("/p.toml")), &names);
        let a: Vec<&str> = a.iter().map(|s| s.to_str().unwrap()).collect();
        assert_eq!(
            a,
            [
                "sbx-exec",
                "--policy",
                "/p.toml",
                "--ctx",
                "notebook",
                "--listen-fd",
                "8888",
                "--listen-fd",
                "8888v6",
                "--",
                "/usr/bin/python3",
                "serve.py"
            ]
        );
        assert_eq!(argv(&spec, None, &[])[1], "--ctx");
    }
}
