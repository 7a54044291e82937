//! G7, the network: a `net = "private"` context shares no network channel with the trusted side.
//! Its egress goes only through sbx-exec's proxy and only to what `net.allow` names; the
//! container's loopback services, the metadata address, its own addresses, abstract unix sockets
//! and connections are out of reach; a port it listens on is not one trusted tools connect to;
//! published ports still serve.
//!
//! No packet leaves this machine: every scenario runs inside a network namespace the test makes
//! (`unshare --net`), where a fake "internet" host (192.0.2.10, TEST-NET-1), a host the policy
//! does not name (192.0.2.20), a fake metadata server (169.254.169.254), a stand-in for the
//! control API (127.0.0.1:18080, dual-stack) and for PostgreSQL (127.0.0.1:15432) are addresses
//! on that namespace's `lo`. Each check has its control: the same request from outside the
//! sandbox (in the test's namespace) does reach the service.
//!
//! One file per part: [`egress`] (what egress reaches, what it cannot, squatting, abstract
//! sockets, an address gained later), [`publish`] (published ports), [`gate`] (the egress gate's
//! process, its limits and policy errors), [`persistent`] (a persistent context's network),
//! [`live`] (a running persistent context's rules changed live). The tests are re-exported here.

mod egress;
mod gate;
mod live;
mod persistent;
mod publish;

pub use egress::*;
pub use gate::*;
pub use live::*;
pub use persistent::*;

use persistent::{persistent_policy, persistent_shell, persistent_tools};
pub use publish::*;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::*;
use crate::support::policy::{write_policy, Policy};

/// The default policy with `user`'s `[context.user.net]` table replaced by `net` (a TOML body
/// for that table) and `top` lines added at the top.
pub fn user_net_policy(net: &str, top: &str) -> String {
    Policy::shipped()
        .replace_table("context.user.net", net)
        .top(top)
        .text()
        .to_string()
}

/// What every scenario starts with, in the test's own network namespace: `lo` up, the fake
/// addresses, one HTTP server per service (each serves a file `who` naming it), waited for.
fn prelude(dir: &Path) -> String {
    for (name, who) in [
        ("net", "internet"),
        ("other", "unlisted"),
        ("meta", "metadata"),
        ("ctl", "control-api"),
    ] {
        std::fs::create_dir_all(dir.join(name)).unwrap();
        std::fs::write(dir.join(name).join("who"), format!("{who}\n")).unwrap();
    }
    let d = dir.display();
    format!(
        r#"set -u
ip link set lo up
ip addr add 192.0.2.10/32 dev lo
ip addr add 192.0.2.20/32 dev lo
ip addr add 169.254.169.254/32 dev lo
PIDS=""
serve() {{ python3 -m http.server --bind "$1" --directory "{d}/$2" "$3" >/dev/null 2>&1 & PIDS="$PIDS $!"; }}
serve 192.0.2.10 net 80
serve 192.0.2.20 other 80
serve 169.254.169.254 meta 80
serve :: ctl 18080
trap 'kill $PIDS 2>/dev/null' EXIT
for u in 192.0.2.10:80 192.0.2.20:80 169.254.169.254:80 127.0.0.1:18080; do
  i=0; until curl -s -o /dev/null "http://$u/who"; do i=$((i+1)); [ $i -gt 100 ] && echo "no server $u" && exit 3; sleep 0.05; done
done
"#
    )
}

/// Run `script` after the prelude in a new network namespace; the result of the whole script.
fn in_test_netns(dir: &Path, script: &str) -> Run {
    let full = format!("{}{script}", prelude(dir));
    let mut c = Cmd::new("unshare");
    c.command().args(["--net", "--", "sh", "-c", &full]);
    c.limit(Duration::from_secs(90)).run()
}

fn tools() -> Result<(), String> {
    needs_isolation()?;
    for t in ["curl", "ip", "python3", "unshare"] {
        require_tool(t)?;
    }
    Ok(())
}

fn policy(dir: &Path, net: &str, top: &str) -> PathBuf {
    write_policy(dir, &user_net_policy(net, top))
}

fn user(policy: &Path, script: &str) -> String {
    format!(
        "{} --policy {} --ctx user -- sh -c '{}'",
        bin(),
        policy.display(),
        script
    )
}
