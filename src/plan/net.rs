//! The network of a `net = "private"` context, as data (pure; [`crate::run::net`] applies it):
//! whether pid 1 binds the egress proxy's listener inside the new namespace, the egress rules
//! the proxy enforces, the ports published on the container's loopback, and the variables that
//! point the target's tools at the proxy.

use std::net::Ipv4Addr;

use crate::model::egress::{Allow, AllowError, EgressPolicy};
use crate::model::net::PROXY_PORT;
use crate::model::{Context, NetMode};

/// What the outer sbx-exec runs for the sandbox's network.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The egress rules (`None`: `net.allow` is empty, so no proxy, no listener, no variables).
    /// `self_addrs` is filled in by the outer process from the container's interfaces.
    pub egress: Option<EgressPolicy>,
    /// Sandbox ports forwarded from the container's `127.0.0.1`.
    pub publish: Vec<u16>,
    /// The `net.allow` entries as written (a persistent context's net helper enforces the rules
    /// its keeper started with, so they are part of its fingerprint).
    pub allow_text: Vec<String>,
    /// `net.limits`.
    pub limits: crate::model::net::GateLimits,
    /// The ports captured (with `egress` only): a connection the sandbox makes straight to an
    /// address on one of them, without the proxy variables, reaches the gate all the same
    /// (every address is local in the sandbox's namespace, and pid 1 listens on these ports of
    /// all of them). 80, 443 and every port a rule of `net.allow` names, less the proxy's own
    /// and the published ones. Any other port has no listener: such a connection is refused.
    pub capture: Vec<u16>,
    /// The platform operations the context may call (`ops`, with `egress` only): the gate
    /// answers `http://sbx-ops/NAME` for these, through a connection to the control plane the
    /// outer process opens ([`crate::run::net::Running`]).
    pub ops: Vec<String>,
}

impl Plan {
    /// A canonical text for the persistent context's fingerprint.
    pub fn canonical(&self) -> String {
        let allow = match &self.egress {
            Some(_) => format!("proxy({})", self.allow_text.join(" ")),
            None => "-".to_string(),
        };
        let ports: Vec<String> = self.publish.iter().map(u16::to_string).collect();
        let l = &self.limits;
        let limits = match *l == crate::model::net::GateLimits::default() {
            true => String::new(),
            false => format!(
                ";limits {} {} {} {}",
                l.connections, l.per_call, l.head_timeout, l.idle_timeout
            ),
        };
        let ops = match self.ops.is_empty() {
            true => String::new(),
            false => format!(";ops {}", self.ops.join(",")),
        };
        format!("{allow};{}{limits}{ops}", ports.join(","))
    }

    /// This plan with the egress rules `allow` (as written; parsed here) instead of the
    /// policy's: a persistent context whose rules were changed live (`sbx-exec ctx net`). The
    /// captured ports stay those of the policy (the listeners are bound when the context
    /// starts). `None`: the plan has no egress to change.
    pub fn with_allow(&self, allow: &[String]) -> Option<Result<Plan, AllowError>> {
        let egress = self.egress.as_ref()?;
        let parsed = allow
            .iter()
            .map(|t| t.parse::<Allow>())
            .collect::<Result<Vec<_>, _>>();
        Some(parsed.map(|rules| Plan {
            egress: Some(EgressPolicy {
                allow: rules,
                ..egress.clone()
            }),
            allow_text: allow.to_vec(),
            ..self.clone()
        }))
    }
}

/// The plan for `ctx`: `None` unless it is `private` with something to run outside.
pub fn plan(ctx_name: &str, ctx: &Context) -> Option<Plan> {
    if ctx.net.mode != NetMode::Private {
        return None;
    }
    let egress = ctx.net.proxied().then(|| EgressPolicy {
        context: ctx_name.to_string(),
        allow: ctx.net.allow.iter().map(|r| r.rule.clone()).collect(),
        self_addrs: Vec::new(),
    });
    let publish = ctx.net.published_ports();
    let allow_text = ctx.net.allow.iter().map(|r| r.text.clone()).collect();
    let capture = egress
        .as_ref()
        .map_or_else(Vec::new, |e| capture_ports(e, &publish));
    let ops = match egress.is_some() {
        true => ctx.ops.iter().map(|o| o.0.clone()).collect(),
        false => Vec::new(),
    };
    (egress.is_some() || !publish.is_empty()).then_some(Plan {
        egress,
        publish,
        allow_text,
        limits: ctx.net.limits,
        capture,
        ops,
    })
}

/// 80, 443 and the ports the rules name, sorted, without the proxy's port and `publish`.
fn capture_ports(egress: &EgressPolicy, publish: &[u16]) -> Vec<u16> {
    let mut ports = vec![80, 443];
    ports.extend(egress.allow.iter().filter_map(|r| match r {
        Allow::Domain { port, .. } | Allow::Net { port, .. } => *port,
    }));
    ports.sort_unstable();
    ports.dedup();
    ports.retain(|p| *p != PROXY_PORT && !publish.contains(p));
    // One listener each, handed out in one message with the rest (at most 253 fds): the first
    // MAX_CAPTURED; a rule on another port is reached through the proxy variables only.
    ports.truncate(MAX_CAPTURED);
    ports
}

/// The most ports captured.
pub const MAX_CAPTURED: usize = 200;

/// The proxy's URL inside the sandbox.
pub fn proxy_url(scheme: &str) -> String {
    proxy_url_at(scheme, Ipv4Addr::LOCALHOST)
}

fn proxy_url_at(scheme: &str, addr: Ipv4Addr) -> String {
    format!("{scheme}://{addr}:{PROXY_PORT}")
}

