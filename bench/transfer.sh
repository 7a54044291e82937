#!/usr/bin/env bash
# Throughput of one large HTTPS download (issue #28), three ways, in the same run:
#
#   intercepted   a sandbox (the agent context of policies/sandbox-sdk.toml, one bound secret)
#                 downloads from the host its secret is bound to: the gate terminates the
#                 sandbox's TLS with the call's CA, re-encrypts to the origin (verified against the
#                 system bundle) and scrubs the whole body of every encoding of the real value;
#   tunnel        the same sandbox, the same download from a host it may reach but no secret is
#                 bound to: a plain CONNECT tunnel through the gate, TLS end to end;
#   direct        curl outside any sandbox straight to the origin: the ceiling.
#
#   bash bench/transfer.sh SBX OUTDIR SIZE_MIB RUNS     (run by bench/run.sh; root)
#
# Writes OUTDIR/transfer.json (every run's MB/s, medians, TLS versions and ciphers of each leg).
# Everything happens in a network + mount namespace of its own (unshare --net --mount): the
# origin listens on TEST-NET addresses on that namespace's lo; /etc/hosts and the system CA bundle
# (the real one plus a test CA made here with openssl) are bind-mounted over only inside it. No
# packet leaves the machine. Exits non-zero if a download fails, comes back short, or if the
# variants do not do what their names say (the origin sees the real key only when intercepted; a
# body that holds the real key comes back to the sandbox as the placeholder).
set -euo pipefail

