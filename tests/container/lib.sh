# Helpers shared by the container tests (run.sh: Docker; podman.sh: Podman rootful and rootless).
# Sourced from the repository's root; sets T0 and FAILS, and defines the check reporting, the
# checks every engine script makes before it starts (root, the Jupyter venv), the Debian bookworm
# base made once with debootstrap and cached as a `docker save` archive that both engines load,
# and the bun binary the image gets.

T0=$(date +%s%N)
FAILS=0
XFAILS=0
pass() { echo "PASS: $* [$(elapsed)]"; }
fail() {
    echo "FAIL: $* [$(elapsed)]"
    FAILS=$((FAILS + 1))
}
# A known gap (checks.sh, KNOWN_GAPS): reported, not counted as a failure.
xfail() {
    echo "XFAIL: $* [$(elapsed)]"
    XFAILS=$((XFAILS + 1))
}
info() { echo "container: $*"; }
elapsed() { echo "$(((($(date +%s%N) - T0) / 1000000)))" | awk '{printf "%.1f s", $1/1000}'; }

# The project's one rule for a missing tool: skipped with a message locally, a failure under CI=true.
skip_or_fail() { # message
    if [ "${CI:-}" = true ]; then
        echo "FAIL: $1 (and CI=true: .ci/run must install it)"
        exit 1
    fi
    echo "SKIP: $1"
    exit 0
}

CACHE=/var/cache/sbx-ci
BASE_PKGS=ca-certificates,python3,procps
BASE_TAR=$CACHE/bookworm-minbase-${BASE_PKGS//,/-}.tar
BASE_IMG=sbx-ci/bookworm-minbase:latest
# The Jupyter venv the image gets (made by .ci/run on Debian bookworm's /usr/bin/python3, as the
# image has it), and the host-side client of its REST API and kernel websocket (websocket-client).
JUPYTER_VENV=/opt/sbx-jupyter
JPY=$JUPYTER_VENV/bin/python3
JUPYTER_INSTALL="/usr/bin/python3 -m venv $JUPYTER_VENV && $JUPYTER_VENV/bin/pip install jupyter_server ipykernel"

need_root() { # script
    [ "$(id -u)" = 0 ] || {
        echo "FAIL: $1 needs root (the engine, debootstrap)"
        exit 1
    }
}
need_jupyter() {
    if ! PYTHONDONTWRITEBYTECODE=1 timeout 60 "$JPY" -c 'import jupyter_server, ipykernel, websocket' >/dev/null 2>&1; then
        skip_or_fail "no Jupyter venv with jupyter_server, ipykernel and websocket-client at $JUPYTER_VENV (the image's Jupyter service is copied from it); install it with: $JUPYTER_INSTALL"
    fi
}

# The apt mirror this host uses for bookworm (debootstrap reaches no other).
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

# Make $BASE_TAR once (debootstrap --variant=minbase, imported by ENGINE and saved as a docker
# archive, which `docker load` and `podman load` both read), unless it is cached already.
ensure_base_tar() { # engine-client scratch-dir
    local engine=$1 work=$2
    [ -f "$BASE_TAR" ] && return 0
    local mirror
    mirror=$(apt_mirror | head -n 1)
    mirror=${mirror:-http://deb.debian.org/debian}
    info "debootstrap --variant=minbase --include=$BASE_PKGS bookworm from $mirror"
    local rootfs=$work/rootfs
    if ! debootstrap --variant=minbase --include="$BASE_PKGS" bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1; then
        tail -n 20 "$work/debootstrap.log"
        echo "FAIL: debootstrap"
        exit 1
    fi
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
    tar -C "$rootfs" -c . | "$engine" import -c 'CMD ["/bin/bash"]' - "$BASE_IMG" >/dev/null
    rm -rf "$rootfs"
    mkdir -p "$CACHE"
    "$engine" save -o "$BASE_TAR.tmp" "$BASE_IMG" && mv "$BASE_TAR.tmp" "$BASE_TAR"
    info "base image built and saved to $BASE_TAR ($(elapsed))"
}

# The bun binary of the npm package (.ci/run installs it globally), for the image's /usr/local/bin.
find_bun() {
    BUN=
    local cand
    for cand in "$(npm root -g 2>/dev/null)/bun/bin/bun" "$(npm root -g 2>/dev/null)/bun/bin/bun.exe" \
        "$(readlink -f "$(command -v bun 2>/dev/null)" 2>/dev/null)"; do
        # The npm package's placeholder (before its postinstall) is not an ELF file.
        if [ -f "$cand" ] && [ "$(head -c 4 "$cand" | od -An -c | tr -d ' ')" = '177ELF' ]; then
            BUN=$cand
            return 0
        fi
    done
    echo "FAIL: no bun binary (npm install -g bun)"
    exit 1
}

# The closing lines: how many checks passed and failed, and the exit status.
finish() { # label
    [ "$XFAILS" -gt 0 ] && echo "$1: $XFAILS known gap(s) reported as XFAIL"
    if [ "$FAILS" -gt 0 ]; then
        echo "$1: $FAILS check(s) failed"
        return 1
    fi
    echo "$1: all checks passed"
}
