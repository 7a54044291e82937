//! A persistent context's network: the keeper's network namespace and ONE net helper (proxy and
//! forwarders, outside that namespace) live as long as the keeper; joins reuse them. A dev server
//! published to every call, joins through the keeper's proxy, the net helper's life and death with
//! the keeper, and a lost helper or record.

use super::*;

/// The default policy with `user` renamed `name`, persistent (scope = false, which persist
/// needs), its net table `net`, and `top` lines at the top.
pub(super) fn persistent_policy(dir: &Path, name: &str, net: &str, top: &str) -> PathBuf {
    let text = user_net_policy(net, top)
        .replace("[context.user", &format!("[context.{name}"))
        .replacen(
            &format!("[context.{name}]\n"),
            &format!("[context.{name}]\npersist = true\n"),
            1,
        )
        .replace("scope = true ", "scope = false ");
    write_policy(dir, &text)
}

/// Shell functions for the scenarios: `call SCRIPT` (a call of the persistent context), `stop`,
/// `field KEY` (of its `ctx list --json` entry), `alive PID` (exists and is not a zombie), and
/// `port` (whether 127.0.0.1:3000 accepts a connection here).
pub(super) fn persistent_shell(p: &Path, name: &str) -> String {
    let (b, p) = (bin(), p.display());
    format!(
        r#"call() {{ {b} --policy {p} --ctx {name} -- sh -c "$1"; }}
stop() {{ {b} ctx stop {name} --timeout 2 --policy {p}; }}
field() {{ {b} ctx list --json | python3 -c "import json,sys; print(([e for e in json.load(sys.stdin) if e['name']=='{name}'] or [{{}}])[0].get('$1'))"; }}
alive() {{ s=$(sed 's/.*) //' /proc/$1/stat 2>/dev/null | cut -c1); [ -n "$s" ] && [ "$s" != Z ] && [ "$s" != X ]; }}
port() {{ python3 -c "import socket; socket.create_connection(('127.0.0.1',3000),1)" 2>/dev/null && echo open || echo closed; }}
"#
    )
}

/// Start a dev server on 3000 in the context (in the background, outliving the call).
const DEV_SERVER: &str = "mkdir -p /tmp/site && echo persistent-dev-server > /tmp/site/who && (python3 -m http.server 3000 --bind 127.0.0.1 --directory /tmp/site >/dev/null 2>&1 &); echo started";

/// Wait (up to 6 s) until 127.0.0.1:3000 serves `who`; sets OUT.
const WAIT_SERVED: &str = "i=0; until OUT=$(curl -s -m 2 http://127.0.0.1:3000/who) && [ -n \"$OUT\" ]; do i=$((i+1)); [ $i -gt 60 ] && break; sleep 0.1; done\n";

pub(super) fn persistent_tools() -> Result<(), String> {
    tools()?;
    crate::persist::runtime()
}

pub fn persistent_context_publishes_a_dev_server_to_every_call() -> Result<(), String> {
    persistent_tools()?;
    let d = TempDir::new("g7ppub");
    let p = persistent_policy(
        d.path(),
        "pnetpub",
        "mode = \"private\"\nallow = [\"192.0.2.10/32\"]\npublish = [3000]",
        "",
    );
    let script = format!(
        "{}echo before:$(port)\ncall '{DEV_SERVER}'\n{WAIT_SERVED}echo published:$OUT\n\
         echo listing:$(curl -s -m 2 http://127.0.0.1:3000/ | grep -c 'href=\"who\"')\n\
         call 'echo join-curl:$(curl -s -m 2 http://127.0.0.1:3000/who); python3 -c \"import urllib.request as u; print(\\\"join-py:\\\" + u.urlopen(\\\"http://127.0.0.1:3000/who\\\", timeout=2).read().decode().strip())\"'\n\
         NET=$(field net_pid); echo net:$NET; alive $NET && echo net-alive\n\
         stop; echo stop:$?\necho after:$(port)\nalive $NET || echo net-gone\n",
        persistent_shell(&p, "pnetpub")
    );
    let r = in_test_netns(d.path(), &script);
    r.expect_code(0, "persistent publish scenario")?;
    // Control: nothing listened on 3000 before the first call.
    check(r.stdout.contains("before:closed"), || r.show())?;
    check(r.stdout.contains("published:persistent-dev-server"), || {
        r.show()
    })?;
    check(r.stdout.contains("listing:1"), || r.show())?;
    // A join sees the server the first call started (NO_PROXY keeps 127.0.0.1 direct).
    check(r.stdout.contains("join-curl:persistent-dev-server"), || {
        r.show()
    })?;
    check(r.stdout.contains("join-py:persistent-dev-server"), || {
        r.show()
    })?;
    check(r.stdout.contains("net-alive"), || r.show())?;
    check(r.stdout.contains("stop:0"), || r.show())?;
    // ctx stop ended the keeper AND the net helper: the published port is closed.
    check(r.stdout.contains("after:closed"), || r.show())?;
    check(r.stdout.contains("net-gone"), || r.show())
}

