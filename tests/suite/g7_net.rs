//! G7, the network: a `net = "private"` context shares no network channel with the trusted side.
//! Its egress goes only through sbx-exec's proxy and only to what `net.allow` names; the
//! container's loopback services, the metadata address, its own addresses, abstract unix sockets
//! and connections are out of reach; a port it listens on is not one trusted tools connect to;
//! published ports still serve.
//!
//! No packet leaves this machine: every scenario runs inside a network namespace the test makes
//! (`unshare --net`), where a fake "internet" host (192.0.2.10, TEST-NET-1), a host the policy
//! does not name (192.0.2.20), a fake metadata server (169.254.169.254), a stand-in for the
//! control API (127.0.0.1:18080, dual-stack) and for PostgreSQL (127.0.0.1:15432) are addresses
//! on that namespace's `lo`. Each check has its control: the same request from outside the
//! sandbox (in the test's namespace) does reach the service.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::*;
use crate::policy_tests::{write_policy, DEFAULT_TOML};

/// The default policy with `user`'s `[context.user.net]` table replaced by `net` (a TOML body
/// for that table) and `extra` lines added to `[context.user]` and at the top.
pub fn user_net_policy(net: &str, top: &str) -> String {
    let start = DEFAULT_TOML
        .find("[context.user.net]")
        .expect("the default policy has [context.user.net]");
    let end = start
        + DEFAULT_TOML[start..]
            .find("[context.user.env]")
            .expect("[context.user.env] follows");
    let text = format!(
        "{}[context.user.net]\n{net}\n\n{}",
        &DEFAULT_TOML[..start],
        &DEFAULT_TOML[end..]
    );
    text.replacen("version = 1\n", &format!("version = 1\n{top}\n"), 1)
}

/// What every scenario starts with, in the test's own network namespace: `lo` up, the fake
/// addresses, one HTTP server per service (each serves a file `who` naming it), waited for.
fn prelude(dir: &Path) -> String {
    for (name, who) in [
        ("net", "internet"),
        ("other", "unlisted"),
        ("meta", "metadata"),
        ("ctl", "control-api"),
    ] {
        std::fs::create_dir_all(dir.join(name)).unwrap();
        std::fs::write(dir.join(name).join("who"), format!("{who}\n")).unwrap();
    }
    let d = dir.display();
    format!(
        r#"set -u
ip link set lo up
ip addr add 192.0.2.10/32 dev lo
ip addr add 192.0.2.20/32 dev lo
ip addr add 169.254.169.254/32 dev lo
PIDS=""
serve() {{ python3 -m http.server --bind "$1" --directory "{d}/$2" "$3" >/dev/null 2>&1 & PIDS="$PIDS $!"; }}
serve 192.0.2.10 net 80
serve 192.0.2.20 other 80
serve 169.254.169.254 meta 80
serve :: ctl 18080
trap 'kill $PIDS 2>/dev/null' EXIT
for u in 192.0.2.10:80 192.0.2.20:80 169.254.169.254:80 127.0.0.1:18080; do
  i=0; until curl -s -o /dev/null "http://$u/who"; do i=$((i+1)); [ $i -gt 100 ] && echo "no server $u" && exit 3; sleep 0.05; done
done
"#
    )
}

/// Run `script` after the prelude in a new network namespace; the result of the whole script.
fn in_test_netns(dir: &Path, script: &str) -> Run {
    let full = format!("{}{script}", prelude(dir));
    let mut c = Cmd::new("unshare");
    c.command().args(["--net", "--", "sh", "-c", &full]);
    c.limit(Duration::from_secs(90)).run()
}

fn tools() -> Result<(), String> {
    needs_isolation()?;
    for t in ["curl", "ip", "python3", "unshare"] {
        require_tool(t)?;
    }
    Ok(())
}

fn policy(dir: &Path, net: &str, top: &str) -> PathBuf {
    write_policy(dir, &user_net_policy(net, top))
}

fn user(policy: &Path, script: &str) -> String {
    format!(
        "{} --policy {} --ctx user -- sh -c '{}'",
        bin(),
        policy.display(),
        script
    )
}

pub fn egress_reaches_allowed_hosts_only_through_the_proxy() -> Result<(), String> {
    tools()?;
    let d = TempDir::new("g7egress");
    let p = policy(
        d.path(),
        "mode = \"private\"\nallow = [\"192.0.2.10/32\"]",
        "",
    );
    let inside = user(
        &p,
        "echo curl:$(curl -s -m 5 http://192.0.2.10/who); \
         python3 -c \"import urllib.request as u; print(\\\"urllib:\\\" + u.urlopen(\\\"http://192.0.2.10/who\\\", timeout=5).read().decode().strip())\"; \
         echo direct:$(curl -s -m 3 --noproxy \"*\" http://192.0.2.10/who || echo refused); \
         echo direct-unlisted:$(curl -s -m 3 --noproxy \"*\" http://192.0.2.20/who || echo refused); \
         echo direct-meta:$(curl -s -m 3 --noproxy \"*\" http://169.254.169.254/who || echo refused)",
    );
    let script =
        format!("echo outside:$(curl -s -m 5 --noproxy '*' http://192.0.2.10/who)\n{inside}\n");
    let r = in_test_netns(d.path(), &script);
    r.expect_code(0, "egress scenario")?;
    // Control: the host is there, and reachable directly outside.
    check(r.stdout.contains("outside:internet"), || r.show())?;
    // Through the proxy (curl and Python's urllib read HTTP_PROXY)...
    check(r.stdout.contains("curl:internet"), || r.show())?;
    check(r.stdout.contains("urllib:internet"), || r.show())?;
    // Without the proxy variables the connection is captured and judged the same way: the
    // allowed host is reached, the unlisted one and the metadata address are not (every address
    // is local inside: there is no route around the gate).
    check(r.stdout.contains("direct:internet"), || r.show())?;
    check(r.stdout.contains("direct-unlisted:refused"), || r.show())?;
    check(r.stdout.contains("direct-meta:refused"), || r.show())
}

/// Every spelling of an internal destination, asked through the proxy.
const REFUSED: &[&str] = &[
    "http://169.254.169.254/who",
    "http://127.0.0.1:18080/who",
    "http://2130706433:18080/who",
    "http://0177.0.0.1:18080/who",
    "http://127.1:18080/who",
    "http://[::ffff:127.0.0.1]:18080/who",
    "http://[::]:18080/who",
    "http://0.0.0.0:18080/who",
    "http://192.0.2.20/who",
];

