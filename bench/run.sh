#!/usr/bin/env bash
# Launch-cost benchmark for sbx-exec, against bare fork+exec, unshare(1) and bubblewrap.
#
#   bash bench/run.sh            full run: writes BENCHMARKS.md at the repo root (~2 min + build)
#   bash bench/run.sh --quick    smoke test (also BENCH_QUICK=1): few runs, writes
#                                bench/out/BENCHMARKS.quick.md (raw data in bench/out/quick/),
#                                leaves BENCHMARKS.md alone
#   BASELINE_REV=30f340e bash bench/run.sh
#                                also builds that revision (a git worktree in bench/out/, release,
#                                same flags) and times its `user` launches beside today's, in the
#                                same hyperfine run and in an alternated run (ignored in quick mode)
#
# Everything it produces goes to bench/out/ (git-ignored). It exits non-zero if any benchmarked
# command fails (hyperfine stops on a non-zero exit; the other sections check exit codes too).
# Runs as root on Debian: installs hyperfine, bubblewrap, time, util-linux, strace, openssl, curl,
# iproute2, ca-certificates if missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/bench/out"
cd "$ROOT"

QUICK="${BENCH_QUICK:-0}"
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 ;;
        -h | --help) sed -n "2,16p" "$ROOT/bench/run.sh"; exit 0 ;;
        *) echo "bench: unknown argument: $arg (only --quick)" >&2; exit 2 ;;
    esac
done
[ "$QUICK" = 1 ] || QUICK=0

if [ "$QUICK" = 1 ]; then
    HF_RUNS=(--runs 5 --warmup 1)   # seconds, not minutes: proves the script works, numbers are rough
    LAUNCHES=20                     # launches for the throughput test
    RSS_REPEAT=1                    # /usr/bin/time runs per case
    REPORT="$OUT/BENCHMARKS.quick.md"
    OUT="$OUT/quick"                # raw data apart, so a smoke test never clobbers a full run's
else
    HF_RUNS=(--warmup 20)           # hyperfine picks the run count (>= 10 runs, >= 3 s per command)
    LAUNCHES=200
    RSS_REPEAT=5
    REPORT="$ROOT/BENCHMARKS.md"
fi

