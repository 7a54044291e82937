#!/usr/bin/env bash
# The Dockerfile and the control-mode ENTRYPOINT in a real Docker engine, offline (issue #21).
#
# Starts a private dockerd (its own socket, data root and exec root under a temp dir, no iptables,
# no forwarding, no masquerading), makes a Debian bookworm base image with debootstrap from the apt
# mirror (cached as a `docker save` file under /var/cache/sbx-ci/), adds the `bun` that npm
# installed, builds the repository's Dockerfile with that base and the sbx-exec built here
# (SBX_BIN=prebuilt), and checks the documented `docker run` flags end to end. Ports are published
# on 127.0.0.1 only. Each check prints PASS: or FAIL:; the exit status is 1 if any failed. A trap
# removes the containers, stops dockerd by its pid and removes what it left, on any exit.
#
# Run as root: bash tests/container/run.sh   (.ci/run runs it after cargo test)
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
T0=$(date +%s%N)

CACHE=/var/cache/sbx-ci
BASE_PKGS=ca-certificates,python3,procps
BASE_TAR=$CACHE/bookworm-minbase-${BASE_PKGS//,/-}.tar
BASE_IMG=sbx-ci/bookworm-minbase:latest
BUN_IMG=sbx-ci/bun-bookworm:latest
IMG=sbx-ci/sbx-demo:test
# Flags under test (README.md, Docker): namespaces need SYS_ADMIN (Docker's default seccomp
# profile then allows unshare/mount/setns); the persistent `user` context needs SYS_PTRACE.
CAPS=(--cap-add SYS_ADMIN --cap-add SYS_PTRACE)

FAILS=0
pass() { echo "PASS: $* [$(elapsed)]"; }
fail() {
    echo "FAIL: $* [$(elapsed)]"
    FAILS=$((FAILS + 1))
}
info() { echo "container: $*"; }
elapsed() { echo "$(((($(date +%s%N) - T0) / 1000000)))" | awk '{printf "%.1f s", $1/1000}'; }

[ "$(id -u)" = 0 ] || {
    echo "FAIL: tests/container/run.sh needs root (dockerd, debootstrap)"
    exit 1
}

# ------------------------------------------------------------------ tools
missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ "${#missing[@]}" -gt 0 ]; then
    info "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The docker client of the docker.io package (matches its daemon; another client may be first on
# PATH). BuildKit builds only the stages the image needs (not the rust:1-bookworm one).
DOCKER=/usr/bin/docker
[ -x "$DOCKER" ] || DOCKER=$(command -v docker)
export DOCKER_BUILDKIT=1

# ------------------------------------------------------------------ cleanup
WORK=$(mktemp -d /tmp/sbx-container.XXXXXX)
export DOCKER_HOST=unix://$WORK/docker.sock
DOCKERD_PID=
HAD_DOCKER0=no
ip link show docker0 >/dev/null 2>&1 && HAD_DOCKER0=yes
CONTAINERS=()