pub fn internal_destinations_are_refused_in_every_spelling() -> Result<(), String> {
    tools()?;
    let d = TempDir::new("g7refuse");
    let log = d.path().join("audit.jsonl");
    let top = format!("audit = \"{}\"", log.display());
    let p = policy(
        d.path(),
        "mode = \"private\"\nallow = [\"192.0.2.10/32\"]",
        &top,
    );
    let mut script = String::new();
    for url in REFUSED {
        let q = format!("{url}?token=SECRET-IN-URL");
        script.push_str(&format!(
            "echo \"outside {url} $(curl -s -m 5 --noproxy '*' '{q}')\"\n"
        ));
        let cmd = format!(
            "echo \"inside {url} $(curl -s -m 5 --noproxy \"\" -w \" code=%{{http_code}}\" \"{q}\" | tr \"\\n\" \" \")\""
        );
        script.push_str(&user(&p, &cmd));
        script.push('\n');
    }
    let r = in_test_netns(d.path(), &script);
    r.expect_code(0, "refusal scenario")?;
    for url in REFUSED {
        let line = |side: &str| {
            r.stdout
                .lines()
                .find(|l| l.starts_with(&format!("{side} {url} ")))
                .unwrap_or("")
                .to_string()
        };
        let (outside, inside) = (line("outside"), line("inside"));
        // Control: from the test's namespace the service answers.
        check(
            ["internet", "unlisted", "metadata", "control-api"]
                .iter()
                .any(|w| outside.ends_with(w)),
            || format!("{url} not reachable outside (control): {}", r.show()),
        )?;
        check(inside.contains("code=403"), || {
            format!("{url} not refused inside: {inside:?}\n{}", r.show())
        })?;
        // The rule, never the address or the class it fell in (the audit log has those).
        check(
            inside.contains("no sandbox may reach") || inside.contains("not in net.allow"),
            || format!("{url}: no reason in the 403 body: {inside:?}"),
        )?;
        check(
            !inside.contains("control-api") && !inside.contains("metadata"),
            || format!("{url} reached the service: {inside:?}"),
        )?;
    }
    // The audit log has a refusal line per request, with host and port, never the URL's data.
    let audit = std::fs::read_to_string(&log).unwrap_or_default();
    let refusals = audit
        .lines()
        .filter(|l| l.contains("\"egress-refused\""))
        .count();
    check(refusals >= REFUSED.len(), || {
        format!("{refusals} refusal lines in the audit log:\n{audit}")
    })?;
    check(
        audit.contains("\"host\":\"169.254.169.254\"") && audit.contains("\"port\":18080"),
        || format!("audit lines lack host/port:\n{audit}"),
    )?;
    check(!audit.contains("SECRET-IN-URL"), || {
        format!("the audit log holds request data:\n{audit}")
    })
}

/// A listener of `user` on 127.0.0.1:15432 waiting 4 s; prints whether anything connected.
const SQUAT: &str = "python3 -c \"import socket; l=socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); l.bind((\\\"127.0.0.1\\\",15432)); l.listen(); l.settimeout(4)\ntry:\n c,_=l.accept(); print(\\\"CAPTURED\\\", c.recv(100))\nexcept socket.timeout: print(\\\"nothing-captured\\\")\"";

/// `platform` (net = host) connects to 127.0.0.1:15432 and sends its "password".
fn platform_client(p: &Path) -> String {
    format!(
        "{} --policy {} --ctx platform -- python3 -c 'import socket,time\nfor i in range(40):\n try:\n  s=socket.create_connection((\"127.0.0.1\",15432),1); s.sendall(b\"PGPASSWORD=hunter2\"); print(\"platform-got\", s.recv(100)); break\n except OSError: time.sleep(0.1)'",
        bin(),
        p.display()
    )
}

pub fn user_cannot_squat_a_port_platform_connects_to() -> Result<(), String> {
    tools()?;
    let d = TempDir::new("g7squat");
    let private = policy(d.path(), "mode = \"private\"", "");
    let hd = TempDir::new("g7squathost");
    let host = policy(hd.path(), "mode = \"host\"", "");
    let real_pg = "python3 -c 'import socket; l=socket.socket(); l.bind((\"127.0.0.1\",15432)); l.listen(); c,_=l.accept(); c.recv(100); c.sendall(b\"REAL-PG\")' &\nsleep 0.3\n";
    let script = format!(
        "{real_pg}{} > {dir}/user.out &\nU=$!\nsleep 0.5\n{}\nwait $U; cat {dir}/user.out\n",
        user(&private, SQUAT),
        platform_client(&private),
        dir = d.path().display()
    );
    let r = in_test_netns(d.path(), &script);
    r.expect_code(0, "squat scenario")?;
    check(r.stdout.contains("platform-got b'REAL-PG'"), || r.show())?;
    check(
        r.stdout.contains("nothing-captured") && !r.stdout.contains("CAPTURED"),
        || format!("user captured platform's connection: {}", r.show()),
    )?;
    // Control: with net = "host" (the old default) and the service down, user code captures it.
    let script = format!(
        "{} > {dir}/user.out &\nU=$!\nsleep 0.8\n{}\nwait $U; cat {dir}/user.out\n",
        user(&host, SQUAT),
        platform_client(&host),
        dir = hd.path().display()
    );
    let r = in_test_netns(hd.path(), &script);
    check(r.stdout.contains("CAPTURED b'PGPASSWORD=hunter2'"), || {
        format!(
            "control: the squat did not work with net = host: {}",
            r.show()
        )
    })
}

