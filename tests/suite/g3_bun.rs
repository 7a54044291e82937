//! End to end with a real Bun server (examples/bun-server) as the control plane under control mode:
//! it refuses to start without a private token file, runs nothing for a request without the token
//! or naming a context it does not allow; platform exec gets the secret, user exec cannot see it
//! (nor the API token), cannot kill the server or take its port, and a killed server is restarted
//! with the port never free.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::harness::*;
use crate::policy_tests::{write_policy, DEFAULT_TOML};
use crate::support::http::{raw, Request};

/// One HTTP/1.0 request (no chunked encoding to undo) with `Connection: close` and, if given,
/// `Authorization: Bearer TOKEN`; returns (status, body).
fn http(
    port: u16,
    method: &str,
    path: &str,
    body: &str,
    token: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut r = Request::new(port, method, path)
        .header("Host", "localhost")
        .header("Connection", "close");
    if let Some(t) = token {
        r = r.header("Authorization", &format!("Bearer {t}"));
    }
    let answer = r
        .header("Content-Type", "application/json")
        .body(body)
        .send()?;
    Ok((answer.status, answer.body))
}

fn exec_request(ctx: &str, cmd: &[&str], secrets: Option<serde_json::Value>) -> String {
    let mut req = serde_json::json!({ "ctx": ctx, "cmd": cmd });
    if let Some(s) = secrets {
        req["secrets"] = s;
    }
    req.to_string()
}

