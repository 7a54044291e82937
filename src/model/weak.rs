//! What `policy check` warns about in a context that runs untrusted code (it takes no secrets and
//! is not a control plane): walls a hand-written context easily forgets. Each warning names the
//! context's line and the key that adds the wall; `extends = "user"` starts from one that has
//! them all.

use std::path::Path;

use super::{Context, Namespace, NetMode, Policy, SeccompMode};

/// System paths untrusted code must not be able to write.
const SYSTEM_DIRS: [&str; 4] = ["/usr", "/etc", "/bin", "/opt"];

/// One line per weak point of each untrusted context, with the line of its table in `text`.
pub fn weak_warnings(policy: &Policy, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (name, ctx) in &policy.context {
        if !ctx.secrets.allow.is_empty() || ctx.supervise.is_some() {
            continue;
        }
        let line = super::place::find_line(text, &format!("[context.{}", name.0)).unwrap_or(0);
        for why in weak_points(ctx) {
            out.push(format!(
                "line {line}: context {:?} takes no secrets, so it is for untrusted code, but {why}; \
                 or start from the shipped one: extends = \"user\"",
                name.0
            ));
        }
    }
    out
}

/// The walls an untrusted context lacks, each with the key that adds it.
fn weak_points(ctx: &Context) -> Vec<String> {
    let mut out = Vec::new();
    if !ctx.has(Namespace::Pid) {
        out.push("it sees and can signal the container's processes (add \"pid\" and \"mount\" to namespaces)".into());
    }
    if ctx.net.mode == NetMode::Host {
        out.push("it shares the container's network: its loopback services, metadata address and abstract sockets (net = \"private\", or \"none\")".into());
    }
    if let Some(dir) = SYSTEM_DIRS
        .iter()
        .find(|d| super::trust::can_write(ctx, Path::new(d)))
    {
        out.push(format!(
            "it can write {dir} (fs.read_only = [\"/\"], with fs.writable for its work areas)"
        ));
    }
    if ctx.security.seccomp == SeccompMode::None {
        out.push("it has no seccomp filter (security.seccomp = \"default\")".into());
    }
    let root_inside = ctx.security.run_as.is_none_or(|r| r.uid == 0);
    if ctx.identity.is_none() && root_inside {
        out.push("it runs as host root when sbx-exec runs as root: its files, setuid bits and socket peers are root's (identity = { uid = 100000, gid = 100000, count = 65536 })".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_four_line_context_is_named_for_each_missing_wall() {
        let text = "version = 1\n\n[context.job]\nnamespaces = [\"mount\"]\n";
        let p = Policy::parse(text, "t.toml").unwrap();
        let w = weak_warnings(&p, text);
        assert_eq!(w.len(), 5, "{w:#?}");
        assert!(
            w.iter().all(|l| l.starts_with("line 3: context \"job\"")),
            "{w:#?}"
        );
        for key in [
            "namespaces",
            "net = \"private\"",
            "fs.read_only",
            "seccomp",
            "identity",
        ] {
            assert!(w.iter().any(|l| l.contains(key)), "{key}: {w:#?}");
        }
        // The shipped user, and one extending it, are not weak; platform takes secrets.
        let ok = "version = 1\n[context.job]\nextends = \"user\"\ntimeout = 60\n[context.tool]\nextends = \"platform\"\n";
        let p = Policy::parse(ok, "t.toml").unwrap();
        assert_eq!(weak_warnings(&p, ok), Vec::<String>::new());
        let p = Policy::parse(super::super::EMBEDDED_DEFAULT, "d").unwrap();
        assert_eq!(
            weak_warnings(&p, super::super::EMBEDDED_DEFAULT),
            Vec::<String>::new()
        );
    }
}
