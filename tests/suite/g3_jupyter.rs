//! End to end with a real Jupyter server (jupyter_server + ipykernel in /opt/sbx-jupyter) as a
//! service of control mode, configured by the shipped `policies/sandbox-sdk.toml` (ports moved to
//! free ones, a Python control plane instead of Bun): it serves the reserved port it got from
//! control without binding it, confined in the `notebook` context, and is driven over its REST API
//! and kernel websocket. A cell computes 42; a cell that tries to kill the control plane, read its
//! environment or the server's token, or take the control plane's ports fails, and both still
//! answer afterwards; a Jupyter server killed from outside (or by `kill -9 -1` in a cell) is
//! restarted on the same held socket with no connection refused.
//!
//! The shipped `notebook` context has its own network (`net = "private"`): a cell cannot connect to
//! the control plane's port on the container's 127.0.0.1 (its loopback is its own), and a port it
//! binds is on that loopback, not the container's, while the inherited socket serves the
//! container's port.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::harness::*;
use crate::support::http::Request;

const PYTHON: &str = "/opt/sbx-jupyter/bin/python3";
const SDK_TOML: &str = include_str!("../../policies/sandbox-sdk.toml");
const SHIPPED_SERVE: &str = "/usr/share/sbx/examples/jupyter/serve.py";

/// Runs one cell in a new kernel (POST /api/kernels, then an execute_request on the kernel's
/// websocket); prints {"stdout": ..., "error": [...]} once the kernel is idle, then shuts it down.
const CLIENT: &str = include_str!("../jupyter_cell.py");

/// The attack cell (placeholders: the control plane's marker, the token in two halves, the two
/// ports, the STEAL script). It looks for the control plane and sbx-exec among the processes it
/// can see and kills what it finds, reads every environment it can, looks for the token in files
/// and its environment, and tries to take both ports.
const ATTACK: &str = r#"
import glob, os, subprocess, sys
token = "{token_a}" + "{token_b}"
for path in glob.glob("/proc/[0-9]*/cmdline"):
    try:
        cmd = open(path, "rb").read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        continue
    if "{plane_mark}" in cmd or "--ctx control" in cmd:
        print("FOUND", path, cmd)
        os.kill(int(path.split("/")[2]), 9)
subprocess.run(["pkill", "-9", "-f", "{plane_mark}"])
subprocess.run(["pkill", "-9", "-f", "ctx control"])
for path in ["/proc/1/environ"] + glob.glob("/proc/[0-9]*/environ"):
    try:
        print(path, open(path, "rb").read().decode(errors="replace"))
    except OSError as e:
        print(path, e.strerror)
for root in ("/root", "/tmp", "/dev/shm"):
    for dirpath, _, files in os.walk(root):
        for f in files:
            try:
                if token.encode() in open(os.path.join(dirpath, f), "rb").read():
                    print("TOKENFILE", os.path.join(dirpath, f))
            except OSError:
                pass
print("TOKENENV", token in str(os.environ))
import socket
try:
    socket.create_connection(("127.0.0.1", {api}), timeout=3).close()
    print("CONTROL reachable")
except OSError as e:
    print("CONTROL unreachable", e.strerror)
for port in ({api}, {nb}):
    print(subprocess.run([sys.executable, "-c", {steal:?}, str(port)], capture_output=True, text=True).stdout)
print("done")
"#;

struct Control {
    child: Spawned,
    _dir: TempDir,
    log: std::path::PathBuf,
}

