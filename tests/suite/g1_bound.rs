//! G1 with bound secrets (`secrets.bind`, issue #22): a bound secret never reaches the sandbox in
//! clear. The sandbox gets a placeholder of the same shape, the proxy variables and a CA bundle
//! that trusts the call's own CA; only the egress proxy outside holds the value. (The proxy side,
//! with TLS interception and re-signing, is tested in `src/run/proxy/bound/`.)

use std::path::Path;

use crate::harness::*;

const KEY: &str = "sk-ant-api03-sentinel-4c1d9e-bound-value";

pub fn bound_secret_is_never_delivered_in_clear() -> Result<(), String> {
    needs_isolation()?;
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/sandbox-sdk.toml");
    let sdk = sdk.to_str().unwrap();
    // Everything the sandbox can read of its own environment and files, in one listing.
    let show = "printf '%s\\n' \"${ANTHROPIC_API_KEY-unset}\" \"${HTTPS_PROXY-unset}\" \"${SSL_CERT_FILE-unset}\"; \
                grep -c 'BEGIN CERTIFICATE' \"$SSL_CERT_FILE\"; cat /proc/self/environ | tr '\\0' '\\n' | grep -c . ; \
                grep -rl \"$(printf %s sk-ant-api03-sentinel)\" /proc/self/environ /run/credentials 2>/dev/null | wc -l";
    let (cmd, _d) = sbx_with_secrets(
        &format!("ANTHROPIC_API_KEY={KEY}\n"),
        &[
            "--policy",
            sdk,
            "--ctx",
            "agent",
            "--secrets-fd",
            "3",
            "--",
            "sh",
            "-c",
            show,
        ],
    );
    let r = cmd.run();
    r.expect_code(0, "the agent with a bound secret")?;
    let lines: Vec<&str> = r.stdout.lines().collect();
    check(lines.len() == 6, || r.show())?;
    let placeholder = lines[0];
    check(!r.stdout.contains(KEY) && !r.stderr.contains(KEY), || {
        format!("the real value reached the sandbox: {}", r.show())
    })?;
    check(
        placeholder.starts_with("sk-ant-api03-")
            && placeholder.len() == KEY.len()
            && placeholder != KEY,
        || format!("not a placeholder of the same shape: {}", r.show()),
    )?;
    check(lines[1] == "http://127.0.0.1:3128", || r.show())?;
    check(lines[2].starts_with("/run/credentials/"), || r.show())?;
    check(lines[3].parse::<u32>().unwrap_or(0) > 1, || {
        format!(
            "the CA bundle holds the system CAs and the call's CA: {}",
            r.show()
        )
    })?;
    check(lines[5] == "0", || {
        format!("the value is in a file or the environment: {}", r.show())
    })?;
    // Control: the same context without the secret has no placeholder, and a plain secret in a
    // context that takes it unbound (platform) does arrive in clear.
    let r = Cmd::sbx([
        "--policy",
        sdk,
        "--ctx",
        "agent",
        "--",
        "sh",
        "-c",
        "printf %s \"${ANTHROPIC_API_KEY-unset}\"",
    ])
    .run();
    r.expect_code(0, "the agent context without secrets")?;
    check(r.stdout == "unset", || r.show())?;
    let (cmd, _d) = sbx_with_secrets(
        &format!("ANTHROPIC_API_KEY={KEY}\n"),
        &[
            "--ctx",
            "platform",
            "--secrets-fd",
            "3",
            "--",
            "sh",
            "-c",
            "printf %s \"$ANTHROPIC_API_KEY\"",
        ],
    );
    let r = cmd.run();
    r.expect_code(0, "platform with the same secret, unbound")?;
    check(r.stdout == KEY, || r.show())
}