log() { echo "bench: $*" >&2; }
die() { echo "bench: error: $*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# 1. Tools. Only touch apt when something is actually missing.
# ---------------------------------------------------------------------------------------------
declare -A PKG_FOR=(
    [hyperfine]=hyperfine      # the timer
    [bwrap]=bubblewrap         # the reference sandbox
    [/usr/bin/time]=time       # GNU time -v for peak RSS (the bash keyword has no -v)
    [unshare]=util-linux       # bare namespaces, no sandbox policy
    [strace]=strace            # syscall profile of one launch
    [python3]=python3          # turns the JSON results into markdown
    [openssl]=openssl          # the transfer test's CA and server certificate (bench/transfer.sh)
    [curl]=curl                # the transfer test's client, inside the sandbox and outside
    [ip]=iproute2              # the transfer test's addresses on its own namespace's lo
)
missing=()
for tool in "${!PKG_FOR[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("${PKG_FOR[$tool]}")
done
# The system CA bundle: bound secrets need it (the gate verifies upstreams against it), and the
# transfer test adds its test CA to a copy of it.
[ -s /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
if [ "${#missing[@]}" -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing ${missing[*]} and not root: install them first"
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
command -v cargo >/dev/null 2>&1 || die "cargo not found (install Rust >= 1.91 with rustup)"
[ "$(id -u)" = 0 ] || die "run as root: the sandboxes need to create namespaces"

# ---------------------------------------------------------------------------------------------
# 2. Build sbx-exec (release, as shipped: LTO, panic=abort, stripped).
#    CARGO_TARGET_DIR is honoured; a relative one is relative to the repo root, as for cargo.
#    The binary is static-pie (.cargo/config.toml), as installed.
# ---------------------------------------------------------------------------------------------
log "cargo build --release"
cargo build --release --quiet
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
# .cargo/config.toml builds for the host tuple (static-pie): binaries are under target/<tuple>/.
BUILT="$TARGET_DIR/$(rustc -vV | sed -n 's/^host: //p')/release/sbx-exec"
[ -x "$BUILT" ] || die "no binary at $BUILT after the build"
# What was built, named now: others may commit, or build into the same target dir, during the run.
# The run times a copy of its own, so a build that replaces the target's binary mid-run (another
# `cargo build --release` on the machine) changes nothing here.
GIT_REV="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock policies 2>/dev/null || GIT_REV="$GIT_REV + uncommitted changes"
mkdir -p "$OUT"
SBX="$OUT/sbx-exec"
cp "$BUILT" "$SBX.tmp" && mv -f "$SBX.tmp" "$SBX"

# The baseline (BASELINE_REV): that revision checked out in a worktree of its own under bench/out/
# (made once, never touched by anything else) and built the same way, with its own target dir so
# that neither build undoes the other. Not in quick mode: CI has no time for a second build.
BASELINE_REV="${BASELINE_REV:-}"
if [ -n "$BASELINE_REV" ] && [ "$QUICK" = 1 ]; then
    log "quick mode: BASELINE_REV=$BASELINE_REV ignored"
    BASELINE_REV=""
fi
BASE="" BASE_LABEL=""
if [ -n "$BASELINE_REV" ]; then
    BASE_SHA="$(git -C "$ROOT" rev-parse --verify --quiet "$BASELINE_REV^{commit}")" || die "BASELINE_REV=$BASELINE_REV is not a commit of this repository"
    BASE_LABEL="$(git -C "$ROOT" rev-parse --short "$BASE_SHA")"
    WT="$ROOT/bench/out/baseline-$BASE_LABEL"
    if [ ! -e "$WT/.git" ]; then
        git -C "$ROOT" worktree prune
        git -C "$ROOT" worktree add --detach --quiet "$WT" "$BASE_SHA" || die "cannot make the worktree $WT"
    fi
    [ "$(git -C "$WT" rev-parse HEAD)" = "$BASE_SHA" ] || die "$WT is not at $BASE_SHA; remove it (git worktree remove $WT)"
    [ -z "$(git -C "$WT" status --porcelain --untracked-files=no)" ] || die "$WT has local changes; remove it (git worktree remove --force $WT)"
    log "cargo build --release of the baseline $BASE_LABEL ($WT)"
    (cd "$WT" && CARGO_TARGET_DIR="$ROOT/bench/out/baseline-target" cargo build --release --quiet) || die "cannot build $BASE_LABEL"
    # Under target/<host tuple>/ with .cargo/config.toml's explicit target, else target/release/.
    BASE="$(ls -t "$ROOT/bench/out/baseline-target/$(rustc -vV | sed -n 's/^host: //p')/release/sbx-exec" \
        "$ROOT/bench/out/baseline-target/release/sbx-exec" 2>/dev/null | head -n1 || true)"
    [ -x "$BASE" ] || die "no baseline binary after building $BASE_LABEL"
fi

mkdir -p "$OUT"
q() { printf '%q' "$1"; }   # quote a path for the command strings hyperfine hands to sh

# Inputs for the sbx-exec variants ------------------------------------------------------------
# 10 fake secrets as NAME=value lines, read from fd 3 by the platform context.
SECRETS="$OUT/secrets.env"
: >"$SECRETS"
for i in $(seq 1 10); do
    printf 'BENCH_SECRET_%02d=fake-value-%02d-0123456789abcdef0123456789abcdef\n' "$i" "$i" >>"$SECRETS"
done

# The embedded default policy with the user context moved to an empty network namespace.
# `policy show` starts with a "# source: ..." line that is not part of the policy: drop it.
NETNONE="$OUT/netnone.toml"
"$SBX" policy show | python3 -c '
import re, sys
lines = sys.stdin.read().splitlines(keepends=True)[1:]
out, section, done = [], None, 0
for line in lines:
    m = re.match(r"\s*\[([^\]]+)\]", line)
    if m:
        section = m.group(1)
    if section == "context.user" and re.match(r"\s*net\s*=\s*\"(host|private)\"", line):
        line = re.sub(r"\"(host|private)\"", "\"none\"", line, count=1)
        done += 1
    if section == "context.user.net":
        # The default user has [context.user.net] mode = "private" with allow/publish lists.
        if re.match(r"\s*mode\s*=", line):
            line = "mode = \"none\"\n"
            done += 1
        elif re.match(r"\s*(allow|publish)\s*=", line):
            continue
    out.append(line)
if done != 1:
    sys.exit("bench: expected exactly one network mode in [context.user], replaced %d" % done)
sys.stdout.write("".join(out))
' >"$NETNONE"
"$SBX" policy check "$NETNONE" >/dev/null || die "$NETNONE does not validate"
# What the user context's features cost: the embedded default with them taken away one after the
# other (cumulative), in the order of their cost. Step 1 drops [context.user.limits] (no per-call
# cgroup); 2 also sets net.allow = [] (no proxy listener; the network namespace stays); 3 also
# drops identity (no user namespace for the target); 4 also sets seccomp = "none" and scope =
# false (no seccomp filter, no Landlock scoping). Only for measuring: each step removes a wall.
ABLATE_STEPS=(
    "no limits"
    "no limits, allow = []"
    "no limits, allow = [], no identity"
    "no limits, allow = [], no identity, no seccomp/Landlock"
)
for step in 1 2 3 4; do
    "$SBX" policy show | python3 -c '
import re, sys
step = int(sys.argv[1])
lines = sys.stdin.read().splitlines(keepends=True)[1:]
out, section, changed = [], None, set()
for line in lines:
    m = re.match(r"\s*\[([^\]]+)\]", line)
    if m:
        section = m.group(1)
    if section == "context.user.limits":
        changed.add(1)
        continue
    if step >= 2 and section == "context.user.net" and re.match(r"\s*allow\s*=", line):
        line, _ = "allow = []\n", changed.add(2)
    if step >= 3 and section == "context.user" and re.match(r"\s*identity\s*=", line):
        changed.add(3)
        continue
    if step >= 4 and section == "context.user.security":
        if re.match(r"\s*seccomp\s*=", line):
            line, _ = "seccomp = \"none\"\n", changed.add(4)
        elif re.match(r"\s*scope\s*=", line):
            line = "scope = false\n"
    out.append(line)
if changed != set(range(1, step + 1)):
    sys.exit("bench: ablation step %d changed only %s" % (step, sorted(changed)))
sys.stdout.write("".join(out))
' "$step" >"$OUT/ablate$step.toml" || die "cannot make ablation step $step"
    "$SBX" policy check "$OUT/ablate$step.toml" >/dev/null || die "$OUT/ablate$step.toml does not validate"
done
# The embedded default policy with output masking on in the platform context (secrets.redact):
# the target's stdout/stderr then pass through the masking process (one pipe hop each).
REDACT="$OUT/redact.toml"
"$SBX" policy show | tail -n +2 | sed '/^\[context\.platform\.secrets\]$/a redact = true' >"$REDACT"
grep -q '^redact = true$' "$REDACT" && "$SBX" policy check "$REDACT" >/dev/null || die "$REDACT does not validate"

# A name of this run's own: another run of this script on the machine (CI's quick run, say) would
# otherwise join this keeper and stop it under this run's timing.
PCTX="benchpersist-$$"
# The user context as a persistent context "benchpersist-PID" (persist = true; Landlock scope off, as
# persist requires): timing a call of it measures JOINING a running keeper, not creating a sandbox.
PERSIST="$OUT/persist.toml"
"$SBX" policy show | python3 -c '
import re, sys
lines = sys.stdin.read().splitlines(keepends=True)[1:]
out, section = [], None
for line in lines:
    m = re.match(r"\s*\[([^\]]+)\]", line)
    if m:
        section = m.group(1)
    if section and section.startswith("context.user"):
        line = line.replace("[context.user", "[context." + sys.argv[1], 1)
        if section == "context.user" and re.match(r"\s*namespaces\s*=", line):
            line += "persist = true\n"
        if section == "context.user.security" and re.match(r"\s*scope\s*=", line):
            line = "scope = false\n"
        # Persistent contexts take net = "private" without allow/publish (loopback only) for now.
        if section == "context.user.net" and re.match(r"\s*(allow|publish)\s*=", line):
            continue
    out.append(line)
sys.stdout.write("".join(out))
' "$PCTX" >"$PERSIST"
"$SBX" policy check "$PERSIST" >/dev/null || die "$PERSIST does not validate"
grep -q '^persist = true' "$PERSIST" || die "$PERSIST has no persist = true"
# Start the keeper before timing (the first call creates it); stop it when the script ends.
trap '"$SBX" ctx stop "$PCTX" --timeout 2 >/dev/null 2>&1 || true' EXIT
"$SBX" --policy "$PERSIST" --ctx "$PCTX" -- true || die "cannot start the persistent context"
"$SBX" ctx list | grep -q "^$PCTX " || die "no keeper for $PCTX after its first call"

# The sandbox SDK policy's `agent` context (net = "private" with an allow list): launched with one
# bound secret (secrets.bind: a placeholder inside, a per-call CA, the proxy's TLS interceptor) and
# without (the same context otherwise), to time what binding a secret adds to a launch.
SDK="$ROOT/policies/sandbox-sdk.toml"
BOUND="$OUT/bound.env"
printf 'ANTHROPIC_API_KEY=sk-ant-api03-bench-0123456789abcdef0123456789abcdef\n' >"$BOUND"

# Sanity checks, so that each variant measures what its name says ------------------------------
ph=$("$SBX" --policy "$SDK" --ctx agent --secrets-fd 3 -- sh -c 'printf %s "$ANTHROPIC_API_KEY"' 3<"$BOUND")
case "$ph" in sk-ant-api03-bench-*|"") die "agent context did not get a placeholder for the bound secret" ;; esac
n=$("$SBX" --ctx platform --secrets-fd 3 -- env 3<"$SECRETS" | grep -c '^BENCH_SECRET_' || true)
[ "$n" = 10 ] || die "platform context received $n of the 10 secrets"
ifaces=$("$SBX" --policy "$NETNONE" --ctx user -- cat /proc/net/dev | tail -n +3 | awk -F: '{gsub(/ /,"",$1); print $1}' | tr '\n' ' ')
[ "$ifaces" = "lo " ] || die "net=none context sees interfaces: $ifaces (expected only lo)"

# ---------------------------------------------------------------------------------------------
# 3. Launch latency: one hyperfine run over all variants, so they share machine and conditions.
#    hyperfine runs each command with `sh -c` and subtracts the measured cost of starting sh, so
#    the "/bin/true" line is the cost of a bare fork+exec of true (dash vforks, then execs); the
#    fd-3 redirection of the platform line needs that shell.
# ---------------------------------------------------------------------------------------------
# The default `user` has its own network namespace with the egress proxy (net.mode = "private"):
# the comparable bwrap unshares everything, net included.
BWRAP_ALL_ARGS="--unshare-all --dev /dev --proc /proc --ro-bind / / --tmpfs /tmp --die-with-parent --new-session --clearenv --cap-drop ALL"
BWRAP_ARGS="--unshare-pid --unshare-ipc --unshare-uts --ro-bind / / --proc /proc --dev /dev --tmpfs /tmp --die-with-parent --new-session --clearenv --cap-drop ALL"
# The user context making one connection to its proxy (127.0.0.1:3128), which starts the egress
# gate: CONN connects and exits at once (the launcher forks the gate on the connection's SIGIO; the
# sandbox may end, and the gate be killed, before the gate's exec is through); REQUEST sends
# `CONNECT 127.0.0.1:9` and waits for the gate's answer (403: loopback is not for the sandbox), so
# the gate is exec'd, set up and serving in every run. bash for /dev/tcp; both exit 0 only if
# connected (REQUEST: only on the 403).
CONN='exec 3<>/dev/tcp/127.0.0.1/3128'
REQUEST='exec 3<>/dev/tcp/127.0.0.1/3128 && printf "CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n" >&3 && read -r s <&3 && case $s in "HTTP/1.1 403"*) ;; *) exit 1 ;; esac'
# A client that ignores the proxy: a connection straight to 10.0.0.1:80 (a private address) is
# captured (every address is local in the sandbox's network namespace), starts the gate, which
# judges it and refuses it (private addresses are never the sandbox's): it exits 0 only if the
# connection was made (without capture there is no route), then waits for the gate to end it.
# Nothing leaves the machine. (It was 192.0.2.1 before 2026-12-06, which the gate takes for a
# public address and dials: on a host whose own network is 192.0.2.0/24 that left the machine and
# waited 10 s for an answer.)
CAPTURED='exec 3<>/dev/tcp/10.0.0.1/80 && printf "GET / HTTP/1.1\r\nHost: 10.0.0.1\r\n\r\n" >&3 && { read -r s <&3; true; }'
for b in "$SBX" ${BASE:+"$BASE"}; do
    "$b" --ctx user -- bash -c "$CONN" || die "$b: the user context cannot connect to its proxy"
    "$b" --ctx user -- bash -c "$REQUEST" || die "$b: the user context's proxy did not answer 403 to CONNECT 127.0.0.1:9"
done
"$SBX" --ctx user -- bash -c "$CAPTURED" 2>/dev/null || die "the user context's direct connection to 10.0.0.1:80 was not captured"
names=(
    "bare /bin/true"
    "unshare pid+mount+ipc+uts"
    "bwrap"
    "bwrap --unshare-all (with net)"
    "sbx-exec user"
    "sbx-exec user, 1 proxy connection"
    "sbx-exec user, 1 refused request"
    "sbx-exec user, 1 captured connection"
)
# BASELINE_REV: its user lines right after today's (hyperfine runs the commands one after the other).
[ -n "$BASE" ] && names+=("baseline user" "baseline user, 1 proxy connection" "baseline user, 1 refused request")
names+=(
    "sbx-exec platform, 10 secrets"
    "sbx-exec user, net=none"
    "sbx-exec platform, 10 secrets, redact"
    "sbx-exec user, persistent (join)"
    "sbx-exec user, pooled (pool serve, pool = 8)"
    "sbx-exec platform, 10 secrets, pooled (pool = 8)"
    "sbx-exec agent (net private), no secret"
    "sbx-exec agent (net private), 1 bound secret"
    "sbx-exec agent, 1 bound secret, pooled (pool = 8)"
)
for step in 1 2 3 4; do names+=("sbx-exec user, ${ABLATE_STEPS[$((step - 1))]}"); done
# Prepared sandboxes: the default policy from a file with `pool = 8` in user and platform, and the
# SDK policy with `pool = 8` in agent (its CA bundle written ahead, its CA's key handed with the
# claim), their servers running through the timing; only calls with those --policy files claim them
# (the other lines stay cold).
POOLED="$OUT/pooled.toml"
"$SBX" policy show | sed 1d | sed 's/^pool = 2 .*/pool = 8/' | sed '/^\[context\.platform\]$/a pool = 8' >"$POOLED"
[ "$(grep -c '^pool = 8' "$POOLED")" = 2 ] || die "$POOLED has not pool = 8 in user and platform"
SDK_POOLED="$OUT/sdk-pooled.toml"
sed '/^\[context\.agent\]$/a pool = 8' "$SDK" >"$SDK_POOLED"
grep -q '^pool = 8' "$SDK_POOLED" || die "$SDK_POOLED has no pool = 8"
# A socket of the context made by these servers: one whose inode was not there before they started
# (a stale one of an earlier server does not count).
pool_sockets() { ls -i /run/sbx 2>/dev/null | awk '$2 ~ /^pool-.*\.sock$/ {print $1, $2}'; }
pool_socket() { pool_sockets | grep " pool-$1-" | grep -qvxF "$SOCKS_BEFORE"; }
SOCKS_BEFORE="$(pool_sockets)"
"$SBX" --policy "$POOLED" pool serve 2>"$OUT/pool-serve.log" &
POOL_PID=$!
"$SBX" --policy "$SDK_POOLED" pool serve 2>"$OUT/pool-serve-sdk.log" &
SDK_POOL_PID=$!
trap '"$SBX" ctx stop "$PCTX" --timeout 2 >/dev/null 2>&1 || true; kill "$POOL_PID" "$SDK_POOL_PID" 2>/dev/null || true' EXIT
for c in user platform agent; do
    for _ in $(seq 100); do pool_socket "$c" && break; sleep 0.05; done
    pool_socket "$c" || die "no pool server for $c (see $OUT/pool-serve*.log)"
done
sleep 0.5
# Each pooled line runs in a prepared sandbox (its pid 1 is the server's) and works as it does cold.
for run in "--policy $POOLED --ctx user" "--policy $POOLED --ctx platform --secrets-fd 3" \
           "--policy $SDK_POOLED --ctx agent --secrets-fd 3"; do
    case "$run" in *agent*) in="$BOUND" ;; *) in="$SECRETS" ;; esac
    # shellcheck disable=SC2086
    got=$("$SBX" $run -- sh -c 'tr "\0" " " </proc/1/cmdline; echo; printf %s "${ANTHROPIC_API_KEY:-}"' 3<"$in")
    case "$got" in *"pool serve"*) ;; *) die "not pooled: sbx-exec $run" ;; esac
    case "$got" in *sk-ant-api03-bench-*) die "the pooled agent got the real key" ;; esac
