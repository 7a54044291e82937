//! Passing sockets into confined contexts (`--keep-fd`, `--listen-fd`): a listening socket from the
//! caller's LISTEN_FDS reaches the target as fd 3 with LISTEN_PID = the target's own pid (2 in its
//! pid namespace), also with `net = "none"` (a socket keeps the network namespace it was made in);
//! what is not a listening socket, or a socket on a reserved port the context may not serve, is
//! refused with 125 before anything runs.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::time::Duration;

use crate::harness::*;

/// Puts sockets or pipes on fds 3.. as described by its arguments, sets LISTEN_FDS/LISTEN_PID/
/// LISTEN_FDNAMES for them (unless `--no-listen-env`), then execs the rest of its arguments.
/// `listen:PORT:NAME` a listening socket on 127.0.0.1:PORT; `bound:PORT:NAME` a bound,
/// non-listening one; `pipe::NAME` the read end of a pipe.
const LAUNCHER: &str = r#"
import os, socket, sys
args = sys.argv[1:]
sep = args.index("--")
specs, cmd = args[:sep], args[sep + 1:]
listen_env = "--no-listen-env" not in specs
specs = [s for s in specs if s != "--no-listen-env"]
pad = [os.open("/dev/null", os.O_RDONLY) for _ in range(3 + len(specs))]
names, keep = [], []
for spec in specs:
    kind, port, name = spec.split(":")
    if kind == "pipe":
        fd = os.pipe()[0]
    else:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", int(port)))
        if kind == "listen":
            s.listen(16)
        fd = s.detach()
    keep.append(fd)
    names.append(name)
for i, fd in enumerate(keep):
    os.dup2(fd, 3 + i)
if listen_env:
    os.environ.update(LISTEN_FDS=str(len(keep)), LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES=":".join(names))
os.execv(cmd[0], cmd)
"#;

/// The target: reports its view, then answers one connection on fd 3.
const TARGET: &str = r#"
import os, socket
fds = [f for f in sorted(int(f) for f in os.listdir("/proc/self/fd")) if os.path.exists("/proc/self/fd/%d" % f)]
print("VIEW", os.getpid(), os.environ.get("LISTEN_PID"), os.environ.get("LISTEN_FDS"),
      os.environ.get("LISTEN_FDNAMES"), ",".join(map(str, fds)), flush=True)
s = socket.socket(fileno=3)
c, _ = s.accept()
c.sendall(b"hello from %d\n" % os.getpid())
c.close()
"#;

fn policy(dir: &TempDir, reserved: u16, net: &str) -> std::path::PathBuf {
    let text = format!(
        "version = 1\n\
         [context.control]\nenv.allow = [\"*\"]\nsecurity.caps = [\"ALL\"]\nsecurity.no_new_privs = false\n\
         [context.control.supervise]\nports = [{reserved}]\n\
         [context.served]\nnamespaces = [\"pid\", \"mount\", \"ipc\", \"uts\"]\nnet = \"{net}\"\nlisten = [{reserved}]\n\
         env.allow = [\"PATH\"]\nsecurity.seccomp = \"default\"\n\
         [context.other]\nnamespaces = [\"pid\", \"mount\", \"ipc\", \"uts\"]\nenv.allow = [\"PATH\"]\n"
    );
    crate::policy_tests::write_policy(dir.path(), &text)
}

fn launch(specs: &[String], sbx_args: &[&str]) -> Cmd {
    Cmd::new("/usr/bin/python3")
        .args(["-c", LAUNCHER])
        .args(specs)
        .arg("--")
        .arg(bin())
        .args(sbx_args)
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
}