pub fn abstract_sockets_and_connections_of_the_host_are_invisible() -> Result<(), String> {
    tools()?;
    let d = TempDir::new("g7abstract");
    // scope = false: the network namespace alone separates abstract sockets (Landlock's scope
    // is a second wall where the kernel has it).
    let text = user_net_policy("mode = \"private\"\nallow = [\"192.0.2.10/32\"]", "")
        .replace("scope = true ", "scope = false ");
    let p = write_policy(d.path(), &text);
    let listen = "python3 -c 'import socket,time; s=socket.socket(socket.AF_UNIX); s.bind(b\"\\0sbx-g7-host\"); s.listen(); time.sleep(20)' &\nPIDS=\"$PIDS $!\"\nsleep 0.3\n";
    let probe = "python3 -c \"import socket; s=socket.socket(socket.AF_UNIX)\ntry:\n s.connect(b\\\"\\\\0sbx-g7-host\\\"); print(\\\"abstract-connected\\\")\nexcept OSError as e: print(\\\"abstract-refused\\\", e)\"";
    let hold = "python3 -c 'import socket,time; s=socket.create_connection((\"127.0.0.1\",18080)); time.sleep(20)' &\nPIDS=\"$PIDS $!\"\nsleep 0.3\n";
    let script = format!(
        "{listen}{hold}echo outside:; sh -c '{probe}'; cat /proc/net/tcp /proc/net/tcp6 | grep -c ':46A0 ' | sed s/^/outside-18080-rows=/\n{}\n",
        user(
            &p,
            &format!("echo inside:; {probe}; echo inside-tcp:; cat /proc/net/tcp /proc/net/tcp6; ss -tan")
        )
    );
    let r = in_test_netns(d.path(), &script);
    r.expect_code(0, "abstract scenario")?;
    let (outside, inside) = r.stdout.split_once("inside:").ok_or_else(|| r.show())?;
    check(outside.contains("abstract-connected"), || {
        format!(
            "control: the abstract socket is not reachable outside: {}",
            r.show()
        )
    })?;
    check(inside.contains("abstract-refused"), || {
        format!(
            "the host's abstract socket is reachable inside: {}",
            r.show()
        )
    })?;
    // Outside, the held connection to 18080 is listed; inside, nothing of the host (only the
    // proxy's listener, 0.0.0.0:3128 = 00000000:0C38: every loopback address of its own netns).
    check(!outside.contains("outside-18080-rows=0"), || r.show())?;
    let (_, tcp) = inside.split_once("inside-tcp:").ok_or_else(|| r.show())?;
    check(!tcp.contains(":46A0") && !tcp.contains(":18080"), || {
        format!("a host connection is visible inside: {tcp}")
    })?;
    check(tcp.contains("00000000:0C38"), || {
        format!("no proxy listener: {tcp}")
    })
}

pub fn published_port_serves_from_the_sandbox() -> Result<(), String> {
    tools()?;
    let d = TempDir::new("g7publish");
    let p = policy(d.path(), "mode = \"private\"\npublish = [3000]", "");
    let serve = "mkdir -p /tmp/site && echo served-from-sandbox > /tmp/site/who && timeout 5 python3 -m http.server --bind 127.0.0.1 --directory /tmp/site 3000 >/dev/null 2>&1; echo env:$(env | grep -ci proxy)";
    let script = format!(
        "echo before:$(curl -s -m 2 http://127.0.0.1:3000/who || echo none)\n{} > {dir}/s.out &\nS=$!\n\
         i=0; until out=$(curl -s -m 2 http://127.0.0.1:3000/who) && [ -n \"$out\" ]; do i=$((i+1)); [ $i -gt 60 ] && break; sleep 0.1; done\n\
         echo published:$out\nwait $S; cat {dir}/s.out\n",
        user(&p, serve),
        dir = d.path().display()
    );
    let r = in_test_netns(d.path(), &script);
    r.expect_code(0, "publish scenario")?;
    check(r.stdout.contains("before:none"), || r.show())?;
    check(r.stdout.contains("published:served-from-sandbox"), || {
        r.show()
    })?;
    // allow = []: no proxy variables.
    check(r.stdout.contains("env:0"), || r.show())
}

/// A published port's connection in which nothing moves is ended after `net.limits.idle_timeout`
/// (1 s here), not kept for a day: a client from the container that connects and sends nothing
/// sees it closed after about a second, while the dev server inside still runs (control: a
/// request right after is served).
pub fn published_port_connections_end_when_idle() -> Result<(), String> {
    tools()?;
    let d = TempDir::new("g7pubidle");
    let p = policy(
        d.path(),
        "mode = \"private\"\npublish = [3000]\nlimits = { idle_timeout = 1 }",
        "",
    );
    let serve = "mkdir -p /tmp/site && echo served-from-sandbox > /tmp/site/who && timeout 8 python3 -m http.server --bind 127.0.0.1 --directory /tmp/site 3000 >/dev/null 2>&1";
    let idle = "import socket, time\ns = socket.create_connection((\"127.0.0.1\", 3000), 5)\ns.settimeout(9)\nstart = time.time()\ntry:\n    got = s.recv(100) or b\"closed\"\nexcept socket.timeout:\n    got = b\"open\"\nprint(\"idle:%s after %.1f s\" % (got.decode(), time.time() - start))";
    std::fs::write(d.path().join("idle.py"), idle).unwrap();
    let script = format!(
        "{} &\nS=$!\n\
         i=0; until out=$(curl -s -m 2 http://127.0.0.1:3000/who) && [ -n \"$out\" ]; do i=$((i+1)); [ $i -gt 60 ] && break; sleep 0.1; done\n\
         echo first:$out\npython3 {dir}/idle.py\necho again:$(curl -s -m 2 http://127.0.0.1:3000/who)\nkill $S; wait $S; echo server-ended\n",
        user(&p, serve),
        dir = d.path().display()
    );
    let r = in_test_netns(d.path(), &script);
    r.expect_code(0, "idle published connection scenario")?;
    check(r.stdout.contains("first:served-from-sandbox"), || r.show())?;
    let line = r
        .stdout
        .lines()
        .find(|l| l.starts_with("idle:"))
        .unwrap_or("");
    let secs: f64 = line
        .rsplit("after ")
        .next()
        .and_then(|t| t.trim_end_matches(" s").parse().ok())
        .unwrap_or(f64::MAX);
    // Without the limit it stays open until the server inside ends (8 s after it started).
    check(
        line.starts_with("idle:closed") && (0.5..3.5).contains(&secs),
        || {
            format!(
                "the idle connection was not ended after idle_timeout: {}",
                r.show()
            )
        },
    )?;
    check(r.stdout.contains("again:served-from-sandbox"), || r.show())
}

/// Tasks (threads) of a running sbx-exec whose target runs `script` (in bash) and then sleeps.
/// What `ps` would show of one call while `script` runs in it (checked after 900 ms): the
/// launcher's thread count and, for each child of the launcher that is the gate, its
/// /proc/PID/status lines of interest and what its fds 0 and 1 are (the launcher's own are
/// pipes). With `kill_gate`, the gate is then killed (a crash) and the call's exit code is
/// returned too.
struct Seen {
    launcher_threads: usize,
    /// The launcher's fds 0 and 1.
    launcher_stdio: String,
    gates: Vec<String>,
    gate_stdio: Vec<String>,
    code: Option<i32>,
}

