#!/usr/bin/env bash
# The Dockerfile and the control-mode ENTRYPOINT in a real Docker engine, offline (issue #21).
#
# Starts a private dockerd (its own socket, data root and exec root under a temp dir, no iptables,
# no forwarding, no masquerading), makes a Debian bookworm base image with debootstrap from the apt
# mirror (cached as a `docker save` file under /var/cache/sbx-ci/), adds the `bun` that npm
# installed, builds the repository's Dockerfile with that base, the sbx-exec built here
# (SBX_BIN=prebuilt) and the host's Jupyter venv /opt/sbx-jupyter (SBX_JUPYTER=prebuilt, staged as
# target/sbx-jupyter/: containers here have no network, so no pip install), and checks the
# documented `docker run` flags end to end: the Bun control plane on 8080 and the confined Jupyter
# server on 8888, both on the sockets sbx-exec holds. Ports are published
# on 127.0.0.1 only. Each check prints PASS: or FAIL:; the exit status is 1 if any failed. A trap
# removes the containers, stops dockerd by its pid and removes what it left, on any exit.
#
# Run as root: bash tests/container/run.sh   (.ci/run runs it after cargo test, having installed
# /opt/sbx-jupyter; without it the script fails under CI=true and skips otherwise)
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
CAPS=(--cap-add SYS_ADMIN --cap-add SYS_PTRACE --cap-add NET_ADMIN)
# The Jupyter venv the image gets (made by .ci/run on Debian bookworm's /usr/bin/python3, as the
# image has it), and the host-side client of its REST API and kernel websocket (websocket-client).
JUPYTER_VENV=/opt/sbx-jupyter
JPY=$JUPYTER_VENV/bin/python3
JUPYTER_INSTALL="/usr/bin/python3 -m venv $JUPYTER_VENV && $JUPYTER_VENV/bin/pip install jupyter_server ipykernel"
STAGE=$REPO/target/sbx-jupyter

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
if ! PYTHONDONTWRITEBYTECODE=1 timeout 60 "$JPY" -c 'import jupyter_server, ipykernel, websocket' >/dev/null 2>&1; then
    if [ "${CI:-}" = true ]; then
        echo "FAIL: $JPY with jupyter_server, ipykernel and websocket-client is missing and CI=true: .ci/run must install it first ($JUPYTER_INSTALL)"
        exit 1
    fi
    echo "SKIP: no Jupyter venv at $JUPYTER_VENV (the image's Jupyter service is copied from it); install it with: $JUPYTER_INSTALL"
    exit 0
fi

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
    rm -rf "$WORK" "$STAGE" "$REPO/target/sbx-bin"
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
# .cargo/config.toml builds static-pie for the host tuple: the binary is under target/<tuple>/.
SBX=$REPO/target/$(rustc -vV | sed -n 's/^host: //p')/release/sbx-exec
# The binary runs in Debian bookworm (glibc 2.36): static, it needs none of the image's libraries;
# were it dynamic, it must need no newer glibc symbol.
host_glibc=$(ldd --version 2>&1 | head -n 1 | grep -oE '[0-9]+\.[0-9]+$' || true)
if ! readelf -l "$SBX" | grep -q 'program interpreter'; then
    pass "the host-built sbx-exec is static (no program interpreter): it needs no glibc of the image"
else
    need_glibc=$(grep -aoE 'GLIBC_2\.[0-9]+' "$SBX" | sort -uV | tail -n 1 | sed 's/GLIBC_//')
    if [ "$(printf '%s\n2.36\n' "$need_glibc" | sort -V | tail -n 1)" = 2.36 ]; then
        pass "the host-built sbx-exec needs glibc $need_glibc (host $host_glibc), bookworm has 2.36"
    else
        fail "the host-built sbx-exec needs glibc $need_glibc (host $host_glibc), newer than bookworm's 2.36: build it in bookworm (docker build without SBX_BIN=prebuilt, or cargo in a bookworm rootfs)"
        exit 1
    fi