pub fn persistent_join_egresses_through_the_keepers_proxy() -> Result<(), String> {
    persistent_tools()?;
    let d = TempDir::new("g7pegress");
    let log = d.path().join("audit.jsonl");
    let top = format!("audit = \"{}\"", log.display());
    let p = persistent_policy(
        d.path(),
        "pnetegr",
        "mode = \"private\"\nallow = [\"192.0.2.10/32\"]",
        &top,
    );
    let script = format!(
        "{}call 'echo first'\nK=$(field keeper_pid)\n\
         call 'echo join:$(curl -s -m 5 http://192.0.2.10/who); echo meta:$(curl -s -m 5 -w \" code=%{{http_code}}\" http://169.254.169.254/who | tr \"\\n\" \" \"); echo direct:$(curl -s -m 3 --noproxy \"*\" http://192.0.2.10/who || echo refused); echo direct-unlisted:$(curl -s -m 3 --noproxy \"*\" http://192.0.2.20/who || echo refused)'\n\
         [ \"$(field keeper_pid)\" = \"$K\" ] && echo same-keeper\nstop; echo stop:$?\n",
        persistent_shell(&p, "pnetegr")
    );
    let r = in_test_netns(d.path(), &script);
    r.expect_code(0, "persistent egress scenario")?;
    check(r.stdout.contains("same-keeper"), || r.show())?;
    // The join reaches the allowlisted stand-in through the keeper's proxy...
    check(r.stdout.contains("join:internet"), || r.show())?;
    // ...is refused the metadata address with 403, and has no route around the proxy.
    check(
        r.stdout.contains("meta:") && r.stdout.contains("code=403"),
        || r.show(),
    )?;
    check(!r.stdout.contains("metadata"), || r.show())?;
    // Without the proxy variables: captured, the allowed host reached, the unlisted one not.
    check(r.stdout.contains("direct:internet"), || r.show())?;
    check(r.stdout.contains("direct-unlisted:refused"), || r.show())?;
    check(r.stdout.contains("stop:0"), || r.show())?;
    // The net helper logs the refusal to the audit log.
    let audit = std::fs::read_to_string(&log).unwrap_or_default();
    check(
        audit
            .lines()
            .any(|l| l.contains("\"egress-refused\"") && l.contains("169.254.169.254")),
        || format!("no refusal in the audit log:\n{audit}"),
    )
}

pub fn killed_keeper_takes_its_net_helper() -> Result<(), String> {
    persistent_tools()?;
    let d = TempDir::new("g7pkill");
    let p = persistent_policy(
        d.path(),
        "pnetkill",
        "mode = \"private\"\nallow = [\"192.0.2.10/32\"]\npublish = [3000]",
        "",
    );
    let script = format!(
        "{}call '{DEV_SERVER}'\n{WAIT_SERVED}echo served:$OUT\n\
         K=$(field keeper_pid); NET=$(field net_pid); echo keeper:$K net:$NET\n\
         alive $NET && echo net-alive; echo comm:$(cat /proc/$NET/comm)\n\
         kill -9 $K\ni=0; while alive $NET; do i=$((i+1)); [ $i -gt 100 ] && break; sleep 0.05; done\n\
         alive $NET && echo net-survived || echo net-gone\necho after-kill:$(port)\n\
         call 'echo again'; N2=$(field net_pid); [ \"$N2\" != \"$NET\" ] && alive $N2 && echo new-helper\n\
         stop; echo stop:$?\n",
        persistent_shell(&p, "pnetkill")
    );
    let r = in_test_netns(d.path(), &script);
    r.expect_code(0, "killed keeper scenario")?;
    check(r.stdout.contains("served:persistent-dev-server"), || {
        r.show()
    })?;
    // ctx list shows the helper while it runs.
    check(
        r.stdout.contains("net-alive") && r.stdout.contains("comm:sbx-net"),
        || r.show(),
    )?;
    check(
        !r.stdout.contains("net:None") && !r.stdout.contains("net:0 "),
        || r.show(),
    )?;
    // The keeper's death ends the helper, and with it the published port.
    check(r.stdout.contains("net-gone"), || r.show())?;
    check(r.stdout.contains("after-kill:closed"), || r.show())?;
    // The next call starts a new keeper with a new helper.
    check(
        r.stdout.contains("again") && r.stdout.contains("new-helper"),
        || r.show(),
    )?;
    check(r.stdout.contains("stop:0"), || r.show())
}

