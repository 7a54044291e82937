#!/usr/bin/env bash
# The image under Podman, rootful and rootless, offline (issue #34, item 5): the same checks as the
# Docker test (checks.sh) where they apply.
#
# Rootful: podman with its own storage, run and network-config directories under a temp dir (the
# host's /var/lib/containers is not touched) builds the repository's Dockerfile from the cached
# debootstrap base (the `docker save` archive run.sh makes, or made here if missing), the bun of
# the npm package and the sbx-exec built here, and runs it on a CNI bridge of its own (no
# masquerade, no default route in the container: no network to the outside) with ports published
# on 127.0.0.1 only. Checks: the control-mode suite with the documented flags, the same without
# SYS_ADMIN, and each shipped context with --cap-add SYS_ADMIN alone.
#
# Rootless: an unprivileged user made for the test (subordinate ids set up here, removed after),
# the image saved by root's podman and loaded into the user's own storage, slirp4netns for the
# network, ports on 127.0.0.1 only. Checks: each context of the shipped policy works or fails
# closed (exit 125, a message naming what is missing, and probe saying the same); the full suite
# with fs.sys = "host" (what rootless needs today, docs/deploy.md); and a container given only
# 65536 ids (as Kubernetes' hostUsers: false gives a pod), where the contexts with an `identity`
# cannot run.
#
# A trap removes the containers, the storage, the bridge, the test user and its ranges, stops the
# rootless pause process by its pid and restores /dev/net/tun's mode and ip_forward, on any exit.
# Run as root: bash tests/container/podman.sh   (.ci/run runs it after run.sh; without podman it
# fails under CI=true and skips otherwise)
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
source tests/container/lib.sh
source tests/container/checks.sh
ENGINE_NAME=podman
need_root tests/container/podman.sh
need_jupyter
for tool in podman newuidmap newgidmap slirp4netns debootstrap curl; do
    command -v "$tool" >/dev/null 2>&1 ||
        skip_or_fail "$tool is not installed (apt-get install podman uidmap slirp4netns debootstrap curl)"
done

BUN_IMG=localhost/sbx-ci/bun-bookworm:latest
IMG=localhost/sbx-ci/sbx-demo:test
# The flag documented for Docker, for the same reasons (docs/deploy.md): Podman's default seccomp
# profile allows unshare/mount/setns, and SYS_ADMIN does the rest. OLD_CAPS: the flags documented
# before (SYS_PTRACE and NET_ADMIN too), which must keep working.
CAPS=(--cap-add SYS_ADMIN)
OLD_CAPS=(--cap-add SYS_ADMIN --cap-add SYS_PTRACE --cap-add NET_ADMIN)
# Podman's defaults ask for 1048576 open files; where root cannot raise its hard limits (no
# CAP_SYS_RESOURCE, as in this CI's sandbox) the runtime then fails ("error setting rlimit type
# 7"): ask for what this shell has. Not needed on an ordinary host.
ULIMITS=()
if ! awk '/^CapEff:/ { exit !(and(strtonum("0x" $2), 2^24)) }' /proc/self/status; then
    ULIMITS=(--ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=32768:32768)
fi
# crun 1.8 (bookworm) refuses hosts with controllers in both cgroup hierarchies ("cgroups in hybrid
# mode not supported"); runc (what Docker uses) runs there.
RUNTIME=crun
command -v runc >/dev/null 2>&1 && RUNTIME=runc
# Known gaps (judge in checks.sh): reported as XFAIL; one that is fixed fails the test until its
# entry is removed. None today: with 65536 ids the identity contexts fail closed, and their
# refusal and probe both say the identity's ids are not mapped.
KNOWN_GAPS=${SBX_CONTAINER_KNOWN_GAPS-""}

# ------------------------------------------------------------------ cleanup
WORK=$(mktemp -d /tmp/sbx-podman.XXXXXX)
chmod 0755 "$WORK"
ROOTFUL=$WORK/podman-root
ROOTLESS=$WORK/podman-user
TUSER=sbx-podman-test
BRIDGE=sbxpod0
SUBNET=10.89.77
HAD_BRIDGE=no
ip link show "$BRIDGE" >/dev/null 2>&1 && HAD_BRIDGE=yes
IP_FORWARD=$(cat /proc/sys/net/ipv4/ip_forward)
TUN_MODE=$(stat -c %a /dev/net/tun 2>/dev/null || true)
USER_MADE=no
IPT_BEFORE=$(iptables -t nat -S 2>/dev/null | grep -E '^-N ' || true)