cleanup() {
    local rc=$?
    set +e
    if [ -n "$DOCKERD_PID" ] && kill -0 "$DOCKERD_PID" 2>/dev/null; then
        for c in "${CONTAINERS[@]}"; do
            timeout 20 "$DOCKER" rm -f "$c" >/dev/null 2>&1
        done
        kill -TERM "$DOCKERD_PID"
        for _ in $(seq 1 100); do
            kill -0 "$DOCKERD_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$DOCKERD_PID" 2>/dev/null; then
            echo "container: dockerd did not stop within 10 s; SIGKILL"
            kill -KILL "$DOCKERD_PID"
            sleep 0.5
        fi
    fi
    # What dockerd leaves: mounts under its roots (overlays, netns, shm), the docker0 bridge.
    grep -F " $WORK/" /proc/mounts | awk '{print $2}' | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null
    done
    if [ "$HAD_DOCKER0" = no ] && ip link show docker0 >/dev/null 2>&1; then
        ip link delete docker0
    fi
    # --iptables=false: dockerd makes no chains; remove any DOCKER chain that appeared anyway.
    if command -v iptables >/dev/null 2>&1; then
        for table in filter nat; do
            for chain in DOCKER-USER DOCKER-ISOLATION-STAGE-2 DOCKER-ISOLATION-STAGE-1 DOCKER; do
                if iptables -t "$table" -n -L "$chain" >/dev/null 2>&1 && [[ "$IPT_BEFORE" != *"$table:$chain"* ]]; then
                    iptables -t "$table" -F "$chain" 2>/dev/null
                    iptables -t "$table" -X "$chain" 2>/dev/null
                fi
            done
        done
    fi
    rm -rf "$WORK"
    echo "container: total time $(elapsed)"
    exit "$rc"
}
IPT_BEFORE=
if command -v iptables >/dev/null 2>&1; then
    for table in filter nat; do
        for chain in DOCKER-USER DOCKER-ISOLATION-STAGE-2 DOCKER-ISOLATION-STAGE-1 DOCKER; do
            iptables -t "$table" -n -L "$chain" >/dev/null 2>&1 && IPT_BEFORE+=" $table:$chain"
        done
    done
fi
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ dockerd
start_dockerd() {
    local driver=$1
    dockerd --storage-driver="$driver" --data-root "$WORK/data" --exec-root "$WORK/exec" \
        --pidfile "$WORK/dockerd.pid" -H "$DOCKER_HOST" \
        --ip-forward=false --ip-masq=false --iptables=false \
        >>"$WORK/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    for _ in $(seq 1 150); do
        if "$DOCKER" version >/dev/null 2>&1; then
            return 0
        fi
        kill -0 "$DOCKERD_PID" 2>/dev/null || break
        sleep 0.2
    done
    kill -TERM "$DOCKERD_PID" 2>/dev/null && wait "$DOCKERD_PID" 2>/dev/null
    DOCKERD_PID=
    return 1
}
if ! start_dockerd overlay2; then
    info "dockerd did not start with overlay2; trying vfs"
    tail -n 5 "$WORK/dockerd.log"
    rm -rf "$WORK/data" "$WORK/exec"
    start_dockerd vfs || {
        tail -n 20 "$WORK/dockerd.log"
        echo "FAIL: dockerd does not start"
        exit 1
    }
fi
info "dockerd $("$DOCKER" version -f '{{.Server.Version}}') pid $DOCKERD_PID, storage $("$DOCKER" info -f '{{.Driver}}'), security options: $("$DOCKER" info -f '{{join .SecurityOptions " "}}') ($(elapsed))"

# ------------------------------------------------------------------ base image
apt_mirror() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk '$1 == "deb" && $0 ~ /bookworm/ && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^(https?|file):/) {print $i; exit}}' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk 'BEGIN{RS=""} /Suites:[^\n]*bookworm([ \n]|$)/ && !/security/ {if (match($0, /URIs:[ \t]*[^ \t\n]+/)) {u = substr($0, RSTART, RLENGTH); sub(/URIs:[ \t]*/, "", u); print u; exit}}' "$f"
    done
}
if [ -f "$BASE_TAR" ]; then
    "$DOCKER" load -q -i "$BASE_TAR" >/dev/null
    info "base image loaded from $BASE_TAR ($(elapsed))"