pub fn persistent_net_stop_leaves_nothing_behind() -> Result<(), String> {
    persistent_tools()?;
    let d = TempDir::new("g7psnap");
    let p = persistent_policy(
        d.path(),
        "pnetsnap",
        "mode = \"private\"\nallow = [\"192.0.2.10/32\"]\npublish = [3000, \"5173-5175\"]",
        "",
    );
    // A snapshot: listening TCP sockets of this namespace, and live sbx-net / sbx-keeper processes.
    let snap = "{ ss -Hltn | awk '{print $4}' | sort; for p in /proc/[0-9]*; do c=$(cat $p/comm 2>/dev/null); case $c in sbx-net|sbx-keeper) alive ${p#/proc/} && echo proc:$c:${p#/proc/};; esac; done; } ";
    let script = format!(
        "{}{snap}> {dir}/before\ncall '{DEV_SERVER}'\n{WAIT_SERVED}echo served:$OUT\n\
         {snap}> {dir}/during\nstop; echo stop:$?\n{snap}> {dir}/after\n\
         echo during-3000:$(grep -c '127.0.0.1:3000$' {dir}/during) during-5174:$(grep -c '127.0.0.1:5174$' {dir}/during)\n\
         diff {dir}/before {dir}/after && echo same-as-before\necho after:$(port)\n",
        persistent_shell(&p, "pnetsnap"),
        dir = d.path().display()
    );
    let r = in_test_netns(d.path(), &script);
    r.expect_code(0, "snapshot scenario")?;
    check(r.stdout.contains("served:persistent-dev-server"), || {
        r.show()
    })?;
    // Control: while the context ran, the published ports listened in this namespace.
    check(r.stdout.contains("during-3000:1 during-5174:1"), || {
        r.show()
    })?;
    check(r.stdout.contains("stop:0"), || r.show())?;
    check(r.stdout.contains("same-as-before"), || r.show())?;
    check(r.stdout.contains("after:closed"), || r.show())
}