/// Where fds 0 and 1 of `pid` lead, as "0 -> X, 1 -> Y".
fn stdio_of(pid: &str) -> String {
    let link = |fd: u32| {
        std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
            .map_or_else(|e| format!("({e})"), |p| p.display().to_string())
    };
    format!("0 -> {}, 1 -> {}", link(0), link(1))
}

fn while_running(p: &Path, script: &str, kill_gate: bool) -> Result<Seen, String> {
    let mut child = std::process::Command::new(bin())
        .args([
            "--policy",
            p.to_str().unwrap(),
            "--ctx",
            "user",
            "--",
            "bash",
            "-c",
            script,
        ])
        .env_clear()
        .env("PATH", SUITE_PATH)
        .current_dir("/")
        // Pipes, as a caller feeding the command and reading its output would pass: what the
        // gate must not get.
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_millis(900));
    let launcher = child.id();
    let launcher_stdio = stdio_of(&launcher.to_string());
    let launcher_threads = std::fs::read_dir(format!("/proc/{launcher}/task"))
        .map(|d| d.count())
        .unwrap_or(0);
    let children = std::fs::read_to_string(format!("/proc/{launcher}/task/{launcher}/children"))
        .unwrap_or_default();
    let mut gates = Vec::new();
    let mut gate_stdio = Vec::new();
    let mut gate_pids = Vec::new();
    for pid in children.split_whitespace() {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmdline.starts_with(b"sbx-gate\0") || cmdline == b"sbx-gate" {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let keep: Vec<&str> = status
                .lines()
                .filter(|l| {
                    ["Uid:", "CapEff:", "CapPrm:", "NoNewPrivs:", "Seccomp:"]
                        .iter()
                        .any(|k| l.starts_with(k))
                })
                .collect();
            gates.push(keep.join(" | "));
            gate_stdio.push(stdio_of(pid));
            gate_pids.push(pid.to_string());
        }
    }
    if kill_gate {
        for pid in &gate_pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid.parse().unwrap_or(0)),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let code = child.wait().ok().and_then(|s| s.code());
    Ok(Seen {
        launcher_threads,
        launcher_stdio,
        gates,
        gate_stdio,
        code,
    })
}

/// The egress gate runs apart and unprivileged (G9): with `net.allow = []` there is none, with
/// an allowlist none until the sandbox's first connection to the proxy (only to its own
/// 127.0.0.1:3128; no request is sent, so nothing leaves). While a connection is held, the
/// launcher has one thread (it parses nothing) and the gate is a process of its own with uid
/// 65534, no capabilities, no_new_privs and a seccomp filter, and its stdin and stdout are
/// /dev/null, not the pipes the launcher (and the command) got: a gate taken over cannot read the
/// command's input. Killing the gate (as a crash of its parser would) ends only the call's
/// egress: the command goes on, its next connection to the proxy is refused, and it exits as it
/// would.
pub fn the_gate_runs_apart_unprivileged() -> Result<(), String> {
    needs_isolation()?;
    let d = TempDir::new("g7tasks");
    let none = policy(d.path(), "mode = \"private\"\nallow = []", "");
    let seen = while_running(&none, "sleep 2", false)?;
    check(seen.launcher_threads == 1 && seen.gates.is_empty(), || {
        format!(
            "net.allow = []: {} threads, gates {:?}",
            seen.launcher_threads, seen.gates
        )
    })?;
    let d2 = TempDir::new("g7tasks2");
    let some = policy(
        d2.path(),
        "mode = \"private\"\nallow = [\"192.0.2.10/32\"]",
        "",
    );
    let idle = while_running(&some, "sleep 2", false)?;
    check(idle.launcher_threads == 1 && idle.gates.is_empty(), || {
        format!(
            "an allowlist, no connection: {} threads, gates {:?}",
            idle.launcher_threads, idle.gates
        )
    })?;
    let used = while_running(
        &some,
        "exec 3<>/dev/tcp/127.0.0.1/3128 || exit 9; sleep 2",
        false,
    )?;
    check(used.launcher_threads == 1, || {
        format!(
            "a connection held: the launcher has {} threads",
            used.launcher_threads
        )
    })?;
    let [gate] = used.gates.as_slice() else {
        return Err(format!("a connection held: gates {:?}", used.gates));
    };
    for want in [
        "Uid:\t65534\t65534\t65534\t65534",
        "CapEff:\t0000000000000000",
        "CapPrm:\t0000000000000000",
        "NoNewPrivs:\t1",
        "Seccomp:\t2",
    ] {
        check(gate.contains(want), || {
            format!("the gate: {gate} (expected {want:?})")
        })?;
    }
    // The control: the launcher's own stdin and stdout are the caller's pipes.
    check(
        used.launcher_stdio.starts_with("0 -> pipe:") && used.launcher_stdio.contains("1 -> pipe:"),
        || format!("the launcher's stdio: {}", used.launcher_stdio),
    )?;
    check(
        used.gate_stdio == ["0 -> /dev/null, 1 -> /dev/null"],
        || format!("the gate's stdin and stdout: {:?}", used.gate_stdio),
    )?;
    // A dead gate: the command goes on; its next connection to the proxy is refused (exit 7 from
    // the script), not hung; the call ends with the command's own status.
    let crash = while_running(
        &some,
        "exec 3<>/dev/tcp/127.0.0.1/3128 || exit 9; sleep 1.5; if exec 4<>/dev/tcp/127.0.0.1/3128; then exit 8; else exit 7; fi",
        true,
    )?;
    check(crash.gates.len() == 1 && crash.code == Some(7), || {
        format!(
            "after the gate was killed: gates {:?}, exit {:?}",
            crash.gates, crash.code
        )
    })
}

