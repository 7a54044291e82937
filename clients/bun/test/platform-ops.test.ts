// Platform operations from the sandbox object and from user code, and listProcesses.
//
// Without root or sbx-exec: `callPlatformOperation` against a stand-in proxy (the request it
// sends, each typed error), `registerPlatformOperation` on a socket in a temporary directory (the
// protocol, names, close), and the parsing of `listProcesses`' output.
// As root, against the real sbx-exec (test/policy-ops.toml): a control plane
// (fixtures/ops-control-plane.ts) in a mount namespace of its own with a private /run/sbx (never
// the machine's /run/sbx/ops.sock) registers `deploy` and runs user code (fixtures/ops-call.mjs,
// under node and under bun, importing the committed dist staged in the work area) in a `user`
// whose policy lists ops = ["deploy"]: deploy runs the handler, migrate is OperationRefused (403),
// a handler's throw is OperationFailed; and a persistent context's listProcesses shows what
// earlier calls left running, without the listing itself or the keeper.
// Those are skipped locally without the binary, root or unshare(1), and FAIL under CI=true.
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, chownSync, copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createConnection, createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  callPlatformOperation,
  contexts,
  createSandbox,
  OperationError,
  OperationFailed,
  OperationRefused,
  parseProcessList,
} from "../src/index.ts";
import { BIN, CI, HERE, why as whyBin } from "./env.ts";

const UNSHARE = ["/usr/bin/unshare", "/bin/unshare"].find(existsSync);
const NODE = ["/usr/bin/node", "/usr/local/bin/node"].find(existsSync);
const BUN = ["/usr/bin/bun", "/usr/local/bin/bun"].find(existsSync);
const why =
  whyBin ??
  (UNSHARE ? undefined : "unshare(1) not found (the control plane gets a private /run/sbx)") ??
  (NODE && BUN ? undefined : "node and bun under /usr/bin or /usr/local/bin (user code runs both inside the sandbox)");
if (why && CI) {
  test("the real sbx-exec, root, unshare, node and bun are available (CI=true)", () => {
    throw new Error(why);
  });
}
if (why && !CI) console.warn(`skipping the platform operation and listProcesses tests that need sbx-exec: ${why}`);
const real = why ? test.skip : test;
const T = 120_000;