/// The loopback address a persistent context's call reaches the proxy on: 127.0.X.Y from the
/// call's launcher pid (never 127.0.0.x), so the gate counts each call's connections apart
/// (`net.limits.per_call`). Processes a call starts in the background keep its address.
pub fn call_address(call: u32) -> Ipv4Addr {
    let hi = 1 + (call / 254) % 254;
    let lo = 1 + call % 254;
    Ipv4Addr::new(127, 0, hi as u8, lo as u8)
}

/// [`proxy_env`] naming the proxy at `addr`.
pub fn proxy_env_at(addr: Ipv4Addr) -> Vec<(&'static str, String)> {
    let mut env = proxy_env();
    for (name, value) in env.iter_mut() {
        if name.ends_with("_PROXY") || name.ends_with("_proxy") {
            if name.starts_with("NO_") || name.starts_with("no_") {
                continue;
            }
            let scheme = value.split("://").next().unwrap_or("http").to_string();
            *value = proxy_url_at(&scheme, addr);
        }
    }
    env
}

/// The variables that send HTTP(S) clients through the proxy (only when `net.allow` names
/// something): upper and lower case, since tools read one or the other; `socks5h` so that names
/// are resolved by the proxy, never inside the sandbox (where there is no resolver to reach).
pub fn proxy_env() -> Vec<(&'static str, String)> {
    let http = proxy_url("http");
    let socks = proxy_url("socks5h");
    let no_proxy = "localhost,127.0.0.1,::1".to_string();
    vec![
        ("HTTP_PROXY", http.clone()),
        ("HTTPS_PROXY", http.clone()),
        ("http_proxy", http.clone()),
        ("https_proxy", http),
        ("ALL_PROXY", socks.clone()),
        ("all_proxy", socks),
        ("NO_PROXY", no_proxy.clone()),
        ("no_proxy", no_proxy),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(text: &str) -> Context {
        let p = crate::model::Policy::parse(
            &format!("version = 1\n[context.c]\n{text}\n"),
            "test.toml",
        )
        .unwrap();
        p.context("c").unwrap().clone()
    }

    #[test]
    fn proxy_only_with_allow() {
        assert!(plan("c", &ctx("net = \"host\"")).is_none());
        assert!(plan("c", &ctx("net = \"none\"")).is_none());
        assert!(plan("c", &ctx("net = \"private\"")).is_none());
        let p = plan("c", &ctx("net = { allow = [], publish = [3000] }")).unwrap();
        assert!(p.egress.is_none());
        assert_eq!(p.publish, vec![3000]);
        let p = plan("c", &ctx("net = { allow = [\"pypi.org\"] }")).unwrap();
        assert_eq!(p.egress.unwrap().allow.len(), 1);
        assert!(p.publish.is_empty());
    }

    #[test]
    fn capture_takes_80_443_and_the_rules_ports_but_not_the_proxys_or_published() {
        let p = plan(
            "c",
            &ctx("net = { allow = [\"db.example.com:5432\", \"203.0.113.7/32:22\", \"pypi.org\", \"x.example:3128\", \"y.example:3000\"], publish = [3000] }"),
        )
        .unwrap();
        assert_eq!(p.capture, vec![22, 80, 443, 5432]);
        // Nothing to capture for: no egress.
        let p = plan("c", &ctx("net = { allow = [], publish = [3000] }")).unwrap();
        assert!(p.capture.is_empty());
    }

    #[test]
    fn live_rules_replace_the_policys_and_keep_its_capture() {
        let p = plan("c", &ctx("net = { allow = [\"db.example.com:5432\"] }")).unwrap();
        let live = vec!["192.0.2.10/32".to_string(), "203.0.113.7/32:22".to_string()];
        let q = p.with_allow(&live).unwrap().unwrap();
        assert_eq!(q.allow_text, live);
        assert_eq!(q.egress.as_ref().unwrap().allow.len(), 2);
        assert_eq!(q.capture, vec![80, 443, 5432]);
        // Every rule denied: egress stays, with no rule (the gate refuses everything).
        let none = p.with_allow(&[]).unwrap().unwrap();
        assert!(none.egress.unwrap().allow.is_empty() && none.allow_text.is_empty());
        assert!(p.with_allow(&["10.0.0.0/33".to_string()]).unwrap().is_err());
        // No egress (net.allow = []): nothing to change.
        let p = plan("c", &ctx("net = { allow = [], publish = [3000] }")).unwrap();
        assert!(p.with_allow(&live).is_none());
    }

    #[test]
    fn each_call_of_a_persistent_context_has_its_own_address() {
        let a = call_address(1234);
        assert_eq!(a.octets()[..2], [127, 0]);
        assert_ne!(a.octets()[2], 0, "never 127.0.0.x");
        assert_ne!(call_address(1234), call_address(1235));
        for pid in [0, 1, 253, 254, 255, 64515, 64516, 4_194_303] {
            let o = call_address(pid).octets();
            assert!(
                (1..=254).contains(&o[2]) && (1..=254).contains(&o[3]),
                "{pid}"
            );
        }
        let env = proxy_env_at(a);
        assert!(env.contains(&("HTTPS_PROXY", format!("http://{a}:3128"))));
        assert!(env.contains(&("all_proxy", format!("socks5h://{a}:3128"))));
        assert!(env
            .iter()
            .any(|(k, v)| *k == "NO_PROXY" && v.contains("127.0.0.1")));
    }

    #[test]
    fn env_points_at_the_proxy() {
        let env = proxy_env();
        assert!(env.contains(&("HTTPS_PROXY", "http://127.0.0.1:3128".into())));
        assert!(env.contains(&("all_proxy", "socks5h://127.0.0.1:3128".into())));
        assert!(env
            .iter()
            .any(|(k, v)| *k == "NO_PROXY" && v.contains("::1")));
    }
}
