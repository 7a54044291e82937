//! G1 with the real tools platform operations use: `psql` against a real PostgreSQL 15 server and
//! the AWS CLI against a local S3-compatible server (moto), each started by the test on loopback.
//! The secret reaches the tool only through `--secrets-fd` in `platform` (as a variable, or as a
//! file with `secrets.files`); without it, or from `user`, the same command fails to authenticate.
//!
//! The tools are installed by `.ci/run`. When one is missing the test fails under `CI=true` and
//! skips with a message otherwise.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::time::Duration;

use crate::harness::*;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const PSQL: &str = "/usr/bin/psql";
const VENV: &str = "/opt/sbx-test-venv/bin";
const PG_PASSWORD: &str = "pg-Sentinel-7d1e2f-pass";
const AWS_KEY_ID: &str = "AKIASBXTESTKEY000001";
const AWS_SECRET: &str = "sbx/aws+secret-Sentinel-4c9a0b";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The embedded default policy with `edits` (each `(find, replace)` must apply), written to `dir`.
pub fn policy_with(dir: &TempDir, edits: &[(&str, &str)]) -> Result<PathBuf, String> {
    let shown = Cmd::sbx(["policy", "show"]).run();
    shown.expect_code(0, "policy show")?;
    let mut text: String = shown
        .stdout
        .lines()
        .filter(|l| !l.starts_with("# source:"))
        .map(|l| format!("{l}\n"))
        .collect();
    for (find, replace) in edits {
        check(text.contains(find), || {
            format!("the default policy no longer contains {find:?}")
        })?;
        text = text.replacen(find, replace, 1);
    }
    let path = dir.file("policy.toml", &text);
    let checked = Cmd::sbx(["policy", "check", path.to_str().unwrap()]).run();
    checked.expect_code(0, "the test policy must be valid")?;
    Ok(path)
}

pub const PLATFORM_SECRETS: &str = "[context.platform.secrets]\nallow = [\"*\"]";

/// How long a server of a test may run (it is stopped when its test is done with it).
const SERVER_LIFE: Duration = Duration::from_secs(600);

/// A process the test started, stopped (SIGINT, then SIGKILL) when dropped.
struct Server {
    child: Spawned,
    name: &'static str,
    log: PathBuf,
}

impl Server {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGINT);
        let stopped = wait_until(Duration::from_secs(15), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        });
        if !stopped {
            eprintln!("{} did not stop on SIGINT; killing it", self.name);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn user_ids(name: &str) -> Result<(u32, u32), String> {
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| e.to_string())?;
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[0] == name)
        .map(|f| (f[2].parse().unwrap(), f[3].parse().unwrap()))
        .ok_or_else(|| {
            format!("no user {name:?} in /etc/passwd (the postgresql package creates it)")
        })
}