/// The gate and its dialer started by hand without the fds sbx-exec places for them (as uid 65534
/// with no_new_privs and no capability, so that they pass their first checks): each says it runs
/// only as sbx-exec starts it and exits 125, rather than aborting on a descriptor that names
/// nothing. Control: with an open fd 3 (a config that is not one) the gate goes on to read it and
/// refuses what it read.
pub fn the_gate_started_by_hand_refuses_cleanly() -> Result<(), String> {
    needs_isolation()?;
    let setpriv = require_tool("setpriv")?;
    let by_hand = |role: &str, fd3: &str| {
        // $PPID: the dialer checks that its "launcher" (its argument) is its parent.
        let script = format!("exec -a {role} {} $PPID {fd3}", bin());
        let mut c = Cmd::new(&setpriv);
        c.command().args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--no-new-privs",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--",
            "bash",
            "-c",
            &script,
        ]);
        c.limit(Duration::from_secs(20)).run()
    };
    for role in ["sbx-gate", "sbx-gate-dial"] {
        let r = by_hand(role, "3<&-");
        check(
            r.code == Some(125)
                && r.stderr.contains("runs only as sbx-exec starts it")
                && r.stderr.contains("fd 3 is not open")
                && r.stderr.contains("not a command to run by hand")
                && !r.stderr.contains("IO Safety"),
            || format!("{role} by hand without fd 3: {}", r.show()),
        )?;
    }
    let r = by_hand("sbx-gate", "3</dev/null");
    check(
        r.code == Some(125)
            && r.stderr.contains("the gate's config")
            && !r.stderr.contains("fd 3 is not open"),
        || format!("the gate by hand with an open fd 3: {}", r.show()),
    )
}

pub fn net_policy_errors_name_the_place() -> Result<(), String> {
    let d = TempDir::new("g7policy");
    let cases = [
        (
            "mode = \"private\"\nallow = [\"10.0.0.0/33\"]",
            "net.allow entry",
        ),
        (
            "mode = \"private\"\npublish = [8080]",
            "reserved for the control plane",
        ),
        ("mode = \"private\"\nproxy = 1", "unknown field"),
        (
            "mode = \"host\"\nallow = [\"pypi.org\"]",
            "need mode = \"private\"",
        ),
    ];
    for (net, want) in cases {
        let p = policy(d.path(), net, "");
        let r = Cmd::sbx(["policy".as_ref(), "check".as_ref(), p.as_os_str()]).run();
        check(!r.ok() && r.stderr.contains(want), || {
            format!("{net:?}: expected an error with {want:?}: {}", r.show())
        })?;
        check(r.stderr.contains("policy.toml:"), || r.show())?;
    }
    Ok(())
}

// Persistent contexts: the keeper's network namespace and ONE net helper (proxy and forwarders,
// outside that namespace) live as long as the keeper; joins reuse them.

/// The default policy with `user` renamed `name`, persistent (scope = false, which persist
/// needs), its net table `net`, and `top` lines at the top.
fn persistent_policy(dir: &Path, name: &str, net: &str, top: &str) -> PathBuf {
    let text = user_net_policy(net, top)
        .replace("[context.user", &format!("[context.{name}"))
        .replacen(
            &format!("[context.{name}]\n"),
            &format!("[context.{name}]\npersist = true\n"),
            1,
        )
        .replace("scope = true ", "scope = false ");
    write_policy(dir, &text)
}

/// Shell functions for the scenarios: `call SCRIPT` (a call of the persistent context), `stop`,
/// `field KEY` (of its `ctx list --json` entry), `alive PID` (exists and is not a zombie), and
/// `port` (whether 127.0.0.1:3000 accepts a connection here).
fn persistent_shell(p: &Path, name: &str) -> String {
    let (b, p) = (bin(), p.display());
    format!(
        r#"call() {{ {b} --policy {p} --ctx {name} -- sh -c "$1"; }}
stop() {{ {b} ctx stop {name} --timeout 2 --policy {p}; }}
field() {{ {b} ctx list --json | python3 -c "import json,sys; print(([e for e in json.load(sys.stdin) if e['name']=='{name}'] or [{{}}])[0].get('$1'))"; }}
alive() {{ s=$(sed 's/.*) //' /proc/$1/stat 2>/dev/null | cut -c1); [ -n "$s" ] && [ "$s" != Z ] && [ "$s" != X ]; }}
port() {{ python3 -c "import socket; socket.create_connection(('127.0.0.1',3000),1)" 2>/dev/null && echo open || echo closed; }}
"#
    )
}

/// Start a dev server on 3000 in the context (in the background, outliving the call).
const DEV_SERVER: &str = "mkdir -p /tmp/site && echo persistent-dev-server > /tmp/site/who && (python3 -m http.server 3000 --bind 127.0.0.1 --directory /tmp/site >/dev/null 2>&1 &); echo started";

/// Wait (up to 6 s) until 127.0.0.1:3000 serves `who`; sets OUT.
const WAIT_SERVED: &str = "i=0; until OUT=$(curl -s -m 2 http://127.0.0.1:3000/who) && [ -n \"$OUT\" ]; do i=$((i+1)); [ $i -gt 60 ] && break; sleep 0.1; done\n";

fn persistent_tools() -> Result<(), String> {
    tools()?;
    crate::persist::runtime()
}

pub fn persistent_context_publishes_a_dev_server_to_every_call() -> Result<(), String> {
    persistent_tools()?;
    let d = TempDir::new("g7ppub");
    let p = persistent_policy(
        d.path(),
        "pnetpub",
        "mode = \"private\"\nallow = [\"192.0.2.10/32\"]\npublish = [3000]",
        "",
    );
    let script = format!(
        "{}echo before:$(port)\ncall '{DEV_SERVER}'\n{WAIT_SERVED}echo published:$OUT\n\
         echo listing:$(curl -s -m 2 http://127.0.0.1:3000/ | grep -c 'href=\"who\"')\n\
         call 'echo join-curl:$(curl -s -m 2 http://127.0.0.1:3000/who); python3 -c \"import urllib.request as u; print(\\\"join-py:\\\" + u.urlopen(\\\"http://127.0.0.1:3000/who\\\", timeout=2).read().decode().strip())\"'\n\
         NET=$(field net_pid); echo net:$NET; alive $NET && echo net-alive\n\
         stop; echo stop:$?\necho after:$(port)\nalive $NET || echo net-gone\n",
        persistent_shell(&p, "pnetpub")
    );
    let r = in_test_netns(d.path(), &script);
    r.expect_code(0, "persistent publish scenario")?;
    // Control: nothing listened on 3000 before the first call.
    check(r.stdout.contains("before:closed"), || r.show())?;
    check(r.stdout.contains("published:persistent-dev-server"), || {
        r.show()
    })?;
    check(r.stdout.contains("listing:1"), || r.show())?;
    // A join sees the server the first call started (NO_PROXY keeps 127.0.0.1 direct).
    check(r.stdout.contains("join-curl:persistent-dev-server"), || {
        r.show()
    })?;
    check(r.stdout.contains("join-py:persistent-dev-server"), || {
        r.show()
    })?;
    check(r.stdout.contains("net-alive"), || r.show())?;
    check(r.stdout.contains("stop:0"), || r.show())?;
    // ctx stop ended the keeper AND the net helper: the published port is closed.
    check(r.stdout.contains("after:closed"), || r.show())?;
    check(r.stdout.contains("net-gone"), || r.show())
}