done
cmds=(
    "/bin/true"
    "unshare --pid --mount --ipc --uts --fork --mount-proc true"
    "bwrap $BWRAP_ARGS true"
    "bwrap $BWRAP_ALL_ARGS true"
    "$(q "$SBX") --ctx user -- true"
    "$(q "$SBX") --ctx user -- bash -c '$CONN'"
    "$(q "$SBX") --ctx user -- bash -c '$REQUEST'"
    "$(q "$SBX") --ctx user -- bash -c '$CAPTURED' 2>/dev/null"
)
[ -n "$BASE" ] && cmds+=("$(q "$BASE") --ctx user -- true" "$(q "$BASE") --ctx user -- bash -c '$CONN'" \
    "$(q "$BASE") --ctx user -- bash -c '$REQUEST'")
cmds+=(
    "$(q "$SBX") --ctx platform --secrets-fd 3 -- true 3<$(q "$SECRETS")"
    "$(q "$SBX") --policy $(q "$NETNONE") --ctx user -- true"
    "$(q "$SBX") --policy $(q "$REDACT") --ctx platform --secrets-fd 3 -- true 3<$(q "$SECRETS")"
    "$(q "$SBX") --policy $(q "$PERSIST") --ctx $PCTX -- true"
    "$(q "$SBX") --policy $(q "$POOLED") --ctx user -- true"
    "$(q "$SBX") --policy $(q "$POOLED") --ctx platform --secrets-fd 3 -- true 3<$(q "$SECRETS")"
    "$(q "$SBX") --policy $(q "$SDK") --ctx agent -- true"
    "$(q "$SBX") --policy $(q "$SDK") --ctx agent --secrets-fd 3 -- true 3<$(q "$BOUND")"
    "$(q "$SBX") --policy $(q "$SDK_POOLED") --ctx agent --secrets-fd 3 -- true 3<$(q "$BOUND")"
)
for step in 1 2 3 4; do cmds+=("$(q "$SBX") --policy $(q "$OUT/ablate$step.toml") --ctx user -- true"); done
hf_args=()
for i in "${!cmds[@]}"; do hf_args+=(--command-name "${names[$i]}" "${cmds[$i]}"); done

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"   # recorded in the report: other load skews all numbers
log "hyperfine ${HF_RUNS[*]} (${#cmds[@]} commands), load average $LOAD_BEFORE"
# The markdown export only in a full run: hyperfine's markdown exporter fails the whole run when a
# mean is 0, which the shell-corrected bare `/bin/true` line can be over quick mode's 5 runs.
HF_EXPORT=(--export-json "$OUT/hyperfine.json")
[ "$QUICK" = 1 ] || HF_EXPORT+=(--export-markdown "$OUT/hyperfine.md")
hyperfine --shell sh "${HF_RUNS[@]}" --style basic "${HF_EXPORT[@]}" "${hf_args[@]}"
# Its keeper must still be the one started above: if it is gone, something else stopped it and the
# join line timed a start too.
"$SBX" ctx stop "$PCTX" --timeout 2 >/dev/null || die "cannot stop the persistent context $PCTX (was it stopped by something else during the timing?)"
kill -TERM "$POOL_PID" && wait "$POOL_PID" || die "pool serve did not stop cleanly (see $OUT/pool-serve.log)"
kill -TERM "$SDK_POOL_PID" && wait "$SDK_POOL_PID" || die "pool serve (SDK) did not stop cleanly (see $OUT/pool-serve-sdk.log)"
POOL_SUMMARY="$(grep 'pool: stopped' "$OUT/pool-serve.log" || true)"
SDK_POOL_SUMMARY="$(grep 'pool: stopped' "$OUT/pool-serve-sdk.log" || true)"

