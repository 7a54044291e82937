// @sbx/client against the real sbx-exec (as root): SBX_EXEC, default ../../target/<tuple>/debug/sbx-exec.
// Without the binary or root the tests are skipped locally and FAIL under CI=true.
//
// Tests marked [flags] use --env / --cwd / --timeout and the policy key env.caller; [workdir] the
// flag --in-workdir (every call without a cwd passes it) and the policy key `workdir`. An sbx-exec
// without them fails those tests.
import { afterAll, describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  Aborted,
  NonZeroExit,
  NotExecutable,
  NotFound,
  Refused,
  SbxError,
  SbxUnavailable,
  Signaled,
  TimedOut,
  buildArgs,
  contexts,
  createClient,
  exec,
  hasSecureExecution,
  probe,
  spawn,
} from "../src/index.ts";
import { BIN, CI, HERE, why } from "./env.ts";

const POLICY = join(HERE, "policy.toml");
const FLAGS_POLICY = join(HERE, "policy-flags.toml");
const WORKDIR_POLICY = join(HERE, "policy-workdir.toml");
const DIST = join(HERE, "../dist/index.js");

if (why && CI) {
  test("the real sbx-exec is available (CI=true)", () => {
    throw new Error(why);
  });
}
if (why && !CI) console.warn(`skipping the sbx-exec tests: ${why}`);
const real = why ? test.skip : test;

const sbx = createClient({ bin: BIN, policy: POLICY });
const flags = createClient({ bin: BIN, policy: FLAGS_POLICY });
const T = 30_000;

/** A unique sleep duration, `100.<digits>`: pgrep -f finds exactly the processes of one test. */
function marker(): string {
  return `100.${Date.now() % 1e6}${Math.floor(Math.random() * 1e6)}`;
}
function pgrep(pattern: string): number[] {
  const r = Bun.spawnSync(["pgrep", "-f", pattern.replaceAll(".", "\\.")]);
  if (r.exitCode === 1) return [];
  if (r.exitCode !== 0) throw new Error(`pgrep: ${r.stderr.toString()}`);
  return r.stdout.toString().trim().split("\n").map(Number);
}
/** The `sleep MARKER` processes themselves (not sbx-exec or sh, whose command lines hold it too). */
function sleeps(m: string): number[] {
  return pgrep(`^sleep ${m}$`);
}
async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await Bun.sleep(50);
  }
  return cond();
}
async function caught(p: Promise<unknown>): Promise<SbxError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof SbxError) return e;
    throw e;
  }
  throw new Error("expected an SbxError, got success");
}
/** A refusal by a binary that knows the flag, not clap's "unknown argument" of an older one. */
function notUnsupportedFlag(e: SbxError) {
  expect(e.stderr).not.toMatch(/unexpected argument|required arguments were not provided|command not found: --/);
}

// ------------------------------------------------------------------ without sbx-exec (fake binary)