pub fn persistent_join_egresses_through_the_keepers_proxy() -> Result<(), String> {
    persistent_tools()?;
    let d = TempDir::new("g7pegress");
    let log = d.path().join("audit.jsonl");
    let top = format!("audit = \"{}\"", log.display());
    let p = persistent_policy(
        d.path(),
        "pnetegr",
        "mode = \"private\"\nallow = [\"192.0.2.10/32\"]",
        &top,
    );
    let script = format!(
        "{}call 'echo first'\nK=$(field keeper_pid)\n\
         call 'echo join:$(curl -s -m 5 http://192.0.2.10/who); echo meta:$(curl -s -m 5 -w \" code=%{{http_code}}\" http://169.254.169.254/who | tr \"\\n\" \" \"); echo direct:$(curl -s -m 3 --noproxy \"*\" http://192.0.2.10/who || echo refused); echo direct-unlisted:$(curl -s -m 3 --noproxy \"*\" http://192.0.2.20/who || echo refused)'\n\
         [ \"$(field keeper_pid)\" = \"$K\" ] && echo same-keeper\nstop; echo stop:$?\n",
        persistent_shell(&p, "pnetegr")
    );
    let r = in_test_netns(d.path(), &script);
    r.expect_code(0, "persistent egress scenario")?;
    check(r.stdout.contains("same-keeper"), || r.show())?;
    // The join reaches the allowlisted stand-in through the keeper's proxy...
    check(r.stdout.contains("join:internet"), || r.show())?;
    // ...is refused the metadata address with 403, and has no route around the proxy.
    check(
        r.stdout.contains("meta:") && r.stdout.contains("code=403"),
        || r.show(),
    )?;
    check(!r.stdout.contains("metadata"), || r.show())?;
    // Without the proxy variables: captured, the allowed host reached, the unlisted one not.
    check(r.stdout.contains("direct:internet"), || r.show())?;
    check(r.stdout.contains("direct-unlisted:refused"), || r.show())?;
    check(r.stdout.contains("stop:0"), || r.show())?;
    // The net helper logs the refusal to the audit log.
    let audit = std::fs::read_to_string(&log).unwrap_or_default();
    check(
        audit
            .lines()
            .any(|l| l.contains("\"egress-refused\"") && l.contains("169.254.169.254")),
        || format!("no refusal in the audit log:\n{audit}"),
    )
}

pub fn killed_keeper_takes_its_net_helper() -> Result<(), String> {
    persistent_tools()?;
    let d = TempDir::new("g7pkill");
    let p = persistent_policy(
        d.path(),
        "pnetkill",
        "mode = \"private\"\nallow = [\"192.0.2.10/32\"]\npublish = [3000]",
        "",
    );
    let script = format!(
        "{}call '{DEV_SERVER}'\n{WAIT_SERVED}echo served:$OUT\n\
         K=$(field keeper_pid); NET=$(field net_pid); echo keeper:$K net:$NET\n\
         alive $NET && echo net-alive; echo comm:$(cat /proc/$NET/comm)\n\
         kill -9 $K\ni=0; while alive $NET; do i=$((i+1)); [ $i -gt 100 ] && break; sleep 0.05; done\n\
         alive $NET && echo net-survived || echo net-gone\necho after-kill:$(port)\n\
         call 'echo again'; N2=$(field net_pid); [ \"$N2\" != \"$NET\" ] && alive $N2 && echo new-helper\n\
         stop; echo stop:$?\n",
        persistent_shell(&p, "pnetkill")
    );
    let r = in_test_netns(d.path(), &script);
    r.expect_code(0, "killed keeper scenario")?;
    check(r.stdout.contains("served:persistent-dev-server"), || {
        r.show()
    })?;
    // ctx list shows the helper while it runs.
    check(
        r.stdout.contains("net-alive") && r.stdout.contains("comm:sbx-net"),
        || r.show(),
    )?;
    check(
        !r.stdout.contains("net:None") && !r.stdout.contains("net:0 "),
        || r.show(),
    )?;
    // The keeper's death ends the helper, and with it the published port.
    check(r.stdout.contains("net-gone"), || r.show())?;
    check(r.stdout.contains("after-kill:closed"), || r.show())?;
    // The next call starts a new keeper with a new helper.
    check(
        r.stdout.contains("again") && r.stdout.contains("new-helper"),
        || r.show(),
    )?;
    check(r.stdout.contains("stop:0"), || r.show())
}

pub fn persistent_net_stop_leaves_nothing_behind() -> Result<(), String> {
    persistent_tools()?;
    let d = TempDir::new("g7psnap");
    let p = persistent_policy(
        d.path(),
        "pnetsnap",
        "mode = \"private\"\nallow = [\"192.0.2.10/32\"]\npublish = [3000, \"5173-5175\"]",
        "",
    );
    // A snapshot: listening TCP sockets of this namespace, and live sbx-net / sbx-keeper processes.
    let snap = "{ ss -Hltn | awk '{print $4}' | sort; for p in /proc/[0-9]*; do c=$(cat $p/comm 2>/dev/null); case $c in sbx-net|sbx-keeper) alive ${p#/proc/} && echo proc:$c:${p#/proc/};; esac; done; } ";
    let script = format!(
        "{}{snap}> {dir}/before\ncall '{DEV_SERVER}'\n{WAIT_SERVED}echo served:$OUT\n\
         {snap}> {dir}/during\nstop; echo stop:$?\n{snap}> {dir}/after\n\
         echo during-3000:$(grep -c '127.0.0.1:3000$' {dir}/during) during-5174:$(grep -c '127.0.0.1:5174$' {dir}/during)\n\
         diff {dir}/before {dir}/after && echo same-as-before\necho after:$(port)\n",
        persistent_shell(&p, "pnetsnap"),
        dir = d.path().display()
    );
    let r = in_test_netns(d.path(), &script);
    r.expect_code(0, "snapshot scenario")?;
    check(r.stdout.contains("served:persistent-dev-server"), || {
        r.show()
    })?;
    // Control: while the context ran, the published ports listened in this namespace.
    check(r.stdout.contains("during-3000:1 during-5174:1"), || {
        r.show()
    })?;
    check(r.stdout.contains("stop:0"), || r.show())?;
    check(r.stdout.contains("same-as-before"), || r.show())?;
    check(r.stdout.contains("after:closed"), || r.show())
}

