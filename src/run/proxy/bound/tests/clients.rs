//! Real clients through the proxy: curl and Python's urllib trusting the CA bundle a sandbox
//! gets, and (c) the AWS CLI against moto_server with placeholder credentials only.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use super::*;

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sbx-bound-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Is `tool` installed? If not: a skip with a message, or a failure under `CI=true` (.ci/run
/// installs curl and the /opt/sbx-test-venv venv).
fn have(tool: &str) -> bool {
    let found = Path::new(tool).exists();
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{tool} is not installed and CI=true: .ci/run must install it"
        );
        eprintln!("skipped: {tool} is not installed");
    }
    found
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    if !out.status.success() {
        eprintln!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    out
}

/// The bundle a sandbox gets (system CAs + the per-call CA), as a file.
fn bundle(p: &Proxy, dir: &Path) -> PathBuf {
    let system = std::fs::read(SYSTEM_CA_FILES[0]).unwrap_or_default();
    let path = dir.join("ca-bundle.pem");
    std::fs::write(&path, p.ic.bundle(&system)).unwrap();
    path
}

/// (a) with curl (--proxy, --cacert) and Python's urllib (HTTPS_PROXY, SSL_CERT_FILE).
#[test]
fn curl_and_python_reach_the_bound_host_with_the_placeholder() {
    let python = "/opt/sbx-test-venv/bin/python3";
    if !have("/usr/bin/curl") || !have(python) {
        return;
    }
    let ca = TestCa::new();
    let api = origin(Some(ca.server(&["api.anthropic.com"])));
    let p = proxy(
        &["api.anthropic.com"],
        SECRETS,
        BINDS,
        &[("api.anthropic.com", api.port)],
        ca.roots(),
    );
    let dir = scratch("clients");
    let bundle = bundle(&p, &dir);
    let key = placeholder_of(&p, "ANTHROPIC_API_KEY");
    let proxy_url = format!("http://{}", p.addr);
    let out = run(Command::new("/usr/bin/curl")
        .env_clear()
        .args(["-sS", "--max-time", "10", "--proxy", &proxy_url, "--cacert"])
        .arg(&bundle)
        .args([
            "-H",
            &format!("x-api-key: {key}"),
            "-d",
            "{\"model\":\"m\"}",
        ])
        .arg("https://api.anthropic.com/v1/messages"));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok");
    let script = format!(
        "import urllib.request as u\nr = u.Request('https://api.anthropic.com/v1/models', headers={{'x-api-key': '{key}'}})\nprint(u.urlopen(r, timeout=10).read().decode(), end='')"
    );
    let out = run(Command::new(python)
        .env_clear()
        .env("HTTPS_PROXY", &proxy_url)
        .env("SSL_CERT_FILE", &bundle)
        .args(["-c", &script]));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok");
    let seen = api.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        let lower = s.to_ascii_lowercase();
        assert!(
            lower.contains(&format!(
                "x-api-key: {}",
                real("ANTHROPIC_API_KEY").to_ascii_lowercase()
            )),
            "{s}"
        );
        assert!(!s.contains(&key));
    }
    assert_eq!(p.of(Verdict::SecretAdded).len(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

/// moto_server on 127.0.0.1 over TLS (a test-CA certificate for the AWS names), which checks
/// SigV4 signatures after its first `free` actions.
struct Moto {
    child: Child,
    port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto(ca: &TestCa, dir: &Path, free: u32) -> Moto {
    let names = [
        "s3.amazonaws.com",
        "*.s3.amazonaws.com",
        "s3.us-east-1.amazonaws.com",
        "127.0.0.1",
    ];
    let (cert, key) = ca.leaf_pem(&names);
    std::fs::write(dir.join("moto.crt"), cert).unwrap();
    std::fs::write(dir.join("moto.key"), key).unwrap();
    let port = TcpListener::bind((LOCAL, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("/opt/sbx-test-venv/bin/moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string(), "-c"])
        .arg(dir.join("moto.crt"))
        .arg("-k")
        .arg(dir.join("moto.key"))
        .env("INITIAL_NO_AUTH_ACTION_COUNT", free.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let m = Moto { child, port };
    for _ in 0..300 {
        if TcpStream::connect((LOCAL, port)).is_ok() {
            return m;
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!("moto_server did not start");
}

fn aws(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new("/opt/sbx-test-venv/bin/aws");
    cmd.env_clear()
        .env("HOME", dir)
        .env("AWS_CONFIG_FILE", dir.join("none"))
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.join("none"))
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(env.iter().copied())
        .args(args);
    run(&mut cmd)
}

/// An IAM user with an access key allowed everything, made in moto's first three (free) actions.
fn moto_key(m: &Moto, dir: &Path, ca_file: &Path) -> (String, String) {
    let endpoint = format!("https://127.0.0.1:{}", m.port);
    let env = [
        ("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "setup"),
        ("AWS_CA_BUNDLE", ca_file.to_str().unwrap()),
    ];
    let iam = |args: &[&str]| {
        let mut a = vec!["--endpoint-url", &endpoint, "iam"];
        a.extend_from_slice(args);
        let out = aws(dir, &env, &a);
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    iam(&["create-user", "--user-name", "agent"]);
    let created: serde_json::Value =
        serde_json::from_str(&iam(&["create-access-key", "--user-name", "agent"])).unwrap();
    let policy =
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
    iam(&[
        "put-user-policy",
        "--user-name",
        "agent",
        "--policy-name",
        "all",
        "--policy-document",
        policy,
    ]);
    let k = &created["AccessKey"];
    (
        k["AccessKeyId"].as_str().unwrap().into(),
        k["SecretAccessKey"].as_str().unwrap().into(),
    )
}

/// (c) `aws s3 mb` and `aws s3 ls` through the proxy with placeholder credentials only: the
/// proxy re-signs with the real key and moto, which checks signatures, accepts them; the same
/// calls straight to moto with the placeholders (or the real key id and the placeholder secret)
/// are refused.
#[test]
fn aws_cli_works_against_moto_with_placeholder_credentials() {
    if !have("/opt/sbx-test-venv/bin/aws") || !have("/opt/sbx-test-venv/bin/moto_server") {
        return;
    }
    let ca = TestCa::new();
    let dir = scratch("aws");
    let ca_file = dir.join("test-ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let m = moto(&ca, &dir, 3);
    let (key_id, secret) = moto_key(&m, &dir, &ca_file);
    let secrets = format!("AWS_ACCESS_KEY_ID={key_id}\nAWS_SECRET_ACCESS_KEY={secret}\n");
    // Exact endpoints and the one service, as a policy must bind them.
    let binds = "[[bind]]\nkind = \"aws-sigv4\"\nhosts = [\"s3.amazonaws.com\", \"s3.us-east-1.amazonaws.com\", \"sbx-bound.s3.amazonaws.com\"]\nservices = [\"s3\"]\n";
    let names = [
        ("s3.amazonaws.com", m.port),
        ("s3.us-east-1.amazonaws.com", m.port),
        ("sbx-bound.s3.amazonaws.com", m.port),
    ];
    let p = proxy(&["*.amazonaws.com"], &secrets, binds, &names, ca.roots());
    let (ph_id, ph_secret) = (
        placeholder_of(&p, "AWS_ACCESS_KEY_ID"),
        placeholder_of(&p, "AWS_SECRET_ACCESS_KEY"),
    );
    assert!(ph_id.starts_with("AKIA") && ph_id != key_id && ph_secret.len() == secret.len());
    let bundle = bundle(&p, &dir);
    let proxy_url = format!("http://{}", p.addr);
    let env = [
        ("HTTPS_PROXY", proxy_url.as_str()),
        ("AWS_CA_BUNDLE", bundle.to_str().unwrap()),
        ("AWS_ACCESS_KEY_ID", &ph_id),
        ("AWS_SECRET_ACCESS_KEY", &ph_secret),
    ];
    assert!(aws(&dir, &env, &["s3", "mb", "s3://sbx-bound"])
        .status
        .success());
    let ls = aws(&dir, &env, &["s3", "ls"]);
    assert!(ls.status.success());
    assert!(String::from_utf8_lossy(&ls.stdout).contains("sbx-bound"));
    let added = p.of(Verdict::SecretAdded);
    assert!(added.len() >= 2, "{added:?}");
    assert!(added
        .iter()
        .all(|e| e.secret.as_deref() == Some("AWS_ACCESS_KEY_ID")
            && e.host.ends_with("amazonaws.com")));
    // Controls: moto refuses the placeholders, and a signature by the wrong secret.
    let endpoint = format!("https://127.0.0.1:{}", m.port);
    for (id, sec) in [
        (ph_id.as_str(), ph_secret.as_str()),
        (key_id.as_str(), ph_secret.as_str()),
    ] {
        let env = [
            ("AWS_CA_BUNDLE", ca_file.to_str().unwrap()),
            ("AWS_ACCESS_KEY_ID", id),
            ("AWS_SECRET_ACCESS_KEY", sec),
        ];
        let out = aws(&dir, &env, &["--endpoint-url", &endpoint, "s3", "ls"]);
        assert!(!out.status.success(), "moto accepted a bad signature");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