impl Drop for Control {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Control {
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

fn need_jupyter() -> Result<(), String> {
    let ok = Path::new(PYTHON).exists()
        && Cmd::new(PYTHON)
            .limit(Duration::from_secs(60))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .command_args(&["-c", "import jupyter_server, ipykernel, websocket"])
            .run()
            .ok();
    if ok {
        return Ok(());
    }
    let install = "python3 -m venv /opt/sbx-jupyter && /opt/sbx-jupyter/bin/pip install jupyter_server ipykernel";
    if in_ci() {
        Err(format!("{PYTHON} with jupyter_server, ipykernel and websocket-client is missing and CI=true: .ci/run must install it ({install})"))
    } else {
        Err(format!(
            "{SKIP}no Jupyter venv at {PYTHON}; install it with: {install}"
        ))
    }
}

trait CmdArgs {
    fn command_args(self, args: &[&str]) -> Self;
}

impl CmdArgs for Cmd {
    fn command_args(mut self, args: &[&str]) -> Self {
        self.command().args(args);
        self
    }
}

/// One HTTP/1.0 GET, with `Authorization: token TOKEN` if given; returns (status, body).
fn http(port: u16, path: &str, token: Option<&str>) -> std::io::Result<(u16, String)> {
    let mut r = Request::get(port, path)
        .header("Host", &format!("127.0.0.1:{port}"))
        .timeout(Duration::from_secs(60));
    if let Some(t) = token {
        r = r.header("Authorization", &format!("token {t}"));
    }
    let answer = r.send()?;
    Ok((answer.status, answer.body))
}

/// Run `code` in a new kernel; (stdout, errors) or why not.
fn cell(port: u16, token: &str, code: &str) -> Result<(String, String), String> {
    let r = Cmd::new(PYTHON)
        .limit(Duration::from_secs(120))
        .command_args(&["-c", CLIENT, &port.to_string(), token, code])
        .run();
    if !r.ok() {
        return Err(format!("cell {code:?}: {}", r.show()));
    }
    let v: serde_json::Value =
        serde_json::from_str(r.stdout.trim()).map_err(|e| format!("{e}: {}", r.show()))?;
    Ok((
        v["stdout"].as_str().unwrap_or("").to_string(),
        v["error"].to_string(),
    ))
}

/// The Jupyter server process itself (argv: the venv's python, serve.py, ...), as seen here.
fn jupyter_pid(serve: &str) -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<&[u8]> = cmd.split(|&b| b == 0).collect();
        (args.first() == Some(&PYTHON.as_bytes()) && args.get(1) == Some(&serve.as_bytes()))
            .then_some(pid)
    })
}

/// Wait until Jupyter answers GET /api/status with the token (connections queue meanwhile).
fn wait_for_jupyter(port: u16, token: &str, limit: Duration) -> Result<(), String> {
    let end = Instant::now() + limit;
    loop {
        match http(port, "/api/status", Some(token)) {
            Ok((200, _)) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err(format!("port {port} refused a connection: {e}"))
            }
            other if Instant::now() > end => return Err(format!("Jupyter: {other:?}")),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn start(
    api: u16,
    nb: u16,
    token: &str,
    secret: &str,
    plane_mark: &str,
) -> Result<(Control, BufReader<std::process::ChildStdout>), String> {
    let dir = TempDir::new("jupyter");
    let serve = PathBuf::from(serve_path());
    let text = SDK_TOML
        .replace("8080", &api.to_string())
        .replace("8888", &nb.to_string())
        .replace(SHIPPED_SERVE, serve.to_str().unwrap());
    check(text.contains(&format!("listen = [{nb}]")), || {
        "could not move the policy's ports".into()
    })?;
    let policy = crate::policy_tests::write_policy(dir.path(), &text);
    let plane = dir.file("control-plane.py", crate::g3_control::SERVER);
    let log = dir.path().join("control.log");
    let mut control = Cmd::sbx([
        "--policy",
        policy.to_str().unwrap(),
        "--ctx",
        "control",
        "--",
        "/usr/bin/python3",
    ])
    .arg(&plane)
    .arg(plane_mark)
    .env("JUPYTER_TOKEN", token)
    .env("CONTROL_SECRET", secret)
    .limit(Duration::from_secs(600));
    control
        .command()
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).map_err(|e| e.to_string())?);
    let child = control.spawn();
    let mut c = Control {
        child,
        _dir: dir,
        log,
    };
    let out = BufReader::new(c.child.stdout.take().unwrap());
    Ok((c, out))
}