fi
# The Jupyter venv into the build context (target/sbx-jupyter, the one directory .dockerignore
# lets in besides the binary). It works in the image only on the same python: bookworm's 3.11 at
# /usr/bin/python3 (the venv's bin/python3 links there, pyvenv.cfg says home = /usr/bin).
venv_home=$(sed -n 's/^home = //p' "$JUPYTER_VENV/pyvenv.cfg")
venv_ver=$(sed -n 's/^version = //p' "$JUPYTER_VENV/pyvenv.cfg")
if [ "$venv_home" != /usr/bin ] || [ "$(readlink "$JUPYTER_VENV/bin/python3")" != /usr/bin/python3 ]; then
    fail "$JUPYTER_VENV is not a venv on /usr/bin/python3 (home = $venv_home, bin/python3 -> $(readlink "$JUPYTER_VENV/bin/python3")): remake it ($JUPYTER_INSTALL)"
    exit 1
fi
rm -rf "$STAGE" "$REPO/target/sbx-bin"
cp -a "$JUPYTER_VENV" "$STAGE"
install -D -m 0755 "$SBX" "$REPO/target/sbx-bin/sbx-exec"
info "staged $JUPYTER_VENV (python $venv_ver, $(du -sh "$STAGE" | cut -f1)) as target/sbx-jupyter ($(elapsed))"
if ! "$DOCKER" build -q --build-arg RUNTIME_IMAGE="$BUN_IMG" --build-arg SBX_BIN=prebuilt \
    --build-arg SBX_JUPYTER=prebuilt -t "$IMG" . >"$WORK/build.log" 2>&1; then
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
rm -rf "$STAGE" "$REPO/target/sbx-bin"
img_py=$("$DOCKER" run --rm --network none --entrypoint /opt/sbx-jupyter/bin/python3 -e PYTHONDONTWRITEBYTECODE=1 "$IMG" \
    -c 'import platform, jupyter_server, ipykernel; print(platform.python_version(), jupyter_server.__version__, ipykernel.__version__)' 2>&1) || true
if [[ "$img_py" == "${venv_ver%.*}".*" "* ]]; then
    read -r py_v js_v ik_v <<<"$img_py"
    pass "the image's /opt/sbx-jupyter (SBX_JUPYTER=prebuilt, made for python $venv_ver) runs on its python $py_v: jupyter_server $js_v, ipykernel $ik_v"
else
    fail "the image's /opt/sbx-jupyter does not run on its python3 (venv made for $venv_ver): $img_py"
fi

# ------------------------------------------------------------------ containers
TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
# Jupyter's token: from the run-time environment (serve.py reads only JUPYTER_TOKEN), never the image.
JTOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
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
"$DOCKER" run -d --name "$A" -p 127.0.0.1::8080 -p 127.0.0.1::8888 "${CAPS[@]}" "${MOUNTS[@]}" \
    -e JUPYTER_TOKEN="$JTOKEN" "$IMG" >/dev/null 2>>"$WORK/run.log"
"$DOCKER" run -d --name "$B" -p 127.0.0.1::8080 "${MOUNTS[@]}" "$IMG" >/dev/null 2>>"$WORK/run.log"
port_of() { "$DOCKER" port "$1" "${2:-8080}/tcp" | grep -oE '127\.0\.0\.1:[0-9]+' | head -n 1 | cut -d: -f2; }
PA=$(port_of "$A")
PB=$(port_of "$B")
PJ=$(port_of "$A" 8888)
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

