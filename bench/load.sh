#!/usr/bin/env bash
# Load test for sbx-exec: launches/s and latency p50/p99 with 1, 4, 16 and 64 concurrent callers,
# for `user` (one-shot), `platform` with one secret on a pipe (one-shot), joins of a persistent
# context, and joins of a persistent context shaped like sandbox-sdk.toml's `user` (an identity,
# its own network with the egress gate held by a net helper). Every launch must succeed, and
# nothing may be left behind (processes, zombies, cgroups, runtime state), checked with a snapshot
# before and after each level; and `isolated` (identity + its own network with the gate,
# one-shot) against `pooled` (the same with pool = 8, served by `sbx-exec pool serve`, whose
# memory per prepared sandbox is measured). Then a soak: SOAK (5000; 1000 quick) sequential joins of the
# sandbox-sdk-shaped context, with its keeper's and net helper's RSS, the keeper's mounts and the
# process count before and after (they must not grow).
#
#   bash bench/load.sh               1000 launches per level; writes the "Load" section of
#                                    BENCHMARKS.md (between the load markers)
#   LOAD_QUICK=1 bash bench/load.sh  300 launches per level; writes bench/out/LOAD.quick.md only
#
# Runs as root, inside a throwaway PID + mount namespace of its own (unshare), with a private
# tmpfs on /run/sbx: every process it starts dies with it. Needs python3 (the driver).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/bench/out"
mkdir -p "$OUT"
cd "$ROOT"
[ "$(id -u)" = 0 ] || { echo "load: run as root" >&2; exit 1; }
command -v python3 >/dev/null || { echo "load: python3 is needed" >&2; exit 1; }

if [ "${LOAD_INNER:-}" != 1 ]; then
    cargo build --release --quiet
    exec unshare --pid --fork --kill-child --mount-proc --mount --propagation private \
        env LOAD_INNER=1 bash "$0" "$@"
fi

mkdir -p /run/sbx && mount -t tmpfs -o mode=0700 sbx-load /run/sbx
BIN="$ROOT/target/$(rustc -vV | sed -n 's/^host: //p')/release/sbx-exec"   # .cargo/config.toml
POLICY="$OUT/load-policy.toml"
cat >"$POLICY" <<'EOF'
version = 1
[context.user]
namespaces = ["pid", "mount", "ipc", "uts"]
env.allow = ["PATH"]
fs.hide = ["/run/sbx"]
[context.platform]
namespaces = ["pid", "mount", "ipc", "uts"]
env.allow = ["PATH"]
fs.hide = ["/run/sbx"]
secrets.allow = ["TOKEN"]
exec.allow = ["/usr/bin/true"]
[context.joined]
namespaces = ["pid", "mount", "ipc", "uts"]
persist = true
env.allow = ["PATH"]
fs.hide = ["/run/sbx"]
[context.joined.limits]
pids_max = 4096
[context.isolated]
namespaces = ["pid", "mount", "ipc", "uts"]
identity = { uid = 100000, gid = 100000, count = 65536 }
env.allow = ["PATH"]
fs.hide = ["/run/sbx"]
[context.isolated.net]
mode = "private"
allow = ["0.0.0.0/0", "::/0"]
[context.sdk]
extends = "isolated"
persist = true
[context.pooled]
extends = "isolated"
pool = 8
[context.poolmem]
extends = "isolated"
pool = 24
[context.poolmem.limits]
memory_max = "256M"
EOF

N=1000 SOAK=5000
[ "${LOAD_QUICK:-0}" = 1 ] && N=300 SOAK=1000
export BIN POLICY N SOAK
python3 - "$OUT/load.json" <<'PY'
import json, os, subprocess, sys, threading, time

BIN, POLICY, N = os.environ["BIN"], os.environ["POLICY"], int(os.environ["N"])
SOAK = int(os.environ["SOAK"])

def is_pool(pid):
    """The pool's server and its prepared sandboxes (made and ended as calls take them)."""
    try:
        return b"pool\0serve" in open(f"/proc/{pid}/cmdline", "rb").read()
    except OSError:
        return False

def snapshot():
    procs, zombies = set(), set()
    for p in os.listdir("/proc"):
        if not p.isdigit() or int(p) in (1, os.getpid()):
            continue
        try:
            st = open(f"/proc/{p}/stat").read()
        except OSError:
            continue
        if is_pool(p):
            continue
        state = st[st.rfind(")") + 2]
        (zombies if state == "Z" else procs).add(int(p))
    cg = set()
    for base, dirs, _ in os.walk("/sys/fs/cgroup"):
        if base.count("/") > 8:
            dirs[:] = []
        for d in dirs:
            if d.startswith(("sbx-joined-", "sbx-sdk-", "sbx-user-", "sbx-platform-", "sbx-isolated-")):
                cg.add(os.path.join(base, d))
    state = {f for f in os.listdir("/run/sbx") if not f.endswith(".lock") and f != "pool.sock"}
    return procs, zombies, cg, state