pub fn jupyter_serves_the_held_port_confined() -> Result<(), String> {
    needs_isolation()?;
    need_jupyter()?;
    let (api, nb) = crate::g3_control::free_ports();
    let token = marker("jupytertoken");
    let secret = marker("controlsecret");
    let plane_mark = marker("controlplane");
    let (control, mut out) = start(api, nb, &token, &secret, &plane_mark)?;
    let fail = |e: String| format!("{e}\n--- control's stderr (tail)\n{}", control.log_tail());
    let mut line = String::new();
    out.read_line(&mut line).map_err(|e| e.to_string())?;
    let f: Vec<&str> = line.split_whitespace().collect();
    // The control plane gets its own port only; Jupyter's went to the service.
    check(
        f.len() == 5 && f[1] == "2" && f[4] == format!("{api}:{api}v6"),
        || fail(format!("control plane: {line:?}")),
    )?;
    let plane: i32 = f[3].parse().map_err(|_| fail(line.clone()))?;
    std::thread::spawn(move || for _ in out.lines().map_while(Result::ok) {});
    let ask_plane = || crate::g3_control::ask("127.0.0.1", api);
    wait_for_jupyter(nb, &token, Duration::from_secs(90)).map_err(fail)?;
    let first = jupyter_pid(&serve_path()).ok_or_else(|| fail("no Jupyter process".into()))?;

    // Without the token: nothing.
    let (status, _) = http(nb, "/api/kernels", None).map_err(|e| e.to_string())?;
    check(status == 403, || {
        fail(format!("without the token: {status}"))
    })?;
    let (stdout, errors) = cell(nb, &token, "print(6*7)").map_err(fail)?;
    check(stdout.trim() == "42", || {
        fail(format!("6*7: {stdout:?} {errors}"))
    })?;

    // User code in a cell: cannot kill the control plane or sbx-exec, read their environment or
    // the server's token, or take either port.
    let (token_a, token_b) = token.split_at(token.len() / 2);
    let code = ATTACK
        .replace("{token_a}", token_a)
        .replace("{token_b}", token_b)
        .replace("{plane_mark}", &plane_mark)
        .replace("{api}", &api.to_string())
        .replace("{nb}", &nb.to_string())
        .replace("{steal:?}", &format!("{:?}", crate::g3_control::STEAL));
    let (stdout, errors) = cell(nb, &token, &code).map_err(fail)?;
    check(stdout.contains("done") && !stdout.contains("FOUND"), || {
        fail(format!("a cell found the control plane: {stdout}{errors}"))
    })?;
    check(
        !stdout.contains("TOKENFILE") && stdout.contains("TOKENENV False"),
        || fail(format!("a cell found the token: {stdout}")),
    )?;
    check(
        !stdout.contains(&secret) && !stdout.contains(&token),
        || {
            fail(format!(
                "a cell read the control plane's environment or the token: {stdout}"
            ))
        },
    )?;
    check(stdout.contains("CONTROL unreachable"), || {
        fail(format!(
            "a cell reached the control plane's port on 127.0.0.1: {stdout}"
        ))
    })?;
    // A port a cell binds is on its own loopback: the control plane and Jupyter keep answering on
    // the container's (checked right below and by the next cells).
    check(
        stdout
            .lines()
            .filter(|l| l.starts_with("stolen ") || l.starts_with("refused "))
            .count()
            == 8,
        || fail(format!("the port probes did not run: {stdout}")),
    )?;
    check(ask_plane()? == format!("pid {plane}"), || {
        fail("the control plane was killed or restarted".into())
    })?;
    check(jupyter_pid(&serve_path()) == Some(first), || {
        fail("the attack cell restarted Jupyter".into())
    })?;

    // `kill -9 -1` in a cell ends the server and its kernels (their sandbox), nothing else; control
    // starts the server again.
    let _ = cell(nb, &token, "import os; os.system('kill -9 -1')");
    check(ask_plane()? == format!("pid {plane}"), || {
        fail("kill -9 -1 reached the control plane".into())
    })?;
    wait_for_jupyter(nb, &token, Duration::from_secs(90)).map_err(fail)?;
    let restarted = wait_until(Duration::from_secs(30), || {
        jupyter_pid(&serve_path()).is_some_and(|p| p != first)
    });
    check(restarted, || {
        fail("kill -9 -1 in a cell did not end (and restart) its own server".into())
    })?;

    // Killed from outside: restarted on the same held socket; connections wait, none is refused.
    let before = jupyter_pid(&serve_path()).ok_or_else(|| fail("no Jupyter".into()))?;
    kill(Pid::from_raw(before), Signal::SIGKILL).map_err(|e| e.to_string())?;
    let end = Instant::now() + Duration::from_secs(90);
    loop {
        match http(nb, "/api/status", Some(&token)) {
            Ok((200, _)) if jupyter_pid(&serve_path()).is_some_and(|p| p != before) => break,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err(fail(format!(
                    "a connection was refused during the restart: {e}"
                )))
            }
            other => check(Instant::now() < end, || {
                fail(format!("Jupyter was not restarted: {other:?}"))
            })?,
        }
    }
    let (stdout, _) = cell(nb, &token, "print(6*7)").map_err(fail)?;
    check(stdout.trim() == "42", || {
        fail(format!("after the restart: {stdout:?}"))
    })?;

    // SIGTERM stops Jupyter, then the control plane; its status comes back.
    let mut control = control;
    kill(Pid::from_raw(control.child.id() as i32), Signal::SIGTERM).map_err(|e| e.to_string())?;
    let status = control.child.wait().map_err(|e| e.to_string())?;
    check(status.code() == Some(3), || {
        format!("stop status {status:?}\n{}", control.log_tail())
    })?;
    check(jupyter_pid(&serve_path()).is_none(), || {
        "the Jupyter server survived the stop".into()
    })
}

/// serve.py where the confined `notebook` sees it (a clone under /root is not visible there).
fn serve_path() -> String {
    crate::harness::staged("examples/jupyter/serve.py")
        .unwrap_or_else(|e| panic!("{e}"))
        .display()
        .to_string()
}
