#!/usr/bin/env bash
# Load test for sbx-exec: launches/s and latency p50/p99 with 1, 4, 16 and 64 concurrent callers,
# for `user` (one-shot), `platform` with one secret on a pipe (one-shot), and joins of a persistent
# context. Every launch must succeed, and nothing may be left behind (processes, zombies, cgroups,
# runtime state), checked with a snapshot before and after each level.
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
EOF

N=1000
[ "${LOAD_QUICK:-0}" = 1 ] && N=300
export BIN POLICY N
python3 - "$OUT/load.json" <<'PY'
import json, os, subprocess, sys, threading, time

BIN, POLICY, N = os.environ["BIN"], os.environ["POLICY"], int(os.environ["N"])

def snapshot():
    procs, zombies = set(), set()
    for p in os.listdir("/proc"):
        if not p.isdigit() or int(p) in (1, os.getpid()):
            continue
        try:
            st = open(f"/proc/{p}/stat").read()
        except OSError:
            continue
        state = st[st.rfind(")") + 2]
        (zombies if state == "Z" else procs).add(int(p))
    cg = set()
    for base, dirs, _ in os.walk("/sys/fs/cgroup"):
        if base.count("/") > 8:
            dirs[:] = []
        for d in dirs:
            if d.startswith("sbx-joined-") or d.startswith("sbx-user-") or d.startswith("sbx-platform-"):
                cg.add(os.path.join(base, d))
    state = {f for f in os.listdir("/run/sbx") if not f.endswith(".lock")}
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
        ctx = "user" if kind == "user" else "joined"
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

results, leaks = [], []
# The persistent context's keeper is part of the baseline (it is meant to stay).
subprocess.run([BIN, "--policy", POLICY, "--ctx", "joined", "--", "true"], check=True)
for kind in ("user", "platform", "joined"):
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
subprocess.run([BIN, "ctx", "stop", "joined", "--policy", POLICY], check=True)
json.dump(results, open(sys.argv[1], "w"), indent=1)
bad = sum(r["failures"] for r in results)
if bad or leaks:
    print(f"load: {bad} failures, leaks {leaks}; first failures {[r['first_failure'] for r in results if r['failures']]}", file=sys.stderr)
    sys.exit(1)
PY

python3 - "$OUT/load.json" <<'PY' >"$OUT/load.md"
import json, os, platform, sys
rs = json.load(open(sys.argv[1]))
n = rs[0]["launches"]
print(f"`bash bench/load.sh` ({'LOAD_QUICK=1, ' if os.environ.get('LOAD_QUICK') == '1' else ''}{n} launches per level, "
      f"{os.cpu_count()} CPUs, kernel {platform.release()}, release build). Latency is per call, as the caller "
      "sees it (fork+exec of sbx-exec to its exit); every call must exit 0, and a snapshot before and after each "
      "level (processes, zombies, cgroups, /run/sbx) must match.\n")
print("| workload | callers | launches/s | p50 ms | p99 ms | failures | left behind |")
print("|---|---:|---:|---:|---:|---:|---:|")
names = {"user": "`user` one-shot", "platform": "`platform` + secret on a pipe", "joined": "persistent join"}
for r in rs:
    print(f"| {names[r['kind']]} | {r['concurrency']} | {r['per_s']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
          f"{r['failures']} | {sum(map(len, r['left_behind']))} |")
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