# 1b. Jupyter (the `jupyter` service, confined in `notebook`) answers on the published 8888 with
# its token, refuses without it, and serves the very sockets sbx-exec (pid 1) bound.
jstatus() { # [token] -> HTTP status of GET /api/status ("000": no answer)
    local auth=()
    [ -n "${1:-}" ] && auth=(-H "Authorization: token $1")
    curl -s -o /dev/null -w '%{http_code}' --max-time 30 "${auth[@]}" "http://127.0.0.1:$PJ/api/status" || true
}
jstarted() { curl -s --max-time 30 -H "Authorization: token $JTOKEN" "http://127.0.0.1:$PJ/api/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["started"])' 2>/dev/null; }
wait_jupyter() { # up to 90 s (a cold start of jupyter_server takes a few seconds on 2 cores)
    local end=$(($(date +%s) + 90))
    while [ "$(date +%s)" -lt "$end" ]; do
        [ "$(jstatus "$JTOKEN")" = 200 ] && return 0
        sleep 0.3
    done
    return 1
}
# The Jupyter server process itself, as the container sees it (not its sbx-exec launcher, nor kernels).
serve_pid() { dx "$A" pgrep -f '^/opt/sbx-jupyter/bin/python3 /usr/share/sbx/examples/jupyter/serve.py' 2>/dev/null | head -n 1; }
# The listening sockets of port 8888 (inodes from /proc/net/tcp{,6}) that pid 1 (sbx-exec) and
# the given pid hold.
HELD='
import os, sys
port = 8888
listen = set()
for f in ("/proc/net/tcp", "/proc/net/tcp6"):
    for line in open(f).readlines()[1:]:
        p = line.split()
        if p[3] == "0A" and int(p[1].rsplit(":", 1)[1], 16) == port:
            listen.add(p[9])
def socks(pid):
    out = set()
    for fd in os.listdir("/proc/%s/fd" % pid):
        try:
            link = os.readlink("/proc/%s/fd/%s" % (pid, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            out.add(link[8:-1])
    return out & listen
print("|".join(",".join(sorted(x)) for x in (listen, socks(1), socks(sys.argv[1]))))
'
held() { dx "$A" python3 -c "$HELD" "$1" 2>&1; }
ok=no
wait_jupyter && ok=yes
JSERVE=$(serve_pid)
with=$(jstatus "$JTOKEN")
without=$(jstatus)
HELD0=$(held "${JSERVE:-0}")
IFS='|' read -r h_listen h_init h_serve <<<"$HELD0"
if [ "$ok" = yes ] && [ "$with" = 200 ] && [ "$without" = 403 ] && [ -n "$JSERVE" ] &&
    [ -n "$h_listen" ] && [ "$h_listen" = "$h_init" ] && [ "$h_serve" = "$h_listen" ]; then
    pass "Jupyter answers GET /api/status on 127.0.0.1:$PJ with its token (200), 403 without; serve.py (pid $JSERVE) serves the 8888 sockets sbx-exec (pid 1) bound (socket inodes $h_listen, IPv4 and IPv6)"
else
    fail "Jupyter on 127.0.0.1:$PJ: up=$ok, with token $with, without $without, serve.py pid '${JSERVE}', 8888 sockets listen|pid 1|serve.py: $HELD0"
    "$DOCKER" logs "$A" 2>&1 | tail -n 20
fi

# 1c. A kernel runs a cell, driven from the host over the REST API and the kernel websocket.
cell() { timeout 120 "$JPY" tests/jupyter_cell.py "$PJ" "$JTOKEN" "$1" 2>&1 | tail -n 1; }
out=$(cell 'print(6*7)')
if [ "$out" = '{"stdout": "42\n", "error": []}' ]; then
    pass "a Jupyter kernel runs print(6*7) -> 42 (REST + kernel websocket from the host via 127.0.0.1:$PJ)"
else
    fail "the cell print(6*7) gave: $out"
fi

# 2. `user` sees only itself.
out=$(dx "$A" sbx-exec --ctx user -- ps aux 2>&1) || true
n=$(printf '%s\n' "$out" | tail -n +2 | grep -c . || true)
if [ "$n" = 2 ] && ! grep -q bun <<<"$out"; then
    pass "sbx-exec --ctx user -- ps aux shows only the sandbox ($n processes)"
else
    fail "sbx-exec --ctx user -- ps aux shows $n processes:"
    printf '%s\n' "$out"
fi

# 2b. The image ships policies/sandbox-sdk.toml unchanged, [context.user.limits] included: they
# say `required = false`, so where Docker's cgroup tree is read-only `user` runs without them
# (check 2 ran there) and probe says so.
same_policy=no
pol=$(dx "$A" cat /etc/sbx/policy.toml) && [ "$pol" = "$(cat policies/sandbox-sdk.toml)" ] && same_policy=yes
probe=$(dx "$A" sbx-exec probe 2>&1) || true
user_line=$(grep -E '^user ' <<<"$probe" | tr -s ' ' || true)
if [ "$same_policy" = yes ] && [ "$n" = 2 ] && [ -n "$user_line" ] && ! grep -q unavailable <<<"$user_line"; then
    pass "/etc/sbx/policy.toml is sandbox-sdk.toml unchanged (user limits required = false); user calls run; probe: $user_line; $(grep -E '^(cgroup|limits):' <<<"$probe" | tr -s ' ' | sed -E 's/ \(\/sys\/fs\/cgroup[^,]*//g' | paste -sd ';' -) (read-only cgroup mount)"
else
    fail "policy unchanged: $same_policy; user ps: $n processes; probe: $probe"
fi

# 3. Attacks from `user` on the control plane: each fails, the server keeps its pid.
same_server() { [ "$(pid_of "$PA")" = "$SERVER" ]; }
attack() { # name, expected outcome text, command...
    local name=$1
    shift
    local rc=0
    out=$(dx "$A" sbx-exec --ctx user -- "$@" 2>&1) || rc=$?
    sleep 0.3
    # The attack must have run in the sandbox (125-127: sbx-exec refused or could not start it).
    if [ "$rc" -ge 125 ] && [ "$rc" -le 127 ]; then
        fail "user: $name did not run (exit $rc): $out"
    elif same_server; then
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
# `user` has its own network namespace: a port it binds there is on its own loopback, and the
# container's 8080 stays the control plane's (the server still answers on it, same pid).
if [ "$rc" = 0 ] && same_server; then
    pass "user: binding 8080 and 8888 fails ($(printf '%s\n' "$out" | sed 's/.*: //' | sort -u | paste -sd, -))"
elif [ "$rc" = 1 ] && grep -q '^BOUND' <<<"$out" && same_server && [ -n "$(health "$PA")" ]; then
    pass "user: 8080 and 8888 bound only in its own network namespace; the container's 8080 still serves the control plane (pid $SERVER)"
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
except urllib.error.URLError as e:
    print("unreachable", e.reason)
'
# From `user` (its own network namespace) the API is not even reachable; from the container
# itself, outside any sandbox, a request without the token is refused.
code=$(dx "$A" sbx-exec --ctx user -- python3 -c "$API" 2>&1 | tail -n 1) || true
outside=$(dx "$A" python3 -c "$API" 2>&1 | tail -n 1) || true
if [[ "$code" == unreachable* ]] && [ "$outside" = 401 ]; then
    pass "user: the API on 127.0.0.1:8080 is unreachable ($code); without the token it answers 401 ($outside, from the container outside the sandbox)"
else
    fail "user: POST /exec answered '$code' from user (want unreachable) and '$outside' without the token from the container (want 401)"
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
    for marker in [b"LISTEN_FDS=", b"SBX_API_TOKEN_FILE=", b"JUPYTER_TOKEN="] + [a.encode() for a in sys.argv[1:]]:
        if marker in data:
            found.append(f + ": " + marker.decode())
print("readable=%d" % readable)
if found:
    print("FOUND " + " ".join(found)); sys.exit(1)
'
rc=0
out=$(dx "$A" sbx-exec --ctx user -- python3 -c "$ENVIRON" "$TOKEN" "$JTOKEN" 2>&1) || rc=$?
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

# 3b. Attacks from a Jupyter cell (user code in `notebook`) on the control plane: no effect.
out=$(cell 'import subprocess
print(subprocess.run("kill -9 1; echo kill=$?; pkill -9 bun; echo pkill=$?", shell=True, capture_output=True, text=True).stdout.split())')
sleep 0.3
if grep -q "pkill=1" <<<"$out" && same_server && wait_health "$PA" && [ "$(jstatus "$JTOKEN")" = 200 ]; then
    pass "Jupyter cell: kill -9 1, pkill -9 bun: no effect ($out), the Bun server keeps pid $SERVER, /health and Jupyter still answer"
else
    fail "Jupyter cell attacks: $out; Bun pid now $(pid_of "$PA") (was $SERVER), Jupyter status $(jstatus "$JTOKEN")"
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

# 5b. Killing the Jupyter server from inside the container: control restarts it on the sockets it
# still holds; requests meanwhile wait in the listen queue (none refused).
JSERVE=$(serve_pid)
STARTED=$(jstarted)
JPOLL=$WORK/jpoll
: >"$JPOLL"
(
    end=$(($(date +%s) + 90))
    while [ "$(date +%s)" -lt "$end" ]; do
        body=$(curl -s --max-time 60 -w ' %{http_code}' -H "Authorization: token $JTOKEN" "http://127.0.0.1:$PJ/api/status") || body="curl-error-$?"
        echo "$body" >>"$JPOLL"
        [[ "$body" == *' 200' ]] && ! grep -qF "\"started\": \"$STARTED\"" <<<"$body" && ! grep -qF "\"started\":\"$STARTED\"" <<<"$body" && break
        sleep 0.1
    done
) &
JPOLLER=$!
sleep 0.3
t=$(date +%s%N)
dx "$A" kill -9 "${JSERVE:-0}" || true
wait "$JPOLLER" || true
ms=$((($(date +%s%N) - t) / 1000000))
NEWJ=$(serve_pid)
HELD1=$(held "${NEWJ:-0}")
IFS='|' read -r n_listen n_init n_serve <<<"$HELD1"
errors=$(grep -c -v ' 200$' "$JPOLL" || true)
if [ -n "$NEWJ" ] && [ "$NEWJ" != "$JSERVE" ] && [ "$(jstarted)" != "$STARTED" ] && [ "$errors" = 0 ] &&
    [ "$n_listen" = "$h_listen" ] && [ "$n_init" = "$h_init" ] && [ "$n_serve" = "$h_listen" ]; then
    pass "kill -9 of the Jupyter server (serve.py pid $JSERVE, docker exec): restarted as $NEWJ in ~$ms ms on the same held 8888 sockets ($h_listen), $(wc -l <"$JPOLL") polls of /api/status during the restart, none refused or failed"
else
    fail "Jupyter restart: serve.py pid '${NEWJ}' (was $JSERVE), $errors failed polls of $(wc -l <"$JPOLL"): $(grep -v ' 200$' "$JPOLL" | sort | uniq -c | head -n 3 | tr '\n' ' '); 8888 sockets before: $HELD0, after: $HELD1"
fi
"$DOCKER" logs "$A" 2>&1 | sed -n 's/^\(.*service "jupyter".*\)/container: log: \1/p'

# 6. docker stop: graceful, with the server's status, no zombie left behind.
zombies=$(dx "$A" ps -eo stat=,pid=,comm= | awk '$1 ~ /^Z/' || true)
t=$(date +%s%N)
"$DOCKER" stop -t 10 "$A" >/dev/null
ms=$((($(date +%s%N) - t) / 1000000))
code=$("$DOCKER" inspect -f '{{.State.ExitCode}}' "$A")
logs=$("$DOCKER" logs "$A" 2>&1)
# Both gracefully: Jupyter first (it logs jupyter_server's "received signal 15, stopping"), then
# Bun, each well within stop_timeout (10 s, after which sbx-exec would SIGKILL it).
jstops=$(grep -c 'received signal 15, stopping' <<<"$logs" || true)
if [ -z "$zombies" ] && [ "$code" = 0 ] && [ "$ms" -lt 9000 ] && grep -q 'SIGTERM, stopping' <<<"$logs" && [ "$jstops" -ge 1 ]; then
    pass "docker stop: Jupyter and then the Bun server stopped on SIGTERM, the container exited with the server's status 0 in $ms ms, no zombie before"
else
    fail "docker stop: exit $code after $ms ms; Jupyter's SIGTERM messages: $jstops; zombies: ${zombies:-none}"
    tail -n 10 <<<"$logs"
fi

# 7. Without --cap-add SYS_ADMIN: probe says what is missing, user/platform exit 125 naming the
# fix, the control plane still serves.
out=$(dx "$B" sbx-exec probe 2>&1) || true
if grep -qE '^user +unavailable .*pid namespace' <<<"$out" && grep -qE '^platform +unavailable' <<<"$out" && grep -qE '^control +full' <<<"$out"; then
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