# ---------------------------------------------------------------------------------------------
# 3b. BASELINE_REV only: today's and the baseline's user lines again, alternated launch by launch
#     (bench/alternate.py: each round the six commands in a shuffled order, no shell), so that
#     both builds share the machine's state; the differences looked for are ~0.1 ms, below the
#     drift between two stretches of a hyperfine run on a shared machine.
# ---------------------------------------------------------------------------------------------
ALT_ROUNDS=1000
if [ -n "$BASE" ]; then
    python3 - "$SBX" "$BASE" "$CONN" "$REQUEST" >"$OUT/alternate-spec.json" <<'PY'
import json, sys
sbx, base, conn, request = sys.argv[1:5]
variants = [("user", ["/bin/true"]), ("user, 1 proxy connection", ["/bin/bash", "-c", conn]),
            ("user, 1 refused request", ["/bin/bash", "-c", request])]
cmds, pairs = [], []
for name, argv in variants:
    cmds += [["sbx-exec " + name, [sbx, "--ctx", "user", "--"] + argv],
             ["baseline " + name, [base, "--ctx", "user", "--"] + argv]]
    pairs.append(["sbx-exec " + name, "baseline " + name])
json.dump({"commands": cmds, "pairs": pairs}, sys.stdout)
PY
    log "alternated: today's and $BASE_LABEL's user launches, $ALT_ROUNDS rounds of 6, load average $(cut -d' ' -f1-3 /proc/loadavg)"
    python3 "$ROOT/bench/alternate.py" "$OUT/alternate-spec.json" "$ALT_ROUNDS" 20 "$OUT/alternate.json" \
        || die "a launch failed in the alternated run"