if [ "${TRANSFER_INNER:-}" != 1 ]; then
    [ $# = 4 ] || { echo "usage: transfer.sh SBX OUTDIR SIZE_MIB RUNS" >&2; exit 2; }
    SBX="$1" D="$2/transfer" SIZE_MIB="$3" RUNS="$4"
    ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    rm -rf "$D" && mkdir -p "$D"
    cd "$D"
    # The test CA and one server certificate for both names (EC P-256, serverAuth).
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key \
        -out ca.crt -days 2 -subj '/CN=sbx bench test CA' -addext basicConstraints=critical,CA:TRUE \
        -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
    printf 'subjectAltName=DNS:api.anthropic.com,DNS:other.example.test\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n' >origin.ext
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout origin.key \
        -subj /CN=origin -out origin.csr 2>/dev/null
    openssl x509 -req -in origin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
        -extfile origin.ext -out origin.crt 2>/dev/null
    cat /etc/ssl/certs/ca-certificates.crt ca.crt >bundle.crt
    printf '127.0.0.1 localhost\n192.0.2.10 api.anthropic.com\n192.0.2.11 other.example.test\n' >hosts
    # A key made now (no file holds it but the secrets file), handed on fd 3 as the suite does.
    printf 'ANTHROPIC_API_KEY=sk-ant-api03-%s\n' "$(od -An -N20 -tx1 /dev/urandom | tr -d ' \n')" >secrets
    # The agent context as shipped, with net.allow naming the two hosts and their exact /32s (the
    # origin's addresses are this namespace's own: only an exact /32 opens them to the gate).
    python3 - "$ROOT/policies/sandbox-sdk.toml" >policy.toml <<'PY'
import re, sys
text = open(sys.argv[1]).read()
m = re.search(r"^\[context\.agent\.net\][^\n]*\n(?:.*\n)*?allow = \[[^\]]*\]", text, re.M)
if not m:
    sys.exit("transfer: no allow list under [context.agent.net] in policies/sandbox-sdk.toml")
a = m.group(0)
new = a[:a.index("allow = [")] + 'allow = ["api.anthropic.com:443", "other.example.test:443", "192.0.2.10/32", "192.0.2.11/32"]'
sys.stdout.write(text.replace(a, new, 1))
PY
    "$SBX" policy check policy.toml >/dev/null || { echo "transfer: policy.toml does not validate" >&2; exit 1; }
    grep -q '^name = "ANTHROPIC_API_KEY"' policy.toml || { echo "transfer: no ANTHROPIC_API_KEY binding" >&2; exit 1; }
    cp "$ROOT/bench/origin.py" origin.py
    export SBX D SIZE_MIB RUNS TRANSFER_INNER=1
    # --kill-child: the origin dies with the namespace's shell whatever happens.
    unshare --net --mount --propagation private --fork --pid --kill-child --mount-proc \
        bash "$ROOT/bench/transfer.sh"
    python3 - "$D" "$SIZE_MIB" "$RUNS" <<'PY'
import json, statistics, sys
d, size_mib, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
speeds = {"intercepted": [], "tunnel": [], "direct": []}
for line in open(d + "/results.txt"):
    v, speed, size, code = line.split()
    if code != "200" or int(size) != size_mib << 20:
        sys.exit("transfer: %s download failed: http %s, %s of %d bytes" % (v, code, size, size_mib << 20))
    speeds[v].append(float(speed) / 1e6)
for v, s in speeds.items():
    if len(s) != runs:
        sys.exit("transfer: %d %s downloads of %d" % (len(s), v, runs))
legs = dict(l.rstrip("\n").split("=", 1) for l in open(d + "/legs.txt") if "=" in l)
origin = [l.split() for l in open(d + "/origin.log")]
bodies = [o for o in origin if o[0].startswith("/body/")]
# Each run: intercepted (the origin got the real key), tunnel (the placeholder), direct (neither:
# curl sends "x-api-key: direct").
want = {"real": runs, "placeholder": runs, "other": runs}
got = {k: sum(1 for o in bodies if o[1] == k) for k in want}
if got != want:
    sys.exit("transfer: the origin saw the key %s, expected %s" % (got, want))
up = sorted({"%s %s" % (o[2], o[3]) for o in bodies if o[1] == "real"})
json.dump({"size_mib": size_mib, "runs": runs, "mb_s": speeds,
           "median_mb_s": {v: statistics.median(s) for v, s in speeds.items()},
           "tls_sandbox_gate": legs.get("gate", "?"), "tls_gate_origin": ", ".join(up),
           "tls_tunnel": legs.get("tunnel", "?"), "tls_direct": legs.get("direct", "?"),
           "scrubbed": legs.get("scrub", "?")}, open(d + "/transfer.json", "w"), indent=1)
PY
    exit
fi

# ---- inside the bench's own network + mount (+ pid) namespace ----------------------------------
mount --bind "$D/bundle.crt" /etc/ssl/certs/ca-certificates.crt
mount --bind "$D/hosts" /etc/hosts
ip link set lo up
ip addr add 192.0.2.10/32 dev lo
ip addr add 192.0.2.11/32 dev lo
cd "$D"
python3 origin.py 0.0.0.0 443 origin.crt origin.key secrets origin.log 2>origin.stderr &
for i in $(seq 200); do [ -e origin.log.ready ] && break; sleep 0.05; done
[ -e origin.log.ready ] || { echo "transfer: the origin did not start: $(cat origin.stderr)" >&2; exit 1; }

BYTES=$((SIZE_MIB << 20))
W='%{speed_download} %{size_download} %{http_code}\n'
sbx() {   # sbx SCRIPT: the agent context with the secret on fd 3
    "$SBX" --policy "$D/policy.toml" --ctx agent --secrets-fd 3 -- sh -c "$1" 3<"$D/secrets"
}

# The legs' TLS, and a body holding the real key: it must reach the sandbox as the placeholder.
tls='sed -n "s/^\* SSL connection using //p" | tr -d "\r" | head -n1'
sbx "echo \"gate=\$(curl -sv -o /dev/null https://api.anthropic.com/echo -H \"x-api-key: \$ANTHROPIC_API_KEY\" 2>&1 | $tls)\"
     echo \"tunnel=\$(curl -sv -o /dev/null https://other.example.test/echo 2>&1 | $tls)\"
     got=\$(curl -sS https://api.anthropic.com/echo -H \"x-api-key: \$ANTHROPIC_API_KEY\")
     [ \"\$got\" = \"k=\$ANTHROPIC_API_KEY\" ] && echo scrub=yes || echo scrub=no" >legs.txt
echo "direct=$(curl -sv --noproxy '*' -o /dev/null https://api.anthropic.com/echo 2>&1 | sed -n 's/^\* SSL connection using //p' | tr -d '\r' | head -n1)" >>legs.txt
grep -q '^scrub=yes$' legs.txt || { echo "transfer: the body came back unscrubbed (or failed): $(cat legs.txt)" >&2; exit 1; }
: >origin.log   # the checks above are not part of the counts

: >results.txt
for run in $(seq "$RUNS"); do
    # One sandbox per run, both downloads in it (the gate starts on the first); then the ceiling.
    sbx "printf 'intercepted '; curl -sS -m 600 -o /dev/null -w '$W' -H \"x-api-key: \$ANTHROPIC_API_KEY\" https://api.anthropic.com/body/$BYTES
         printf 'tunnel '; curl -sS -m 600 -o /dev/null -w '$W' -H \"x-api-key: \$ANTHROPIC_API_KEY\" https://other.example.test/body/$BYTES" >>results.txt
    printf 'direct ' >>results.txt
    curl -sS -m 600 --noproxy '*' -o /dev/null -w "$W" -H 'x-api-key: direct' "https://api.anthropic.com/body/$BYTES" >>results.txt
    echo "transfer: run $run/$RUNS: $(tail -n3 results.txt | awk '{printf "%s %.0f MB/s  ", $1, $2 / 1e6}')" >&2
done