describe("argv and status parsing", () => {
  test("flags come before --ctx; secrets and status on fds 4 and 3", () => {
    const a = buildArgs("user", ["ls", "-l"], { policy: "p.toml", env: { A: "1" }, cwd: "/w", timeout: 5 }, { secrets: true });
    expect(a).toEqual([
      "--policy", "p.toml", "--env", "A=1", "--cwd", "/w", "--timeout", "5",
      "--ctx", "user", "--status-fd", "3", "--secrets-fd", "4", "--", "ls", "-l",
    ]);
    expect(() => buildArgs("user", [], {}, { secrets: false })).toThrow(TypeError);
    expect(() => buildArgs("user", ["x"], { env: { "A=B": "1" } }, { secrets: false })).toThrow(TypeError);
    expect(() => buildArgs("user", ["x"], { timeout: 1.5 }, { secrets: false })).toThrow(TypeError);
  });

  test("no cwd option: --in-workdir (the context's directory), never the caller's; a cwd must be absolute", () => {
    expect(buildArgs("user", ["pwd"], {}, { secrets: false })).toEqual([
      "--in-workdir", "--ctx", "user", "--status-fd", "3", "--", "pwd",
    ]);
    const withCwd = buildArgs("user", ["pwd"], { cwd: "/workspace/app" }, { secrets: false });
    expect(withCwd).toContain("/workspace/app");
    expect(withCwd).not.toContain("--in-workdir"); // the two conflict in sbx-exec
    expect(withCwd.indexOf("--cwd")).toBe(withCwd.indexOf("/workspace/app") - 1);
    for (const cwd of ["app", "./app", "", "/a\0b"])
      expect(() => buildArgs("user", ["pwd"], { cwd }, { secrets: false })).toThrow(TypeError);
  });

  // A stand-in for sbx-exec that writes given status lines: the parser ignores what it does not
  // know (garbage, extra fields) and honours a later "reason" field.
  const dir = mkdtempSync(join(tmpdir(), "sbx-client-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  function fake(status: string, code: number, body = "echo out; echo err >&2"): string {
    const p = join(dir, `fake-${Math.random().toString(36).slice(2)}`);
    writeFileSync(p, `#!/bin/sh\nprintf '%s' '${status}' >&3\n${body}\nexit ${code}\n`);
    chmodSync(p, 0o755);
    return p;
  }
  test("status lines are parsed tolerantly", async () => {
    const bin = fake('not json\n{"child-pid":42,"extra":[1]}\n\n{"exit-code":0,"new":"x"}\n', 0);
    expect(await exec("x", ["true"], { bin })).toEqual({
      code: 0, pid: 42, reason: "exited", stdout: "out\n", stderr: "err\n", truncated: false,
    });
  });
  test("a reason field wins over the guess from the status", async () => {
    const bin = fake('{"child-pid":7}\n{"exit-code":124,"reason":"exited"}\n', 124);
    const r = await exec("x", ["true"], { bin, throwOnError: false });
    expect([r.code, r.reason]).toEqual([124, "exited"]);
    expect(await caught(exec("x", ["true"], { bin }))).toBeInstanceOf(NonZeroExit);
    const t = fake('{"child-pid":7}\n{"exit-code":124}\n', 124);
    expect(await caught(exec("x", ["true"], { bin: t }))).toBeInstanceOf(TimedOut);
  });
  test("reason refused: Refused with the status fd's message (not stderr's), result.message too", async () => {
    const msg = 'unknown context "x"; this policy defines: user';
    const bin = fake(`{"exit-code":125,"reason":"refused","message":${JSON.stringify(msg)}}\n`, 125, "echo noise >&2");
    const e = await caught(exec("x", ["true"], { bin }));
    expect(e).toBeInstanceOf(Refused);
    expect([e.code, e.reason, e.message]).toEqual([125, "refused", `sbx-exec refused: ${msg}`]);
    const r = await exec("x", ["true"], { bin, throwOnError: false });
    expect([r.code, r.reason, r.message, r.pid]).toEqual([125, "refused", msg, undefined]);
    // spawn's exited carries it too.
    expect(await spawn("x", ["true"], { bin }).exited).toMatchObject({ code: 125, reason: "refused", message: msg });
    // A refusal after the command's pid was reported (a --cwd the sandbox lacks) is one too.
    const late = fake(`{"child-pid":9}\n{"exit-code":125,"reason":"refused","message":"no such dir"}\n`, 125);
    const l = await caught(exec("x", ["true"], { bin: late }));
    expect([l.constructor, l.reason, l.message]).toEqual([Refused, "refused", "sbx-exec refused: no such dir"]);
  });

  test("exit 125 is Refused whatever the reason; without a reason it is reason refused", async () => {
    // An sbx-exec that writes no reason (older ones): 125 after the pid is still its own failure.
    const old = fake('{"child-pid":9}\n{"exit-code":125}\n', 125, "echo 'sbx-exec: cannot enter /x' >&2");
    const r = await exec("x", ["true"], { bin: old, throwOnError: false });
    expect([r.reason, r.message]).toEqual(["refused", "sbx-exec: cannot enter /x"]);
    const e = await caught(exec("x", ["true"], { bin: old }));
    expect([e.constructor, e.message]).toEqual([Refused, "sbx-exec refused: sbx-exec: cannot enter /x"]);
    // The command itself exited 125 (reason exited): still Refused, and its output is not the message.
    const own = fake('{"child-pid":9}\n{"exit-code":125,"reason":"exited"}\n', 125, "echo my-output >&2");
    const o = await caught(exec("x", ["true"], { bin: own }));
    expect([o.constructor, o.reason]).toEqual([Refused, "exited"]);
    expect(o.message).not.toContain("my-output");
    expect(o.stderr).toBe("my-output\n");
    // No status at all: 125 is a refusal, with sbx-exec's stderr line.
    const none = fake("", 125, "echo 'error: unexpected argument --in-workdir' >&2");
    const n = await exec("x", ["true"], { bin: none, throwOnError: false });
    expect([n.reason, n.message]).toEqual(["refused", "error: unexpected argument --in-workdir"]);
  });

  test("reasons sbx-exec reports beyond the basic ones (oom, pids_limit, stopped) are kept", async () => {
    const oom = fake('{"child-pid":9}\n{"exit-code":137,"reason":"oom","signal":"SIGKILL"}\n', 137);
    const e = await caught(exec("x", ["true"], { bin: oom }));
    expect(e).toBeInstanceOf(Signaled);
    expect([e.reason, (e as Signaled).signal]).toEqual(["oom", "SIGKILL"]);
    expect(e.message).toContain("oom");
    const pids = fake('{"child-pid":9}\n{"exit-code":1,"reason":"pids_limit"}\n', 1);
    const p = await exec("x", ["true"], { bin: pids, throwOnError: false });
    expect([p.code, p.reason, p.signal]).toEqual([1, "pids_limit", undefined]);
    expect(await caught(exec("x", ["true"], { bin: pids }))).toBeInstanceOf(NonZeroExit);
  });

  test("sbx-exec runs in / with --in-workdir, whatever the caller's directory", async () => {
    const bin = fake('{"child-pid":9}\n{"exit-code":0}\n', 0, 'pwd; printf "%s " "$@"');
    const here = process.cwd();
    const d = mkdtempSync(join(tmpdir(), "sbx-client-cwd-"));
    process.chdir(d);
    try {
      const r = await exec("x", ["true"], { bin });
      expect(r.stdout).toBe("/\n--in-workdir --ctx x --status-fd 3 -- true ");
      expect((await exec("x", ["true"], { bin, cwd: "/srv" })).stdout).toBe("/\n--cwd /srv --ctx x --status-fd 3 -- true ");
      expect((await probe({ bin: fake("", 0, 'echo "{\\"pwd\\":\\"$(pwd)\\"}"') })) as unknown).toEqual({ pwd: "/" });
    } finally {
      process.chdir(here);
      rmSync(d, { recursive: true, force: true });
    }
  });

  test("a missing binary is SbxUnavailable", async () => {
    const e = await caught(exec("user", ["true"], { bin: join(dir, "no-such-sbx-exec") }));
    expect(e).toBeInstanceOf(SbxUnavailable);
    expect(e.message).toContain("ENOENT");
  });
});

// ------------------------------------------------------------------------------- the real binary

describe("exec and spawn", () => {
  real("exec buffers stdout and stderr, reports the child pid", async () => {
    const r = await sbx.exec("box", ["sh", "-c", "echo out; echo err >&2; echo $$"]);
    expect(r.code).toBe(0);
    expect(r.reason).toBe("exited");
    expect(r.stdout.split("\n").slice(0, 1)).toEqual(["out"]);
    expect(r.stdout.split("\n")[1]).toBe("2"); // pid 2 of its own pid namespace
    expect(r.stderr).toBe("err\n");
    expect(r.pid).toBeGreaterThan(1);
  }, T);

  real("spawn streams interleaved stdout and stderr in order, before the end", async () => {
    const p = sbx.spawn("box", [
      "sh", "-c", "for i in 1 2 3; do echo out$i; sleep 0.15; echo err$i >&2; sleep 0.15; done",
    ]);
    const events: { line: string; at: number }[] = [];
    const pump = async (s: ReadableStream<Uint8Array>) => {
      const dec = new TextDecoder();
      for await (const chunk of s) {
        for (const line of dec.decode(chunk).split("\n").filter(Boolean)) events.push({ line, at: Date.now() });
      }
    };
    const [, , r] = await Promise.all([pump(p.stdout), pump(p.stderr), p.exited]);
    const end = Date.now();
    expect(r.code).toBe(0);
    expect(events.map((e) => e.line)).toEqual(["out1", "err1", "out2", "err2", "out3", "err3"]);
    expect(end - events[0]!.at).toBeGreaterThan(500); // streamed, not buffered until the end
    expect(await p.pid).toBeGreaterThan(1);
  }, T);

  real("stdin round trip, line by line while the command runs", async () => {
    const p = sbx.spawn("box", ["sh", "-c", 'while IFS= read -r l; do printf "got:%s\\n" "$l"; done; echo bye']);
    const w = p.stdin.getWriter();
    const reader = p.stdout.getReader();
    const dec = new TextDecoder();
    let seen = "";
    const readUntil = async (s: string) => {
      while (!seen.includes(s)) {
        const { value, done } = await reader.read();
        if (done) break;
        seen += dec.decode(value);
      }
    };
    await w.write("one\n");
    await readUntil("got:one\n"); // answered before stdin is closed
    await w.write(new TextEncoder().encode("two\n"));
    await w.close();
    await readUntil("bye\n");
    expect(seen).toBe("got:one\ngot:two\nbye\n");
    expect((await p.exited).code).toBe(0);
  }, T);

  real("exec input: 4 MiB through cat and back, intact", async () => {
    const data = randomBytes(3 * 1024 * 1024).toString("base64"); // 4 MiB of text
    const r = await sbx.exec("box", ["cat"], { input: data });
    expect(r.stdout.length).toBe(data.length);
    expect(r.stdout === data).toBe(true);
  }, T);

  real("spawn with throwOnError rejects exited with the typed error", async () => {
    const p = sbx.spawn("box", ["sh", "-c", "echo nope >&2; exit 3"], { throwOnError: true });
    const e = await caught(p.exited);
    expect(e).toBeInstanceOf(NonZeroExit);
    expect([e.code, e.stderr]).toEqual([3, "nope\n"]);
    const q = sbx.spawn("box", ["sh", "-c", "exit 3"]);
    expect(await q.exited).toMatchObject({ code: 3, reason: "exited" });
  }, T);

  real("works without a policy file: the effective policy's user context", async () => {
    const r = await exec("user", ["sh", "-c", "echo ok"], { bin: BIN });
    expect(r.stdout).toBe("ok\n");
  }, T);
});

describe("secrets", () => {
  real("a 1 MiB secret arrives intact (checked inside; never printed)", async () => {
    // The fd takes at most 1 MiB in all: the JSON {"BIG":"…"} is exactly 1 MiB.
    const value = randomBytes(1 << 20).toString("base64").slice(0, (1 << 20) - '{"BIG":""}'.length);
    const sha = createHash("sha256").update(value).digest("hex");
    const r = await sbx.exec("vault", ["sh", "-c", 'wc -c < "$BIG"; sha256sum < "$BIG"'], { secrets: { BIG: value } });
    expect(r.stdout.split(/\s+/).slice(0, 2)).toEqual([String(value.length), sha]);
    expect(r.stdout.includes(value.slice(0, 64))).toBe(false);
  }, T);

  real("a secret is a variable of the target, and never in sbx-exec's argv or environment", async () => {
    const value = `small-${randomBytes(16).toString("hex")}`;
    const p = sbx.spawn("vault", ["sh", "-c", 'read x; test "$SMALL" = "$x" && echo same'], { secrets: { SMALL: value } });
    await p.pid;
    const pid = p.sbxPid!;
    for (const f of ["cmdline", "environ"]) {
      expect(readFileSync(`/proc/${pid}/${f}`).includes(value)).toBe(false);
    }
    const w = p.stdin.getWriter();
    await w.write(`${value}\n`);
    await w.close();
    expect(await new Response(p.stdout).text()).toBe("same\n");
    expect((await p.exited).code).toBe(0);
  }, T);

  real("more than 1 MiB is refused without a deadlock", async () => {
    const e = await caught(sbx.exec("vault", ["true"], { secrets: { SMALL: "x".repeat(2 << 20) } }));
    expect(e).toBeInstanceOf(Refused);
    expect(e.message).toContain("bytes of secrets");
    expect(e.message).not.toContain("xxxx");
  }, T);

  real("a context that takes no secrets refuses them unread", async () => {
    const e = await caught(sbx.exec("box", ["true"], { secrets: { SMALL: "v".repeat(512 * 1024) } }));
    expect(e).toBeInstanceOf(Refused);
    expect(e.reason).toBe("refused");
    expect(e.message).toContain("takes no secrets");
  }, T);
});

describe("ending a sandbox", () => {
  real("the policy's timeout ends everything (TimedOut, nothing left)", async () => {
    const m = marker();
    const t0 = Date.now();
    const e = await caught(sbx.exec("short", ["sh", "-c", `sleep ${m} & sleep ${m}`]));
    expect(e).toBeInstanceOf(TimedOut);
    expect([e.code, e.reason]).toEqual([124, "timeout"]);
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(await until(() => pgrep(m).length === 0, 3000)).toBe(true);
  }, T);

  real("abort ends everything (SIGTERM forwarded; Aborted, nothing left)", async () => {
    const m = marker();
    const ac = new AbortController();
    const p = sbx.exec("box", ["sh", "-c", `sleep ${m} & sleep ${m}`], { signal: ac.signal });
    expect(await until(() => sleeps(m).length === 2, 5000)).toBe(true);
    ac.abort();
    const e = await caught(p);
    expect(e).toBeInstanceOf(Aborted);
    expect(e.reason).toBe("aborted");
    expect(e.code).toBe(143);
    expect(await until(() => pgrep(m).length === 0, 3000)).toBe(true);
  }, T);

  real("abort escalates to SIGKILL after the grace period when SIGTERM is ignored", async () => {
    const m = marker();
    const ac = new AbortController();
    const p = sbx.spawn("box", ["sh", "-c", `trap "" TERM; sleep ${m} & sleep ${m}; sleep ${m}`], {
      signal: ac.signal,
      killGraceMs: 500,
    });
    expect(await until(() => sleeps(m).length === 2, 5000)).toBe(true);
    ac.abort();
    const r = await p.exited;
    expect(r.reason).toBe("aborted");
    expect(r.signal).toBe("SIGKILL");
    expect(await until(() => pgrep(m).length === 0, 3000)).toBe(true);
  }, T);

  real("an aborted signal runs nothing", async () => {
    const ac = new AbortController();
    ac.abort();
    expect(await caught(sbx.exec("box", ["true"], { signal: ac.signal }))).toBeInstanceOf(Aborted);
  }, T);
});

describe("every error type from a real call", () => {
  real("Refused (125) carries sbx-exec's message", async () => {
    const e = await caught(sbx.exec("nope", ["true"]));
    expect(e).toBeInstanceOf(Refused);
    expect([e.code, e.reason]).toEqual([125, "refused"]);
    expect(e.message).toContain('unknown context "nope"');
    expect(e.stderr).toContain("unknown context");
    // The status fd's {"exit-code":125,"reason":"refused","message":…}, as the result's message.
    const r = await sbx.exec("nope", ["true"], { throwOnError: false });
    expect([r.code, r.reason, r.pid]).toEqual([125, "refused", undefined]);
    expect(r.message).toStartWith('unknown context "nope"');
    expect(r.message).not.toStartWith("sbx-exec:"); // from the status fd, not stderr
  }, T);
  real("NotExecutable (126)", async () => {
    const e = await caught(sbx.exec("box", ["/etc"]));
    expect(e).toBeInstanceOf(NotExecutable);
    expect(e.code).toBe(126);
  }, T);
  real("NotFound (127)", async () => {
    const e = await caught(sbx.exec("box", ["no-such-command-sbx"]));
    expect(e).toBeInstanceOf(NotFound);
    expect(e.code).toBe(127);
    expect(e.stderr).toContain("no-such-command-sbx");
  }, T);
  real("TimedOut (124)", async () => {
    const e = await caught(sbx.exec("short", ["sleep", "5"]));
    expect(e).toBeInstanceOf(TimedOut);
    expect(e.code).toBe(124);
  }, T);
  real("Signaled (128+N) with the signal's name", async () => {
    const e = await caught(sbx.exec("box", ["sh", "-c", "kill -TERM $$"]));
    expect(e).toBeInstanceOf(Signaled);
    expect([e.code, (e as Signaled).signal, (e as Signaled).signo]).toEqual([143, "SIGTERM", 15]);
    const k = await caught(sbx.exec("box", ["sh", "-c", "kill -KILL $$"]));
    expect([k.code, (k as Signaled).signal]).toEqual([137, "SIGKILL"]);
  }, T);
  real("NonZeroExit for any other status, with stdout and stderr", async () => {
    const e = await caught(sbx.exec("box", ["sh", "-c", "echo o; echo e >&2; exit 3"]));
    expect(e).toBeInstanceOf(NonZeroExit);
    expect([e.code, e.stdout, e.stderr, e.reason]).toEqual([3, "o\n", "e\n", "exited"]);
    const r = await sbx.exec("box", ["sh", "-c", "exit 3"], { throwOnError: false });
    expect(r.code).toBe(3);
  }, T);
});

describe("[flags] env, cwd, timeout (need sbx-exec --env/--cwd/--timeout and env.caller)", () => {
  real("[flags] env: names in env.caller are set", async () => {
    const r = await flags.exec("flags", ["sh", "-c", 'printf "%s|%s" "$NODE_ENV" "$PORT"'], {
      env: { NODE_ENV: "production", PORT: "3000" },
    });
    expect(r.stdout).toBe("production|3000");
  }, T);
  real("[flags] env: other names are refused (125)", async () => {
    const e = await caught(flags.exec("flags", ["true"], { env: { DATABASE_URL: "x" } }));
    expect(e).toBeInstanceOf(Refused);
    notUnsupportedFlag(e);
    expect(e.stderr).toContain("DATABASE_URL");
  }, T);
  real("[flags] cwd: the command runs there", async () => {
    const r = await flags.exec("flags", ["pwd"], { cwd: "/usr/share" });
    expect(r.stdout).toBe("/usr/share\n");
  }, T);
  real("[flags] cwd: a directory the context hides is refused (125)", async () => {
    const d = mkdtempSync(join("/tmp", "sbx-client-cwd-"));
    try {
      const e = await caught(flags.exec("flags", ["pwd"], { cwd: d }));
      expect(e).toBeInstanceOf(Refused);
      notUnsupportedFlag(e);
      expect(e.stderr).toContain(d);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  }, T);
  real("[flags] timeout: ends everything (TimedOut, nothing left)", async () => {
    const m = marker();
    const e = await caught(flags.exec("flags", ["sh", "-c", `sleep ${m} & sleep ${m}`], { timeout: 1 }));
    expect(e).toBeInstanceOf(TimedOut);
    expect(await until(() => pgrep(m).length === 0, 3000)).toBe(true);
  }, T);
  real("[flags] timeout: more than the policy's is refused (125)", async () => {
    const e = await caught(flags.exec("flags", ["true"], { timeout: 31 }));
    expect(e).toBeInstanceOf(Refused);
    notUnsupportedFlag(e);
    expect(e.stderr).toContain("timeout");
  }, T);
});

describe("[workdir] where a command starts (needs sbx-exec --in-workdir and the policy key workdir)", () => {
  real("[workdir] without cwd: the context's workdir, never the caller's directory", async () => {
    const here = process.cwd();
    // The caller's directory is one these contexts share (/var/tmp is not replaced there), so an
    // sbx-exec that took it would start the command in it.
    const shared = mkdtempSync(join("/var/tmp", "sbx-client-here-"));
    // One under /tmp, which they replace with their own tmpfs.
    const hidden = mkdtempSync(join("/tmp", "sbx-client-hidden-"));
    process.chdir(shared);
    try {
      // No `workdir` and no writable area: "/".
      expect((await flags.exec("flags", ["pwd"])).stdout).toBe("/\n");
      // The policy's workdir.
      const wd = createClient({ bin: BIN, policy: WORKDIR_POLICY });
      expect((await wd.exec("wd", ["pwd"])).stdout).toBe("/usr/share\n");
      const p = wd.spawn("wd", ["pwd"]);
      expect(await new Response(p.stdout).text()).toBe("/usr/share\n");
      expect((await p.exited).code).toBe(0);
      // cwd still picks a directory (--cwd, not --in-workdir), the caller's own too.
      expect((await wd.exec("wd", ["pwd"], { cwd: "/usr" })).stdout).toBe("/usr\n");
      expect((await wd.exec("wd", ["pwd"], { cwd: shared })).stdout).toBe(`${shared}\n`);
      // A directory the context does not have is refused, with sbx-exec's message.
      const e = await caught(wd.exec("wd", ["pwd"], { cwd: hidden }));
      expect(e).toBeInstanceOf(Refused);
      expect([e.code, e.reason]).toEqual([125, "refused"]);
      expect(e.message).toContain(hidden);
    } finally {
      process.chdir(here);
      rmSync(shared, { recursive: true, force: true });
      rmSync(hidden, { recursive: true, force: true });
    }
  }, T);
});

describe("probe and persistent contexts", () => {
  real("probe() and hasSecureExecution()", async () => {
    const p = await probe({ bin: BIN, policy: POLICY });
    expect(p.mode).toBe("root");
    expect(Object.keys(p.contexts).sort()).toEqual(["box", "short", "vault"]);
    expect(typeof p.secure).toBe("boolean");
    expect(p.namespaces.pid).toBe(true);
    expect(await hasSecureExecution({ bin: BIN, policy: POLICY })).toBe(p.secure);
    expect(await hasSecureExecution({ bin: BIN, policy: POLICY, ctx: "box" })).toBe(p.contexts.box!.status === "full");
    const e = await caught(probe({ bin: BIN, policy: join(HERE, "no-such-policy.toml") }));
    expect(e).toBeInstanceOf(Refused);
  }, T);

  // A persistent context of its own (on the host's /run/sbx; one name, so one lock file), stopped at the end.
  const name = "sbx-client-test";
  const pdir = mkdtempSync(join(tmpdir(), "sbx-client-persist-"));
  const ppolicy = join(pdir, "policy.toml");
  writeFileSync(
    ppolicy,
    `version = 1\n[context.${name}]\nnamespaces = ["pid", "mount", "ipc", "uts"]\npersist = true\n` +
      `env.allow = ["PATH"]\nfs.hide = ["/run/sbx"]\nsecurity.seccomp = "default"\n`,
  );
  const admin = createClient({ bin: BIN, policy: ppolicy });
  afterAll(async () => {
    if (!why) await admin.contexts.stop(name, { timeout: 1 }).catch(() => {});
    rmSync(pdir, { recursive: true, force: true });
  });

  real("contexts.list() and contexts.stop() on a persistent context", async () => {
    const m = marker();
    await admin.exec(name, ["sh", "-c", `sleep ${m} >/dev/null 2>&1 &`]);
    // A later call sees what the first started.
    expect((await admin.exec(name, ["pgrep", "-f", `sleep ${m}`])).stdout.trim()).not.toBe("");
    const mine = (await admin.contexts.list()).find((c) => c.name === name);
    expect(mine).toMatchObject({ name, running: true });
    expect(mine!.processes).toBeGreaterThanOrEqual(1);
    expect(mine!.keeper_pid).toBeGreaterThan(1);
    expect(typeof mine!.age_secs).toBe("number");

    expect(await admin.contexts.stop(name, { timeout: 2 })).toBe(true);
    expect((await admin.contexts.list()).some((c) => c.name === name && c.running)).toBe(false);
    expect(pgrep(m)).toEqual([]);
    expect(await admin.contexts.stop(name)).toBe(false); // not running: exit 1
  }, T);

  real("exec returns although a background process keeps stdout open", async () => {
    const m = marker();
    const t0 = Date.now();
    const r = await admin.exec(name, ["sh", "-c", `echo started; sleep ${m} &`], { stdioGraceMs: 300 });
    expect(r.stdout).toBe("started\n");
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(pgrep(m).length).toBeGreaterThanOrEqual(1); // still running in the context (and the keeper, started by this call, shows its command line)
    expect(await admin.contexts.stop(name, { timeout: 1 })).toBe(true);
    expect(await until(() => pgrep(m).length === 0, 3000)).toBe(true);
  }, T);

  real("output written after sbx-exec exits, within stdioGraceMs, is kept", async () => {
    const m = marker();
    const r = await admin.exec(name, ["sh", "-c", `echo a; (sleep 0.3; echo b; exec sleep ${m}) &`], {
      stdioGraceMs: 1000,
    });
    expect(r.stdout).toBe("a\nb\n");
    expect(await admin.contexts.stop(name, { timeout: 1 })).toBe(true);
    expect(await until(() => pgrep(m).length === 0, 3000)).toBe(true);
  }, T);

  real("a script whose background process holds stdout exits once stdioGraceMs has passed", async () => {
    const m = marker();
    const dir = mkdtempSync(join(tmpdir(), "sbx-client-exit-"));
    try {
      const script = join(dir, "run.mjs");
      writeFileSync(
        script,
        `import { exec } from ${JSON.stringify(join(HERE, "../src/index.ts"))};
const r = await exec(${JSON.stringify(name)}, ["sh", "-c", "echo started; sleep ${m} &"],
  { bin: ${JSON.stringify(BIN)}, policy: ${JSON.stringify(ppolicy)}, stdioGraceMs: 500 });
process.stdout.write(JSON.stringify({ out: r.stdout, done: Date.now() }) + "\\n");
`,
      );
      const t0 = Date.now();
      const proc = Bun.spawn([process.execPath, script], { stdout: "pipe", stderr: "pipe" });
      const [text, err, code] = await Promise.all([
        new Response(proc.stdout).text(),
        new Response(proc.stderr).text(),
        proc.exited,
      ]);
      const gone = Date.now();
      expect([err, code]).toEqual(["", 0]);
      const { out, done } = JSON.parse(text);
      expect(out).toBe("started\n");
      expect(done - t0).toBeGreaterThanOrEqual(500); // it waited out the grace period...
      expect(gone - done).toBeLessThan(1000); // ...and then exited
      expect(pgrep(`^sleep ${m}$`).length).toBe(1); // while the background process still runs
    } finally {
      await admin.contexts.stop(name, { timeout: 1 }).catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    }
  }, T);

  real("a bad context name for stop is Refused", async () => {
    expect(await caught(contexts.stop("Bad Name!", { bin: BIN }))).toBeInstanceOf(Refused);
  }, T);
});

describe("Node", () => {
  const node = Bun.which("node");
  if (!node && CI) test("node is installed (CI=true)", () => { throw new Error("node is not on PATH"); });
  if (!node && !CI) console.warn("skipping the Node tests: node is not on PATH");
  const t = node && !why ? test : test.skip;
  t("the committed dist/index.js runs under Node: exec with a secret, spawn streaming, Refused", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sbx-client-node-"));
    try {
      writeFileSync(
        join(dir, "run.mjs"),
        `import { createClient, Refused } from ${JSON.stringify(DIST)};
const c = createClient({ bin: ${JSON.stringify(BIN)}, policy: ${JSON.stringify(POLICY)} });
const a = await c.exec("vault", ["sh", "-c", 'printf %s "$SMALL"'], { secrets: { SMALL: "node-secret" } });
const p = c.spawn("box", ["sh", "-c", "read x; echo got:$x"]);
const w = p.stdin.getWriter(); await w.write("hi\\n"); await w.close();
const out = await new Response(p.stdout).text();
let refused = false;
try { await c.exec("nope", ["true"]); } catch (e) { refused = e instanceof Refused; }
console.log(JSON.stringify({ a: a.stdout, out, code: (await p.exited).code, refused, typeofVersion: typeof process.versions.node }));
`,
      );
      const r = Bun.spawnSync([node!, join(dir, "run.mjs")], { env: { PATH: process.env.PATH ?? "" } });
      expect(r.stderr.toString()).toBe("");
      expect(JSON.parse(r.stdout.toString())).toEqual({ a: "node-secret", out: "got:hi\n", code: 0, refused: true, typeofVersion: "string" });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, T);
});

// ------------------------------------------------------- a script exits as soon as its call is done

describe("exit timing", () => {
  // A script does one call, prints when it was done (ms since the epoch) and ends; the process
  // must be gone well within a second of that (it lingered ~2 s on grace timers before).
  const node = Bun.which("node");
  const runtimes: [string, string | null, string][] = [
    ["bun", process.execPath, join(HERE, "../src/index.ts")],
    ["node", node, DIST],
  ];
  for (const [name, runtime, entry] of runtimes) {
    for (const call of ["exec", "spawn"]) {
      const t = runtime && !why ? test : test.skip;
      t(`${name}: a script using ${call}() exits within 1 s of the call's end`, async () => {
        const dir = mkdtempSync(join(tmpdir(), "sbx-client-exit-"));
        try {
          const script = join(dir, "run.mjs");
          const body =
            call === "exec"
              ? `const r = await exec("box", ["sh", "-c", "echo hi"], opts);
const out = r.stdout;`
              : `const p = spawn("box", ["sh", "-c", "echo hi"], opts);
const out = await new Response(p.stdout).text();
if ((await p.exited).code !== 0) throw new Error("exit status");`;
          writeFileSync(
            script,
            `import { exec, spawn } from ${JSON.stringify(entry)};
const opts = { bin: ${JSON.stringify(BIN)}, policy: ${JSON.stringify(POLICY)} };
${body}
process.stdout.write(JSON.stringify({ out, done: Date.now() }) + "\\n");
`,
          );
          const proc = Bun.spawn([runtime!, script], { stdout: "pipe", stderr: "pipe", env: { PATH: process.env.PATH ?? "" } });
          const [text, err, code] = await Promise.all([
            new Response(proc.stdout).text(),
            new Response(proc.stderr).text(),
            proc.exited,
          ]);
          const gone = Date.now();
          expect(err).toBe("");
          expect(code).toBe(0);
          const { out, done } = JSON.parse(text);
          expect(out).toBe("hi\n");
          expect(gone - done).toBeLessThan(1000);
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      }, T);
    }
  }
});