/// A fresh PostgreSQL 15 cluster owned by `postgres`, listening on 127.0.0.1:`port` with
/// scram-sha-256 password authentication for TCP.
fn start_postgres(dir: &TempDir, port: u16) -> Result<Server, String> {
    let (uid, gid) = user_ids("postgres")?;
    let base = dir.path().join("pg");
    let data = base.join("data");
    let sock = base.join("sock");
    for d in [&base, &sock] {
        std::fs::create_dir_all(d).unwrap();
        nix::unistd::chown(
            d.as_path(),
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .unwrap();
    }
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let pwfile = base.join("pwfile");
    std::fs::write(&pwfile, format!("{PG_PASSWORD}\n")).unwrap();
    nix::unistd::chown(
        pwfile.as_path(),
        Some(nix::unistd::Uid::from_raw(uid)),
        None,
    )
    .unwrap();
    let mut initdb = Cmd::new(format!("{PG_BIN}/initdb")).limit(Duration::from_secs(120));
    initdb
        .command()
        .args(["-D", data.to_str().unwrap(), "-U", "postgres", "-E", "UTF8"])
        .args([
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--no-sync",
        ])
        .arg(format!("--pwfile={}", pwfile.display()))
        .current_dir(&base)
        .uid(uid)
        .gid(gid);
    let r = initdb.run();
    std::fs::remove_file(&pwfile).unwrap();
    r.expect_code(0, "initdb")?;
    let log = base.join("server.log");
    let logfile = std::fs::File::create(&log).unwrap();
    let mut postgres = Cmd::new(format!("{PG_BIN}/postgres"))
        .args(["-D", data.to_str().unwrap(), "-k", sock.to_str().unwrap()])
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-c", "fsync=off"])
        .limit(SERVER_LIFE);
    postgres
        .command()
        .current_dir(&base)
        .stdout(logfile.try_clone().unwrap())
        .stderr(logfile)
        .uid(uid)
        .gid(gid);
    let child = postgres.spawn();
    let server = Server {
        child,
        name: "postgres",
        log,
    };
    let ready = wait_until(Duration::from_secs(60), || {
        Cmd::new(format!("{PG_BIN}/pg_isready"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", "1"])
            .run()
            .ok()
    });
    check(ready, || {
        format!("postgres did not become ready: {}", server.log())
    })?;
    Ok(server)
}

fn psql_args(port: u16) -> Vec<String> {
    [
        PSQL,
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-U",
        "postgres",
        "-d",
        "postgres",
        "-w",
        "-tAc",
        "select 40 + 2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn sbx_args<'a>(head: &[&'a str], tail: &'a [String]) -> Vec<&'a str> {
    head.iter()
        .copied()
        .chain(["--"])
        .chain(tail.iter().map(String::as_str))
        .collect()
}

pub fn psql_gets_password_only_from_the_secrets_fd() -> Result<(), String> {
    needs_isolation()?;
    require_tool(&format!("{PG_BIN}/postgres"))?;
    require_tool(PSQL)?;
    let dir = TempDir::new("pg");
    let port = free_port();
    let server = start_postgres(&dir, port)?;
    let psql = psql_args(port);

    // Control: the password works, outside any sandbox.
    let mut control = Cmd::new(PSQL).env("PGPASSWORD", PG_PASSWORD);
    control.command().args(&psql[1..]);
    let control = control.run();
    control.expect_code(0, "psql outside with PGPASSWORD")?;
    check(control.stdout.trim() == "42", || control.show())?;

    // platform with PGPASSWORD on the fd: connects.
    let (cmd, _s) = sbx_with_secrets(
        &format!("PGPASSWORD={PG_PASSWORD}\n"),
        &sbx_args(&["--ctx", "platform", "--secrets-fd", "3"], &psql),
    );
    let r = cmd.run();
    r.expect_code(0, "platform psql with PGPASSWORD from the fd")?;
    check(r.stdout.trim() == "42", || r.show())?;

    // platform without it (even with PGPASSWORD in the caller's environment): auth fails.
    let r = Cmd::sbx(sbx_args(&["--ctx", "platform"], &psql))
        .env("PGPASSWORD", PG_PASSWORD)
        .run();
    check(r.code != Some(0), || {
        format!("platform connected without a secret: {}", r.show())
    })?;
    check(r.stderr.contains("no password supplied"), || {
        format!("expected a password authentication failure: {}", r.show())
    })?;

    // user: refuses the fd, and does not inherit the caller's PGPASSWORD either.
    let (cmd, _s) = sbx_with_secrets(
        &format!("PGPASSWORD={PG_PASSWORD}\n"),
        &sbx_args(&["--ctx", "user", "--secrets-fd", "3"], &psql),
    );
    let r = cmd.run();
    r.expect_code(125, "user with --secrets-fd")?;
    let r = Cmd::sbx(sbx_args(&["--ctx", "user"], &psql))
        .env("PGPASSWORD", PG_PASSWORD)
        .run();
    // With its own network namespace (net = "private"), user does not even reach the database.
    check(
        r.code != Some(0)
            && (r.stderr.contains("no password supplied")
                || r.stderr.contains("Connection refused")),
        || format!("user connected or failed for another reason: {}", r.show()),
    )?;
    check(
        !r.stdout.contains(PG_PASSWORD) && !r.stderr.contains(PG_PASSWORD),
        || r.show(),
    )?;
    drop(server);
    Ok(())
}

pub fn psql_reads_pgpassfile_from_secrets_files() -> Result<(), String> {
    needs_isolation()?;
    require_tool(&format!("{PG_BIN}/postgres"))?;
    require_tool(PSQL)?;
    let dir = TempDir::new("pgfile");
    let policy = policy_with(
        &dir,
        &[(
            PLATFORM_SECRETS,
            "[context.platform.secrets]\nallow = [\"*\"]\nfiles = [\"PGPASSFILE\"]",
        )],
    )?;
    let port = free_port();
    let server = start_postgres(&dir, port)?;
    let psql = psql_args(port);
    let pgpass = format!("127.0.0.1:{port}:*:postgres:{PG_PASSWORD}\n");
    let head = [
        "--policy",
        policy.to_str().unwrap(),
        "--ctx",
        "platform",
        "--secrets-fd",
        "3",
    ];
    let (cmd, _s) = sbx_with_secrets(&format!("PGPASSFILE={pgpass}"), &sbx_args(&head, &psql));
    let r = cmd.run();
    r.expect_code(0, "platform psql with PGPASSFILE from secrets.files")?;
    check(r.stdout.trim() == "42", || r.show())?;

    // Control: the same policy and command without the secret cannot authenticate.
    let r = Cmd::sbx(sbx_args(&head[..4], &psql)).run();
    check(
        r.code != Some(0) && r.stderr.contains("no password supplied"),
        || format!("connected without the pgpass secret: {}", r.show()),
    )?;
    drop(server);
    Ok(())
}

/// `aws` with an endpoint on loopback, outside any sandbox (the control side).
fn aws_outside(port: u16, args: &[&str]) -> Run {
    let mut c = Cmd::new(format!("{VENV}/aws"))
        .env("AWS_ACCESS_KEY_ID", AWS_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("HOME", "/nonexistent")
        .limit(Duration::from_secs(120));
    c.command()
        .args(["--endpoint-url", &format!("http://127.0.0.1:{port}")])
        .args(args);
    c.run()
}

pub fn aws_cli_gets_credentials_only_from_the_secrets_fd() -> Result<(), String> {
    needs_isolation()?;
    require_tool(&format!("{VENV}/aws"))?;
    require_tool(&format!("{VENV}/moto_server"))?;
    let dir = TempDir::new("aws");
    // The region comes from the policy (env.set), the keys only from the fd.
    let policy = policy_with(
        &dir,
        &[(
            "set = { HOME = \"/root\" }",
            "set = { HOME = \"/root\", AWS_DEFAULT_REGION = \"us-east-1\" }",
        )],
    )?;
    let port = free_port();
    let log = dir.path().join("moto.log");
    let logfile = std::fs::File::create(&log).unwrap();
    let mut moto = Cmd::new(format!("{VENV}/moto_server"))
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .env("PATH", "/usr/bin:/bin")
        .limit(SERVER_LIFE);
    moto.command()
        .stdout(logfile.try_clone().unwrap())
        .stderr(logfile);
    let child = moto.spawn();
    let server = Server {
        child,
        name: "moto_server",
        log,
    };
    let up = wait_until(Duration::from_secs(90), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    check(up, || {
        format!("moto_server did not listen: {}", server.log())
    })?;
    let bucket = format!("sbx-bucket-{}", std::process::id());

    // Control: with credentials in its environment the CLI creates and lists the bucket.
    let made = aws_outside(port, &["s3", "mb", &format!("s3://{bucket}")]);
    made.expect_code(0, "aws s3 mb outside")?;
    let listed = aws_outside(port, &["s3", "ls"]);
    check(listed.ok() && listed.stdout.contains(&bucket), || {
        listed.show()
    })?;

    let aws: Vec<String> = [
        &format!("{VENV}/aws"),
        "--endpoint-url",
        &format!("http://127.0.0.1:{port}"),
        "s3",
        "ls",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let pol = policy.to_str().unwrap();
    let secrets = serde_json::json!({
        "AWS_ACCESS_KEY_ID": AWS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
    })
    .to_string();
    let (cmd, _s) = sbx_with_secrets(
        &secrets,
        &sbx_args(
            &["--policy", pol, "--ctx", "platform", "--secrets-fd", "3"],
            &aws,
        ),
    );
    let r = cmd.limit(Duration::from_secs(120)).run();
    r.expect_code(0, "platform aws s3 ls with keys from the fd")?;
    check(r.stdout.contains(&bucket), || r.show())?;

    // Without the fd (keys only in the caller's environment), in platform and in user: no credentials.
    for ctx in ["platform", "user"] {
        let r = Cmd::sbx(sbx_args(&["--policy", pol, "--ctx", ctx], &aws))
            .env("AWS_ACCESS_KEY_ID", AWS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
            .limit(Duration::from_secs(120))
            .run();
        check(
            r.code != Some(0) && r.stderr.contains("Unable to locate credentials"),
            || {
                format!(
                    "{ctx}: expected 'Unable to locate credentials': {}",
                    r.show()
                )
            },
        )?;
        check(!r.stdout.contains(&bucket), || r.show())?;
    }
    drop(server);
    Ok(())
}
