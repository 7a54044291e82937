//! A running persistent context's egress rules changed live (`sbx-exec ctx net`, issue 32 item
//! 4): an `--allow` opens the next connection, a `--deny` ends the connections open through the
//! gate at once and refuses the next, `--reset` goes back to the policy's; only root changes them
//! (the command, and the net helper's socket by its peer's credentials); each change is one audit
//! line; a net helper replaced after a kill keeps the live rules, not the policy's.
//!
//! The policy names 192.0.2.20 only; the stand-in 192.0.2.10 (the prelude's HTTP server on 80,
//! and an echo server on 443, a captured port) is what the changes open and close. A held
//! connection is a tunnel through the proxy (CONNECT) and a captured one (straight to the
//! address), each checked by an echo before it is held.

use super::*;

/// In the context: open a tunnel (CONNECT through the proxy) and a captured connection to
/// 192.0.2.10:443, echo a line on each (`NAME-ok`, or `NAME-refused:WHY`), then hold them for
/// argv[1] seconds, printing `NAME-cut` when one is ended and `NAME-open` for each still open.
const HOLD: &str = r#"import socket, select, sys, time
def tunnel():
    s = socket.create_connection(("127.0.0.1", 3128), 5)
    s.sendall(b"CONNECT 192.0.2.10:443 HTTP/1.1\r\nHost: 192.0.2.10:443\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        b = s.recv(1)
        if not b: raise OSError("closed")
        head += b
    status = head.split(b"\r\n")[0]
    if b" 200" not in status: raise OSError(status.decode())
    return s
def direct():
    return socket.create_connection(("192.0.2.10", 443), 5)
held = {}
for name, make in (("tunnel", tunnel), ("direct", direct)):
    try:
        s = make(); line = b"ping-" + name.encode() + b"\n"
        s.settimeout(5); s.sendall(line)
        got = s.recv(100)
        if got != line: raise OSError("closed" if not got else repr(got))
        print(name + "-ok", flush=True)
        held[s] = name
    except OSError as e:
        print(name + "-refused:" + str(e), flush=True)
end = time.time() + float(sys.argv[1])
while held and time.time() < end:
    r, _, _ = select.select(list(held), [], [], 0.1)
    for s in r:
        try: d = s.recv(100)
        except OSError: d = b""
        if not d: print(held.pop(s) + "-cut", flush=True)
for name in held.values():
    print(name + "-open", flush=True)
"#;

/// The echo server on 192.0.2.10:443 (in the test's namespace).
const ECHO: &str = r#"import socket, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("192.0.2.10", 443)); s.listen(16)
def serve(c):
    while True:
        d = c.recv(100)
        if not d: break
        c.sendall(d)
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// One request to the control socket at argv[1] (the rules argv[2:]), its reply printed.
const ASK: &str = r#"import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect(sys.argv[1])
try:
    s.sendall(json.dumps({"allow": sys.argv[2:]}).encode() + b"\n"); s.shutdown(socket.SHUT_WR)
except BrokenPipeError:
    pass  # answered and closed before the request was read: the reply is there all the same
print("reply:" + s.recv(65536).decode().strip())
"#;

/// The prelude, the echo server, the scripts in `dir`, then `script`, in a network and mount
/// namespace of the test's own (the mount one for the control socket's bind mount).
fn live_scenario(dir: &Path, script: &str) -> Run {
    for (name, text) in [("hold.py", HOLD), ("echo.py", ECHO), ("ask.py", ASK)] {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let d = dir.display();
    let full = format!(
        "{}D={d}\npython3 $D/echo.py >/dev/null 2>&1 & PIDS=\"$PIDS $!\"\n\
         i=0; until python3 -c \"import socket; socket.create_connection(('192.0.2.10',443),1)\" 2>/dev/null; do i=$((i+1)); [ $i -gt 100 ] && echo 'no echo server' && exit 3; sleep 0.05; done\n\
         {script}",
        prelude(dir)
    );
    let mut c = Cmd::new("unshare");
    c.command()
        .args(["--net", "--mount", "--", "sh", "-c", &full]);
    c.limit(Duration::from_secs(120)).run()
}

fn live_tools() -> Result<(), String> {
    persistent_tools()?;
    require_tool("setpriv")?;
    Ok(())
}

/// The shell functions of [`persistent_shell`], plus `net ARGS` (`ctx net` of the context, its
/// stdout on one line, then `:STATUS`), `hold SECS` (the held connections, see [`HOLD`]) and
/// `until_in FILE WORD...` (wait up to 5 s until FILE holds every WORD).
fn live_shell(p: &Path, name: &str) -> String {
    let (b, pp) = (bin(), p.display());
    format!(
        "{}net() {{ o=$({b} ctx net {name} --policy {pp} \"$@\"); s=$?; echo \"$(echo $o):$s\"; }}\n\
         hold() {{ call \"python3 /tmp/hold.py $1\"; }}\n\
         until_in() {{ f=$1; shift; i=0; while [ $i -lt 100 ]; do a=1; for w in \"$@\"; do grep -qx \"$w\" $f || a=0; done; [ $a = 1 ] && return 0; i=$((i+1)); sleep 0.05; done; return 1; }}\n\
         call 'cat > /tmp/hold.py' < $D/hold.py\n",
        persistent_shell(p, name)
    )
}

pub fn live_rules_open_and_close_a_running_context() -> Result<(), String> {
    live_tools()?;
    let d = TempDir::new("g7plive");
    let log = d.path().join("audit.jsonl");
    let p = persistent_policy(
        d.path(),
        "plive",
        "mode = \"private\"\nallow = [\"192.0.2.20/32\"]",
        &format!("audit = \"{}\"", log.display()),
    );
    let b = bin();
    let script = format!(
        "{shell}K=$(field keeper_pid)\n\
         echo '== before'; hold 0; call 'curl -s -m 5 -o /dev/null -w \"proxy:%{{http_code}}\\n\" http://192.0.2.10/who'\n\
         echo show:$(net)\n\
         echo nonroot:$(setpriv --reuid 65534 --regid 65534 --clear-groups {b} ctx net plive --allow 192.0.2.10/32 2>$D/nonroot.err; echo $?)\n\
         echo allow:$(net --allow 192.0.2.10/32)\n\
         echo '== allowed'; hold 0; call 'echo proxied:$(curl -s -m 5 http://192.0.2.10/who)'\n\
         hold 30 > $D/held & H=$!\n\
         until_in $D/held tunnel-ok direct-ok && echo holding\n\
         echo noop:$(net --allow 192.0.2.10/32)\n\
         echo notlive:$(net --deny 192.0.2.99/32 2>$D/notlive.err)\n\
         sleep 1; grep -c -- -cut $D/held | sed s/^/cut-before-deny:/\n\
         echo deny:$(net --deny 192.0.2.10/32)\n\
         until_in $D/held tunnel-cut direct-cut && echo cut-by-deny\n\
         echo '== denied'; hold 0\n\
         kill $H 2>/dev/null; wait $H 2>/dev/null\n\
         echo again:$(net --allow 192.0.2.10/32 --allow 198.51.100.0/24:5432 2>$D/uncaptured.err)\n\
         echo reset:$(net --reset)\n\
         echo '== reset'; hold 0\n\
         mkdir -m 755 $D/pub; chmod 755 $D; touch $D/pub/ctl.sock\n\
         mount --bind /run/sbx/plive.net $D/pub/ctl.sock && chmod 666 $D/pub/ctl.sock\n\
         echo nobody-$(setpriv --reuid 65534 --regid 65534 --clear-groups python3 $D/ask.py $D/pub/ctl.sock 192.0.2.10/32)\n\
         echo '== after nobody'; hold 0\n\
         echo root-$(python3 $D/ask.py $D/pub/ctl.sock 192.0.2.20/32 192.0.2.10/32)\n\
         echo '== after root'; hold 0\n\
         umount $D/pub/ctl.sock\n\
         [ \"$(field keeper_pid)\" = \"$K\" ] && echo same-keeper\n\
         stop; echo stop:$?\n\
         echo gone:$(net 2>/dev/null)\n\
         ls /run/sbx | grep -c '^plive.net$' | sed s/^/socket-left:/\n",
        shell = live_shell(&p, "plive"),
    );
    let r = live_scenario(d.path(), &script);
    r.expect_code(0, "live rules scenario")?;
    let out = &r.stdout;
    let part = |from: &str| -> &str {
        let at = out.find(from).unwrap_or(out.len());
        let rest = &out[at..];
        let end = rest[1..].find("== ").map_or(rest.len(), |e| e + 1);
        &rest[..end]
    };
    let has = |s: &str| out.lines().any(|l| l == s);
    // Control: the policy's rules refuse 192.0.2.10, through the proxy and captured.
    let before = part("== before");
    check(
        before.contains("tunnel-refused:HTTP/1.1 403")
            && before.contains("direct-refused")
            && before.contains("proxy:403"),
        || format!("before the allow: {}", r.show()),
    )?;
    check(has("show:192.0.2.20/32:0"), || r.show())?;
    // Not root: refused (125), nothing changed.
    let nonroot = std::fs::read_to_string(d.path().join("nonroot.err")).unwrap_or_default();
    check(has("nonroot:125") && nonroot.contains("root only"), || {
        format!("a non-root caller: {nonroot}\n{}", r.show())
    })?;
    // The allow: the next connections reach it, through the proxy and captured.
    check(has("allow:192.0.2.20/32 192.0.2.10/32:0"), || r.show())?;
    let allowed = part("== allowed");
    check(
        allowed.contains("tunnel-ok")
            && allowed.contains("direct-ok")
            && allowed.contains("proxied:internet"),
        || format!("after the allow: {}", r.show()),
    )?;
    check(has("holding"), || r.show())?;
    // Neither a change to the same rules nor a refused one restarts the gate (control for the
    // cut: the held connections stay open through both).
    check(has("noop:192.0.2.20/32 192.0.2.10/32:0"), || r.show())?;
    let notlive = std::fs::read_to_string(d.path().join("notlive.err")).unwrap_or_default();
    check(
        has("notlive::125")
            && notlive.contains("\"192.0.2.99/32\"")
            && notlive.contains("the live rules are \"192.0.2.20/32\", \"192.0.2.10/32\""),
        || format!("--deny of a rule not live: {notlive}\n{}", r.show()),
    )?;
    check(has("cut-before-deny:0"), || r.show())?;
    // The deny ends both held connections at once, and refuses the next ones.
    check(has("deny:192.0.2.20/32:0"), || r.show())?;
    check(has("cut-by-deny"), || {
        format!(
            "the held connections after the deny: {}\n{}",
            std::fs::read_to_string(d.path().join("held")).unwrap_or_default(),
            r.show()
        )
    })?;
    let denied = part("== denied");
    check(
        denied.contains("tunnel-refused:HTTP/1.1 403") && denied.contains("direct-refused"),
        || format!("after the deny: {}", r.show()),
    )?;
    // A rule on a port not captured at the start: added, with a warning.
    let uncaptured = std::fs::read_to_string(d.path().join("uncaptured.err")).unwrap_or_default();
    check(
        has("again:192.0.2.20/32 192.0.2.10/32 198.51.100.0/24:5432:0")
            && uncaptured.contains("port 5432, which was not captured")
            && uncaptured.contains("proxy variables"),
        || format!("an uncaptured port: {uncaptured}\n{}", r.show()),
    )?;
    // The reset: the policy's rules again.
    check(has("reset:192.0.2.20/32:0"), || r.show())?;
    let reset = part("== reset");
    check(
        reset.contains("tunnel-refused") && reset.contains("direct-refused"),
        || format!("after the reset: {}", r.show()),
    )?;
    // The helper's socket takes no request from another uid, even where it can be reached; the
    // same request from root through the same path is applied (control).
    check(
        has("nobody-reply:{\"refused\":{\"error\":\"the net helper takes requests from root only\"}}"),
        || r.show(),
    )?;
    let nobody = part("== after nobody");
    check(
        nobody.contains("tunnel-refused") && nobody.contains("direct-refused"),
        || format!("after nobody's request: {}", r.show()),
    )?;
    check(
        has("root-reply:{\"applied\":{\"allow\":[\"192.0.2.20/32\",\"192.0.2.10/32\"]}}"),
        || r.show(),
    )?;
    let root = part("== after root");
    check(
        root.contains("tunnel-ok") && root.contains("direct-ok"),
        || format!("after root's request: {}", r.show()),
    )?;
    // Joins kept the keeper (the policy's fingerprint, not the live rules), and the stop ends
    // the helper's socket with the context.
    check(has("same-keeper"), || r.show())?;
    check(has("stop:0") && has("gone::1"), || r.show())?;
    check(has("socket-left:0"), || r.show())?;
    // One audit line per change made with ctx net (allow, deny, allow, reset): uid, context,
    // rules added and removed, nothing else.
    let audit = std::fs::read_to_string(&log).unwrap_or_default();
    let changes: Vec<serde_json::Value> = audit
        .lines()
        .filter(|l| l.contains("\"net-change\""))
        .map(|l| serde_json::from_str(l).unwrap_or_default())
        .collect();
    let rules = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let want: [(&[&str], &[&str]); 4] = [
        (&["192.0.2.10/32"], &[]),
        (&[], &["192.0.2.10/32"]),
        (&["192.0.2.10/32", "198.51.100.0/24:5432"], &[]),
        (&[], &["192.0.2.10/32", "198.51.100.0/24:5432"]),
    ];
    check(changes.len() == want.len(), || {
        format!("want {} net-change lines:\n{audit}", want.len())
    })?;
    for (c, (added, removed)) in changes.iter().zip(want) {
        let keys: Vec<&str> = c
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        check(
            keys == ["added", "context", "event", "removed", "time", "uid"]
                && c["uid"] == 0
                && c["context"] == "plive"
                && rules(&c["added"]) == added
                && rules(&c["removed"]) == removed,
            || format!("net-change line {c}, want added {added:?} removed {removed:?}"),
        )?;
    }
    Ok(())
}

/// A net helper killed after a live change is replaced by the next call with the live rules (the
/// record's), not the policy's; a change made while no helper runs is recorded and taken by the
/// next one.
pub fn a_replaced_net_helper_keeps_the_live_rules() -> Result<(), String> {
    live_tools()?;
    let d = TempDir::new("g7plheal");
    let p = persistent_policy(
        d.path(),
        "plheal",
        "mode = \"private\"\nallow = [\"192.0.2.20/32\"]",
        "",
    );
    let gone = "i=0; while alive $1; do i=$((i+1)); [ $i -gt 100 ] && break; sleep 0.05; done";
    let script = format!(
        "{shell}gone() {{ {gone}; }}\nK=$(field keeper_pid)\n\
         echo '== policy'; hold 0\n\
         echo allow:$(net --allow 192.0.2.10/32)\n\
         N1=$(field net_pid); kill -9 $N1; gone $N1\n\
         echo '== replaced'; hold 0\n\
         N2=$(field net_pid); [ \"$N2\" != \"$N1\" ] && alive $N2 && echo new-helper\n\
         kill -9 $N2; gone $N2\n\
         echo deny:$(net --deny 192.0.2.10/32 2>$D/deny.err)\n\
         echo '== replaced again'; hold 0\n\
         N3=$(field net_pid); [ \"$N3\" != \"$N2\" ] && alive $N3 && echo new-helper-again\n\
         echo show:$(net --show)\n\
         [ \"$(field keeper_pid)\" = \"$K\" ] && echo same-keeper\n\
         stop; echo stop:$?\n",
        shell = live_shell(&p, "plheal"),
    );
    let r = live_scenario(d.path(), &script);
    r.expect_code(0, "replaced net helper scenario")?;
    let out = &r.stdout;
    let part = |from: &str| -> &str {
        let at = out.find(from).unwrap_or(out.len());
        let rest = &out[at..];
        let end = rest[1..].find("== ").map_or(rest.len(), |e| e + 1);
        &rest[..end]
    };
    let has = |s: &str| out.lines().any(|l| l == s);
    // Control: the policy's rules refuse it.
    let policy = part("== policy");
    check(
        policy.contains("tunnel-refused") && policy.contains("direct-refused"),
        || r.show(),
    )?;
    check(has("allow:192.0.2.20/32 192.0.2.10/32:0"), || r.show())?;
    // The replacement enforces the live rules.
    let replaced = part("== replaced\n");
    check(
        replaced.contains("tunnel-ok") && replaced.contains("direct-ok"),
        || format!("after the helper was replaced: {}", r.show()),
    )?;
    check(has("new-helper"), || r.show())?;
    // A deny while no helper runs: recorded (exit 0, saying so), taken by the next helper.
    let deny = std::fs::read_to_string(d.path().join("deny.err")).unwrap_or_default();
    check(
        has("deny:192.0.2.20/32:0") && deny.contains("net helper is not running"),
        || format!("a deny without a helper: {deny}\n{}", r.show()),
    )?;
    let again = part("== replaced again");
    check(
        again.contains("tunnel-refused") && again.contains("direct-refused"),
        || format!("after the second replacement: {}", r.show()),
    )?;
    check(has("new-helper-again"), || r.show())?;
    check(has("show:192.0.2.20/32:0"), || r.show())?;
    check(has("same-keeper"), || r.show())?;
    check(has("stop:0"), || r.show())
}