pub fn listening_socket_reaches_the_target_as_fd_3() -> Result<(), String> {
    needs_isolation()?;
    let (port, other) = crate::g3_control::free_ports();
    for net in ["host", "none"] {
        let dir = TempDir::new("keepfd");
        let policy = policy(&dir, port, net);
        let specs = [
            format!("listen:{port}:web"),
            format!("listen:{other}:admin"),
        ];
        let c = launch(
            &specs,
            &[
                "--policy",
                policy.to_str().unwrap(),
                "--ctx",
                "served",
                "--listen-fd",
                "web",
                "--",
                "/usr/bin/python3",
                "-c",
                TARGET,
            ],
        );
        let mut child = c.piped().spawn();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).map_err(|e| e.to_string())?;
        let answer = TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(20)))?;
            let mut a = String::new();
            s.read_to_string(&mut a)?;
            Ok(a)
        });
        let status = child.wait().map_err(|e| e.to_string())?;
        let mut err = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut err);
        // The target is pid 2 under sbx-exec's init, and LISTEN_PID says so; only fd 3 was passed
        // (not the `admin` socket), under its name.
        check(line.trim() == "VIEW 2 2 1 web 0,1,2,3", || {
            format!("net = {net}: target saw {line:?}; stderr {err}")
        })?;
        check(
            answer.as_deref().is_ok_and(|a| a.trim() == "hello from 2"),
            || format!("net = {net}: connection to the passed socket: {answer:?}"),
        )?;
        check(status.success(), || {
            format!("net = {net}: {status:?} {err}")
        })?;
    }
    Ok(())
}

pub fn keep_fd_refuses_what_it_must_not_pass() -> Result<(), String> {
    needs_isolation()?;
    let (port, free) = crate::g3_control::free_ports();
    let dir = TempDir::new("keepfd-refuse");
    let policy = policy(&dir, port, "host");
    let sentinel = dir.path().join("ran");
    let touch = format!("touch {}", sentinel.display());
    let cases: Vec<(Vec<String>, Vec<&str>, &str, &str)> = vec![
        (
            vec![format!("bound:{free}:web")],
            vec!["--ctx", "served", "--listen-fd", "web"],
            "not a listening socket",
            "a bound, non-listening socket as LISTEN_FDS",
        ),
        (
            vec!["pipe::web".into()],
            vec!["--ctx", "served", "--keep-fd", "3"],
            "not a listening socket",
            "a pipe described by LISTEN_FDS",
        ),
        (
            vec![format!("listen:{port}:web")],
            vec!["--ctx", "other", "--listen-fd", "web"],
            "reserved port",
            "a reserved port to a context without `listen`",
        ),
        (
            vec!["--no-listen-env".into(), format!("listen:{port}:web")],
            vec!["--ctx", "other", "--keep-fd", "3"],
            "reserved port",
            "a reserved port as a plain --keep-fd",
        ),
        (
            vec![format!("listen:{free}:web")],
            vec!["--ctx", "served", "--listen-fd", "api"],
            "no socket of that name",
            "an unknown --listen-fd name",
        ),
        (
            vec![],
            vec!["--ctx", "served", "--keep-fd", "9"],
            "not open",
            "a --keep-fd that is not open",
        ),
    ];
    for (specs, args, why, what) in cases {
        let mut all = vec!["--policy", policy.to_str().unwrap()];
        all.extend(args);
        all.extend(["--", "/bin/sh", "-c", &touch]);
        let r = launch(&specs, &all).run();
        check(r.code == Some(125) && r.stderr.contains(why), || {
            format!("{what}: {}", r.show())
        })?;
        check(!sentinel.exists(), || format!("{what}: the command ran"))?;
    }
    // A plain fd without LISTEN_FDS is kept as it is (a pipe on 3, nothing set).
    let r = launch(
        &["--no-listen-env".into(), "pipe::x".into()],
        &[
            "--policy",
            policy.to_str().unwrap(),
            "--ctx",
            "other",
            "--keep-fd",
            "3",
            "--",
            "/bin/sh",
            "-c",
            "ls /proc/self/fd | tr '\\n' ' '; echo \"[${LISTEN_FDS-unset}]\"",
        ],
    )
    .run();
    check(
        r.ok() && r.stdout.contains("0 1 2 3 ") && r.stdout.contains("[unset]"),
        || format!("plain --keep-fd: {}", r.show()),
    )
}