def call(kind):
    if kind == "platform":
        r, w = os.pipe()
        os.write(w, b"TOKEN=s3cret\n")
        os.close(w)
        args = [BIN, "--policy", POLICY, "--ctx", "platform", "--secrets-fd", str(r), "--", "/usr/bin/true"]
        t = time.perf_counter()
        p = subprocess.run(args, pass_fds=(r,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        dt = time.perf_counter() - t
        os.close(r)
    else:
        ctx = kind
        t = time.perf_counter()
        p = subprocess.run([BIN, "--policy", POLICY, "--ctx", ctx, "--", "true"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        dt = time.perf_counter() - t
    return p.returncode, dt, p.stderr.decode(errors="replace")

def level(kind, conc):
    lat, fails, lock = [], [], threading.Lock()
    left = [N]
    def worker():
        while True:
            with lock:
                if left[0] == 0:
                    return
                left[0] -= 1
            rc, dt, err = call(kind)
            with lock:
                lat.append(dt)
                if rc != 0:
                    fails.append((rc, err.strip()[:200]))
    t = time.perf_counter()
    ts = [threading.Thread(target=worker) for _ in range(conc)]
    for x in ts: x.start()
    for x in ts: x.join()
    wall = time.perf_counter() - t
    lat.sort()
    q = lambda f: lat[min(len(lat) - 1, int(f * len(lat)))] * 1000
    return {"kind": kind, "concurrency": conc, "launches": N, "per_s": N / wall,
            "p50_ms": q(0.50), "p99_ms": q(0.99), "failures": len(fails), "first_failure": fails[:1]}

def reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return

def prepared():
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and is_pool(p)]

# The pool's server, and what its prepared sandboxes take (8 of `pooled`, and 24 of `poolmem`,
# which serves no call and has a memory cgroup, so that each of its sandboxes' memory is counted:
# pid 1's pages and the kernel memory charged to it, its mounts, tmpfs files and network).
server = subprocess.Popen([BIN, "--policy", POLICY, "pool", "serve"], stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
deadline = time.time() + 30
while len(prepared()) < 33 and time.time() < deadline:
    time.sleep(0.05)
time.sleep(1)
def pss_kib(pid):
    for line in open(f"/proc/{pid}/smaps_rollup"):
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0
def charged_kib():
    """Each poolmem sandbox's cgroup: memory.usage_in_bytes (v1) or memory.current (v2)."""
    out = []
    for base, dirs, files in os.walk("/sys/fs/cgroup"):
        if "/sbx-poolmem.pool" in base:
            for f in ("memory.usage_in_bytes", "memory.current"):
                if f in files:
                    out.append(int(open(os.path.join(base, f)).read()) // 1024)
    return sorted(out)
pids = sorted(prepared())
charged = charged_kib()
median = lambda v: v[len(v) // 2] if v else 0
pool_mem = {"prepared": len(pids) - 1, "cgroups": len(charged), "charged_kib": median(charged),
            "pid1_pss_kib": median(sorted(pss_kib(p) for p in pids[1:]))}
print(f"load: pool {pool_mem}", file=sys.stderr, flush=True)

results, leaks = [], []
# The persistent contexts' keepers (and the sdk context's net helper) are part of the baseline
# (they are meant to stay).
for ctx in ("joined", "sdk"):
    subprocess.run([BIN, "--policy", POLICY, "--ctx", ctx, "--", "true"], check=True)
for kind in ("user", "platform", "joined", "sdk", "isolated", "pooled"):
    for conc in (1, 4, 16, 64):
        reap()
        before = snapshot()
        r = level(kind, conc)
        deadline = time.time() + 5
        while True:
            reap()
            after = snapshot()
            left = [a - b for a, b in zip(after, before)]
            if not any(left) or time.time() > deadline:
                break
            time.sleep(0.05)
        r["left_behind"] = [sorted(map(str, x)) for x in left]
        if any(left):
            leaks.append((kind, conc, r["left_behind"]))
        results.append(r)
        print(f"load: {kind:8} x{conc:<3} {r['per_s']:7.1f}/s  p50 {r['p50_ms']:6.1f} ms  p99 {r['p99_ms']:7.1f} ms  "
              f"failures {r['failures']}  left {sum(map(len, left))}", file=sys.stderr, flush=True)

def helpers():
    """The sdk context's keeper and net helper pids (from ctx list --json)."""
    rows = json.loads(subprocess.run([BIN, "ctx", "list", "--json"], check=True, capture_output=True).stdout)
    row = next(r for r in rows if r["name"] == "sdk")
    return row["keeper_pid"], row["net_pid"]

def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0

def measure():
    keeper, net = helpers()
    return {"keeper_rss_kib": rss_kib(keeper), "net_rss_kib": rss_kib(net),
            "keeper_mounts": len(open(f"/proc/{keeper}/mountinfo").readlines()),
            "processes": len(snapshot()[0])}

# The soak: sequential joins of the sdk context, one after the other.
reap()
soak_before, soak_fail = measure(), []
t = time.perf_counter()
for i in range(SOAK):
    rc, _, err = call("sdk")
    if rc != 0:
        soak_fail.append((rc, err.strip()[:200]))
reap()
soak = {"launches": SOAK, "seconds": time.perf_counter() - t, "failures": len(soak_fail),
        "first_failure": soak_fail[:1], "before": soak_before, "after": measure()}
print(f"load: soak {SOAK} joins in {soak['seconds']:.0f} s, failures {len(soak_fail)}, "
      f"before {soak_before}, after {soak['after']}", file=sys.stderr, flush=True)
grew = {k: (soak_before[k], soak["after"][k]) for k in ("keeper_mounts", "processes")
        if soak["after"][k] > soak_before[k]}
# RSS may move by a few pages (allocator); a leak over thousands of joins shows as far more.
grew.update({k: (soak_before[k], soak["after"][k]) for k in ("keeper_rss_kib", "net_rss_kib")
             if soak["after"][k] > soak_before[k] + 1024})
if grew:
    leaks.append(("soak", SOAK, grew))
for ctx in ("joined", "sdk"):
    subprocess.run([BIN, "ctx", "stop", ctx, "--policy", POLICY], check=True)
server.terminate()
pool_mem["summary"] = server.communicate(timeout=30)[1].decode(errors="replace").strip().splitlines()[-1:]
json.dump({"levels": results, "soak": soak, "pool": pool_mem}, open(sys.argv[1], "w"), indent=1)
bad = sum(r["failures"] for r in results) + len(soak_fail)
if bad or leaks:
    print(f"load: {bad} failures, leaks {leaks}; first failures {[r['first_failure'] for r in results if r['failures']]}", file=sys.stderr)
    sys.exit(1)
PY

python3 - "$OUT/load.json" <<'PY' >"$OUT/load.md"
import json, os, platform, sys
data = json.load(open(sys.argv[1]))
rs, soak = data["levels"], data["soak"]
n = rs[0]["launches"]
print(f"`bash bench/load.sh` ({'LOAD_QUICK=1, ' if os.environ.get('LOAD_QUICK') == '1' else ''}{n} launches per level, "
      f"{os.cpu_count()} CPUs, kernel {platform.release()}, release build). Latency is per call, as the caller "
      "sees it (fork+exec of sbx-exec to its exit); every call must exit 0, and a snapshot before and after each "
      "level (processes, zombies, cgroups, /run/sbx) must match.\n")
print("| workload | callers | launches/s | p50 ms | p99 ms | failures | left behind |")
print("|---|---:|---:|---:|---:|---:|---:|")
names = {"user": "`user` one-shot", "platform": "`platform` + secret on a pipe", "joined": "persistent join",
         "sdk": "persistent join, identity + gate (sandbox-sdk `user`)",
         "isolated": "one-shot, identity + gate", "pooled": "the same, `pool = 8` (prepared sandboxes)"}
for r in rs:
    print(f"| {names[r['kind']]} | {r['concurrency']} | {r['per_s']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
          f"{r['failures']} | {sum(map(len, r['left_behind']))} |")
pm = data["pool"]
print(f"\nPrepared sandboxes of the identity + gate context: {pm['prepared']} ready (8 for `pooled`, 24 of a "
      f"copy with a memory cgroup, which serves no call, for the measure); memory charged to one sandbox's "
      f"cgroup (median of {pm['cgroups']}: its pid 1, mounts, tmpfs files, network and the kernel memory "
      f"charged to it) {pm['charged_kib']} KiB; a pid 1's proportional set size {pm['pid1_pss_kib']} KiB. "
      f"The server over the whole run: {' '.join(pm['summary'])}")
b, a = soak["before"], soak["after"]
print(f"\nSoak: {soak['launches']} sequential joins of the sandbox-sdk-shaped context in {soak['seconds']:.0f} s, "
      f"{soak['failures']} failures.\n")
print("| | before | after |")
print("|---|---:|---:|")
for k, label in (("keeper_rss_kib", "keeper RSS (KiB)"), ("net_rss_kib", "net helper RSS (KiB)"),
                 ("keeper_mounts", "mounts in the context"), ("processes", "processes in the namespace")):
    print(f"| {label} | {b[k]} | {a[k]} |")
PY

if [ "${LOAD_QUICK:-0}" = 1 ]; then
    cp "$OUT/load.md" "$OUT/LOAD.quick.md"
    echo "load: wrote bench/out/LOAD.quick.md" >&2
else
    python3 - "$ROOT/BENCHMARKS.md" "$OUT/load.md" <<'PY'
import sys
path, body = sys.argv[1], open(sys.argv[2]).read()
text = open(path).read()
begin, end = "<!-- load:begin -->", "<!-- load:end -->"
section = f"{begin}\n## Load (bench/load.sh)\n\n{body}{end}"
if begin in text:
    text = text[: text.index(begin)] + section + text[text.index(end) + len(end):]
else:
    text = text.rstrip("\n") + "\n\n" + section + "\n"
open(path, "w").write(text)
PY
    echo "load: wrote the Load section of BENCHMARKS.md" >&2
fi