else
    rm -f "$OUT/alternate.json"
fi

# ---------------------------------------------------------------------------------------------
# 4a. Peak RSS: GNU time's "Maximum resident set size" (KiB). It is the largest RSS of sbx-exec
#     and the processes it waited for (its pid-1 reaper and `true`), i.e. the launch's peak
#     footprint. The maximum over RSS_REPEAT runs is kept.
#     No shell wrapper here: the kernel carries a process's RSS high-water mark across execve, so
#     `bash -c 'exec sbx-exec ...'` would report bash's RSS. The fd-3 redirection is done by this
#     shell on the `time` command instead, opened afresh for each run.
# ---------------------------------------------------------------------------------------------
peak_rss() {   # peak_rss FD3_FILE|- CMD... -> prints KiB
    local fd3="$1" max=0 kib i
    shift
    for ((i = 0; i < RSS_REPEAT; i++)); do
        if [ "$fd3" = - ]; then
            /usr/bin/time -v -o "$OUT/time.txt" "$@" || die "failed under /usr/bin/time: $*"
        else
            /usr/bin/time -v -o "$OUT/time.txt" "$@" 3<"$fd3" || die "failed under /usr/bin/time: $*"
        fi
        kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$OUT/time.txt")
        [ "$kib" -gt "$max" ] && max=$kib
    done
    echo "$max"
}
log "peak RSS"
RSS_USER=$(peak_rss - "$SBX" --ctx user -- true)
RSS_PLATFORM=$(peak_rss "$SECRETS" "$SBX" --ctx platform --secrets-fd 3 -- true)
RSS_TRUE=$(peak_rss - /bin/true)
RSS_BWRAP=$(peak_rss - bwrap $BWRAP_ARGS true)
RSS_BASE_USER=""
[ -z "$BASE" ] || RSS_BASE_USER=$(peak_rss - "$BASE" --ctx user -- true)

# ---------------------------------------------------------------------------------------------
# 4b. Throughput: LAUNCHES launches of `--ctx user -- true`, split over 2 callers running at once
#     (the machine has few cores; a server would launch sandboxes concurrently like this).
#     bwrap is measured the same way as a reference.
# ---------------------------------------------------------------------------------------------
launches_per_s() {   # launches_per_s CMD... -> prints launches/s
    local per=$((LAUNCHES / 2)) t0 t1 p1 p2
    t0=$(date +%s.%N)
    ( for ((j = 0; j < per; j++)); do "$@" >/dev/null || exit 1; done ) & p1=$!
    ( for ((j = 0; j < per; j++)); do "$@" >/dev/null || exit 1; done ) & p2=$!
    wait "$p1" || die "a launch failed in the throughput test: $*"
    wait "$p2" || die "a launch failed in the throughput test: $*"
    t1=$(date +%s.%N)
    python3 -c "import sys; print('%.0f' % ($((per * 2)) / (float(sys.argv[2]) - float(sys.argv[1]))))" "$t0" "$t1"
}
log "throughput, 2 parallel callers, $LAUNCHES launches"
LPS_SBX=$(launches_per_s "$SBX" --ctx user -- true)
LPS_BWRAP=$(launches_per_s bwrap $BWRAP_ARGS true)

# ---------------------------------------------------------------------------------------------
# 5. Syscall profile of one `--ctx user -- true` launch, all processes (-f), sorted by count.
#    Includes the syscalls of `true` itself (a few dozen: loader, libc start-up).
# ---------------------------------------------------------------------------------------------
log "strace -c -f"
strace -c -f -S calls -o "$OUT/strace.txt" "$SBX" --ctx user -- true || die "launch under strace failed"

# ---------------------------------------------------------------------------------------------
# 5b. Throughput of one large HTTPS download through the egress gate (bench/transfer.sh, issue
#     #28): intercepted and scrubbed (a host a secret is bound to), a plain CONNECT tunnel, and
#     direct outside any sandbox, TRANSFER_RUNS times each, interleaved; all in a network
#     namespace of the script's own.
# ---------------------------------------------------------------------------------------------
if [ "$QUICK" = 1 ]; then TRANSFER_MIB=16 TRANSFER_RUNS=3; else TRANSFER_MIB=256 TRANSFER_RUNS=5; fi
log "transfer: ${TRANSFER_MIB} MiB, $TRANSFER_RUNS runs of each"
bash "$ROOT/bench/transfer.sh" "$SBX" "$OUT" "$TRANSFER_MIB" "$TRANSFER_RUNS" || die "the transfer test failed"

# ---------------------------------------------------------------------------------------------
# 6. The report, generated from hyperfine's JSON so no number is typed by hand.
# ---------------------------------------------------------------------------------------------
export BENCH_OUT="$OUT" BENCH_OUT_REL="${OUT#"$ROOT"/}" BENCH_REPORT="$REPORT" BENCH_QUICK="$QUICK" BENCH_GIT_REV="$GIT_REV" \
    BENCH_RSS_USER="$RSS_USER" BENCH_RSS_PLATFORM="$RSS_PLATFORM" BENCH_RSS_TRUE="$RSS_TRUE" \
    BENCH_RSS_BWRAP="$RSS_BWRAP" BENCH_RSS_BASE_USER="$RSS_BASE_USER" BENCH_RSS_REPEAT="$RSS_REPEAT" BENCH_LPS_SBX="$LPS_SBX" \
    BENCH_LPS_BWRAP="$LPS_BWRAP" BENCH_LAUNCHES="$LAUNCHES" BENCH_BWRAP_ARGS="$BWRAP_ARGS" \
    BENCH_HF_ARGS="${HF_RUNS[*]}" BENCH_SBX="$SBX" \
    BENCH_NAMES="$(printf '%s\n' "${names[@]}")" BENCH_CMDS="$(printf '%s\n' "${cmds[@]}")" \
    BENCH_HF_VERSION="$(hyperfine --version)" BENCH_BWRAP_VERSION="$(bwrap --version)" \
    BENCH_NPROC="$(nproc)" BENCH_KERNEL="$(uname -r)" BENCH_LOADAVG="$LOAD_BEFORE" \
    BENCH_LOADAVG_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)" \
    BENCH_CPU="$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)" \
    BENCH_DATE="$(date -u '+%Y-%m-%d %H:%M UTC')" BENCH_PROFILING="$ROOT/bench/PROFILING.md" \
    BENCH_ROOT="$ROOT" BENCH_BASE="$BASE" BENCH_BASE_LABEL="$BASE_LABEL" BENCH_ALT_ROUNDS="$ALT_ROUNDS" \
    BENCH_CONN="$CONN" BENCH_REQUEST="$REQUEST"
