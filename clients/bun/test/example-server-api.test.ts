// The example control plane's routes beyond /exec (examples/bun-server: processes.ts, files.ts,
// deploy.ts), over HTTP against the real sbx-exec, as root, with the demo policy
// (examples/bun-server/policy.toml: `user` lists ops = ["deploy"]) and the stand-in deploy service
// (deploy-service.ts). The server runs outside control mode (it binds PORT itself) in a mount
// namespace of its own with a private /run/sbx, so its /run/sbx/ops.sock is no one else's.
//
// Checked: each route without the token is 401 and does nothing, and works with it; processes
// started, listed, killed, waited for; files streamed both ways, belonging to user code's
// identity, typed errors as HTTP statuses; a link planted by user code is not followed by a write
// of the API; `deploy` called from user code runs its handler with the credential (the deploy
// service accepted it), which user code finds nowhere, while an operation not listed is refused.
// Skipped locally without the binary, root or unshare(1); FAILS under CI=true.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BIN, CI, freePort, HERE, why as whyBin } from "./env.ts";

const EXAMPLE = join(HERE, "../../../examples/bun-server");
const UNSHARE = ["/usr/bin/unshare", "/bin/unshare"].find(existsSync);
const why = whyBin ?? (UNSHARE ? undefined : "unshare(1) not found (the server gets a private /run/sbx)");
if (why && CI) {
  test("the real sbx-exec, root and unshare are available (CI=true)", () => {
    throw new Error(why);
  });
}
if (why && !CI) console.warn(`skipping the example server API tests: ${why}`);
const real = why ? test.skip : test;
const T = 60_000;
const USER_UID = 100000;

/** Read `stream` until it contains `want`, then go on reading it in the background (so that the
 * process never blocks on a full pipe); the text seen. */
async function waitFor(stream: ReadableStream<Uint8Array>, want: string): Promise<string> {
  const reader = stream.getReader();
  const dec = new TextDecoder();
  let seen = "";
  const end = Date.now() + 15_000;
  while (!seen.includes(want) && Date.now() < end) {
    const { value, done } = await reader.read();
    if (done) break;
    seen += dec.decode(value);
  }
  if (!seen.includes(want)) throw new Error(`did not start (waiting for ${JSON.stringify(want)}): ${seen}`);
  void (async () => {
    while (!(await reader.read()).done);
  })().catch(() => {});
  return seen;
}

const sha256 = (b: Uint8Array | string) => createHash("sha256").update(b).digest("hex");

