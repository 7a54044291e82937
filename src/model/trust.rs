//! A cross-context rule `policy check` warns about: a context that takes secrets must not be able
//! to write a directory holding a program some context trusts, or one call could change what a
//! later one runs with the secrets (DESIGN.md G8).

use std::path::{Path, PathBuf};

use super::{Context, Namespace, Policy};

/// Where programs live that `exec.verify_owner` trusts when they are root-owned.
const SYSTEM_BIN_DIRS: [&str; 6] = [
    "/bin",
    "/sbin",
    "/usr/bin",
    "/usr/sbin",
    "/usr/local/bin",
    "/usr/local/sbin",
];

/// One line per (secret-holding context, trusted directory it can write).
pub fn trust_warnings(policy: &Policy) -> Vec<String> {
    // Each trusted directory with who trusts it and why.
    let mut trusted: Vec<(PathBuf, String)> = Vec::new();
    for (name, ctx) in &policy.context {
        for a in &ctx.exec.allow {
            let dir = a.as_path().parent().unwrap_or(Path::new("/"));
            trusted.push((
                dir.to_path_buf(),
                format!("context {:?} allows {}", name.0, a.as_path().display()),
            ));
        }
        if ctx.exec.verify_owner {
            for d in SYSTEM_BIN_DIRS {
                trusted.push((
                    PathBuf::from(d),
                    format!(
                        "context {:?} runs root-owned programs from it (verify_owner)",
                        name.0
                    ),
                ));
            }
        }
    }
    let mut out = Vec::new();
    for (name, ctx) in &policy.context {
        if ctx.secrets.allow.is_empty() {
            continue;
        }
        let mut seen: Vec<&Path> = Vec::new();
        for (dir, why) in &trusted {
            if seen.contains(&dir.as_path()) || !can_write(ctx, dir) {
                continue;
            }
            seen.push(dir);
            out.push(format!(
                "context {:?} takes secrets and can write {}, which holds programs a context trusts ({why}): \
                 one call there could change what a later one runs; make it read-only with \
                 [context.{}.fs] read_only = [\"/\"] (and writable/tmpfs for the work areas)",
                name.0,
                dir.display(),
                name.0
            ));
        }
    }
    out
}

/// Whether the context's filesystem view leaves `dir` writable to it (as root: a context that
/// runs as another user cannot write root's directories anyway).
pub(super) fn can_write(ctx: &Context, dir: &Path) -> bool {
    if ctx.security.run_as.is_some_and(|r| r.uid != 0) {
        return false;
    }
    if !ctx.has(Namespace::Mount) {
        return true;
    }
    let covers = |list: &[super::AbsPath]| list.iter().any(|p| p.contains(dir));
    if covers(&ctx.fs.tmpfs) || covers(&ctx.fs.hide) {
        return false; // private to the call
    }
    if covers(&ctx.fs.writable) {
        return true;
    }
    !covers(&ctx.fs.read_only)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_holding_context_writing_trusted_dirs_is_named() {
        let text = |platform_fs: &str| {
            format!(
                "version = 1\n[context.platform]\nnamespaces = [\"pid\", \"mount\"]\n\
                 secrets.allow = [\"*\"]\nexec.verify_owner = true\n{platform_fs}\n\
                 [context.deploy]\nnamespaces = [\"mount\"]\nexec.allow = [\"/opt/tools/bin/aws\"]\n\
                 fs.read_only = [\"/\"]\n"
            )
        };
        let parse = |s: &str| Policy::parse(s, "test.toml").unwrap();
        let open = parse(&text(""));
        let w = trust_warnings(&open);
        assert!(
            w.iter()
                .any(|l| l.contains("/usr/bin") && l.contains("verify_owner")),
            "{w:?}"
        );
        assert!(w.iter().any(|l| l.contains("/opt/tools/bin")), "{w:?}");
        // The shipped pattern: / read-only, the work area writable, scratch private.
        let closed = parse(&text(
            "fs.read_only = [\"/\"]\nfs.writable = [\"/workspace\"]\nfs.tmpfs = [\"/tmp\"]",
        ));
        assert_eq!(trust_warnings(&closed), Vec::<String>::new());
        // Writable again below the read-only root: named.
        let reopened = parse(&text(
            "fs.read_only = [\"/\"]\nfs.writable = [\"/opt/tools\"]",
        ));
        let w = trust_warnings(&reopened);
        assert!(w.len() == 1 && w[0].contains("/opt/tools/bin"), "{w:?}");
    }
}