/// A persistent context's net helper (its gate and published ports) killed, then frozen with
/// SIGSTOP (it would hold the ports and answer nothing): the next call replaces it, and that call
/// has egress and the published port again, served by the dev server the first call started; a
/// call in flight across the kill loses its egress until then, and has it again after.
/// Then its record is removed: the call is refused naming `ctx stop`, which ends the keeper, the
/// helper and the port. Nothing is left (no sbx-net, no listener on 3000).
pub fn a_lost_net_helper_or_record_loses_nothing() -> Result<(), String> {
    persistent_tools()?;
    let d = TempDir::new("g7pheal");
    let p = persistent_policy(
        d.path(),
        "pnetheal",
        "mode = \"private\"\nallow = [\"192.0.2.10/32\"]\npublish = [3000]",
        "",
    );
    let egress = "call 'echo egress:$(curl -s -m 5 http://192.0.2.10/who)'\n";
    let gone = "i=0; while alive $1; do i=$((i+1)); [ $i -gt 100 ] && break; sleep 0.05; done; alive $1 && echo still:$1 || echo gone:$1";
    // A SIGSTOP takes effect when the helper is next scheduled: the call must find it stopped.
    let stopped = "i=0; until [ \"$(sed 's/.*) //' /proc/$1/stat | cut -c1)\" = T ]; do i=$((i+1)); [ $i -gt 100 ] && break; sleep 0.01; done";
    let script = format!(
        "{}gone() {{ {gone}; }}\nstopped() {{ {stopped}; }}\ncall '{DEV_SERVER}'\n{WAIT_SERVED}echo served:$OUT\n\
         call 'for i in $(seq 80); do curl -s -m 1 http://192.0.2.10/who >/dev/null && echo ok || echo lost; sleep 0.1; done' > {dir}/inflight &\nB=$!; sleep 1\n\
         N1=$(field net_pid); K=$(field keeper_pid); cg() {{ grep -c /sbx- /proc/$1/cgroup; }}\n\
         [ \"$(cat /proc/$N1/cgroup)\" = \"$(cat /proc/$K/cgroup)\" ] && echo cgroups1:$(cg $N1)\nkill -9 $N1; gone $N1 >/dev/null; echo killed:$(port); sleep 1\n\
         {egress}{WAIT_SERVED}echo healed1:$OUT\nN2=$(field net_pid); [ \"$N2\" != \"$N1\" ] && alive $N2 && echo new1\n\
         wait $B; echo inflight:$(uniq {dir}/inflight | tr '\\n' ' ')\nkill -STOP $N2; stopped $N2\n{egress}{WAIT_SERVED}echo healed2:$OUT\nN3=$(field net_pid); [ \"$N3\" != \"$N2\" ] && alive $N3 && echo new2\n\
         gone $N2 | sed s/$N2/stopped/\n\
         [ \"$(cat /proc/$N3/cgroup)\" = \"$(cat /proc/$K/cgroup)\" ] && echo cgroups3:$(cg $N3)\n\
         rm /run/sbx/pnetheal.state\ncall 'echo ran'; echo refused:$?\n\
         stop; echo stop:$?\ngone $N3 | sed s/$N3/last/\necho after:$(port)\n\
         for q in /proc/[0-9]*; do [ \"$(cat $q/comm 2>/dev/null)\" = sbx-net ] && alive ${{q#/proc/}} && echo left:${{q#/proc/}}; done; true\n",
        persistent_shell(&p, "pnetheal"),
        dir = d.path().display()
    );
    let r = in_test_netns(d.path(), &script);
    r.expect_code(0, "net helper recovery scenario")?;
    // Control: the port served before the helper was killed; killing it closed the port.
    check(r.stdout.contains("served:persistent-dev-server"), || {
        r.show()
    })?;
    check(r.stdout.contains("killed:closed"), || r.show())?;
    // The helpers, first and replaced, are in the context's cgroups (the keeper's), not a
    // caller's: a caller's limits do not cap the context's egress.
    for n in ["cgroups1:", "cgroups3:"] {
        let line = r.stdout.lines().find(|l| l.starts_with(n)).unwrap_or("");
        check(line.len() > n.len() && !line.ends_with(":0"), || {
            format!(
                "the net helper is not in its keeper's cgroups ({n}): {}",
                r.show()
            )
        })?;
    }
    // A call in flight through it loses its egress while no helper runs, and has it again once
    // the next call replaced the helper.
    check(r.stdout.contains("inflight:ok lost ok\n"), || {
        format!("a call in flight across the replacement: {}", r.show())
    })?;
    for (want, what) in [
        (
            "healed1:persistent-dev-server",
            "the published port after the helper was killed",
        ),
        (
            "healed2:persistent-dev-server",
            "the published port after the helper was stopped",
        ),
        ("new1", "a new helper after the kill"),
        ("new2", "a new helper after the stop"),
        ("gone:stopped", "the stopped helper ended"),
    ] {
        check(r.stdout.contains(want), || format!("{what}: {}", r.show()))?;
    }
    check(r.stdout.matches("egress:internet").count() == 2, || {
        format!("egress after the helper was replaced: {}", r.show())
    })?;
    check(
        r.stdout.contains("refused:125")
            && !r.stdout.contains("\nran")
            && r.stderr.contains("ctx stop pnetheal"),
        || format!("a call without the record: {}", r.show()),
    )?;
    check(r.stdout.contains("stop:0"), || r.show())?;
    check(r.stdout.contains("gone:last"), || r.show())?;
    check(r.stdout.contains("after:closed"), || r.show())?;
    check(!r.stdout.contains("left:"), || r.show())
}