/// A persistent context's net helper (its gate and published ports) killed, then frozen with
/// SIGSTOP (it would hold the ports and answer nothing): the next call replaces it, and that call
/// has egress and the published port again, served by the dev server the first call started; a
/// call in flight across the kill loses its egress until then, and has it again after.
/// Then its record is removed: the call is refused naming `ctx stop`, which ends the keeper, the
/// helper and the port. Nothing is left (no sbx-net, no listener on 3000).
pub fn a_lost_net_helper_or_record_loses_nothing() -> Result<(), String> {
    persistent_tools()?;
    let d = TempDir::new("g7pheal");
    let p = persistent_policy(
        d.path(),
        "pnetheal",
        "mode = \"private\"\nallow = [\"192.0.2.10/32\"]\npublish = [3000]",
        "",
    );
    let egress = "call 'echo egress:$(curl -s -m 5 http://192.0.2.10/who)'\n";
    let gone = "i=0; while alive $1; do i=$((i+1)); [ $i -gt 100 ] && break; sleep 0.05; done; alive $1 && echo still:$1 || echo gone:$1";
    let script = format!(
        "{}gone() {{ {gone}; }}\ncall '{DEV_SERVER}'\n{WAIT_SERVED}echo served:$OUT\n\
         call 'for i in $(seq 80); do curl -s -m 1 http://192.0.2.10/who >/dev/null && echo ok || echo lost; sleep 0.1; done' > {dir}/inflight &\nB=$!; sleep 1\n\
         N1=$(field net_pid); K=$(field keeper_pid); cg() {{ grep -c /sbx- /proc/$1/cgroup; }}\n\
         [ \"$(cat /proc/$N1/cgroup)\" = \"$(cat /proc/$K/cgroup)\" ] && echo cgroups1:$(cg $N1)\nkill -9 $N1; gone $N1 >/dev/null; echo killed:$(port); sleep 1\n\
         {egress}{WAIT_SERVED}echo healed1:$OUT\nN2=$(field net_pid); [ \"$N2\" != \"$N1\" ] && alive $N2 && echo new1\n\
         wait $B; echo inflight:$(uniq {dir}/inflight | tr '\\n' ' ')\nkill -STOP $N2\n{egress}{WAIT_SERVED}echo healed2:$OUT\nN3=$(field net_pid); [ \"$N3\" != \"$N2\" ] && alive $N3 && echo new2\n\
         gone $N2 | sed s/$N2/stopped/\n\
         [ \"$(cat /proc/$N3/cgroup)\" = \"$(cat /proc/$K/cgroup)\" ] && echo cgroups3:$(cg $N3)\n\
         rm /run/sbx/pnetheal.state\ncall 'echo ran'; echo refused:$?\n\
         stop; echo stop:$?\ngone $N3 | sed s/$N3/last/\necho after:$(port)\n\
         for q in /proc/[0-9]*; do [ \"$(cat $q/comm 2>/dev/null)\" = sbx-net ] && alive ${{q#/proc/}} && echo left:${{q#/proc/}}; done; true\n",
        persistent_shell(&p, "pnetheal"),
        dir = d.path().display()
    );
    let r = in_test_netns(d.path(), &script);
    r.expect_code(0, "net helper recovery scenario")?;
    // Control: the port served before the helper was killed; killing it closed the port.
    check(r.stdout.contains("served:persistent-dev-server"), || {
        r.show()
    })?;
    check(r.stdout.contains("killed:closed"), || r.show())?;
    // The helpers, first and replaced, are in the context's cgroups (the keeper's), not a
    // caller's: a caller's limits do not cap the context's egress.
    for n in ["cgroups1:", "cgroups3:"] {
        let line = r.stdout.lines().find(|l| l.starts_with(n)).unwrap_or("");
        check(line.len() > n.len() && !line.ends_with(":0"), || {
            format!(
                "the net helper is not in its keeper's cgroups ({n}): {}",
                r.show()
            )
        })?;
    }
    // A call in flight through it loses its egress while no helper runs, and has it again once
    // the next call replaced the helper.
    check(r.stdout.contains("inflight:ok lost ok\n"), || {
        format!("a call in flight across the replacement: {}", r.show())
    })?;
    for (want, what) in [
        (
            "healed1:persistent-dev-server",
            "the published port after the helper was killed",
        ),
        (
            "healed2:persistent-dev-server",
            "the published port after the helper was stopped",
        ),
        ("new1", "a new helper after the kill"),
        ("new2", "a new helper after the stop"),
        ("gone:stopped", "the stopped helper ended"),
    ] {
        check(r.stdout.contains(want), || format!("{what}: {}", r.show()))?;
    }
    check(r.stdout.matches("egress:internet").count() == 2, || {
        format!("egress after the helper was replaced: {}", r.show())
    })?;
    check(
        r.stdout.contains("refused:125")
            && !r.stdout.contains("\nran")
            && r.stderr.contains("ctx stop pnetheal"),
        || format!("a call without the record: {}", r.show()),
    )?;
    check(r.stdout.contains("stop:0"), || r.show())?;
    check(r.stdout.contains("gone:last"), || r.show())?;
    check(r.stdout.contains("after:closed"), || r.show())?;
    check(!r.stdout.contains("left:"), || r.show())
}

/// An address the container gains after a persistent context's gate started is refused like its
/// others (the gate lists the container's addresses for each connection, not once at its
/// start). A stand-in control API listens on every address (`[::]`, dual-stack); 198.51.100.7 is
/// added to the test's namespace only after the first call (and the gate) ran. Control: from the
/// container the new address reaches the service.
pub fn an_address_the_container_gains_later_is_refused() -> Result<(), String> {
    persistent_tools()?;
    let d = TempDir::new("g7plate");
    let p = persistent_policy(
        d.path(),
        "pnetlate",
        "mode = \"private\"\nallow = [\"0.0.0.0/0\", \"::/0\"]",
        "",
    );
    let script = format!(
        "{}call 'echo first'\nNET=$(field net_pid); alive $NET && echo gate-running\n\
         ip addr add 198.51.100.7/32 dev lo\n\
         echo outside:$(curl -s -m 5 --noproxy '*' http://198.51.100.7:18080/who)\n\
         call 'echo inside:$(curl -s -m 5 -w \" code=%{{http_code}}\" http://198.51.100.7:18080/who)'\n\
         stop; echo stop:$?\n",
        persistent_shell(&p, "pnetlate")
    );
    let r = in_test_netns(d.path(), &script);
    r.expect_code(0, "late address scenario")?;
    check(r.stdout.contains("gate-running"), || r.show())?;
    check(r.stdout.contains("outside:control-api"), || {
        format!(
            "control: the new address does not reach the service outside: {}",
            r.show()
        )
    })?;
    let inside = r
        .stdout
        .lines()
        .find(|l| l.starts_with("inside:"))
        .unwrap_or("");
    check(
        inside.contains("code=403") && !inside.contains("control-api"),
        || {
            format!(
                "the address added later was reachable from the context: {}",
                r.show()
            )
        },
    )?;
    check(r.stdout.contains("stop:0"), || r.show())
}

