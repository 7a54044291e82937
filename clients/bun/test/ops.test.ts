// serveOps, the control plane's side of platform operations (sbx-exec's docs/ops.md), spoken to
// as sbx-exec does: one connection per call, a header line and a request line, one answer line.
// Needs no sbx-exec and no root (the socket is in a temporary directory); the end-to-end path
// through sbx-exec's gate is tested by sbx-exec's tests/suite/g9_ops.rs with a stand-in.
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type OpCall, serveOps } from "../src/index.ts";

const dir = mkdtempSync(join(tmpdir(), "sbx-ops-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Send `lines` (each newline-terminated) on one connection; the answer, parsed. */
function call(socket: string, lines: string[]): Promise<any> {
  return new Promise((resolve, reject) => {
    const c = createConnection(socket, () => c.write(lines.map((l) => `${l}\n`).join("")));
    let got = "";
    c.on("data", (d) => (got += d.toString()));
    c.on("error", reject);
    c.on("end", () => {
      expect(got.endsWith("\n") && got.indexOf("\n") === got.length - 1).toBe(true);
      resolve(JSON.parse(got));
    });
  });
}

const header = (ops: string[], context = "user") => JSON.stringify({ sbx_ops: 1, context, call: "00c0ffee00c0ffee", ops });

describe("serveOps", () => {
  test("a listed operation runs its handler with the params and the call; refusals never do", async () => {
    const seen: [unknown, OpCall][] = [];
    const secret = `handler-secret-${Math.random()}`;
    const socket = join(dir, "ops.sock");
    const server = await serveOps({
      socket,
      handlers: {
        deploy: (params, c) => {
          seen.push([params, c]);
          return { deployed: (params as { ref: string }).ref, keyLength: secret.length };
        },
        fail: () => {
          throw new Error("the deploy target is down");
        },
        migrate: () => "never",
      },
    });
    try {
      expect(statSync(socket).mode & 0o777).toBe(0o600);
      const ok = await call(socket, [header(["deploy", "fail"]), JSON.stringify({ op: "deploy", params: { ref: "main" } })]);
      expect(ok).toEqual({ ok: true, result: { deployed: "main", keyLength: secret.length } });
      expect(seen).toEqual([[{ ref: "main" }, { op: "deploy", context: "user", call: "00c0ffee00c0ffee" }]]);
      // The header's ops are checked here too: a handler exists, but the context does not list it.
      const notListed = await call(socket, [header(["deploy"]), JSON.stringify({ op: "migrate", params: {} })]);
      expect(notListed).toEqual({ ok: false, error: "operation migrate is not in context user's ops" });
      const noHandler = await call(socket, [header(["other"]), JSON.stringify({ op: "other", params: {} })]);
      expect(noHandler.ok).toBe(false);
      expect(noHandler.error).toContain("no handler for operation other");
      const thrown = await call(socket, [header(["fail"]), JSON.stringify({ op: "fail", params: null })]);
      expect(thrown).toEqual({ ok: false, error: "the deploy target is down" });
      const bad = await call(socket, [header(["deploy"]), "not json"]);
      expect(bad).toEqual({ ok: false, error: "the header or the request is not JSON" });
      const noHeader = await call(socket, [JSON.stringify({ op: "deploy" }), JSON.stringify({ op: "deploy", params: {} })]);
      expect(noHeader).toEqual({ ok: false, error: "not an sbx-exec platform operation header" });
      expect(seen.length).toBe(1);
    } finally {
      await server.close();
    }
    expect(existsSync(socket)).toBe(false);
  });

  test("a stale socket is replaced; an answer too large is refused", async () => {
    const socket = join(dir, "stale.sock");
    const first = await serveOps({ socket, handlers: {} });
    // Not closed: its socket file stays, as after a crash; the next server takes the path over.
    const second = await serveOps({ socket, handlers: { big: () => "x".repeat(2 << 20) } });
    try {
      const r = await call(socket, [header(["big"]), JSON.stringify({ op: "big", params: {} })]);
      expect(r.ok).toBe(false);
      expect(r.error).toContain("larger than");
    } finally {
      await second.close();
      await first.close();
    }
  });
});