describe("examples/bun-server: processes, files, deploy", () => {
  const token = randomBytes(24).toString("hex");
  // The deploy credential: in the server's environment (DEPLOY_TOKEN) and the service's file.
  const credential = `deploycred-${randomBytes(16).toString("hex")}`;
  let dir = "";
  let work = "";
  let rootOnly = "";
  // A root-owned copy of the binary where user code sees it (`sbx-exec op` inside): the one under
  // test may be in a clone under /tmp or /root, which user's private tmpfs mounts cover.
  let binDir = "";
  let port = 0;
  let servicePort = 0;
  let server: ReturnType<typeof Bun.spawn> | undefined;
  let service: ReturnType<typeof Bun.spawn> | undefined;

  beforeAll(async () => {
    if (why) return;
    dir = mkdtempSync(join(tmpdir(), "sbx-example-api-"));
    // The work area (in place of /workspace): owned by user code's host uid, as the image has it.
    work = mkdtempSync("/var/lib/sbx-example-api-work-");
    chownSync(work, USER_UID, USER_UID);
    chmodSync(work, 0o755);
    // Root's files outside it: a sentinel user code may read, and a secret it may not.
    rootOnly = mkdtempSync("/var/lib/sbx-example-api-root-");
    chmodSync(rootOnly, 0o755);
    writeFileSync(join(rootOnly, "sentinel"), "root's sentinel\n", { mode: 0o644 });
    writeFileSync(join(rootOnly, "secret"), "root only\n", { mode: 0o600 });
    binDir = mkdtempSync("/var/lib/sbx-example-api-bin-");
    chmodSync(binDir, 0o755);
    copyFileSync(BIN, join(binDir, "sbx-exec"));
    chmodSync(join(binDir, "sbx-exec"), 0o755);
    // The demo policy, its work area moved to `work`, with an audit log.
    const demo = readFileSync(join(EXAMPLE, "policy.toml"), "utf8");
    const policy = join(dir, "policy.toml");
    writeFileSync(
      policy,
      demo.replace(/^version = 1$/m, `version = 1\naudit = "${dir}/audit.jsonl"`) +
        `\n[context.user.fs]\nwritable = ["${work}"]\n` +
        `[context.platform.fs]\nwritable = ["${work}"]\nnosymfollow = ["${work}"]\n`,
    );
    const tokenFile = join(dir, "api-token");
    writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
    const credFile = join(dir, "deploy-credential");
    writeFileSync(credFile, `${credential}\n`, { mode: 0o600 });
    const PATH = process.env.PATH ?? "/usr/bin:/bin";

    servicePort = await freePort();
    service = Bun.spawn([process.execPath, "run", join(EXAMPLE, "deploy-service.ts")], {
      env: { PATH, PORT: String(servicePort), DEPLOY_TOKEN_FILE: credFile },
      stdout: "pipe",
      stderr: "inherit",
    });
    await waitFor(service.stdout as ReadableStream<Uint8Array>, "listening on");

    port = await freePort();
    const script = 'mkdir -p -m 0700 /run/sbx && mount -t tmpfs -o mode=0700 sbx-example-test /run/sbx && exec "$0" run "$1"';
    server = Bun.spawn([UNSHARE!, "-m", "--propagation", "private", "sh", "-c", script, process.execPath, join(EXAMPLE, "server.ts")], {
      cwd: "/",
      env: {
        PATH,
        PORT: String(port),
        SBX_EXEC: BIN,
        SBX_POLICY: policy,
        SBX_API_TOKEN_FILE: tokenFile,
        SBX_ALLOWED_CONTEXTS: "user,platform",
        SBX_SHARED_ROOT: work,
        DEPLOY_URL: `http://127.0.0.1:${servicePort}`,
        DEPLOY_TOKEN: credential,
      },
      stdout: "pipe",
      stderr: "pipe",
    });
    await waitFor(server.stdout as ReadableStream<Uint8Array>, `bound :${port}`);
    // Until the ops socket listens.
    await waitFor(server.stderr as ReadableStream<Uint8Array>, "platform operations on /run/sbx/ops.sock");
  }, T);

  afterAll(() => {
    server?.kill("SIGKILL");
    service?.kill("SIGKILL");
    for (const d of [dir, work, rootOnly, binDir]) if (d) rmSync(d, { recursive: true, force: true });
  });

  type Init = { body?: BodyInit | object; auth?: string | null };
  function call(method: string, path: string, init: Init = {}): Promise<Response> {
    const headers: Record<string, string> = {};
    if (init.auth !== null) headers.authorization = `Bearer ${init.auth ?? token}`;
    let body = init.body as BodyInit | undefined;
    if (body !== undefined && typeof body === "object" && !(body instanceof ReadableStream) && !(body instanceof Uint8Array)) {
      body = JSON.stringify(body);
      headers["content-type"] = "application/json";
    }
    return fetch(`http://127.0.0.1:${port}${path}`, { method, headers, body });
  }
  async function json(method: string, path: string, init: Init = {}): Promise<{ status: number; json: any }> {
    const r = await call(method, path, init);
    return { status: r.status, json: await r.json() };
  }
  /** Run `sh -c script` as user code (POST /exec); its result. */
  async function userCode(script: string): Promise<{ exitCode: number; stdout: string; stderr: string }> {
    const r = await json("POST", "/exec", { body: { ctx: "user", cmd: ["sh", "-c", script] } });
    expect(r.status).toBe(200);
    return r.json;
  }
  const q = (p: string) => encodeURIComponent(p);

  real("without the token every new route is 401 and does nothing; with it, it works", async () => {
    const victim = join(work, "victim");
    writeFileSync(victim, "keep\n");
    chownSync(victim, USER_UID, USER_UID);
    // A process to kill and wait for, started with the token.
    const started = await json("POST", "/processes", { body: { ctx: "user", cmd: ["sleep", "30"] } });
    expect(started.status).toBe(201);
    const id = started.json.id;
    const touched = join(work, "touched-without-token");
    const routes: [string, string, Init["body"]?][] = [
      ["POST", "/processes", { ctx: "user", cmd: ["touch", touched] }],
      ["GET", "/processes?ctx=user"],
      ["POST", `/processes/${id}/kill`, { signal: "SIGKILL" }],
      ["GET", `/processes/${id}/wait`],
      ["PUT", `/files/user?path=${q(join(work, "put-without-token"))}`, "data"],
      ["GET", `/files/user?path=${q(victim)}`],
      ["GET", `/files/user/stat?path=${q(victim)}`],
      ["GET", `/files/user/exists?path=${q(victim)}`],
      ["GET", `/files/user/ls?path=${q(work)}`],
      ["POST", `/files/user/mkdir?path=${q(join(work, "mkdir-without-token"))}`],
      ["DELETE", `/files/user?path=${q(victim)}`],
      ["PUT", `/files/shared?path=put-without-token`, "data"],
    ];
    for (const auth of [null, `${token}x`]) {
      for (const [method, path, body] of routes) {
        const r = await call(method, path, { body, auth });
        expect([method, path, r.status]).toEqual([method, path, 401]);
        expect(((await r.json()) as { error: string }).error).toContain("unauthorized");
      }
    }
    await Bun.sleep(300);
    expect(existsSync(touched)).toBe(false);
    expect(existsSync(join(work, "put-without-token"))).toBe(false);
    expect(existsSync(join(work, "mkdir-without-token"))).toBe(false);
    expect(readFileSync(victim, "utf8")).toBe("keep\n");
    // The process was neither killed nor waited for: it is still listed, running.
    const list = await json("GET", "/processes?ctx=user");
    expect(list.json.processes.find((p: { id: string }) => p.id === id)).toMatchObject({ running: true });
    // The controls, with the token.
    expect((await json("POST", `/processes/${id}/kill`, { body: { signal: "SIGKILL" } })).status).toBe(200);
    expect((await json("GET", `/processes/${id}/wait`)).json).toMatchObject({ reason: "signaled", signal: "SIGKILL" });
    expect((await call("GET", `/files/user?path=${q(victim)}`)).status).toBe(200);
    expect((await call("DELETE", `/files/user?path=${q(victim)}`)).status).toBe(204);
    expect(existsSync(victim)).toBe(false);
  }, T);

  real("processes: start, list per context, kill, wait; refusals", async () => {
    const a = await json("POST", "/processes", { body: { ctx: "user", cmd: ["sleep", "30"] } });
    expect(a.status).toBe(201);
    expect(a.json).toMatchObject({ ctx: "user", cmd: ["sleep", "30"], running: true });
    expect(a.json.pid).toBeGreaterThan(0);
    const b = await json("POST", "/processes", {
      body: { ctx: "user", cmd: ["sh", "-c", "echo out; echo err >&2; exit 3"] },
    });
    expect(b.status).toBe(201);
    expect((await json("GET", `/processes/${b.json.id}/wait`)).json).toMatchObject({
      exitCode: 3,
      reason: "exited",
      stdout: "out\n",
      stderr: "err\n",
    });
    // Waited for: forgotten.
    expect((await json("GET", `/processes/${b.json.id}/wait`)).status).toBe(404);
    const listed = (await json("GET", "/processes?ctx=user")).json.processes.map((p: { id: string }) => p.id);
    expect(listed).toContain(a.json.id);
    expect(listed).not.toContain(b.json.id);
    expect((await json("GET", "/processes?ctx=platform")).json.processes).toEqual([]);
    expect((await json("POST", `/processes/${a.json.id}/kill`, { body: {} })).json).toMatchObject({ signal: "SIGTERM" });
    expect((await json("GET", `/processes/${a.json.id}/wait`)).json).toMatchObject({ reason: "signaled", signal: "SIGTERM" });
    // Refusals: a context not allowed (403), a command that never ran (422), a bad signal (400),
    // an unknown process (404), a malformed request (400).
    expect((await json("POST", "/processes", { body: { ctx: "control", cmd: ["true"] } })).status).toBe(403);
    expect((await json("GET", "/processes?ctx=control")).status).toBe(403);
    const nf = await json("POST", "/processes", { body: { ctx: "user", cmd: ["no-such-command-sbx"] } });
    expect(nf.status).toBe(422);
    expect(nf.json).toMatchObject({ error: "refused", exitCode: 127 });
    const c = await json("POST", "/processes", { body: { ctx: "user", cmd: ["sleep", "30"] } });
    expect((await json("POST", `/processes/${c.json.id}/kill`, { body: { signal: "SIGSTOP" } })).status).toBe(400);
    await json("POST", `/processes/${c.json.id}/kill`, { body: { signal: "SIGKILL" } });
    expect((await json("GET", `/processes/${c.json.id}/wait`)).json.reason).toBe("signaled");
    expect((await json("GET", "/processes/0123456789abcdef/wait")).status).toBe(404);
    expect((await json("POST", "/processes", { body: { ctx: "user", cmd: "sleep 1" } })).status).toBe(400);
  }, T);

  real("files: streamed both ways, user code's own, typed errors as statuses", async () => {
    expect((await call("POST", `/files/shared/mkdir?path=data&parents=1`)).status).toBe(204);
    // 8 MiB from a stream, in 64 KiB chunks.
    const chunks = Array.from({ length: 128 }, () => randomBytes(64 * 1024));
    const hash = createHash("sha256");
    for (const c of chunks) hash.update(c);
    let i = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(ctl) {
        if (i < chunks.length) ctl.enqueue(chunks[i++]!);
        else ctl.close();
      },
    });
    const put = await call("PUT", `/files/shared?path=data/blob.bin&mode=640`, { body });
    expect(put.status).toBe(204);
    const file = join(work, "data/blob.bin");
    // It belongs to user code's identity (host uid 100000), not root.
    const st = statSync(file);
    expect([st.uid, st.gid, st.size, st.mode & 0o777]).toEqual([USER_UID, USER_UID, 8 * 1024 * 1024, 0o640]);
    const got = await call("GET", `/files/user?path=${q(file)}`);
    expect(got.status).toBe(200);
    expect(got.headers.get("content-type")).toBe("application/octet-stream");
    const back = createHash("sha256");
    let n = 0;
    for await (const c of got.body!) {
      back.update(c);
      n += c.length;
    }
    expect([n, back.digest("hex")]).toEqual([8 * 1024 * 1024, hash.digest("hex")]);
    // User code writes it afterwards (it is its own).
    const r = await userCode(`echo more >> ${file} && echo appended`);
    expect(r.stdout).toBe("appended\n");
    // stat (ids as seen inside: user's root), exists, ls, append, remove.
    expect((await json("GET", `/files/user/stat?path=data/blob.bin`)).json).toMatchObject({ type: "file", uid: 0, mode: 0o640 });
    expect((await json("GET", `/files/shared/exists?path=data/blob.bin`)).json).toEqual({ exists: true });
    expect((await json("GET", `/files/shared/exists?path=data/nope`)).json).toEqual({ exists: false });
    expect((await call("PUT", `/files/shared?path=data/notes.txt`, { body: "one\n" })).status).toBe(204);
    expect((await call("PUT", `/files/shared?path=data/notes.txt&append=1`, { body: "two\n" })).status).toBe(204);
    expect(await (await call("GET", `/files/shared?path=data/notes.txt`)).text()).toBe("one\ntwo\n");
    expect((await json("GET", `/files/shared/ls?path=data`)).json.entries.map((e: { name: string }) => e.name)).toEqual([
      "blob.bin",
      "notes.txt",
    ]);
    // Typed errors.
    const cases: [string, string, number, string][] = [
      ["GET", `/files/shared?path=data/nope`, 404, "not_found"],
      ["GET", `/files/shared/stat?path=data/nope`, 404, "not_found"],
      ["GET", `/files/user?path=${q(join(rootOnly, "secret"))}`, 403, "permission_denied"],
      ["PUT", `/files/user?path=${q(join(rootOnly, "sentinel"))}`, 403, "permission_denied"], // root's file
      ["PUT", `/files/shared?path=/etc/x`, 403, "refused"], // outside the shared area: nothing ran
      ["PUT", `/files/shared?path=data`, 409, "is_a_directory"],
      ["DELETE", `/files/shared?path=data`, 409, "not_empty"],
      ["POST", `/files/shared/mkdir?path=data`, 409, "exists"],
    ];
    for (const [method, path, status, kind] of cases) {
      const r = await call(method, path, { body: method === "PUT" ? "x" : undefined });
      const j = (await r.json()) as { error: string; message: string };
      expect([method, path, r.status, j.error]).toEqual([method, path, status, kind]);
    }
    expect((await call("GET", `/files/user`)).status).toBe(400); // no ?path=
    expect((await call("PUT", `/files/user?path=x&mode=9`, { body: "x" })).status).toBe(400);
    expect((await call("GET", `/files/control?path=/etc/hostname`)).status).toBe(403); // not allowed
    expect((await call("DELETE", `/files/shared?path=data&recursive=1`)).status).toBe(204);
    expect(existsSync(join(work, "data"))).toBe(false);
    expect(readFileSync(join(rootOnly, "sentinel"), "utf8")).toBe("root's sentinel\n");
  }, T);

  real("files: 100 MiB in and out through HTTP, never held whole by the server", async () => {
    const vmHWM = () => Number(/^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${server!.pid}/status`, "utf8"))![1]) * 1024;
    const MiB = 1024 * 1024;
    const block = randomBytes(MiB);
    const before = vmHWM();
    const hash = createHash("sha256");
    let i = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(ctl) {
        if (i === 100) return ctl.close();
        const chunk = Buffer.from(block);
        chunk.writeUInt32BE(i++, 0); // each MiB different
        hash.update(chunk);
        ctl.enqueue(chunk);
      },
    });
    expect((await call("PUT", `/files/shared?path=big.bin`, { body })).status).toBe(204);
    expect(statSync(join(work, "big.bin")).size).toBe(100 * MiB);
    const back = createHash("sha256");
    let n = 0;
    for await (const c of (await call("GET", `/files/shared?path=big.bin`)).body!) {
      back.update(c);
      n += c.length;
    }
    expect([n, back.digest("hex")]).toEqual([100 * MiB, hash.digest("hex")]);
    const grew = vmHWM() - before;
    console.log(`the server's peak RSS grew by ${(grew / MiB).toFixed(1)} MiB over a 100 MiB round trip`);
    expect(grew).toBeLessThan(100 * MiB); // held whole, the file alone would add 100 MiB
    expect((await call("DELETE", `/files/shared?path=big.bin`)).status).toBe(204);
  }, T);

  real("a link user code planted is not followed by a write of the API", async () => {
    const sentinel = join(rootOnly, "sentinel");
    const before = statSync(sentinel);
    const r = await userCode(`ln -s ${sentinel} ${work}/planted && ln -s ${rootOnly} ${work}/planted-dir && echo planted`);
    expect(r.stdout).toBe("planted\n");
    for (const ctx of ["user", "shared", "platform"]) {
      const w = await call("PUT", `/files/${ctx}?path=${q(`${work}/planted`)}`, { body: "pwned\n" });
      expect([ctx, w.status, ((await w.json()) as { error: string }).error]).toEqual([ctx, 403, "symlink"]);
    }
    // Through a linked directory: user's identity and walls (read-only there), or platform's nosymfollow.
    for (const ctx of ["user", "platform"]) {
      const w = await call("PUT", `/files/${ctx}?path=${q(`${work}/planted-dir/sentinel`)}`, { body: "pwned\n" });
      expect([ctx, w.status]).toEqual([ctx, 403]);
    }
    const after = statSync(sentinel);
    expect(readFileSync(sentinel, "utf8")).toBe("root's sentinel\n");
    expect([after.ino, after.size, after.mtimeMs, after.uid]).toEqual([before.ino, before.size, before.mtimeMs, 0]);
    // Control: the link is the only obstacle; a write beside it works.
    expect((await call("PUT", `/files/user?path=${q(`${work}/not-planted`)}`, { body: "ok\n" })).status).toBe(204);
    expect(readFileSync(join(work, "not-planted"), "utf8")).toBe("ok\n");
  }, T);

  real("deploy: user code asks, the handler deploys with a credential user code never sees", async () => {
    // The agent-style flow: code written into the shared area, run by user code, which then asks
    // the platform to deploy it.
    const code = `console.log("handler ${randomBytes(4).toString("hex")}");\n`;
    expect((await call("POST", `/files/shared/mkdir?path=app&parents=1`)).status).toBe(204);
    expect((await call("PUT", `/files/shared?path=app/handler.js`, { body: code })).status).toBe(204);
    const half = credential.slice(0, 20);
    const r = await userCode(
      [
        `B=${join(binDir, "sbx-exec")}`,
        `op() { what=$1; shift; out=$($B op "$@" 2>&1); rc=$?; printf '%s: %s\nrc=%s\n' "$what" "$out" "$rc"; }`,
        `op deploy deploy '{"path":"app/handler.js"}'`,
        `op migrate migrate '{}'`,
        `op root deploy '{"path":"${rootOnly}/secret"}'`,
        `echo environ:; env; for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do tr '\\0' '\\n' < $f; echo; done 2>/dev/null`,
        `echo grep:; timeout 30 grep -rlsF ${half} /etc /run /tmp /root /home /var/tmp ${work} 2>/dev/null | head -5`,
        "echo end",
      ].join("\n"),
    );
    const out = `${r.stdout}${r.stderr}`;
    expect(r.stdout).toContain("end\n");
    const deploy = JSON.parse(/^deploy: (.*)$/m.exec(r.stdout)![1]!);
    expect(deploy).toMatchObject({ ok: true, result: { sha256: sha256(code), size: code.length } });
    expect(r.stdout).toContain(`${JSON.stringify(deploy)}\nrc=0\n`);
    expect(out).toMatch(/^migrate: sbx-exec: operation migrate was refused \(403\)[^\n]*\nrc=125$/m);
    // The handler reads as the caller: root's 0600 file is not user code's to deploy.
    expect(out).toMatch(/^root: \{"ok":false,"error":".*permission_denied.*"\}\nrc=1$/m);
    expect(/^grep:\n(.*)^end$/ms.exec(r.stdout)![1]).toBe("");
    // Not in user code's environment, /proc, files or the answers.
    expect(out).not.toContain(credential);
    expect(out).not.toContain("DEPLOY_TOKEN");
    // The service accepted it with the credential: it lists the deploy, for context user.
    const svc = `http://127.0.0.1:${servicePort}/deploys`;
    const list = (await (await fetch(svc, { headers: { authorization: `Bearer ${credential}` } })).json()) as {
      id: string;
      context: string;
      path: string;
      sha256: string;
    }[];
    expect(list.find((d) => d.id === deploy.result.id)).toMatchObject({
      context: "user",
      path: "app/handler.js",
      sha256: sha256(code),
    });
    expect(list.some((d) => d.path.includes("secret"))).toBe(false);
    // Control: the service refuses anyone without it.
    expect((await fetch(svc)).status).toBe(401);
    // Control: the server does hold it (its environment, as started).
    const environ = readFileSync(`/proc/${server!.pid}/environ`, "utf8");
    expect(environ).toContain(credential);
    // The audit log has both calls, without their params.
    const audit = readFileSync(join(dir, "audit.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l))
      .filter((e) => e.event === "op");
    expect(audit.some((e) => e.op === "deploy" && e.status === 200 && e.context === "user")).toBe(true);
    expect(audit.some((e) => e.op === "migrate" && e.status === 403)).toBe(true);
    expect(JSON.stringify(audit)).not.toContain("handler.js");
  }, T);
});