python3 - <<'PY'
import json, os, re

E = os.environ
out = E["BENCH_OUT"]
with open(os.path.join(out, "hyperfine.json")) as f:
    results = json.load(f)["results"]
by_name = {r["command"]: r for r in results}   # --command-name replaces "command" in the JSON
bare, bwrap = by_name["bare /bin/true"], by_name["bwrap"]
ms = lambda s: s * 1000.0

lines = []
w = lines.append
if E["BENCH_QUICK"] == "1":
    w("> **Quick mode** (`--runs 5 --warmup 1`): a smoke test, the numbers are rough.\n")
w("# Benchmarks\n")
w("Launch cost of `sbx-exec` against a bare fork+exec of `true`, `unshare(1)` and bubblewrap.")
w("Generated by `bash bench/run.sh` (see `bench/README.md`); every number below comes from that")
w("run. Raw data: `%s/` (hyperfine JSON and markdown, strace output).\n" % E["BENCH_OUT_REL"])
w("## Machine\n")
w("| | |\n|---|---|")
w("| CPUs (nproc) | %s |" % E["BENCH_NPROC"])
w("| CPU | %s |" % E["BENCH_CPU"])
w("| kernel (`uname -r`) | %s |" % E["BENCH_KERNEL"])
w("| date | %s |" % E["BENCH_DATE"])
w("| load average (1/5/15 min) before timing | %s |" % E["BENCH_LOADAVG"])
w("| load average (1/5/15 min) after timing | %s |" % E["BENCH_LOADAVG_AFTER"])
w("| sbx-exec | release build of %s |" % E["BENCH_GIT_REV"])
if E["BENCH_BASE"]:
    w("| baseline (`BASELINE_REV`) | release build of %s, same flags (a worktree in `bench/out/`) |" % E["BENCH_BASE_LABEL"])
w("| tools | %s, %s |" % (E["BENCH_HF_VERSION"], E["BENCH_BWRAP_VERSION"]))
w("")

w("## Launch latency\n")
w("One hyperfine run (`%s`) over all commands, each run with `sh -c` with hyperfine's" % E["BENCH_HF_ARGS"])
w("shell-startup correction, so the bare `/bin/true` line is the cost of a fork+exec of `true`.")
w("Ratio is mean / bwrap mean; Δ is mean minus the bare `/bin/true` mean (the targets below use")
w("the same means). The median is less sensitive to the occasional slow run than the mean.\n")
w("| command | mean ± σ (ms) | median (ms) | min (ms) | runs | × bwrap | Δ vs bare true (ms) |")
w("|---|---:|---:|---:|---:|---:|---:|")
for r in results:
    w("| %s | %.2f ± %.2f | %.2f | %.2f | %d | %.2f | %+.2f |" % (
        r["command"], ms(r["mean"]), ms(r["stddev"] or 0.0), ms(r["median"]), ms(r["min"]), len(r["times"]),
        r["mean"] / bwrap["mean"], ms(r["mean"] - bare["mean"])))
w("\nThe commands, as timed (`sbx-exec` is the release binary, copied to `%s/sbx-exec` after the build and timed there, `%s/` the script's output dir):\n" % (E["BENCH_OUT_REL"], E["BENCH_OUT_REL"]))
w("```")
def disp(c):
    if E["BENCH_BASE"]:
        c = c.replace(E["BENCH_BASE"], "sbx-exec@" + E["BENCH_BASE_LABEL"])
    return c.replace(E["BENCH_SBX"], "sbx-exec").replace(out + "/", E["BENCH_OUT_REL"] + "/").replace(E["BENCH_ROOT"] + "/", "")
for name, cmd in zip(E["BENCH_NAMES"].split("\n"), E["BENCH_CMDS"].split("\n")):
    w("%-30s %s" % (name + ":", disp(cmd)))
w("```")
w("`%s/secrets.env` holds 10 `NAME=value` lines of fake values; `%s/netnone.toml` is" % (E["BENCH_OUT_REL"], E["BENCH_OUT_REL"]))
w("`sbx-exec policy show` without its first comment line, with the user context's network mode")
w("replaced by `\"none\"` (an empty network namespace, no proxy). The script checks that the platform")
w("command receives all 10 secrets and that the net=none context sees only `lo`.")
w("The `1 proxy connection` lines connect to the context's proxy (127.0.0.1:3128) and exit: the")
w("launcher starts the egress gate on that connection, and the sandbox may be gone (and the gate")
w("killed) before the gate's exec is through. The `1 refused request` lines send `CONNECT")
w("127.0.0.1:9` and wait for the answer (403, loopback is not for the sandbox): the gate is exec'd,")
w("set up and serving in every run. Both are checked to connect (the second, to get the 403) first.")
w("The `1 captured connection` line connects straight to 10.0.0.1:80 without the proxy (a client")
w("that ignores proxy variables): the connection is captured, starts the gate, and is judged and")
w("refused there (a private address); it is checked to connect first (without capture there is")
w("no route). Against `1 refused request`, it is what capture adds to one connection.\n")

# BASELINE_REV: today's user lines against the baseline's, from the hyperfine run and from the
# alternated run (bench/alternate.py), which decides the issue's 0.1 ms goal.
alt = None
if E["BENCH_BASE"] and os.path.exists(os.path.join(out, "alternate.json")):
    with open(os.path.join(out, "alternate.json")) as f:
        alt = json.load(f)
