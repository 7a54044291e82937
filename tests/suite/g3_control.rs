//! G3 and control mode: reserved ports held from the first instant and across restarts, handed
//! over as LISTEN_FDS; PID 1 duties (reaping, signal forwarding, graceful stop, status).

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::harness::*;

/// A control plane in Python that adopts LISTEN_FDS and answers each connection with its pid.
pub const SERVER: &str = r#"
import os, socket, sys, signal, selectors
n = int(os.environ.get("LISTEN_FDS", "0"))
# The handler first: the test sends SIGTERM as soon as it reads the LISTEN line.
if os.environ.get("IGNORE_TERM"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    signal.signal(signal.SIGTERM, lambda *a: (print("term", flush=True), sys.exit(3)))
print("LISTEN", n, os.environ.get("LISTEN_PID"), os.getpid(), os.environ.get("LISTEN_FDNAMES"), flush=True)
sel = selectors.DefaultSelector()
for i in range(n):
    sel.register(socket.socket(fileno=3 + i), selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        c, _ = key.fileobj.accept()
        c.sendall(b"pid %d\n" % os.getpid())
        c.close()
"#;

/// Two free TCP ports (free on IPv4 and IPv6 at the moment of the call).
pub fn free_ports() -> (u16, u16) {
    loop {
        let a = TcpListener::bind("0.0.0.0:0").unwrap();
        let b = TcpListener::bind("0.0.0.0:0").unwrap();
        let (pa, pb) = (
            a.local_addr().unwrap().port(),
            b.local_addr().unwrap().port(),
        );
        drop((a, b));
        if TcpListener::bind(("::", pa)).is_ok() && TcpListener::bind(("::", pb)).is_ok() {
            return (pa, pb);
        }
    }
}

fn control_policy(dir: &Path, ports: &[u16], extra: &str) -> PathBuf {
    let ports = ports
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let delay = if extra.contains("restart_delay_ms") {
        ""
    } else {
        "restart_delay_ms = 100\n"
    };
    let text = format!(
        "version = 1\n[context.control]\nenv.allow = [\"*\"]\nenv.hygiene = false\nsecurity.caps = [\"ALL\"]\n\
         security.no_new_privs = false\n[context.control.supervise]\nports = [{ports}]\n{delay}{extra}"
    );
    crate::policy_tests::write_policy(dir, &text)
}

struct ControlPlane {
    child: Spawned,
    out: BufReader<std::process::ChildStdout>,
    _dir: TempDir,
}

impl ControlPlane {
    fn start(ports: &[u16], extra: &str, env: &[(&str, &str)]) -> ControlPlane {
        let dir = TempDir::new("control");
        let policy = control_policy(dir.path(), ports, extra);
        let server = dir.file("server.py", SERVER);
        let mut cmd = Cmd::sbx([
            "--policy",
            policy.to_str().unwrap(),
            "--ctx",
            "control",
            "--",
            "/usr/bin/python3",
        ])
        .arg(&server)
        .limit(Duration::from_secs(300))
        .piped();
        for (k, v) in env {
            cmd = cmd.env(k, v);
        }
        let mut child = cmd.spawn();
        let out = BufReader::new(child.stdout.take().unwrap());
        ControlPlane {
            child,
            out,
            _dir: dir,
        }
    }

    /// The next `LISTEN n listen_pid pid names` line: (n, LISTEN_PID, real pid, names).
    fn listen_line(&mut self) -> (usize, String, String, String) {
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.first(), Some(&"LISTEN"), "unexpected line {line:?}");
        (
            f[1].parse().unwrap(),
            f[2].into(),
            f[3].into(),
            f.get(4).unwrap_or(&"").to_string(),
        )
    }

    fn stop(mut self) -> (Option<i32>, String) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let status = self.child.wait().unwrap();
        let mut rest = String::new();
        let _ = self.out.read_to_string(&mut rest);
        (status.code(), rest)
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn ask(addr: &str, port: u16) -> Result<String, String> {
    let mut s =
        TcpStream::connect((addr, port)).map_err(|e| format!("connect {addr}:{port}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).map_err(|e| e.to_string())?;
    Ok(buf.trim().to_string())
}

/// Try to take `port` as an attacker would: IPv4 and IPv6, with SO_REUSEADDR and SO_REUSEPORT.
pub const STEAL: &str = r#"
import socket, sys, errno
port = int(sys.argv[1])
for fam, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::"), (socket.AF_INET6, "::1")):
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if fam == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    try:
        s.bind((addr, port)); s.listen(); print("stolen", addr)
    except OSError as e:
        print("refused", addr, errno.errorcode.get(e.errno))
"#;

fn steal(inside: Option<&str>, port: u16) -> Run {
    let mut c = match inside {
        Some(ctx) => Cmd::sbx(["--ctx", ctx, "--", "python3", "-c", STEAL]),
        None => {
            let mut c = Cmd::new("python3");
            c.command().args(["-c", STEAL]);
            c
        }
    };
    c.command().arg(port.to_string());
    c.run()
}

pub fn ports_are_held_and_handed_over() -> Result<(), String> {
    needs_isolation()?;
    require_tool("/usr/bin/python3")?;
    let (p1, p2) = free_ports();
    let mut cp = ControlPlane::start(&[p1, p2], "", &[]);
    let (n, listen_pid, pid, names) = cp.listen_line();
    check(n == 4 && listen_pid == pid, || {
        format!("LISTEN_FDS={n} LISTEN_PID={listen_pid} pid={pid}")
    })?;
    check(names == format!("{p1}:{p1}v6:{p2}:{p2}v6"), || {
        format!("LISTEN_FDNAMES={names}")
    })?;
    for (addr, port) in [
        ("127.0.0.1", p1),
        ("::1", p1),
        ("127.0.0.1", p2),
        ("::1", p2),
    ] {
        let answer = ask(addr, port)?;
        check(answer == format!("pid {pid}"), || {
            format!("{addr}:{port} answered {answer:?}")
        })?;
    }
    for who in [None, Some("user"), Some("platform")] {
        let r = steal(who, p1);
        // `user` has its own network namespace (net = "private"): a port it binds is on its own
        // loopback, not the container's. What counts: the container's port still answers.
        let own_netns = who == Some("user");
        check(
            own_netns || (!r.stdout.contains("stolen") && r.stdout.matches("refused").count() == 4),
            || format!("{who:?} took the reserved port: {}", r.show()),
        )?;
        let answer = ask("127.0.0.1", p1)?;
        check(answer == format!("pid {pid}"), || {
            format!("after {who:?}'s attempt, {p1} answered {answer:?}")
        })?;
    }
    let (code, _) = cp.stop();
    check(code == Some(3), || format!("graceful stop status {code:?}"))?;
    // Control: once control mode is gone, the same attempt succeeds (so the test can fail).
    let r = steal(None, p1);
    check(r.stdout.matches("stolen").count() >= 2, || {
        format!("control: port not bindable after stop: {}", r.show())
    })
}

pub fn restart_keeps_the_ports() -> Result<(), String> {
    needs_isolation()?;
    require_tool("/usr/bin/python3")?;
    let (p1, _) = free_ports();
    let mut cp = ControlPlane::start(&[p1], "restart_delay_ms = 300\n", &[]);
    let (_, _, first, _) = cp.listen_line();
    kill(Pid::from_raw(first.parse().unwrap()), Signal::SIGKILL).unwrap();
    // Throughout the restart gap, nobody else can bind, and clients are queued, not refused.
    let end = Instant::now() + Duration::from_millis(600);
    let mut attempts = 0;
    while Instant::now() < end {
        let r = steal(None, p1);
        attempts += 1;
        check(!r.stdout.contains("stolen"), || {
            format!("port taken during restart: {}", r.show())
        })?;
    }
    let answer = ask("127.0.0.1", p1)?;
    let (_, listen_pid, second, _) = cp.listen_line();
    check(second != first && listen_pid == second, || {
        format!("not restarted: {first} -> {second}")
    })?;
    check(answer == format!("pid {second}"), || {
        format!("queued client got {answer:?}")
    })?;
    check(attempts > 2, || "too few steal attempts".into())?;
    let (code, _) = cp.stop();
    check(code == Some(3), || format!("status {code:?}"))
}

pub fn sigterm_stops_gracefully_then_kills() -> Result<(), String> {
    needs_isolation()?;
    require_tool("/usr/bin/python3")?;
    let (p1, _) = free_ports();
    let mut cp = ControlPlane::start(&[p1], "", &[]);
    cp.listen_line();
    let (code, out) = cp.stop();
    check(code == Some(3) && out.contains("term"), || {
        format!("graceful: {code:?} {out:?}")
    })?;
    // A control plane that ignores SIGTERM is killed after stop_timeout.
    let mut cp = ControlPlane::start(&[p1], "stop_timeout = 1\n", &[("IGNORE_TERM", "1")]);
    cp.listen_line();
    let start = Instant::now();
    let (code, _) = cp.stop();
    check(code == Some(137), || {
        format!("expected 137 after the stop timeout, got {code:?}")
    })?;
    check(start.elapsed() < Duration::from_secs(8), || {
        "stop took too long".into()
    })
}

pub fn gives_up_after_max_restarts() -> Result<(), String> {
    needs_isolation()?;
    let d = TempDir::new("giveup");
    let policy = control_policy(d.path(), &[], "max_restarts = 2\nrestart_delay_ms = 10\n");
    let counter = d.path().join("runs");
    let script = format!("echo run >> {}; exit 5", counter.display());
    let r = Cmd::sbx([
        "--policy",
        policy.to_str().unwrap(),
        "--ctx",
        "control",
        "--",
        "sh",
        "-c",
        &script,
    ])
    .run();
    r.expect_code(5, "failing control plane")?;
    let runs = std::fs::read_to_string(&counter)
        .unwrap_or_default()
        .lines()
        .count();
    check(runs == 3, || {
        format!("expected 1 run + 2 restarts, got {runs}")
    })?;
    check(
        r.stderr.contains("giving up") && r.stderr.contains("max_restarts"),
        || r.show(),
    )?;
    // A clean exit is not restarted (on-failure).
    let r = Cmd::sbx([
        "--policy",
        policy.to_str().unwrap(),
        "--ctx",
        "control",
        "--",
        "true",
    ])
    .run();
    r.expect_code(0, "clean exit")?;
    check(!r.stderr.contains("restarting"), || r.show())
}

pub fn as_pid1_it_reaps_adopted_zombies() -> Result<(), String> {
    needs_isolation()?;
    let d = TempDir::new("pid1");
    let policy = control_policy(d.path(), &[], "restart = \"never\"\n");
    // `unshare --pid --fork` stands in for a container: sbx-exec is its PID 1. As in
    // g5_launcher::zombies_are_reaped, a parent that never waits keeps exactly one zombie (the
    // control: ps shows zombies), and 200 orphans re-parented to pid 1 are all reaped.
    let script = "sh -c 'sh -c \"exit 0\" & exec sleep 30' & \
                  i=0; while [ $i -lt 200 ]; do (sh -c 'exit 0' &); i=$((i+1)); done; sleep 0.5; \
                  ps -eo pid=,ppid=,stat=,args=";
    let mut c = Cmd::new("unshare");
    c.command().args([
        "--pid",
        "--fork",
        "--mount-proc",
        bin(),
        "--policy",
        policy.to_str().unwrap(),
        "--ctx",
        "control",
        "--",
        "sh",
        "-c",
        script,
    ]);
    let r = c.run();
    r.expect_code(0, "control as pid 1")?;
    let table = crate::g5_launcher::ps_table(&r.stdout);
    check(
        table
            .iter()
            .any(|(pid, _, _, args)| *pid == 1 && args.starts_with(bin())),
        || format!("sbx-exec is not pid 1: {}", r.show()),
    )?;
    let keeper = table
        .iter()
        .find(|p| p.3 == "sleep 30")
        .map(|p| p.0)
        .ok_or_else(|| format!("control: the non-waiting parent is missing: {}", r.show()))?;
    let zombies: Vec<_> = table.iter().filter(|p| p.2.starts_with('Z')).collect();
    check(zombies.len() == 1 && zombies[0].1 == keeper, || {
        format!(
            "want exactly the control's zombie (a child of pid {keeper}), got {zombies:?}: {}",
            r.show()
        )
    })
}

/// A confined service: answers each connection on its inherited socket with `svc PID`.
const SERVICE: &str = r#"
import os, socket, selectors
sel = selectors.DefaultSelector()
for i in range(int(os.environ["LISTEN_FDS"])):
    sel.register(socket.socket(fileno=3 + i), selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        c, _ = key.fileobj.accept()
        c.sendall(b"svc %d %s\n" % (os.getpid(), os.environ["LISTEN_FDNAMES"].encode()))
        c.close()
"#;

/// The pid of the process whose argv is `python3 SCRIPT ... MARK` (the service itself, not the
/// sbx-exec processes around it, whose argv also holds the marker).
pub fn python_with(mark: &str) -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<&[u8]> = cmd.split(|&b| b == 0).collect();
        (args.first() == Some(&&b"/usr/bin/python3"[..]) && args.contains(&mark.as_bytes()))
            .then_some(pid)
    })
}

/// `supervise.services`: a service runs confined (pid 2 of its own namespace, `net = "none"`) with
/// only its port, the control plane gets the others; a killed service is restarted on the same
/// socket with no connection refused meanwhile; SIGTERM stops both.
pub fn services_get_their_ports_and_restart() -> Result<(), String> {
    needs_isolation()?;
    let (main, svc) = free_ports();
    let scripts = TempDir::new("service");
    let script = scripts.file("service.py", SERVICE);
    let mark = marker("svc");
    let extra = format!(
        "stop_timeout = 5\n\
         [[context.control.supervise.services]]\nname = \"echo\"\nctx = \"svc\"\n\
         cmd = [\"/usr/bin/python3\", \"{}\", \"{mark}\"]\nports = [{svc}]\n\
         [context.svc]\nnamespaces = [\"pid\", \"mount\", \"ipc\", \"uts\"]\nnet = \"none\"\n\
         listen = [{svc}]\nenv.allow = [\"PATH\"]\nsecurity.seccomp = \"default\"\n",
        script.display()
    );
    let mut cp = ControlPlane::start(&[main, svc], &extra, &[]);
    let (n, _, pid, names) = cp.listen_line();
    check(n == 2 && names == format!("{main}:{main}v6"), || {
        format!("the control plane got {n} sockets: {names}")
    })?;
    check(ask("127.0.0.1", main)? == format!("pid {pid}"), || {
        "the control plane does not answer on its port".into()
    })?;
    let want = format!("svc 2 {svc}:{svc}v6");
    let answered = wait_until(Duration::from_secs(10), || {
        ask("127.0.0.1", svc).is_ok_and(|a| a == want)
    });
    check(answered, || format!("service: {:?}", ask("127.0.0.1", svc)))?;
    check(ask("::1", svc)? == want, || "service on IPv6".into())?;

    let first = python_with(&mark).ok_or("the service process is not running")?;
    kill(Pid::from_raw(first), Signal::SIGKILL).map_err(|e| e.to_string())?;
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        // Each connection waits in the held socket's queue until the new service accepts it.
        let a = ask("127.0.0.1", svc)?;
        if a == want && python_with(&mark).is_some_and(|p| p != first) {
            break;
        }
        check(Instant::now() < end, || format!("not restarted: {a:?}"))?;
        std::thread::sleep(Duration::from_millis(20));
    }
    check(ask("127.0.0.1", main)? == format!("pid {pid}"), || {
        "the control plane changed".into()
    })?;
    let (code, _) = cp.stop();
    check(code == Some(3), || format!("stop status {code:?}"))?;
    check(
        wait_until(Duration::from_secs(5), || python_with(&mark).is_none()),
        || "the service survived the stop".into(),
    )
}
