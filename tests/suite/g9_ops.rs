//! G9, platform operations through the gate (`ops`, docs/ops.md): user code of a context whose
//! policy lists `deploy` asks the control plane to deploy, and the control plane's handler runs
//! with a secret user code cannot find anywhere it can read; an operation not listed, malformed
//! params, oversized params and a context without ops are refused before the control plane hears
//! of them; a params text with a newline and a forged second request reaches it as one request
//! line; every call, allowed or refused, is in the audit log, without its params.
//!
//! The control plane is a stand-in: a thread of this test listening on /run/sbx/ops.sock, on the
//! suite's private /run/sbx ([`crate::persist::runtime`]). It records each header and request
//! line it got; its `deploy` handler holds the secret (in this process's memory, and in the
//! launcher's environment) and proves it ran by writing a sentinel file.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::*;
use crate::support::policy::Policy;

const SOCKET: &str = "/run/sbx/ops.sock";

/// What the stand-in got on one connection: the header line, the request line, and whether
/// anything followed the request line before it answered.
#[derive(Clone, Debug)]
struct Got {
    header: serde_json::Value,
    request: serde_json::Value,
    trailing: bool,
    /// The connecting process's uid (SO_PEERCRED).
    peer_uid: Option<u32>,
}

/// The stand-in control plane, stopped (and its socket removed) when dropped.
struct ControlPlane {
    got: Arc<Mutex<Vec<Got>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ControlPlane {
    /// Listen on [`SOCKET`]; `deploy` writes `sentinel` (proving it held `secret`, never writing
    /// it) and answers ok; any other operation, or one the header does not list, is refused.
    fn start(secret: String, sentinel: PathBuf) -> Result<ControlPlane, String> {
        let _ = std::fs::remove_file(SOCKET);
        let l =
            UnixListener::bind(SOCKET).map_err(|e| format!("cannot listen on {SOCKET}: {e}"))?;
        l.set_nonblocking(true).unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (g, s) = (got.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((c, _)) => {
                        if let Some(one) = serve(c, &secret, &sentinel) {
                            g.lock().unwrap().push(one);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(ControlPlane {
            got,
            stop,
            thread: Some(thread),
        })
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(SOCKET);
    }
}

/// One connection: two lines in, one line out, as docs/ops.md says a control plane does.
fn serve(c: UnixStream, secret: &str, sentinel: &Path) -> Option<Got> {
    c.set_nonblocking(false).ok()?;
    let peer_uid = nix::sys::socket::getsockopt(&c, nix::sys::socket::sockopt::PeerCredentials)
        .ok()
        .map(|p| p.uid());
    c.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut r = BufReader::new(c.try_clone().ok()?);
    let (mut h, mut q) = (String::new(), String::new());
    r.read_line(&mut h).ok()?;
    r.read_line(&mut q).ok()?;
    let header: serde_json::Value = serde_json::from_str(&h).ok()?;
    let request: serde_json::Value = serde_json::from_str(&q).ok()?;
    // Anything more before the answer? (The gate sends one line and waits.)
    c.set_read_timeout(Some(Duration::from_millis(300))).ok()?;
    let mut more = [0u8; 1];
    let trailing = !r.buffer().is_empty() || matches!(r.get_mut().read(&mut more), Ok(n) if n > 0);
    let op = request["op"].as_str().unwrap_or_default().to_string();
    let listed = header["ops"]
        .as_array()
        .is_some_and(|a| a.iter().any(|o| o.as_str() == Some(op.as_str())));
    let answer = match (op.as_str(), listed) {
        ("deploy", true) => {
            let r#ref = request["params"]["ref"].as_str().unwrap_or("?");
            // The handler "uses" its credential: it proves it had one, never writes it.
            let proof = format!(
                "deployed {} with a credential of {} bytes\n",
                r#ref.len(),
                secret.len()
            );
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(sentinel)
                .ok()?;
            f.write_all(proof.as_bytes()).ok()?;
            serde_json::json!({"ok": true, "result": {"deployed": r#ref.len()}})
        }
        _ => serde_json::json!({"ok": false, "error": format!("operation {op} is not served")}),
    };
    let mut line = serde_json::to_vec(&answer).unwrap();
    line.push(b'\n');
    (&c).write_all(&line).ok()?;
    Some(Got {
        header,
        request,
        trailing,
        peer_uid,
    })
}

/// A secret no file, environment or argument of this run holds as written: built from pieces
/// at run time, so that even this test's source and binary do not hold its prefix.
fn secret() -> (String, String) {
    let prefix: String = "-1ksnrettalp".chars().rev().collect();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let tail = format!("{:x}{:x}", nanos, std::process::id());
    (prefix.clone(), format!("{prefix}{tail}"))
}

/// `user` of the shipped policy with `ops` (if any) and the audit log in `dir`.
fn policy(dir: &Path, ops: &str) -> PathBuf {
    let audit = dir.join("audit.jsonl");
    let mut p = Policy::shipped().top(&format!("audit = \"{}\"", audit.display()));
    if !ops.is_empty() {
        p = p.in_context("user", &format!("ops = {ops}\n"));
    }
    p.write(dir)
}

/// Run `script` in `user` with `policy`, the launcher holding `secret` in its environment.
fn user(policy: &Path, script: &str, secret: &str) -> Run {
    let p = policy.display().to_string();
    Cmd::sbx([
        "--policy",
        p.as_str(),
        "--ctx",
        "user",
        "--",
        "sh",
        "-c",
        script,
    ])
    .env("DEPLOY_TOKEN", secret)
    .limit(Duration::from_secs(120))
    .run()
}

/// What user code tries, one line of output per step.
fn attempts(bin: &str, prefix: &str) -> String {
    format!(
        r#"B={bin}
out=$($B op deploy '{{"ref":"rel-7f3a"}}'); echo "deploy rc=$? out=$out"
out=$($B op migrate '{{}}' 2>&1); echo "migrate rc=$? out=$out"
out=$(printf '%s\n' '{{' '"ref": "x\n{{\"op\":\"migrate\",\"params\":{{}}}}"' '}}' | $B op deploy -); echo "newline rc=$? out=$out"
out=$(printf '%s\n' '{{"ref":"a"}}' '{{"op":"migrate","params":{{}}}}' | $B op deploy - 2>&1); echo "two rc=$? out=$out"
out=$($B op deploy "$(head -c 70000 /dev/zero | tr '\0' a)" 2>&1); echo "big rc=$? out=$out"
out=$($B op deploy 'not json' 2>&1); echo "nonjson rc=$? out=$out"
code=$(curl -s -o /dev/null -w '%{{http_code}}' http://sbx-ops/deploy); echo "get code=$code"
python3 -c 'import json, urllib.request as u; r = u.urlopen(u.Request("http://sbx-ops/deploy", data=json.dumps({{"ref": "py"}}).encode(), headers={{"Content-Type": "application/json"}}), timeout=60); print("python", r.status, r.read().decode().strip())'
test -e {SOCKET} && echo "socket: visible" || echo "socket: hidden"
echo "environ:"; for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do tr '\0' '\n' < $f; echo; done 2>/dev/null
echo "grep:"; timeout 60 grep -rIlsF "{prefix}" /etc /run /tmp /root /home /workspace /var /mnt /srv /media /opt 2>/dev/null | head -5
echo end
"#
    )
}

pub fn platform_operations_keep_the_handlers_secret() -> Result<(), String> {
    crate::persist::runtime()?;
    require_tool("curl")?;
    require_tool("python3")?;
    let d = TempDir::new("g9ops");
    let sentinel = d.path().join("deployed");
    let (prefix, secret) = secret();
    let cp = ControlPlane::start(secret.clone(), sentinel.clone())?;
    let p = policy(d.path(), "[\"deploy\"]");
    let r = user(&p, &attempts(bin(), &prefix), &secret);
    r.expect_code(0, "the attempts")?;
    let got = cp.got();
    drop(cp);
    let out = &r.stdout;
    let has = |s: &str| check(out.contains(s), || format!("no {s:?} in:\n{}", r.show()));
    // The call works: the handler ran (its sentinel), the answer came back, exit 0.
    has("deploy rc=0 out={\"ok\":true,\"result\":{\"deployed\":8}}")?;
    let proof = std::fs::read_to_string(&sentinel).map_err(|e| format!("no sentinel: {e}"))?;
    check(proof.starts_with("deployed 8 with a credential"), || {
        proof.clone()
    })?;
    // Refusals, each before the control plane hears of it.
    has("migrate rc=125 out=sbx-exec: operation migrate was refused (403): operation migrate is not in this context's ops")?;
    has("two rc=125 out=sbx-exec: operation deploy was refused (400)")?;
    has("big rc=125 out=sbx-exec: operation deploy was refused (413)")?;
    has("nonjson rc=125 out=sbx-exec: operation deploy was refused (400)")?;
    has("get code=405")?;
    has("python 200 {\"ok\":true,\"result\":{\"deployed\":2}}")?;
    has("newline rc=0")?;
    has("socket: hidden")?;
    check(out.contains("grep:\nend"), || {
        format!("a readable file holds the secret's prefix:\n{out}")
    })?;
    check(
        !out.contains(&secret) && !r.stderr.contains(&secret),
        || "the secret reached user code".to_string(),
    )?;
    // The stand-in got exactly the three deploys (the CLI's two, Python's urllib's), each header
    // naming the context and its ops.
    let ops: Vec<&str> = got
        .iter()
        .map(|g| g.request["op"].as_str().unwrap_or(""))
        .collect();
    check(ops == ["deploy", "deploy", "deploy"], || {
        format!("the control plane got {got:?}")
    })?;
    for g in &got {
        let h = &g.header;
        check(
            h["sbx_ops"] == 1
                && h["context"] == "user"
                && h["ops"] == serde_json::json!(["deploy"])
                && h["call"].as_str().is_some_and(|c| c.len() == 16),
            || format!("header {h}"),
        )?;
        check(!g.trailing, || format!("more than one request line: {g:?}"))?;
        check(g.peer_uid == Some(0), || {
            format!("the peer is not root: {g:?}")
        })?;
    }
    check(
        got[0].request["params"] == serde_json::json!({"ref": "rel-7f3a"}),
        || format!("{got:?}"),
    )?;
    check(
        got[1].request["params"]["ref"] == "x\n{\"op\":\"migrate\",\"params\":{}}",
        || format!("the newline params arrived as {:?}", got[1].request),
    )?;
    audited(d.path())
}

/// The audit log has an `op` record for the allowed call and for the refused one, with their
/// statuses, and none of the params.
fn audited(dir: &Path) -> Result<(), String> {
    let log = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap_or_default();
    let ops: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "op")
        .collect();
    let has = |op: &str, status: u64| {
        ops.iter()
            .any(|v| v["op"] == op && v["status"] == status && v["context"] == "user")
    };
    check(
        has("deploy", 200) && has("migrate", 403) && has("deploy", 413),
        || format!("the audit log lacks an op record:\n{log}"),
    )?;
    check(!log.contains("rel-7f3a"), || {
        format!("params in the audit log:\n{log}")
    })
}

/// A context without ops is refused (403), and with ops but no control plane listening the call
/// is refused naming the socket; neither hangs.
pub fn platform_operations_refused_without_ops_or_control_plane() -> Result<(), String> {
    crate::persist::runtime()?;
    let d = TempDir::new("g9opsno");
    let (_, secret) = secret();
    let cp = ControlPlane::start(secret.clone(), d.path().join("deployed"))?;
    let script = format!("{} op deploy '{{}}'", bin());
    let r = user(&policy(d.path(), ""), &script, &secret);
    r.expect_code(125, "op deploy from a context without ops")?;
    check(
        r.stderr
            .contains("(403): operation deploy is not in this context's ops"),
        || r.show(),
    )?;
    let got = cp.got();
    drop(cp);
    check(got.is_empty(), || format!("the control plane got {got:?}"))?;
    let r = user(&policy(d.path(), "[\"deploy\"]"), &script, &secret);
    r.expect_code(125, "op deploy without a control plane")?;
    check(
        r.stderr.contains("(503)") && r.stderr.contains(SOCKET),
        || r.show(),
    )
}

/// A persistent context's net helper serves the gate's connections to the control plane: two
/// calls of the context each reach the handler, the header naming the context.
pub fn a_persistent_context_calls_platform_operations() -> Result<(), String> {
    crate::persist::runtime()?;
    let d = TempDir::new("g9opspersist");
    let name = unique_name("opsp");
    let p = Policy::new()
        .persistent(&name)
        .lines("ops = [\"deploy\"]\nnet = { mode = \"private\", allow = [\"192.0.2.10/32\"] }\n")
        .write(d.path());
    let pol = p.display().to_string();
    let (_, secret) = secret();
    let sentinel = d.path().join("deployed");
    let cp = ControlPlane::start(secret, sentinel.clone())?;
    let script = format!("{} op deploy '{{\"ref\":\"p1\"}}'", bin());
    let first = crate::support::run_in(&pol, &name, &["sh", "-c", &script]);
    let second = crate::support::run_in(&pol, &name, &["sh", "-c", &script]);
    let got = cp.got();
    drop(cp);
    let _ = crate::support::stop(&pol, &name);
    for r in [&first, &second] {
        r.expect_code(0, "op deploy in a persistent context")?;
        check(r.stdout.contains("{\"ok\":true,"), || r.show())?;
    }
    check(
        got.len() == 2
            && got
                .iter()
                .all(|g| g.header["context"] == name.as_str() && g.peer_uid == Some(0)),
        || format!("the control plane got {got:?}"),
    )?;
    let proof = std::fs::read_to_string(&sentinel).unwrap_or_default();
    check(proof.lines().count() == 2, || proof.clone())
}