/// A fair gate: in a persistent context, one call holding 300 idle connections to its proxy
/// (in the background, outliving the call) takes only its share (`limits.per_call`); the ones over
/// it are told why (503), and a second call's 10 requests all succeed. Control: with `per_call`
/// as large as the whole context's limit, the same first call starves the second.
pub fn one_call_cannot_starve_another() -> Result<(), String> {
    persistent_tools()?;
    let hog = "python3 -c \"\nimport os, socket, time\nh = os.environ[\\\"HTTP_PROXY\\\"].split(\\\"//\\\")[1].split(\\\":\\\")[0]\nall = [socket.create_connection((h, 3128), 5) for i in range(300)]\ntime.sleep(1)\nsocks, codes = [], {}\nfor s in all:\n    s.setblocking(False)\n    try:\n        c = s.recv(12)[9:12].decode()\n        codes[c] = codes.get(c, 0) + 1\n    except BlockingIOError:\n        socks.append(s)\nprint(\\\"held\\\", len(socks), \\\"told\\\", codes, flush=True)\ntime.sleep(60)\n\" > /tmp/hog.out 2>&1 &\nsleep 0.5; i=0; until [ -s /tmp/hog.out ]; do i=$((i+1)); [ $i -gt 200 ] && break; sleep 0.1; done; cat /tmp/hog.out";
    let second = "ok=0; for i in 1 2 3 4 5 6 7 8 9 10; do [ \"$(curl -s -m 5 http://192.0.2.10/who)\" = internet ] && ok=$((ok+1)); done; echo second:$ok";
    let run = |tag: &str, limits: &str| -> Result<Run, String> {
        let d = TempDir::new(tag);
        let name = unique_name("pfair");
        let p = persistent_policy(
            d.path(),
            &name,
            &format!("mode = \"private\"\nallow = [\"192.0.2.10/32\"]\nlimits = {limits}"),
            "",
        );
        let script = format!(
            "{}call '{hog}'\ncall '{second}'\nstop; echo stop:$?\n",
            persistent_shell(&p, &name)
        );
        Ok(in_test_netns(d.path(), &script))
    };
    let fair = run(
        "g7pfair",
        "{ connections = 256, per_call = 64, head_timeout = 60 }",
    )?;
    fair.expect_code(0, "fair gate scenario")?;
    check(fair.stdout.contains("held 64 told {'503': 236}"), || {
        format!("the first call's share: {}", fair.show())
    })?;
    check(fair.stdout.contains("second:10"), || {
        format!("the second call was starved: {}", fair.show())
    })?;
    check(fair.stdout.contains("stop:0"), || fair.show())?;
    let unfair = run(
        "g7punfair",
        "{ connections = 256, per_call = 256, head_timeout = 60 }",
    )?;
    unfair.expect_code(0, "unfair gate scenario (control)")?;
    check(
        unfair.stdout.contains("held 256 told {'503': 44}") && unfair.stdout.contains("second:0"),
        || {
            format!(
                "control: without a per-call share the second call was not starved: {}",
                unfair.show()
            )
        },
    )
}

/// A client that trickles its request head (one byte every 400 ms) is dropped once
/// `limits.head_timeout` (2 s here) has passed; control: a whole request at once is served.
pub fn a_trickled_head_is_dropped() -> Result<(), String> {
    tools()?;
    let d = TempDir::new("g7slow");
    let p = policy(
        d.path(),
        "mode = \"private\"\nallow = [\"192.0.2.10/32\"]\nlimits = { head_timeout = 2 }",
        "",
    );
    let slow = "import socket, time\ns = socket.create_connection((\"127.0.0.1\", 3128), 5)\nstart = time.time()\nreq = b\"GET http://192.0.2.10/who HTTP/1.1\\r\\nHost: 192.0.2.10\\r\\nX-Slow: \" + b\"a\" * 40 + b\"\\r\\n\\r\\n\"\nans = b\"\"\nfor c in req:\n    try:\n        s.send(bytes([c]))\n    except OSError:\n        break\n    time.sleep(0.4)\n    s.setblocking(False)\n    try:\n        ans = s.recv(100)\n    except BlockingIOError:\n        pass\n    s.setblocking(True)\n    if ans:\n        break\nprint(\"slow:\" + ans[:12].decode(errors=\"replace\") + \" after %.0f s\" % (time.time() - start))";
    // The script where the sandbox reads it: /var/lib, not the private /tmp.
    let shared = PathBuf::from("/var/lib").join(unique_name("g7slow"));
    std::fs::create_dir_all(&shared).map_err(|e| e.to_string())?;
    std::fs::write(shared.join("slow.py"), slow).unwrap();
    let script = format!(
        "{} --policy {} --ctx user -- sh -c 'python3 {}/slow.py; echo whole:$(curl -s -m 5 http://192.0.2.10/who)'\n",
        bin(),
        p.display(),
        shared.display()
    );
    let r = in_test_netns(d.path(), &script);
    let _ = std::fs::remove_dir_all(&shared);
    r.expect_code(0, "trickle scenario")?;
    let line = r
        .stdout
        .lines()
        .find(|l| l.starts_with("slow:"))
        .unwrap_or("");
    let secs: f64 = line
        .rsplit("after ")
        .next()
        .and_then(|t| t.trim_end_matches(" s").parse().ok())
        .unwrap_or(0.0);
    check(line.contains("408") && (2.0..10.0).contains(&secs), || {
        format!(
            "the trickled head was not dropped after the timeout: {}",
            r.show()
        )
    })?;
    check(r.stdout.contains("whole:internet"), || r.show())
}
