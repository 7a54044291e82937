//! G7 (no shared channel), /run: the container's runtime directory holds what the trusted side
//! keeps for itself: Docker and Compose secrets (/run/secrets, mode 0444 by default), the pod's
//! Kubernetes service-account token (/var/run/secrets/kubernetes.io, /var/run being a link to
//! /run), and the unix sockets of local services (PostgreSQL's is 0777). Under a read-only "/"
//! `user` could still read and connect to all of them. Its /run is now a private, empty, writable
//! tmpfs: the attack reads nothing and reaches no socket, the control outside does both, and user
//! code can still write its own pid file there.
//!
//! The test's /run is a tmpfs of its own, in a mount namespace of its own, where it plants a
//! sentinel secret and a one-connection unix socket service: nothing of the host's /run is touched.

use std::time::Duration;

use crate::harness::*;

/// Connects to the unix socket in argv[1] and prints what it answers, or `refused:ERRNO`.
const CONNECT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
    print(s.recv(64).decode())
except OSError as e:
    print("refused:" + str(e.errno))
"#;

/// A unix socket service at argv[1] (mode 0666) that answers every connection.
const SERVE: &str = r#"
import os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o666)
s.listen(4)
while True:
    c, _ = s.accept()
    c.send(b"svc-answered")
    c.close()
"#;

pub fn run_holds_no_secret_or_socket_of_the_container() -> Result<(), String> {
    needs_isolation()?;
    require_tool("python3")?;
    require_tool("unshare")?;
    let inside = format!(
        "cat /run/secrets/api_token 2>/dev/null || echo no-secret; \
         python3 -c '{CONNECT}' /run/svc.sock; \
         echo $$ > /run/app.pid && echo pid-written"
    );
    let script = format!(
        r#"set -u
mount -t tmpfs -o mode=0755 tmpfs /run || exit 3
mkdir /run/secrets && echo sbx-planted-secret > /run/secrets/api_token && chmod 0444 /run/secrets/api_token
python3 -c '{SERVE}' /run/svc.sock & S=$!
trap 'kill $S' EXIT
i=0; until [ -S /run/svc.sock ]; do i=$((i+1)); [ $i -gt 100 ] && exit 4; sleep 0.05; done
echo outside-secret:$(cat /run/secrets/api_token)
echo outside-sock:$(python3 -c '{CONNECT}' /run/svc.sock)
{bin} --ctx user -- sh -c "{inside}" | sed 's/^/inside:/'
"#,
        bin = bin(),
        inside = inside.replace('"', "\\\"")
    );
    let r = Cmd::sh_in_own_mounts::<&str>(false, &script, &[])
        .limit(Duration::from_secs(30))
        .run();
    r.expect_code(0, "the /run scenario")?;
    // Controls: outside the sandbox the secret reads and the service answers.
    check(
        r.stdout.contains("outside-secret:sbx-planted-secret"),
        || r.show(),
    )?;
    check(r.stdout.contains("outside-sock:svc-answered"), || r.show())?;
    // The attacks: nothing of either from user.
    check(
        !r.stdout.contains("inside:sbx-planted-secret") && r.stdout.contains("inside:no-secret"),
        || format!("user read the container's /run/secrets:\n{}", r.show()),
    )?;
    check(
        r.stdout.contains("inside:refused:") && !r.stdout.contains("inside:svc-answered"),
        || {
            format!(
                "user reached a unix socket in the container's /run:\n{}",
                r.show()
            )
        },
    )?;
    // Legitimate use: user code writes its own pid file in its own /run.
    check(r.stdout.contains("inside:pid-written"), || {
        format!("user cannot write its own /run:\n{}", r.show())
    })
}

/// /var/tmp is the container's too: files other jobs (and the trusted side) leave there, world-
/// readable by default, and sockets in it. Every shipped untrusted context gets a private one:
/// the planted file and socket are out of reach from the default `user` and from sandbox-sdk's
/// `agent` and `notebook`, while the control outside reads and connects, and user code writes its
/// own scratch file there. The test's /var/tmp is a tmpfs in a mount namespace of its own.
pub fn var_tmp_holds_nothing_of_the_container() -> Result<(), String> {
    needs_isolation()?;
    require_tool("python3")?;
    require_tool("unshare")?;
    let sdk = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/sandbox-sdk.toml");
    let inside = format!(
        "cat /var/tmp/report.csv 2>/dev/null || echo no-file; \
         python3 -c '{CONNECT}' /var/tmp/svc.sock; \
         echo scratch > /var/tmp/mine && echo scratch-written"
    )
    .replace('"', "\\\"");
    let launches = [
        ("user", format!("{} --ctx user", bin())),
        (
            "agent",
            format!("{} --policy {} --ctx agent", bin(), sdk.display()),
        ),
        (
            "notebook",
            format!("{} --policy {} --ctx notebook", bin(), sdk.display()),
        ),
    ];
    let mut runs = String::new();
    for (name, launch) in &launches {
        runs.push_str(&format!(
            "{launch} -- sh -c \"{inside}\" 2>&1 | sed 's/^/{name}:/'\n"
        ));
    }
    let script = format!(
        r#"set -u
mount -t tmpfs -o mode=1777 tmpfs /var/tmp || exit 3
echo sbx-planted-report > /var/tmp/report.csv && chmod 0644 /var/tmp/report.csv
python3 -c '{SERVE}' /var/tmp/svc.sock & S=$!
trap 'kill $S' EXIT
i=0; until [ -S /var/tmp/svc.sock ]; do i=$((i+1)); [ $i -gt 100 ] && exit 4; sleep 0.05; done
echo outside-file:$(cat /var/tmp/report.csv)
echo outside-sock:$(python3 -c '{CONNECT}' /var/tmp/svc.sock)
{runs}"#
    );
    let r = Cmd::sh_in_own_mounts::<&str>(false, &script, &[])
        .limit(Duration::from_secs(60))
        .run();
    r.expect_code(0, "the /var/tmp scenario")?;
    check(r.stdout.contains("outside-file:sbx-planted-report"), || {
        r.show()
    })?;
    check(r.stdout.contains("outside-sock:svc-answered"), || r.show())?;
    for (name, _) in &launches {
        let lines: Vec<&str> = r
            .stdout
            .lines()
            .filter(|l| l.starts_with(&format!("{name}:")))
            .collect();
        check(
            lines.contains(&format!("{name}:no-file").as_str())
                && lines
                    .iter()
                    .any(|l| l.starts_with(&format!("{name}:refused:")))
                && lines.contains(&format!("{name}:scratch-written").as_str())
                && !r.stdout.contains(&format!("{name}:sbx-planted-report"))
                && !r.stdout.contains(&format!("{name}:svc-answered")),
            || format!("{name} shares the container's /var/tmp:\n{}", r.show()),
        )?;
    }
    Ok(())
}