else
    MIRROR=$(apt_mirror | head -n 1)
    MIRROR=${MIRROR:-http://deb.debian.org/debian}
    info "debootstrap --variant=minbase --include=$BASE_PKGS bookworm from $MIRROR"
    ROOTFS=$WORK/rootfs
    if ! debootstrap --variant=minbase --include="$BASE_PKGS" bookworm "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1; then
        tail -n 20 "$WORK/debootstrap.log"
        echo "FAIL: debootstrap"
        exit 1
    fi
    rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb
    tar -C "$ROOTFS" -c . | "$DOCKER" import -c 'CMD ["/bin/bash"]' - "$BASE_IMG" >/dev/null
    rm -rf "$ROOTFS"
    mkdir -p "$CACHE"
    "$DOCKER" save -o "$BASE_TAR.tmp" "$BASE_IMG" && mv "$BASE_TAR.tmp" "$BASE_TAR"
    info "base image built and saved to $BASE_TAR ($(elapsed))"
fi

# bun from the npm package (.ci/run installs it globally): the public oven/bun image's layout,
# bun as /usr/local/bin/bun, on the local base.
BUN=
for cand in "$(npm root -g 2>/dev/null)/bun/bin/bun" "$(npm root -g 2>/dev/null)/bun/bin/bun.exe" \
    "$(readlink -f "$(command -v bun 2>/dev/null)" 2>/dev/null)"; do
    # The npm package's placeholder (before its postinstall) is not an ELF file.
    if [ -f "$cand" ] && [ "$(head -c 4 "$cand" | od -An -c | tr -d ' ')" = '177ELF' ]; then
        BUN=$cand
        break
    fi
done
[ -n "$BUN" ] || {
    echo "FAIL: no bun binary (npm install -g bun)"
    exit 1
}
mkdir -p "$WORK/bunctx"
cp "$BUN" "$WORK/bunctx/bun"
printf 'FROM %s\nCOPY bun /usr/local/bin/bun\nRUN chmod 0755 /usr/local/bin/bun && bun --version\n' "$BASE_IMG" >"$WORK/bunctx/Dockerfile"
"$DOCKER" build -q -t "$BUN_IMG" "$WORK/bunctx" >/dev/null
rm -rf "$WORK/bunctx"
info "bun $("$DOCKER" run --rm --network none "$BUN_IMG" bun --version) from $BUN in $BUN_IMG ($(elapsed))"

# ------------------------------------------------------------------ sbx-exec and the image
info "cargo build --release"
cargo build --release --locked -q
SBX=$REPO/target/release/sbx-exec
# The binary runs in Debian bookworm (glibc 2.36): it must need no newer glibc symbol.
host_glibc=$(ldd --version 2>&1 | head -n 1 | grep -oE '[0-9]+\.[0-9]+$' || true)
need_glibc=$(grep -aoE 'GLIBC_2\.[0-9]+' "$SBX" | sort -uV | tail -n 1 | sed 's/GLIBC_//')
if [ "$(printf '%s\n2.36\n' "$need_glibc" | sort -V | tail -n 1)" = 2.36 ]; then
    pass "the host-built sbx-exec needs glibc $need_glibc (host $host_glibc), bookworm has 2.36"
else
    fail "the host-built sbx-exec needs glibc $need_glibc (host $host_glibc), newer than bookworm's 2.36: build it in bookworm (docker build without SBX_BIN=prebuilt, or cargo in a bookworm rootfs)"
    exit 1
fi
if ! "$DOCKER" build -q --build-arg RUNTIME_IMAGE="$BUN_IMG" --build-arg SBX_BIN=prebuilt -t "$IMG" . >"$WORK/build.log" 2>&1; then
    cat "$WORK/build.log"
    echo "FAIL: docker build"
    exit 1
fi
want=$("$SBX" --version)
got=$("$DOCKER" run --rm --network none --entrypoint sbx-exec "$IMG" --version)
if [ "$got" = "$want" ]; then
    pass "docker build (base $BUN_IMG, SBX_BIN=prebuilt) ships this sbx-exec: $got ($(elapsed))"
else
    fail "the image's sbx-exec is \"$got\", not the one built here (\"$want\")"
fi

# ------------------------------------------------------------------ containers
TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
install -m 0600 /dev/null "$WORK/token"
printf '%s\n' "$TOKEN" >"$WORK/token"
# A stand-in for the AWS CLI, at a path the policy's platform exec.allow lists: it prints the one
# secret it should have received. Root-owned, 0755, mounted read-only.
mkdir -p "$WORK/bin"
printf '#!/bin/sh\nprintf "secret=%%s\\n" "$AWS_SECRET_ACCESS_KEY"\n' >"$WORK/bin/aws"
chmod 0755 "$WORK/bin/aws"
MOUNTS=(-v "$WORK/token:/run/secrets/sbx_api_token:ro" -v "$WORK/bin/aws:/usr/local/bin/aws:ro"
    # The example server runs only `user` unless told which other contexts its callers may name.
    -e SBX_ALLOWED_CONTEXTS=user,platform)

A=sbx-ci-full-$$
B=sbx-ci-nocap-$$
CONTAINERS=("$A" "$B")
# (stderr: dockerd warns that IPv4 forwarding is off, which is what this test wants)
"$DOCKER" run -d --name "$A" -p 127.0.0.1::8080 "${CAPS[@]}" "${MOUNTS[@]}" "$IMG" >/dev/null 2>>"$WORK/run.log"
"$DOCKER" run -d --name "$B" -p 127.0.0.1::8080 "${MOUNTS[@]}" "$IMG" >/dev/null 2>>"$WORK/run.log"
port_of() { "$DOCKER" port "$1" 8080/tcp | grep -oE '127\.0\.0\.1:[0-9]+' | head -n 1 | cut -d: -f2; }
PA=$(port_of "$A")
PB=$(port_of "$B")
dx() { timeout 60 "$DOCKER" exec "$@"; }

health() { curl -s --max-time 5 "http://127.0.0.1:$1/health"; }
pid_of() { health "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])' 2>/dev/null; }
wait_health() {
    for _ in $(seq 1 100); do
        [[ "$(health "$1")" == *'"ok":true'* ]] && return 0
        sleep 0.1
    done
    return 1
}

# 1. The Bun server answers on the published port, through the sockets control mode handed it.
# (Logs are read into a variable first: `docker logs | grep -q` can fail on SIGPIPE under pipefail.)
ok=no
wait_health "$PA" && ok=yes
logs=$("$DOCKER" logs "$A" 2>&1)
if [ "$ok" = yes ] && grep -q 'serving on inherited fd' <<<"$logs"; then
    pass "the Bun server answers /health on 127.0.0.1:$PA: $(health "$PA"), on the sockets sbx-exec bound ($(grep -c 'serving on inherited fd' <<<"$logs") inherited fds)"
else
    fail "the Bun server does not answer on 127.0.0.1:$PA through inherited sockets (health: $ok)"
    tail -n 20 <<<"$logs"
fi
SERVER=$(pid_of "$PA")
info "server pid $SERVER (in the container) ($(elapsed))"

# 2. `user` sees only itself.
out=$(dx "$A" sbx-exec --ctx user -- ps aux 2>&1) || true
n=$(printf '%s\n' "$out" | tail -n +2 | grep -c . || true)
if [ "$n" = 2 ] && ! grep -q bun <<<"$out"; then
    pass "sbx-exec --ctx user -- ps aux shows only the sandbox ($n processes)"
else
    fail "sbx-exec --ctx user -- ps aux shows $n processes:"
    printf '%s\n' "$out"
fi

# 3. Attacks from `user` on the control plane: each fails, the server keeps its pid.
same_server() { [ "$(pid_of "$PA")" = "$SERVER" ]; }
attack() { # name, expected outcome text, command...
    local name=$1
    shift
    local rc=0
    out=$(dx "$A" sbx-exec --ctx user -- "$@" 2>&1) || rc=$?
    sleep 0.3
    if same_server; then
        pass "user: $name: no effect (exit $rc), the server keeps pid $SERVER"
    else
        fail "user: $name: the server's pid is now $(pid_of "$PA") (was $SERVER); exit $rc: $out"
    fi
}
attack "kill -9 1" kill -9 1
attack "kill -9 -1" kill -9 -1
rc=0
out=$(dx "$A" sbx-exec --ctx user -- pkill bun 2>&1) || rc=$?
if [ "$rc" = 1 ] && same_server; then
    pass "user: pkill bun finds nothing (exit 1), the server keeps pid $SERVER"
else
    fail "user: pkill bun exit $rc (want 1: no process matched): $out"
fi
BIND='
import socket, sys
bad = []
for port in (8080, 8888):
    for fam, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::")):
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((addr, port)); s.listen(); bad.append("%s:%d" % (addr, port))
        except OSError as e:
            print("%s:%d: %s" % (addr, port, e.strerror))
if bad:
    print("BOUND " + " ".join(bad)); sys.exit(1)
'
rc=0
out=$(dx "$A" sbx-exec --ctx user -- python3 -c "$BIND" 2>&1) || rc=$?
if [ "$rc" = 0 ] && same_server; then
    pass "user: binding 8080 and 8888 fails ($(printf '%s\n' "$out" | sed 's/.*: //' | sort -u | paste -sd, -))"
else
    fail "user: could bind a reserved port: $out"
fi
API='
import json, sys, urllib.request, urllib.error
req = urllib.request.Request("http://127.0.0.1:8080/exec", method="POST",
    data=json.dumps({"ctx": "user", "cmd": ["true"]}).encode(), headers={"content-type": "application/json"})
try:
    r = urllib.request.urlopen(req, timeout=10); print(r.status)
except urllib.error.HTTPError as e:
    print(e.code)
'
code=$(dx "$A" sbx-exec --ctx user -- python3 -c "$API" 2>&1 | tail -n 1) || true
if [ "$code" = 401 ]; then
    pass "user: POST /exec without the API token is refused (401)"
else
    fail "user: POST /exec without the API token answered $code, not 401 (the server does not check SBX_API_TOKEN_FILE yet?)"
fi
ENVIRON='
import glob, sys
found, readable = [], 0
for f in glob.glob("/proc/[0-9]*/environ"):
    try:
        data = open(f, "rb").read()
    except OSError:
        continue
    readable += 1
    for marker in (b"LISTEN_FDS=", b"SBX_API_TOKEN_FILE=", sys.argv[1].encode()):
        if marker in data:
            found.append(f + ": " + marker.decode())
print("readable=%d" % readable)
if found:
    print("FOUND " + " ".join(found)); sys.exit(1)
'
rc=0
out=$(dx "$A" sbx-exec --ctx user -- python3 -c "$ENVIRON" "$TOKEN" 2>&1) || rc=$?
rc2=0
dx "$A" sbx-exec --ctx user -- cat "/proc/$SERVER/environ" >/dev/null 2>&1 || rc2=$?
if [ "$rc" = 0 ] && [ "$rc2" != 0 ] && same_server; then
    pass "user: the server's environment is out of reach (/proc/*/environ: $out; /proc/$SERVER/environ: exit $rc2)"
else
    fail "user: read the server's environment: $out (cat /proc/$SERVER/environ exit $rc2)"
fi
if same_server && [ "$("$DOCKER" inspect -f '{{.State.Running}}' "$A")" = true ]; then
    pass "after the attacks the server still has pid $SERVER and the container runs"
else
    fail "after the attacks the server's pid is $(pid_of "$PA") (was $SERVER)"
fi

# 4. A platform call through the API receives a secret on --secrets-fd (execSecure in sbx.ts).
SECRET=s3cr3t-$RANDOM$RANDOM
resp=$(curl -s --max-time 30 -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d "{\"ctx\":\"platform\",\"cmd\":[\"/usr/local/bin/aws\"],\"secrets\":{\"AWS_SECRET_ACCESS_KEY\":\"$SECRET\"}}" \
    "http://127.0.0.1:$PA/exec")
if grep -q "secret=$SECRET" <<<"$resp" && grep -q '"exitCode":0' <<<"$resp"; then
    pass "platform: POST /exec (with the token) ran aws with the secret from --secrets-fd 3"
else
    fail "platform: the secret did not arrive: $resp"
fi

# 5. Killing the server: control restarts it, the port stays bound, no connection is refused.
POLL=$WORK/poll
(
    end=$(($(date +%s) + 20))
    while [ "$(date +%s)" -lt "$end" ]; do
        body=$(curl -s --max-time 10 "http://127.0.0.1:$PA/health") || body="curl-error-$?"
        echo "$body" >>"$POLL"
        grep -q "\"pid\":$SERVER}" <<<"$body" || grep -q curl-error <<<"$body" || break
        sleep 0.05
    done
) &
POLLER=$!
sleep 0.3
dx "$A" kill -9 "$SERVER"
wait "$POLLER" || true
NEW=$(pid_of "$PA")
errors=$(grep -c -v '"ok":true' "$POLL" || true)
if [ -n "$NEW" ] && [ "$NEW" != "$SERVER" ] && [ "$errors" = 0 ]; then
    pass "kill -9 of the server ($SERVER): restarted as $NEW, $(wc -l <"$POLL") polls of /health during the restart, none refused or failed"
else
    fail "restart: new pid '${NEW}' (was $SERVER), $errors failed polls: $(grep -v '"ok":true' "$POLL" | sort | uniq -c | head -n 3 | tr '\n' ' ')"
fi
"$DOCKER" logs "$A" 2>&1 | sed -n 's/^\(.*restarting in.*\)/container: log: \1/p'

# 6. docker stop: graceful, with the server's status, no zombie left behind.
zombies=$(dx "$A" ps -eo stat=,pid=,comm= | awk '$1 ~ /^Z/' || true)
t=$(date +%s%N)
"$DOCKER" stop -t 10 "$A" >/dev/null
ms=$((($(date +%s%N) - t) / 1000000))
code=$("$DOCKER" inspect -f '{{.State.ExitCode}}' "$A")
logs=$("$DOCKER" logs "$A" 2>&1)
if [ -z "$zombies" ] && [ "$code" = 0 ] && [ "$ms" -lt 9000 ] && grep -q 'SIGTERM, stopping' <<<"$logs"; then
    pass "docker stop: the server stopped on SIGTERM, the container exited with its status 0 in $ms ms, no zombie before"
else
    fail "docker stop: exit $code after $ms ms; zombies: ${zombies:-none}"
    tail -n 5 <<<"$logs"
fi

# 7. Without --cap-add SYS_ADMIN: probe says what is missing, user/platform exit 125 naming the
# fix, the control plane still serves.
out=$(dx "$B" sbx-exec probe 2>&1) || true
if grep -qE '^user +unavailable +pid namespace' <<<"$out" && grep -qE '^platform +unavailable' <<<"$out" && grep -qE '^control +full' <<<"$out"; then
    pass "no SYS_ADMIN: probe reports $(grep -E '^user ' <<<"$out" | tr -s ' ')"
else
    fail "no SYS_ADMIN: probe says: $out"
fi
for ctx_cmd in "user python3 -c pass" "platform /usr/local/bin/aws"; do
    rc=0
    out=$(dx "$B" sbx-exec --ctx $ctx_cmd 2>&1) || rc=$?
    ctx=${ctx_cmd%% *}
    if [ "$rc" = 125 ] && grep -q -- '--cap-add SYS_ADMIN' <<<"$out"; then
        pass "no SYS_ADMIN: $ctx exits 125 naming the fix (--cap-add SYS_ADMIN)"
    else
        fail "no SYS_ADMIN: $ctx exit $rc: $out"
    fi
done
if wait_health "$PB"; then
    pass "no SYS_ADMIN: the control plane still serves /health on 127.0.0.1:$PB"
else
    fail "no SYS_ADMIN: no /health on 127.0.0.1:$PB"
fi
"$DOCKER" stop -t 10 "$B" >/dev/null

if [ -d /sys/kernel/security/apparmor ]; then
    info "AppArmor is enabled here: the checks above ran with docker-default"
else
    info "AppArmor is not enabled on this kernel: apparmor=unconfined (needed where it is) not tested"
fi
if [ "$FAILS" -gt 0 ]; then
    echo "container: $FAILS check(s) failed"
    exit 1
fi
echo "container: all checks passed"