cleanup() {
    local rc=$?
    set +e
    for eng in "$ROOTLESS" "$ROOTFUL"; do
        [ -x "$eng" ] || continue
        timeout 60 "$eng" rm -a -f -t 5 >/dev/null 2>&1
        timeout 60 "$eng" system reset -f >/dev/null 2>&1
    done
    # The rootless pause process (it holds the user's namespaces), by its pid.
    local pause=$WORK/rl/xdg/libpod/tmp/pause.pid
    [ -f "$pause" ] && kill -TERM "$(cat "$pause")" 2>/dev/null
    grep -F " $WORK/" /proc/mounts | awk '{print $2}' | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null
    done
    if [ "$USER_MADE" = yes ]; then
        # What is left of the test user's own processes (conmon, slirp4netns), by pid.
        ps -o pid= -u "$TUSER" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
        sleep 0.2
        userdel "$TUSER" 2>/dev/null
        sed -i "/^$TUSER:/d" /etc/subuid /etc/subgid
    fi
    [ -n "$TUN_MODE" ] && chmod "$TUN_MODE" /dev/net/tun
    [ "$HAD_BRIDGE" = no ] && ip link show "$BRIDGE" >/dev/null 2>&1 && ip link delete "$BRIDGE"
    echo "$IP_FORWARD" >/proc/sys/net/ipv4/ip_forward
    # The CNI portmap plugin's chains (left empty when the last container goes).
    if command -v iptables >/dev/null 2>&1; then
        for chain in $(iptables -t nat -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^CNI-/ {print $2}'); do
            grep -qx -- "-N $chain" <<<"$IPT_BEFORE" && continue
            iptables -t nat -S | awk -v c="$chain" '$1 == "-A" && $0 ~ "-j " c "( |$)"' | sed 's/^-A/-D/' |
                while read -r rule; do eval "iptables -t nat $rule"; done
            iptables -t nat -F "$chain" && iptables -t nat -X "$chain"
        done
    fi
    rm -rf "$WORK"
    echo "podman: total time $(elapsed)"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ rootful podman
# Everything under $WORK: storage, state, the network's config; cgroupfs (no systemd here).
mkdir -p "$WORK/root/cni" "$WORK/root/tmp"
cat >"$ROOTFUL" <<EOF
#!/bin/sh
exec podman --root "$WORK/root/storage" --runroot "$WORK/root/run" --tmpdir "$WORK/root/tmp" \\
    --network-config-dir "$WORK/root/cni" --volumepath "$WORK/root/volumes" \\
    --runtime $RUNTIME --cgroup-manager cgroupfs --events-backend file "\$@"
EOF
chmod 0755 "$ROOTFUL"
# The containers' network: a bridge with an address on the host and none of the CNI bridge's
# gateway or masquerade settings (the bridge plugin would turn ip_forward on for a gateway): the
# host reaches the containers, they have no route beyond the bridge; portmap publishes on 127.0.0.1.
if [ "$HAD_BRIDGE" = no ]; then
    ip link add "$BRIDGE" type bridge
    ip addr add "$SUBNET.1/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
fi
cat >"$WORK/root/cni/sbx-ci.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "sbx-ci",
  "plugins": [
    {"type": "bridge", "bridge": "$BRIDGE", "isGateway": false, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$WORK/root/ipam",
              "ranges": [[{"subnet": "$SUBNET.0/24", "gateway": "$SUBNET.1"}]]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
NET=(--network sbx-ci)
info "$(podman --version), runtime $RUNTIME, storage $("$ROOTFUL" info -f '{{.Store.GraphDriverName}}' 2>/dev/null), cgroup $("$ROOTFUL" info -f '{{.Host.CgroupsVersion}}' 2>/dev/null) ($(elapsed))"

# The base: the archive run.sh cached (or made here), loaded as it is.
ensure_base_tar "$ROOTFUL" "$WORK"
"$ROOTFUL" load -q -i "$BASE_TAR" >/dev/null
find_bun
mkdir -p "$WORK/bunctx"
cp "$BUN" "$WORK/bunctx/bun"
printf 'FROM localhost/%s\nCOPY bun /usr/local/bin/bun\nRUN chmod 0755 /usr/local/bin/bun && bun --version\n' "$BASE_IMG" >"$WORK/bunctx/Containerfile"
"$ROOTFUL" build --pull=never -q "${ULIMITS[@]}" -t "$BUN_IMG" "$WORK/bunctx" >"$WORK/build.log" 2>&1 || {
    cat "$WORK/build.log"
    echo "FAIL: podman build of the bun base"
    exit 1
}
info "base loaded from $BASE_TAR, bun from $BUN in $BUN_IMG ($(elapsed))"

# The image: the repository's Dockerfile, as run.sh builds it (SBX_BIN=prebuilt, SBX_JUPYTER=
# prebuilt), from a build context of its own under $WORK (only what the used stages copy).
info "cargo build --release"
cargo build --release --locked -q
SBX=$REPO/target/$(rustc -vV | sed -n 's/^host: //p')/release/sbx-exec
CTX=$WORK/ctx
mkdir -p "$CTX/clients/bun" "$CTX/target/sbx-bin"
cp -a Dockerfile .dockerignore policies examples "$CTX/"
cp -a clients/bun/src "$CTX/clients/bun/"
install -m 0755 "$SBX" "$CTX/target/sbx-bin/sbx-exec"
cp -a "$JUPYTER_VENV" "$CTX/target/sbx-jupyter"
# (--skip-unused-stages is podman's default: the rust and pip stages are not built, nothing is pulled)
if ! "$ROOTFUL" build --pull=never -q "${ULIMITS[@]}" -f "$CTX/Dockerfile" --build-arg RUNTIME_IMAGE="$BUN_IMG" \
    --build-arg SBX_BIN=prebuilt --build-arg SBX_JUPYTER=prebuilt -t "$IMG" "$CTX" >"$WORK/build.log" 2>&1; then
    cat "$WORK/build.log"
    echo "FAIL: podman build"
    exit 1
fi
rm -rf "$CTX"
want=$("$SBX" --version)
got=$("$ROOTFUL" run --rm --network none "${ULIMITS[@]}" --entrypoint sbx-exec "$IMG" --version)
if [ "$got" = "$want" ]; then
    pass "podman build (base $BUN_IMG, SBX_BIN=prebuilt, SBX_JUPYTER=prebuilt) ships this sbx-exec: $got"
else
    fail "the podman-built image's sbx-exec is \"$got\", not the one built here (\"$want\")"
fi

ENGINE=$ROOTFUL
checks_setup
A=sbx-podman-full
B=sbx-podman-nocap
C=sbx-podman-oldcaps
"$ENGINE" run -d --name "$A" "${NET[@]}" -p 127.0.0.1::8080 -p 127.0.0.1::8888 "${ULIMITS[@]}" "${CAPS[@]}" \
    "${MOUNTS[@]}" -e JUPYTER_TOKEN="$JTOKEN" "$IMG" >/dev/null
"$ENGINE" run -d --name "$B" "${NET[@]}" -p 127.0.0.1::8080 "${ULIMITS[@]}" "${MOUNTS[@]}" "$IMG" >/dev/null
PA=$(port_of "$A")
PB=$(port_of "$B")
PJ=$(port_of "$A" 8888)

# The network: published on 127.0.0.1 only, and no route out of the container.
ports=$("$ENGINE" port "$A" | tr '\n' ' ')
listening=$(ss -Hltn "( sport = :$PA or sport = :$PJ )" | awk '{print $4}' | sort -u | tr '\n' ' ')
routes=$(dx "$A" python3 -c 'print(" ".join(l.split()[1] for l in open("/proc/net/route").readlines()[1:]))' 2>&1)
if [ -n "$PA" ] && [ -n "$PJ" ] && ! grep -qvE '^(8080|8888)/tcp -> 127\.0\.0\.1:[0-9]+$' <<<"$("$ENGINE" port "$A")" &&
    ! grep -qE '(^| )(0\.0\.0\.0|\*|\[::\]):' <<<" $listening" && [ -n "$routes" ] && ! grep -qw 00000000 <<<"$routes"; then
    pass "podman rootful: ports published on 127.0.0.1 only ($ports; host listeners: $listening), the container has no default route (routes: $routes)"
else
    fail "podman rootful network: ports $ports; host listeners $listening; container routes (hex) $routes"
fi
EXPECT_POLICY=policies/sandbox-sdk.toml
# Each shipped context under the documented --cap-add SYS_ADMIN alone (before control_checks, which
# ends with podman stop), then with the flags documented before.
wait_health "$PA" || fail "podman, SYS_ADMIN alone: no /health"
CLOSED_NAMES='CAP_SYS_ADMIN|SYS_ADMIN'
context_checks sys-admin-only "$A" works "$PJ"
control_checks
nocap_checks
"$ENGINE" run -d --name "$C" "${NET[@]}" -p 127.0.0.1::8080 -p 127.0.0.1::8888 "${ULIMITS[@]}" "${OLD_CAPS[@]}" \
    "${MOUNTS[@]}" -e JUPYTER_TOKEN="$JTOKEN" "$IMG" >/dev/null
wait_health "$(port_of "$C")" || fail "podman, SYS_ADMIN, SYS_PTRACE and NET_ADMIN: no /health"
context_checks three-caps "$C" works "$(port_of "$C" 8888)"
"$ENGINE" rm -f -t 10 "$A" "$B" "$C" >/dev/null
info "rootful done ($(elapsed))"

# ------------------------------------------------------------------ rootless podman
# The test user, with a subordinate range of 200000 ids: the container maps 0 to the user and
# 1..200000 to the range, so the image's 100000-owned /workspace and /home and the contexts'
# identity (host uid 100000..165535 in the container) exist. The range starts above every range
# already given out.
if id "$TUSER" >/dev/null 2>&1; then
    echo "FAIL: a user $TUSER exists already (a previous run's?): remove it (userdel $TUSER; its lines in /etc/subuid and /etc/subgid)"
    exit 1
fi
start=$(cat /etc/subuid /etc/subgid 2>/dev/null | awk -F: 'BEGIN {m = 1000000} $2 + $3 > m {m = $2 + $3} END {print m}')
useradd --system -M -d "$WORK/rl/home" -s /usr/sbin/nologin "$TUSER"
USER_MADE=yes
sed -i "/^$TUSER:/d" /etc/subuid /etc/subgid
echo "$TUSER:$start:200000" >>/etc/subuid
echo "$TUSER:$start:200000" >>/etc/subgid
mkdir -p "$WORK/rl/home" "$WORK/rl/xdg"
chown -R "$TUSER:" "$WORK/rl"
chmod 0700 "$WORK/rl/xdg"
# slirp4netns opens /dev/net/tun as the user (0666 on an ordinary host; 0600 in this CI sandbox).
if ! runuser -u "$TUSER" -- sh -c ': <>/dev/net/tun' 2>/dev/null; then
    info "/dev/net/tun is mode $TUN_MODE: 0666 for the test (slirp4netns opens it as the user), restored after"
    chmod 0666 /dev/net/tun
fi
cat >"$ROOTLESS" <<EOF
#!/bin/sh
cd /
exec runuser -u $TUSER -- env -i HOME="$WORK/rl/home" XDG_RUNTIME_DIR="$WORK/rl/xdg" PATH=/usr/local/bin:/usr/bin:/bin \\
    podman --root "$WORK/rl/storage" --runroot "$WORK/rl/xdg/run" --tmpdir "$WORK/rl/xdg/tmp" \\
    --storage-driver overlay --runtime $RUNTIME --cgroup-manager cgroupfs --events-backend file "\$@"
EOF
chmod 0755 "$ROOTLESS"
"$ROOTFUL" save -q -o "$WORK/image.tar" "$IMG"
chmod 0644 "$WORK/image.tar"
"$ROOTLESS" load -q -i "$WORK/image.tar" >/dev/null 2>"$WORK/load.log" || {
    cat "$WORK/load.log"
    echo "FAIL: podman load (rootless)"
    exit 1
}
rm -f "$WORK/image.tar"
"$ROOTFUL" system reset -f >/dev/null 2>&1 || true
info "rootless: user $TUSER, subordinate ids $start..$((start + 199999)), image loaded into its storage ($(elapsed))"

ENGINE=$ROOTLESS
# The mounted files belong to the container's root, which is the test user outside.
checks_setup "$TUSER"
# fs.sys = "host" in every context: what rootless needs today (docs/deploy.md, Podman rootless).
sed 's/^sys = "private"/sys = "host"/' policies/sandbox-sdk.toml >"$WORK/sys-host.toml"
chmod 0644 "$WORK/sys-host.toml"
grep -q '^sys = "host"' "$WORK/sys-host.toml" || {
    echo "FAIL: policies/sandbox-sdk.toml has no sys = \"private\" line to change"
    exit 1
}
RA=sbx-rootless-shipped
RB=sbx-rootless-syshost
RC=sbx-rootless-65536
"$ENGINE" run -d --name "$RA" -p 127.0.0.1::8080 -p 127.0.0.1::8888 "${ULIMITS[@]}" "${CAPS[@]}" "${MOUNTS[@]}" \
    -e JUPYTER_TOKEN="$JTOKEN" "$IMG" >/dev/null 2>>"$WORK/run.log"
wait_health "$(port_of "$RA")" && pass "rootless, shipped policy: the control plane serves /health" ||
    fail "rootless, shipped policy: no /health"
# The contexts with fs.sys = "private" (user, agent, notebook): sbx-exec mounts a fresh sysfs
# read-write, then makes it read-only; in a user namespace the kernel refuses that while the
# container's /sys is read-only (a sysfs mounted read-only from the start is allowed).
CLOSED_NAMES='private /sys'
context_checks rootless-shipped "$RA" or-closed "$(port_of "$RA" 8888)"
"$ENGINE" rm -f -t 10 "$RA" >/dev/null 2>&1

"$ENGINE" run -d --name "$RB" -p 127.0.0.1::8080 -p 127.0.0.1::8888 "${ULIMITS[@]}" "${CAPS[@]}" "${MOUNTS[@]}" \
    -v "$WORK/sys-host.toml:/etc/sbx/policy.toml:ro" -e JUPYTER_TOKEN="$JTOKEN" "$IMG" >/dev/null 2>>"$WORK/run.log"
A=$RB
PA=$(port_of "$A")
PJ=$(port_of "$A" 8888)
ports=$("$ENGINE" port "$A" | tr '\n' ' ')
listening=$(ss -Hltn "( sport = :$PA or sport = :$PJ )" | awk '{print $4}' | sort -u | tr '\n' ' ')
if [ -n "$PA" ] && [ -n "$PJ" ] && ! grep -qvE '^(8080|8888)/tcp -> 127\.0\.0\.1:[0-9]+$' <<<"$("$ENGINE" port "$A")" &&
    ! grep -qE '(^| )(0\.0\.0\.0|\*|\[::\]):' <<<" $listening" && [ -n "$listening" ]; then
    pass "podman rootless: ports published on 127.0.0.1 only ($ports; host listeners: $listening)"
else
    fail "podman rootless network: ports $ports; host listeners $listening"
fi
EXPECT_POLICY=$WORK/sys-host.toml
control_checks

# 65536 ids (what Kubernetes gives a pod with hostUsers: false): the identity's 100000.. is not there.
"$ENGINE" run -d --name "$RC" --uidmap 0:0:65536 --gidmap 0:0:65536 -p 127.0.0.1::8080 -p 127.0.0.1::8888 \
    "${ULIMITS[@]}" "${CAPS[@]}" "${MOUNTS[@]}" -v "$WORK/sys-host.toml:/etc/sbx/policy.toml:ro" \
    -e JUPYTER_TOKEN="$JTOKEN" "$IMG" >/dev/null 2>>"$WORK/run.log"
wait_health "$(port_of "$RC")" || fail "rootless, 65536 ids: no /health"
CLOSED_NAMES='uid 100000|not mapped|subordinate|subuid'
context_checks rootless-65536-ids "$RC" or-closed "$(port_of "$RC" 8888)"
"$ENGINE" rm -f -t 10 "$RB" "$RC" >/dev/null 2>&1

finish podman