if E["BENCH_BASE"]:
    b = E["BENCH_BASE_LABEL"]
    variants = ("user", "user, 1 proxy connection", "user, 1 refused request")
    label = {"user": "`true`", "user, 1 proxy connection": "1 proxy connection", "user, 1 refused request": "1 refused request"}
    w("## Before and after: `user` against %s\n" % b)
    w("Today's build against `BASELINE_REV=%s`, built the same way; the same three commands as above" % b)
    w("(`--ctx user -- true`, one proxy connection, one refused request). First the hyperfine run above,")
    w("where each command had a stretch of time of its own:\n")
    w("| `--ctx user -- ...` | %s mean (ms) | today mean (ms) | Δ (ms) | × %s |" % (b, b))
    w("|---|---:|---:|---:|---:|")
    for v in variants:
        old, new = by_name["baseline " + v], by_name["sbx-exec " + v]
        w("| %s | %.2f | %.2f | %+.2f | %.3f |" % (label[v], ms(old["mean"]), ms(new["mean"]), ms(new["mean"] - old["mean"]), new["mean"] / old["mean"]))
    w("")
    if alt:
        w("Then the same six commands alternated launch by launch (`bench/alternate.py`: %d rounds after" % alt["rounds"])
        w("%d of warm-up, each round in a shuffled order, `posix_spawn` without a shell, wall time to" % alt["warmup"])
        w("`wait4`; %.0f s in all), so that both builds share the machine's state. Δ is the mean of the" % alt["seconds"])
        w("per-round differences (today minus %s) with a 95%% interval (±1.96 standard errors). CPU is" % b)
        w("the user + system time `wait4` reports for the launch and every process it waited for (its pid")
        w("1, the command, the gate): what the launch costs the machine, and far less disturbed by other")
        w("load than the wall time. On a machine shared with other work the hyperfine table and this one")
        w("can disagree: load that comes and goes lands on whichever command hyperfine is running then,")
        w("and on all six alike here.\n")
        w("| `--ctx user -- ...` | %s mean / median (ms) | today mean / median (ms) | Δ mean (ms) | Δ median (ms) | × %s | CPU %s / today (ms) | CPU Δ mean (ms) |" % (b, b, b))
        w("|---|---:|---:|---:|---:|---:|---:|---:|")
        for pr in alt["pairs"]:
            old, new = alt["commands"][pr["before"]], alt["commands"][pr["after"]]
            v = pr["after"].replace("sbx-exec ", "")
            w("| %s | %.2f / %.2f | %.2f / %.2f | %+.3f ± %.3f | %+.3f | %.3f | %.2f / %.2f | %+.3f ± %.3f |" % (
                label[v], old["mean"], old["median"], new["mean"], new["median"],
                pr["mean_diff"], pr["ci95"], pr["median_diff"], pr["ratio"],
                old["cpu_mean"], new["cpu_mean"], pr["cpu_mean_diff"], pr["cpu_ci95"]))
        w("")

# What the user context's features cost: the cumulative ablation (bench/run.sh, ABLATE_STEPS).
abl = [by_name["sbx-exec user"]] + [r for r in results if r["command"].startswith("sbx-exec user, no limits")]
ref = by_name["bwrap --unshare-all (with net)"]
w("## What the user context's features cost\n")
w("The `user` line above, then the same context with its features taken away one after the other")
w("(cumulative; `%s/ablate1.toml` to `ablate4.toml`, made from the embedded default). Only for" % E["BENCH_OUT_REL"])
w("measuring: each step removes a wall. What stays in every line: the namespaces of `bwrap")
w("--unshare-all` plus a private /proc with Docker's masks, a private /dev, a read-only root,")
w("capabilities cut to the context's list, and the wait for the sandbox to be gone.\n")
w("| `user` | mean (ms) | × bwrap --unshare-all | Δ vs the line before (ms) |")
w("|---|---:|---:|---:|")
prev = None
for r in abl:
    w("| %s | %.2f | %.2f | %s |" % (r["command"].replace("sbx-exec user, ", "") if r is not abl[0] else "as shipped",
        ms(r["mean"]), r["mean"] / ref["mean"], "" if prev is None else "%+.2f" % ms(r["mean"] - prev["mean"])))
    prev = r
w("")

rss = {k: int(E["BENCH_RSS_" + k]) for k in ("USER", "PLATFORM", "TRUE", "BWRAP")}
mib = lambda kib: kib / 1024.0
w("## Peak RSS\n")
w("`/usr/bin/time -v`, \"Maximum resident set size\": the largest RSS of the launched process and")
w("the children it waited for; maximum over %s run(s).\n" % E["BENCH_RSS_REPEAT"])
w("- `sbx-exec --ctx user -- true`: %d KiB (%.2f MiB)" % (rss["USER"], mib(rss["USER"])))
w("- `sbx-exec --ctx platform --secrets-fd 3 -- true` (10 secrets): %d KiB (%.2f MiB)" % (rss["PLATFORM"], mib(rss["PLATFORM"])))
w("- for reference, bwrap (same arguments as above): %d KiB (%.2f MiB); bare `/bin/true`: %d KiB" % (rss["BWRAP"], mib(rss["BWRAP"]), rss["TRUE"]))
if E["BENCH_RSS_BASE_USER"]:
    base_rss = int(E["BENCH_RSS_BASE_USER"])
    w("- the baseline, %s, `--ctx user -- true`: %d KiB (%.2f MiB): today's is %+d KiB" % (
        E["BENCH_BASE_LABEL"], base_rss, mib(base_rss), rss["USER"] - base_rss))
w("")

w("## Throughput\n")
w("%s launches of `true`, split over 2 callers looping at once, wall time from `date +%%s.%%N`:\n" % E["BENCH_LAUNCHES"])
w("- `sbx-exec --ctx user -- true`: **%s launches/s**" % E["BENCH_LPS_SBX"])
w("- bwrap (reference, same arguments as above): %s launches/s" % E["BENCH_LPS_BWRAP"])
w("")

# The download through the egress gate (bench/transfer.sh).
with open(os.path.join(out, "transfer", "transfer.json")) as f:
    tr = json.load(f)
med = tr["median_mb_s"]
w("## Download through the egress gate\n")
w("One %d MiB HTTPS download (random bytes, `Content-Length`), `curl -o /dev/null -w '%%{speed_download}'`," % tr["size_mib"])
w("in MB/s (10^6 bytes/s; curl's average over the whole transfer, handshakes included), median of %d" % tr["runs"])
w("runs of each, interleaved (per run: one sandbox doing the first two, then the third). `bench/transfer.sh`")
w("does it all in a network and mount namespace of its own: a Python TLS origin on TEST-NET")
w("addresses (192.0.2.10 for api.anthropic.com, 192.0.2.11 for other.example.test) of that")
w("namespace's lo, a test CA made with openssl added to a copy of the system bundle and that copy and")
w("a hosts file bind-mounted over the system's in that namespace only; the sandbox is the `agent`")
w("context of `policies/sandbox-sdk.toml` (its allow list replaced by the two names and their /32s),")
w("with `ANTHROPIC_API_KEY` bound to api.anthropic.com (header x-api-key) on `--secrets-fd 3`. No")
w("packet leaves the machine. %s CPUs for everything: curl, the gate, the origin.\n" % E["BENCH_NPROC"])
w("| download | median MB/s | runs (MB/s) | × direct |")
w("|---|---:|---|---:|")
rows = (("intercepted", "**intercepted and scrubbed**: from api.anthropic.com, the host the secret is bound to"),
        ("tunnel", "plain CONNECT tunnel: from other.example.test (allowed, not bound), same sandbox"),
        ("direct", "direct: curl outside any sandbox to the origin (the ceiling)"))
