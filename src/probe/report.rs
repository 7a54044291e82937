//! What `probe` prints: the host's facts and each context's verdict, as JSON (`--json`) or as
//! text.

use serde_json::{json, Value};

use super::{can_lower_oom_score, Host, Verdict, ROOTLESS_LOSES};
use crate::privilege::Mode;

/// Everything `probe` found, to print as JSON or as text.
pub(super) struct Report<'a> {
    pub(super) h: &'a Host,
    pub(super) loaded: &'a crate::model::Loaded,
    pub(super) verdicts: &'a [(String, Verdict)],
    pub(super) enforceable: Vec<(&'static str, Option<String>)>,
    pub(super) secure: bool,
}

impl Report<'_> {
    pub(super) fn json(&self) -> Value {
        let h = self.h;
        let limits: serde_json::Map<String, Value> = self
            .enforceable
            .iter()
            .map(|(k, why)| {
                let v = match why {
                    None => json!({"enforceable": true}),
                    Some(w) => json!({"enforceable": false, "why": w}),
                };
                (k.to_string(), v)
            })
            .collect();
        let ns: serde_json::Map<String, Value> = h
            .namespaces
            .iter()
            .map(|(n, ok)| (n.to_string(), Value::Bool(*ok)))
            .collect();
        let ctxs: serde_json::Map<String, Value> = self
            .verdicts
            .iter()
            .map(|(n, v)| {
                let mut why = v.blocked.clone();
                why.extend(v.missing.iter().cloned());
                why.extend(v.unwritable.iter().cloned());
                let net = net_json(self.loaded.policy.context(n).ok().map(|c| &c.net));
                (
                    n.clone(),
                    json!({"status": v.status(), "missing": why, "degrade": v.degrade,
                           "runs_without": v.skipped, "identity": v.identity, "net": net}),
                )
            })
            .collect();
        json!({
            "mode": h.mode.name(),
            "namespaces": ns,
            "user_namespaces": {"creatable": h.userns, "max_user_namespaces": h.max_user_namespaces},
            "landlock_abi": h.landlock_abi,
            "seccomp": h.seccomp,
            "proc": h.proc,
            "cgroup": h.cgroup,
            "limits": limits,
            "oom_score_adj": {"confined": 500, "control": -900, "control_applies": can_lower_oom_score()},
            "legacy_tiocsti": h.legacy_tiocsti,
            "private_dev": h.private_dev,
            "private_sys": h.private_sys,
            "policy": self.loaded.source.to_string(),
            "contexts": ctxs,
            "secure": self.secure,
            "rootless_loses": if *h.mode == Mode::Rootless { ROOTLESS_LOSES } else { &[] },
        })
    }

    /// The host's facts, one line each.
    fn print_host(&self) {
        let h = self.h;
        let yes = |b: bool| if b { "yes" } else { "no" };
        println!("mode:            {}", h.mode.name());
        let ns: Vec<String> = h
            .namespaces
            .iter()
            .map(|(n, ok)| format!("{n} {}", yes(*ok)))
            .collect();
        println!("namespaces:      {}", ns.join(", "));
        let landlock = match h.landlock_abi {
            0 => "no".to_string(),
            n => format!("ABI {n}"),
        };
        println!("landlock:        {landlock}");
        println!("seccomp:         {}", yes(h.seccomp));
        if !h.proc {
            println!("proc:            no /proc (procfs is not mounted on /proc here; mount it: mount -t proc proc /proc)");
        }
        println!(
            "cgroup:          {} ({})",
            h.cgroup.version.name(),
            h.cgroup.controllers.join(", ")
        );
        let lim: Vec<String> = self
            .enforceable
            .iter()
            .map(|(k, why)| match why {
                None => format!("{k} yes"),
                Some(w) => format!("{k} no ({w})"),
            })
            .collect();
        println!("limits:          {}", lim.join(", "));
        let control = match can_lower_oom_score() {
            true => "yes",
            false => "no (needs CAP_SYS_RESOURCE)",
        };
        println!("oom_score_adj:   confined +500; control -900 {control}");
        let tiocsti = h
            .legacy_tiocsti
            .map_or("absent (old kernel: TIOCSTI works)", |b| {
                if b {
                    "1 (TIOCSTI works; sbx-exec blocks it with setsid and seccomp)"
                } else {
                    "0"
                }
            });
        println!("legacy_tiocsti:  {tiocsti}");
        let dev = if h.private_dev {
            "yes (devpts newinstance)"
        } else {
            "no"
        };
        println!("private /dev:    {dev}");
        let sys = if h.private_sys { "yes" } else { "no" };
        println!("private /sys:    {sys}");
    }

    pub(super) fn print_text(&self) {
        self.print_host();
        println!("policy:          {}", self.loaded.source);
        if *self.h.mode == Mode::Rootless {
            println!("rootless loses:  {}", ROOTLESS_LOSES.join("; "));
        }
        println!("\n{:<16} {:<12} MISSING", "CONTEXT", "STATUS");
        for (n, v) in self.verdicts {
            let mut why = v.blocked.clone();
            why.extend(v.missing.iter().cloned());
            why.extend(v.unwritable.iter().cloned());
            why.extend(v.skipped.iter().map(|s| format!("runs without {s}")));
            println!("{n:<16} {:<12} {}", v.status(), why.join("; "));
            if let Some(id) = &v.identity {
                println!("identity of {n}: {id}");
            }
        }
        println!("\n{:<16} NETWORK", "CONTEXT");
        for (n, c) in &self.loaded.policy.context {
            println!("{:<16} {}", n.0, net_text(&c.net));
        }
    }
}

/// A context's network as `probe --json` reports it: mode, the proxy's address inside (null
/// when no proxy runs), the allowlist and the published ports.
fn net_json(net: Option<&crate::model::Net>) -> Value {
    let Some(net) = net else { return Value::Null };
    let allow: Vec<&str> = net.allow.iter().map(|r| r.text.as_str()).collect();
    json!({
        "mode": net.mode.name(),
        "proxy": net.proxied().then(|| format!("127.0.0.1:{}", crate::model::net::PROXY_PORT)),
        "allow": allow,
        "publish": net.published_ports(),
    })
}

fn net_text(net: &crate::model::Net) -> String {
    let mut out = net.mode.name().to_string();
    if net.mode == crate::model::NetMode::Private {
        let allow: Vec<&str> = net.allow.iter().map(|r| r.text.as_str()).collect();
        match net.proxied() {
            true => out.push_str(&format!(
                "; egress proxy 127.0.0.1:{} to {}",
                crate::model::net::PROXY_PORT,
                allow.join(", ")
            )),
            false => out.push_str("; no egress (no proxy)"),
        }
        let ports: Vec<String> = net.published_ports().iter().map(u16::to_string).collect();
        if !ports.is_empty() {
            out.push_str(&format!("; published on 127.0.0.1: {}", ports.join(", ")));
        }
    }
    out
}
