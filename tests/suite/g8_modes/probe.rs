//! `probe` agrees with what launches really do: as root, and as an unprivileged caller where user
//! namespaces cannot be made.

use std::os::unix::fs::PermissionsExt;

use super::rootless::as_nobody_without_userns;
use crate::harness::*;

/// Launch every context `probe --json` reported and check the launch agrees: "full" exits 0
/// without a warning, "degraded" exits 0 with one warning naming what is missing, "unavailable"
/// exits 125. `control` is left out: it would hold the real ports 8080/8888 on the host network
/// (g3_control covers it).
fn launches_agree(
    probe: &Run,
    launch: impl Fn(&str) -> Run,
) -> Result<Vec<(String, String)>, String> {
    let v: serde_json::Value = serde_json::from_str(probe.stdout.trim())
        .map_err(|e| format!("probe --json is not JSON ({e}): {}", probe.show()))?;
    let ctxs = v["contexts"].as_object().ok_or_else(|| probe.show())?;
    check(!ctxs.is_empty(), || probe.show())?;
    let all_full = ctxs.values().all(|c| c["status"] == "full");
    probe.expect_code(if all_full { 0 } else { 1 }, "probe exit status")?;
    let mut seen = Vec::new();
    for (name, c) in ctxs {
        let status = c["status"].as_str().unwrap_or("?").to_string();
        seen.push((name.clone(), status.clone()));
        if name == "control" {
            continue;
        }
        let r = launch(name);
        let warnings = r.stderr.lines().filter(|l| l.contains("warning")).count();
        match status.as_str() {
            "full" => {
                r.expect_code(0, &format!("probe said {name} runs fully"))?;
                check(warnings == 0, || format!("{name}: {}", r.show()))?;
            }
            "degraded" => {
                r.expect_code(0, &format!("probe said {name} runs degraded"))?;
                check(warnings == 1, || {
                    format!("{name}: not one warning: {}", r.show())
                })?;
                for m in c["missing"].as_array().into_iter().flatten() {
                    let ns = m.as_str().unwrap_or("").trim_end_matches(" namespace");
                    check(r.stderr.contains(ns), || {
                        format!("{name}: warning does not name {ns}: {}", r.show())
                    })?;
                }
            }
            _ => {
                r.expect_code(125, &format!("probe said {name} cannot run"))?;
            }
        }
    }
    Ok(seen)
}

pub fn probe_agrees_with_launches() -> Result<(), String> {
    needs_isolation()?;
    if !nix::unistd::geteuid().is_root() {
        return Err(format!("{SKIP}needs root to drop to an unprivileged uid"));
    }
    // As root: everything the default policy asks for is available, and runs.
    let probe = Cmd::sbx(["probe", "--json"]).run();
    let seen = launches_agree(&probe, |ctx| Cmd::sbx(["--ctx", ctx, "--", "true"]).run())?;
    check(seen.iter().any(|(n, s)| n == "user" && s == "full"), || {
        format!("user is not available as root: {}", probe.show())
    })?;
    // An unprivileged caller where user namespaces cannot be created, with a policy whose user
    // context degrades: user is degraded, platform unavailable, and the launches agree.
    let d = TempDir::new("probedegrade");
    let text = crate::policy_tests::DEFAULT_TOML.replacen(
        "[context.user]\n",
        "[context.user]\ndegrade = true\n",
        1,
    );
    let p = crate::policy_tests::write_policy(d.path(), &text);
    std::fs::set_permissions(d.path(), PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&p, PermissionsExt::from_mode(0o644)).unwrap();
    let p = p.to_str().unwrap().to_string();
    let probe = as_nobody_without_userns(&["probe", "--json", "--policy", &p]);
    check(probe.stdout.contains("\"mode\":\"unprivileged\""), || {
        probe.show()
    })?;
    let seen = launches_agree(&probe, |ctx| {
        as_nobody_without_userns(&["--policy", &p, "--ctx", ctx, "--", "true"])
    })?;
    for (name, want) in [("user", "degraded"), ("platform", "unavailable")] {
        check(seen.iter().any(|(n, s)| n == name && s == want), || {
            format!("{name} is not {want}: {}", probe.show())
        })?;
    }
    Ok(())
}