for k, label in rows:
    w("| %s | %s | %s | %.2f |" % (label, ("**%.0f**" if k == "intercepted" else "%.0f") % med[k],
        ", ".join("%.0f" % x for x in tr["mb_s"][k]), med[k] / med["direct"]))
w("")
w("Intercepted, the gate terminates the sandbox's TLS with the call's CA (%s), opens its own TLS" % tr["tls_sandbox_gate"])
w("to the origin, verified against the system bundle (%s), puts the real key in the" % tr["tls_gate_origin"])
w("header and scrubs every byte of the answer of every encoding of it before re-encrypting it.")
w("Through the tunnel the sandbox's TLS goes to the origin untouched (%s); direct: %s." % (tr["tls_tunnel"], tr["tls_direct"]))
w("Checked in the same run: the origin saw the real key on every intercepted download and the")
w("placeholder on every tunnelled one, and an answer holding the real key reached the sandbox as the")
w("placeholder (scrubbed: %s).\n" % tr["scrubbed"])

w("## Syscalls of one launch\n")
w("`strace -c -f -S calls sbx-exec --ctx user -- true`: all processes of the launch (sbx-exec, its")
w("pid-1 reaper and `true`), top 15 by number of calls (full output: `%s/strace.txt`)." % E["BENCH_OUT_REL"])
w("strace's times are inflated by tracing; the call counts are the useful part.\n")
with open(os.path.join(out, "strace.txt")) as f:
    st = [l.rstrip("\n") for l in f]
head = [l for l in st if l.startswith("% time") or l.startswith("------")][:2]
rows = [l for l in st if l and not l.startswith(("% time", "------")) and not l.rstrip().endswith("total")]
total = [l for l in st if l.rstrip().endswith("total")]
w("```")
for l in head + rows[:15] + (["..."] if len(rows) > 15 else []) + total:
    w(l)
w("```\n")

# Targets: the project's goals, checked against the numbers above.
# Each context against the bwrap line of comparable isolation: `user` has its own network
# namespace (and private /dev, identity, limits), so `bwrap --unshare-all`; `platform` shares the
# container's network, so the bwrap line without --unshare-net.
user, plat = by_name["sbx-exec user"], by_name["sbx-exec platform, 10 secrets"]
bwrap_all = by_name["bwrap --unshare-all (with net)"]
checks = []
for label, r, ref, ref_name in (("user", user, bwrap_all, "bwrap --unshare-all"),
                                ("platform", plat, bwrap, "bwrap")):
    ratio = r["mean"] / ref["mean"]
    checks.append(("%s launch <= 0.8x %s" % (label, ref_name), "%.2fx" % ratio, ratio <= 0.8))
    d = ms(r["mean"] - bare["mean"])
    checks.append(("%s launch within 2 ms of bare fork+exec of true" % label, "%+.2f ms" % d, d <= 2.0))
for label, k in (("user", "USER"), ("platform", "PLATFORM")):
    checks.append(("%s peak RSS <= 4 MiB" % label, "%.2f MiB" % mib(rss[k]), rss[k] <= 4096))
if alt:
    # Met when the whole 95% interval of the difference is at or below 0.1 ms, not met when all of
    # it is above, undecided when it straddles 0.1 ms.
    pr = alt["pairs"][0]
    for key, what in (("", "launch"), ("cpu_", "launch's CPU time")):
        d, ci = pr[key + "mean_diff"], pr[key + "ci95"]
        checks.append(("user %s within 0.1 ms of %s's (alternated run, mean, 95%% interval)" % (what, E["BENCH_BASE_LABEL"]),
                       "%+.3f ± %.3f ms" % (d, ci), True if d + ci <= 0.1 else False if d - ci > 0.1 else None))
w("## Targets\n")
w("The project's goals for a launch (goals, not guarantees): each launch takes at most 0.8x the time")
w("of the bwrap line of comparable isolation (`user`, with its own network namespace: `bwrap")
w("--unshare-all`; `platform`, on the container's network: `bwrap`) and at most 2 ms more than a bare")
w("fork+exec of `true`; peak RSS is at most 4 MiB%s.\n" % (
  "; and, with `BASELINE_REV`, a `user` launch costs at most 0.1 ms more than the baseline's (issue #29)" if alt else ""))
w("| goal | measured | met |")
w("|---|---:|---|")
for g, v, ok in checks:
    w("| %s | %s | %s |" % (g, v, {True: "yes", False: "**no**", None: "undecided"}[ok]))
met = [g for g, _, ok in checks if ok is True]
unmet = [g for g, _, ok in checks if ok is False]
undecided = [g for g, _, ok in checks if ok is None]
w("")
w("Met: %s." % ("; ".join(met) if met else "none"))
w("Not met: %s." % ("; ".join(unmet) if unmet else "none"))
if undecided:
    w("Undecided (the 95%% interval holds both sides of the goal: too noisy a run to tell): %s." % "; ".join(undecided))

# The profiling notes (written by hand in bench/PROFILING.md), one heading level down.
if os.path.exists(E["BENCH_PROFILING"]):
    w("")
    with open(E["BENCH_PROFILING"]) as f:
        for l in f.read().rstrip("\n").split("\n"):
            w("#" + l if l.startswith("#") else l)

# The load figures come from bench/load.sh (a separate, longer run): kept from the previous report.
if os.path.exists(E["BENCH_REPORT"]):
    with open(E["BENCH_REPORT"]) as f:
        old = f.read()
    # From bench/load.sh's begin marker (or, in a report without one, its heading) through its
    # end marker, markers included, so that the next bench/load.sh replaces it in place.
    begin, end = "<!-- load:begin -->", "<!-- load:end -->"
    i = old.find(begin)
    if i < 0:
        i = old.find("\n## Load (bench/load.sh)") + 1
    if i > 0 or old.startswith(begin):
        rest = old[i:]
        j = rest.find(end)
        if j >= 0:
            rest = rest[:j + len(end)]
        else:
            k = rest.find("\n## ", 3)
            rest = rest if k < 0 else rest[:k]
        lines.append("")
        lines.extend(rest.rstrip("\n").split("\n"))

with open(E["BENCH_REPORT"], "w") as f:
    f.write("\n".join(lines) + "\n")
PY
{
    echo
    echo "### Prepared sandboxes during the timing"
    echo
    echo "The pooled lines claim a prepared sandbox when one is ready and build their own otherwise; their"
    echo "servers' counts over the whole run (warm-up and the checks before it included): user and platform,"
    echo
    echo "    ${POOL_SUMMARY:-no summary: see $OUT/pool-serve.log}"
    echo
    echo "and agent (bound secret):"
    echo
    echo "    ${SDK_POOL_SUMMARY:-no summary: see $OUT/pool-serve-sdk.log}"
} >>"$REPORT"
log "wrote $REPORT"
