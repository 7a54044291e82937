//! G1 with bound secrets (`secrets.bind`, issue #22): a bound secret never reaches the sandbox in
//! clear. Until the egress proxy of `net = "private"` is wired into launches, a call handed one
//! is refused with 125 and runs nothing; the same call without it runs. (The proxy side, with
//! placeholders, TLS interception and re-signing, is tested in `src/run/proxy/bound/`.)

use std::path::Path;

use crate::harness::*;

const KEY: &str = "sk-ant-api03-sentinel-4c1d9e-bound-value";

pub fn bound_secret_is_never_delivered_in_clear() -> Result<(), String> {
    needs_isolation()?;
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/sandbox-sdk.toml");
    let sdk = sdk.to_str().unwrap();
    let show = "printf %s \"${ANTHROPIC_API_KEY-unset}\"";
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
    r.expect_code(125, "a bound secret without the egress proxy")?;
    check(
        !r.stdout.contains(KEY) && !r.stderr.contains(KEY) && r.stderr.contains("bound to hosts"),
        || r.show(),
    )?;
    let r = Cmd::sbx(["--policy", sdk, "--ctx", "agent", "--", "sh", "-c", show]).run();
    r.expect_code(0, "the agent context without secrets")?;
    check(r.stdout == "unset", || r.show())
}
