"""Alternated launches: commands timed round by round, each round in a shuffled order, so that
every command shares the machine's state (other builds, caches, frequency) with the others
instead of having a stretch of time of its own as in hyperfine. Used by bench/run.sh for the
before/after comparison (BASELINE_REV), where the differences looked for are ~0.1 ms.

    python3 alternate.py SPEC.json ROUNDS WARMUP OUT.json

SPEC.json: {"commands": [[name, [argv...]], ...], "pairs": [[after_name, before_name], ...]}.
Each launch: os.posix_spawn (no shell), stdin/stdout from/to /dev/null, wall time from spawn to
wait4, and the CPU time (user + system) wait4 reports for the launch and every process it waited
for (its pid 1, the command, the gate), which other load on the machine disturbs far less than
the wall time. A launch that exits non-zero stops the run (exit 1). OUT.json: per command n,
mean, median, stddev, min and the mean CPU time; per pair the mean of the per-round differences
(after - before) with a 95% interval (1.96 standard errors), the median difference and the ratio
of the means, for the wall time and (cpu_*) for the CPU time.
"""
import json, os, random, statistics, sys, time

spec_path, rounds, warmup, out_path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
spec = json.load(open(spec_path))
cmds = [(name, argv) for name, argv in spec["commands"]]
devnull = os.open(os.devnull, os.O_RDWR)
actions = [(os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1)]


def launch(argv):
    t = time.perf_counter_ns()
    pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=actions)
    _, status, ru = os.wait4(pid, 0)
    dt = time.perf_counter_ns() - t
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit("alternate: %s exited %d" % (" ".join(argv), os.waitstatus_to_exitcode(status)))
    return dt / 1e6, (ru.ru_utime + ru.ru_stime) * 1e3


rng = random.Random(29)
times = {name: [] for name, _ in cmds}
cpu = {name: [] for name, _ in cmds}
t0 = time.time()
for r in range(warmup + rounds):
    order = cmds[:]
    rng.shuffle(order)
    for name, argv in order:
        ms, cpu_ms = launch(argv)
        if r >= warmup:
            times[name].append(ms)
            cpu[name].append(cpu_ms)
res = {"rounds": rounds, "warmup": warmup, "seconds": time.time() - t0, "commands": {}, "pairs": []}
for name, t in times.items():
    res["commands"][name] = {"n": len(t), "mean": statistics.fmean(t), "median": statistics.median(t),
                             "stddev": statistics.stdev(t), "min": min(t), "cpu_mean": statistics.fmean(cpu[name])}
for after, before in spec.get("pairs", []):
    pair = {"after": after, "before": before}
    for key, series in (("", times), ("cpu_", cpu)):
        d = [a - b for a, b in zip(series[after], series[before])]
        pair.update({key + "mean_diff": statistics.fmean(d), key + "ci95": 1.96 * statistics.stdev(d) / len(d) ** 0.5,
                     key + "median_diff": statistics.median(d),
                     key + "ratio": statistics.fmean(series[after]) / statistics.fmean(series[before])})
    res["pairs"].append(pair)
json.dump(res, open(out_path, "w"), indent=1)