fn exec(
    port: u16,
    token: &str,
    ctx: &str,
    cmd: &[&str],
    secrets: Option<serde_json::Value>,
) -> Result<serde_json::Value, String> {
    let req = exec_request(ctx, cmd, secrets);
    let (status, body) =
        http(port, "POST", "/exec", &req, Some(token)).map_err(|e| format!("POST /exec: {e}"))?;
    if status != 200 {
        return Err(format!("POST /exec -> {status}: {body}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("bad JSON {body:?}: {e}"))
}

fn health_pid(port: u16) -> Result<i64, String> {
    let (status, body) =
        http(port, "GET", "/health", "", None).map_err(|e| format!("GET /health: {e}"))?;
    let v: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| format!("{status} {body:?}: {e}"))?;
    v["pid"].as_i64().ok_or_else(|| format!("no pid in {body}"))
}

struct Server {
    child: Spawned,
    _dir: TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn bun_control_plane_end_to_end() -> Result<(), String> {
    needs_isolation()?;
    let bun = require_tool("bun")?;
    require_tool("python3")?;
    let (api, other) = crate::g3_control::free_ports();
    let dir = TempDir::new("bun");
    // A stand-in for /workspace (platform's only shared writable area) where the sentinel goes.
    let work = std::path::PathBuf::from(format!("/var/lib/sbx-suite-bun-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let _cleanup = TempDir(work.clone());
    let text = DEFAULT_TOML
        .replacen(
            "ports = [8080, 8888]",
            &format!("ports = [{api}, {other}]"),
            1,
        )
        .replace("\"/workspace\"", &format!("\"{}\"", work.display()));
    check(text != DEFAULT_TOML, || {
        "could not set the test ports".into()
    })?;
    let policy = write_policy(dir.path(), &text);
    let server_ts =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/bun-server/server.ts");
    refuses_to_start_without_a_private_token(&bun, &server_ts, &dir)?;
    let server_secret = marker("deploytoken");
    // The API token: a 0600 file the server reads once at start.
    let token = marker("apitoken");
    let token_file = dir.file("api-token", &format!("{token}\n"));
    let sentinel = work.join("sentinel");
    let sentinel_str = sentinel.to_str().unwrap().to_string();
    let mut server = Cmd::sbx([
        "--policy",
        policy.to_str().unwrap(),
        "--ctx",
        "control",
        "--",
        bun.as_str(),
        "run",
    ])
    .arg(&server_ts)
    .env("HOME", "/root")
    .env("API_PORT", &api.to_string())
    .env("SBX_EXEC", bin())
    .env("SBX_API_TOKEN_FILE", token_file.to_str().unwrap())
    .env("SBX_ALLOWED_CONTEXTS", "user,platform")
    .env("SBX_POLICY", policy.to_str().unwrap())
    .env("DEPLOY_TOKEN", &server_secret)
    .limit(Duration::from_secs(600));
    server
        .command()
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = server.spawn();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let server = Server { child, _dir: dir };
    let mut line = String::new();
    out.read_line(&mut line).map_err(|e| e.to_string())?;
    check(line.contains("serving on inherited fd"), || {
        format!("server did not adopt the socket: {line:?}")
    })?;
    std::thread::spawn(move || {
        for l in out.lines().map_while(Result::ok) {
            println!("  bun: {l}")
        }
    });

    let pid = health_pid(api)?;

    // Without the token (none, a wrong one, another scheme): 401 and nothing runs. The same request
    // with the token runs (platform writes the work area, where the sentinel goes).
    let touch = exec_request("platform", &["touch", &sentinel_str], None);
    let wrong = format!("{token}x");
    for auth in [None, Some(wrong.as_str()), Some("")] {
        let (status, body) =
            http(api, "POST", "/exec", &touch, auth).map_err(|e| format!("POST /exec: {e}"))?;
        check(status == 401 && body.contains("unauthorized"), || {
            format!("without the token ({auth:?}): {status} {body}")
        })?;
    }
    // A raw request, for a header `http` does not write.
    let answer = raw(
        api,
        &format!("POST /exec HTTP/1.0\r\nAuthorization: Basic {token}\r\nContent-Length: {}\r\n\r\n{touch}", touch.len()),
        Duration::from_secs(30),
    )
    .map_err(|e| e.to_string())?;
    let (status, body) = (answer.status, answer.raw);
    check(status == 401, || format!("Basic auth: {status} {body}"))?;
    // A context the server does not allow: 403, nothing runs.
    let (status, body) = http(
        api,
        "POST",
        "/exec",
        &exec_request("control", &["touch", &sentinel_str], None),
        Some(&token),
    )
    .map_err(|e| e.to_string())?;
    check(status == 403, || {
        format!("control context: {status} {body}")
    })?;
    std::thread::sleep(Duration::from_millis(200));
    check(!sentinel.exists(), || {
        "a request without the token (or for a refused context) ran its command".into()
    })?;
    let r = exec(api, &token, "platform", &["touch", &sentinel_str], None)?;
    check(r["exitCode"] == 0 && sentinel.exists(), || {
        format!("with the token the command did not run: {r}")
    })?;

    // Platform gets the secret handed in the request.
    let secret = marker("awskey");
    let r = exec(
        api,
        &token,
        "platform",
        &["sh", "-c", "printf %s \"$AWS_SECRET_ACCESS_KEY\""],
        Some(serde_json::json!({ "AWS_SECRET_ACCESS_KEY": secret })),
    )?;
    check(r["exitCode"] == 0 && r["stdout"] == secret.as_str(), || {
        format!("platform: {r}")
    })?;

    // Control: the server's own environment really holds its deploy token.
    let environ = std::fs::read(format!("/proc/{pid}/environ")).map_err(|e| e.to_string())?;
    check(
        String::from_utf8_lossy(&environ).contains(&server_secret),
        || "control: token not in the server env".into(),
    )?;
    // User code sees none of them, nor the API token (its env, /proc, the token file's path).
    let look = format!(
        "env; cat /proc/*/environ /proc/*/cmdline; ps -eo pid,args; cat {} 2>&1",
        token_file.display()
    );
    let r = exec(api, &token, "user", &["sh", "-c", &look], None)?;
    let all = format!("{}{}", r["stdout"], r["stderr"]);
    check(
        !all.contains(&secret) && !all.contains(&server_secret) && !all.contains(&token),
        || format!("user saw a secret: {r}"),
    )?;
    check(!all.contains("SBX_API_TOKEN_FILE"), || {
        format!("user sees the server's environment: {r}")
    })?;
    check(!all.contains("server.ts"), || {
        format!("user sees the server process: {r}")
    })?;

    // User code cannot kill the server.
    let r = exec(
        api,
        &token,
        "user",
        &[
            "sh",
            "-c",
            "kill -9 -1; pkill -9 bun; pkill -9 sbx-exec; kill -9 1; echo tried",
        ],
        None,
    )?;
    // The attempts ran to the end: the shell itself survived `kill -9 -1`, and pid 1 (sbx-exec)
    // ignores signals from inside its namespace.
    check(
        r["stdout"].as_str().is_some_and(|s| s.contains("tried")) && r["exitCode"] == 0,
        || format!("the kill attempts did not run to the end: {r}"),
    )?;
    check(health_pid(api)? == pid, || {
        "the server was killed or restarted by user code".into()
    })?;

    // User code cannot take the port (IPv4/IPv6, SO_REUSEADDR/SO_REUSEPORT).
    let steal = crate::g3_control::STEAL;
    let r = exec(
        api,
        &token,
        "user",
        &["python3", "-c", steal, &api.to_string()],
        None,
    )?;
    let s = r["stdout"].as_str().unwrap_or("");
    // With net = "private" user binds only its own loopback's port (all four "stolen" there);
    // with a shared network every bind is refused. Either way the container's port still serves.
    check(
        (!s.contains("stolen") && s.matches("refused").count() == 4)
            || s.matches("stolen").count() == 4,
        || format!("user took the port: {r}"),
    )?;
    check(health_pid(api)? == pid, || {
        "after user's attempt the API is not the server's".into()
    })?;

    // Killing the server: sbx-exec restarts it, the port is never free and never refused.
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).map_err(|e| e.to_string())?;
    let end = Instant::now() + Duration::from_secs(20);
    let mut refused = 0;
    let mut new_pid = None;
    while Instant::now() < end {
        let r = steal_once(api);
        check(!r.contains("stolen"), || {
            format!("port taken during restart: {r}")
        })?;
        match health_pid(api) {
            Ok(p) if p != pid => {
                new_pid = Some(p);
                break;
            }
            Ok(_) => {}
            Err(e) if e.contains("refused") => refused += 1,
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check(new_pid.is_some(), || "the server was not restarted".into())?;
    check(refused == 0, || {
        format!("{refused} connections refused during the restart")
    })?;

    // SIGTERM stops it gracefully; the status comes back.
    let mut server = server;
    kill(Pid::from_raw(server.child.id() as i32), Signal::SIGTERM).map_err(|e| e.to_string())?;
    let status = server.child.wait().map_err(|e| e.to_string())?;
    check(status.code() == Some(0), || {
        format!("stop status {status:?}")
    })
}

/// The server refuses to start (exit 2, before it serves anything) when SBX_API_TOKEN_FILE is
/// missing, names an empty file, or a file group or others may read or write.
fn refuses_to_start_without_a_private_token(
    bun: &str,
    server_ts: &std::path::Path,
    dir: &TempDir,
) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let empty = dir.file("empty-token", "\n");
    let shared = dir.file("shared-token", "some-token\n");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o640))
        .map_err(|e| e.to_string())?;
    let cases: [(Option<&std::path::Path>, &str); 3] = [
        (None, "SBX_API_TOKEN_FILE is not set"),
        (Some(&empty), "is empty"),
        (Some(&shared), "readable or writable by group or others"),
    ];
    for (file, why) in cases {
        let mut c = Cmd::new(bun).limit(Duration::from_secs(30));
        c.command().arg("run").arg(server_ts).env("PORT", "1");
        if let Some(f) = file {
            c.command().env("SBX_API_TOKEN_FILE", f);
        }
        let r = c.run();
        check(
            r.code == Some(2) && r.stderr.contains(why) && !r.stdout.contains("serving"),
            || format!("server with token file {file:?}: {}", r.show()),
        )?;
    }
    Ok(())
}

fn steal_once(port: u16) -> String {
    let mut c = Cmd::new("python3");
    c.command()
        .args(["-c", crate::g3_control::STEAL, &port.to_string()]);
    c.run().stdout
}