const dir = mkdtempSync(join(tmpdir(), "sbx-platform-ops-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A stand-in egress proxy: records each request, answers with `reply(request)`. */
async function standInProxy(reply: (req: string) => string): Promise<{ url: string; seen: string[]; server: Server }> {
  const seen: string[] = [];
  const server = createServer((c) => {
    let got = "";
    c.on("data", (d) => {
      got += d.toString("latin1");
      const end = got.indexOf("\r\n\r\n");
      if (end < 0) return;
      const len = Number(/\r\ncontent-length: *(\d+)/i.exec(got)?.[1] ?? 0);
      if (got.length < end + 4 + len) return;
      seen.push(got);
      c.end(reply(got));
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, seen, server };
}

const http = (status: string, body: string, type = "application/json") =>
  `HTTP/1.1 ${status}\r\nContent-Type: ${type}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;

describe("callPlatformOperation (a stand-in proxy)", () => {
  test("one absolute-form POST with a JSON body; the result, or the typed error", async () => {
    const { url, seen, server } = await standInProxy((req) => {
      const path = req.slice(0, req.indexOf(" HTTP/1.1"));
      if (path === "POST http://sbx-ops/deploy") return http("200 OK", '{"ok":true,"result":{"deployed":"main"}}\n');
      if (path === "POST http://sbx-ops/broken") return http("200 OK", '{"ok":false,"error":"target down"}\n');
      if (path === "POST http://sbx-ops/plain") return http("200 OK", '{"answer":42}\n');
      return http("403 Forbidden", "sbx-exec egress proxy: operation migrate is not in this context's ops\n", "text/plain");
    });
    try {
      expect(await callPlatformOperation("deploy", { ref: "main" }, { proxy: url })).toEqual({ deployed: "main" });
      const [head, body] = seen[0]!.split("\r\n\r\n") as [string, string];
      expect(head.split("\r\n")).toEqual([
        "POST http://sbx-ops/deploy HTTP/1.1",
        "Host: sbx-ops",
        "Content-Type: application/json",
        `Content-Length: ${body.length}`,
        "Connection: close",
      ]);
      expect(JSON.parse(body)).toEqual({ ref: "main" });
      // No params: {}. An answer that says nothing of ok: the answer itself.
      expect(await callPlatformOperation("plain", undefined, { proxy: url })).toEqual({ answer: 42 });
      expect(seen[1]!.endsWith("\r\n\r\n{}")).toBe(true);

      const refused = await callPlatformOperation("migrate", {}, { proxy: url }).catch((e) => e);
      expect(refused).toBeInstanceOf(OperationRefused);
      expect(refused).toBeInstanceOf(OperationError);
      expect([refused.op, refused.status, refused.reason]).toEqual(["migrate", 403, "operation migrate is not in this context's ops"]);
      const failed = await callPlatformOperation("broken", {}, { proxy: url }).catch((e) => e);
      expect(failed).toBeInstanceOf(OperationFailed);
      expect([failed.error, failed.answer]).toEqual(["target down", { ok: false, error: "target down" }]);
    } finally {
      server.close();
    }
  });

  test("no proxy, nothing listening, a bad name or params: refused before or without an answer", async () => {
    const saved = [process.env["HTTP_PROXY"], process.env["http_proxy"]];
    delete process.env["HTTP_PROXY"];
    delete process.env["http_proxy"];
    try {
      const e = await callPlatformOperation("deploy").catch((x) => x);
      expect(e.constructor).toBe(OperationError);
      expect(e.message).toContain("HTTP_PROXY is not set");
    } finally {
      if (saved[0] !== undefined) process.env["HTTP_PROXY"] = saved[0];
      if (saved[1] !== undefined) process.env["http_proxy"] = saved[1];
    }
    const free = createServer();
    await new Promise<void>((r) => free.listen(0, "127.0.0.1", r));
    const port = (free.address() as { port: number }).port;
    await new Promise<void>((r) => free.close(() => r()));
    const down = await callPlatformOperation("deploy", {}, { proxy: `http://127.0.0.1:${port}` }).catch((x) => x);
    expect(down.constructor).toBe(OperationError);
    expect(down.message).toContain("cannot reach the egress proxy");
    await expect(callPlatformOperation("Deploy", {}, { proxy: "http://127.0.0.1:1" })).rejects.toThrow(TypeError);
    await expect(callPlatformOperation("deploy", () => 1, { proxy: "http://127.0.0.1:1" })).rejects.toThrow(TypeError);
    await expect(callPlatformOperation("deploy", {}, { proxy: "https://127.0.0.1:1" })).rejects.toThrow("is not http://HOST:PORT");
  });
});

/** One call to an ops socket as sbx-exec makes it: header and request lines; the answer. */
function opsCall(socket: string, ops: string[], op: string, params: unknown): Promise<any> {
  return new Promise((resolve, reject) => {
    const header = JSON.stringify({ sbx_ops: 1, context: "user", call: "00c0ffee00c0ffee", ops });
    const c = createConnection(socket, () => c.write(`${header}\n${JSON.stringify({ op, params })}\n`));
    let got = "";
    c.on("data", (d) => (got += d.toString()));
    c.on("error", reject);
    c.on("end", () => resolve(JSON.parse(got)));
  });
}

describe("registerPlatformOperation (a socket in a temporary directory)", () => {
  test("starts the control plane on the first registration, adds later ones, stops with close()", async () => {
    const socket = join(dir, "run-sbx", "ops.sock");
    const sandbox = createSandbox({ opsSocket: socket });
    expect(existsSync(socket)).toBe(false);
    await sandbox.registerPlatformOperation("deploy", (p) => ({ deployed: (p as { ref: string }).ref }));
    expect(existsSync(socket)).toBe(true);
    expect(await opsCall(socket, ["deploy"], "deploy", { ref: "main" })).toEqual({ ok: true, result: { deployed: "main" } });
    // Registered after it listens: served by the same control plane.
    expect((await opsCall(socket, ["migrate"], "migrate", {})).error).toContain("no handler for operation migrate");
    await sandbox.registerPlatformOperation("migrate", () => "migrated");
    expect(await opsCall(socket, ["migrate"], "migrate", {})).toEqual({ ok: true, result: "migrated" });
    await expect(sandbox.registerPlatformOperation("deploy", () => 1)).rejects.toThrow("already registered");
    for (const bad of ["", "Deploy", "1deploy", "de ploy", "a".repeat(64)])
      await expect(sandbox.registerPlatformOperation(bad, () => 1)).rejects.toThrow(TypeError);
    await expect(sandbox.registerPlatformOperation("x", "no" as never)).rejects.toThrow(TypeError);
    await sandbox.close();
    expect(existsSync(socket)).toBe(false);
    await sandbox.close();
    await expect(sandbox.registerPlatformOperation("later", () => 1)).rejects.toThrow("closed");
    // A sandbox that never registered closes without having listened.
    await createSandbox({ opsSocket: join(dir, "never.sock") }).close();
    expect(existsSync(join(dir, "never.sock"))).toBe(false);
  });
});

describe("parseProcessList", () => {
  test("pid, ppid and the argv; a comm with parentheses; a zombie; pid 1 and noise left out", () => {
    const out = [
      "sbx-keeper\t1 (sbx-keeper) S 0 1 1 0 -1",
      "sleep 300 \t7 (sleep) S 1 2 2 0 -1",
      "python3 app.py --name (x) \t12 (my) (odd) name) S 7 2 2 0",
      "\t9 (defunct) Z 7 2 2",
      "not a record",
      "",
    ].join("\n");
    expect(parseProcessList(out)).toEqual([
      { pid: 7, ppid: 1, command: "sleep 300" },
      { pid: 9, ppid: 7, command: "[defunct]" },
      { pid: 12, ppid: 7, command: "python3 app.py --name (x)" },
    ]);
  });
});

describe("the real sbx-exec", () => {
  real(
    "user code calls a registered operation through the gate; one not listed is refused",
    async () => {
      // The work area: owned by user code's host uid, holding the client's dist and the script.
      const work = mkdtempSync("/var/lib/sbx-client-ops-");
      try {
        chownSync(work, 100000, 100000);
        chmodSync(work, 0o755);
        copyFileSync(join(HERE, "../dist/index.js"), join(work, "sbx-client.mjs"));
        copyFileSync(join(HERE, "fixtures/ops-call.mjs"), join(work, "call.mjs"));
        const policy = join(dir, "policy-ops.toml");
        writeFileSync(policy, readFileSync(join(HERE, "policy-ops.toml"), "utf8").replaceAll("@WORK@", work));
        const script =
          'mkdir -p -m 0700 /run/sbx && mount -t tmpfs -o mode=0700 sbx-client-ops-test /run/sbx && exec "$0" run "$@"';
        const cp = Bun.spawn(
          [UNSHARE!, "-m", "--propagation", "private", "sh", "-c", script, process.execPath, join(HERE, "fixtures/ops-control-plane.ts"), policy, BIN, work],
          { cwd: "/", env: { PATH: process.env.PATH ?? "/usr/bin:/bin" }, stdout: "pipe", stderr: "pipe" },
        );
        const [stdout, stderr, code] = await Promise.all([new Response(cp.stdout).text(), new Response(cp.stderr).text(), cp.exited]);
        if (code !== 0) throw new Error(`the control plane exited ${code}: ${stderr}`);
        const r = JSON.parse(stdout);
        expect([r.socketBefore, r.socketAfter, r.socketClosed]).toEqual([false, true, false]);
        expect(r.again).toContain("TypeError");
        expect(r.badName).toContain("TypeError");
        expect(r.afterClose).toContain("closed");
        for (const runtime of ["/usr/bin/node", "/usr/bin/bun"]) {
          const u = r[runtime];
          if (u.code !== 0) throw new Error(`user code under ${runtime} exited ${u.code}: ${u.stderr}`);
          const got = JSON.parse(u.stdout);
          expect(got.deploy).toEqual({ deployed: "main", by: "user", keyLength: expect.any(Number) });
          expect(got.migrate).toMatchObject({ class: "OperationRefused", refused: true, base: true, status: 403 });
          expect(got.migrate.reason).toBe("operation migrate is not in this context's ops");
          expect(got.broken).toMatchObject({ class: "OperationFailed", failed: true, error: "the deploy target is down" });
        }
        // The handler ran for deploy only (twice per runtime), told the calling context.
        expect(r.calls.map((c: any) => [c.params.ref, c.call.op, c.call.context])).toEqual([
          ["main", "deploy", "user"],
          ["broken", "deploy", "user"],
          ["main", "deploy", "user"],
          ["broken", "deploy", "user"],
        ]);
        expect(r.secretSeen).toBe(false);
      } finally {
        rmSync(work, { recursive: true, force: true });
      }
    },
    T,
  );

  real(
    "listProcesses: what earlier calls of a persistent context left running, not the listing or the keeper",
    async () => {
      const policy = join(dir, "policy-procs.toml");
      writeFileSync(policy, readFileSync(join(HERE, "policy-ops.toml"), "utf8").replaceAll("@WORK@", dir));
      const sandbox = createSandbox({ policy, sbxExec: BIN });
      const ctx = sandbox.context("sbx-client-procs");
      try {
        // A background process started by a call that then ended: reparented to the keeper.
        await ctx.exec("sleep 3017 >/dev/null 2>&1 &");
        // One the sandbox object holds: its parent is its call's sbx-exec, outside the context.
        const held = await ctx.startProcess(["/bin/sleep", "3018"]);
        const list = await ctx.listProcesses();
        const bg = list.find((p) => p.command === "sleep 3017");
        expect(bg).toMatchObject({ ppid: 1 });
        expect(list.find((p) => p.command === "/bin/sleep 3018")).toMatchObject({ ppid: 0 });
        expect(list.some((p) => p.pid === 1)).toBe(false);
        // Not the listing: neither its shell nor what it ran.
        expect(list.some((p) => p.command.includes("/proc/[0-9]*") || p.command.startsWith("tr "))).toBe(false);
        expect(list.length).toBe(2);
        // Pids as the context sees them: the same as its own /proc says.
        const seen = await ctx.exec(["/bin/sh", "-c", `cat /proc/${bg!.pid}/cmdline | tr '\\000' ' '`]);
        expect(seen.stdout.trim()).toBe("sleep 3017");
        held.kill("SIGTERM");
        await held.wait();
        expect((await ctx.listProcesses()).map((p) => p.command)).toEqual(["sleep 3017"]);
      } finally {
        await contexts.stop("sbx-client-procs", { bin: BIN, policy, timeout: 10 }).catch(() => {});
        await sandbox.close();
      }
    },
    T,
  );
});
