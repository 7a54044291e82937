// Example control plane: a Bun HTTP server that runs as `sbx-exec --ctx control -- bun server.ts`
// and runs commands through sbx-exec with the @sbx/client package (clients/bun).
//
// It never binds its port: sbx-exec holds the reserved ports from the first instant and passes
// them as LISTEN_FDS (systemd socket activation). Bun's node:net adopts an inherited listening fd
// (node:http's listen({fd}) does not yet: oven-sh/bun#22559), so a net server accepts and hands
// each connection to the HTTP server.
//
// Every route but GET /health needs `Authorization: Bearer <token>`; the token is read once, at
// start, from the file named by SBX_API_TOKEN_FILE (which must not be readable or writable by
// group or others). A request may name only the contexts in SBX_ALLOWED_CONTEXTS (default: user).
// SBX_POLICY, if set, names the policy file sbx-exec uses (else its system or embedded one).
//
//   GET  /health                                         -> {"ok":true,"pid":N}
//   POST /exec {ctx, cmd, secrets?, env?, cwd?, timeout?} -> 200 {"exitCode":N,"reason":"exited",
//                                                             "stdout":"...","stderr":"...","pid":N}
//                                   sbx-exec refused it:  -> 422 {"error":"refused","reason":"refused",
//                                                             "exitCode":125,"message":"..."}
//
// Commands start in the context's own working directory (the client passes --in-workdir and runs
// sbx-exec in /), never in this server's; `cwd` (an absolute path) picks another.
//
// Besides /exec, behind the same token: processes per context (processes.ts: start, list, kill,
// wait), file operations per context, run inside it as its identity (files.ts), and, with
// DEPLOY_URL set, the platform operation `deploy` that user code calls (deploy.ts).
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import { errorFor, exec, SbxError, SbxUnavailable } from "../../clients/bun/src/index.ts";
import { allowedContexts, MAX_BODY, readBody, RUN_USAGE, reply, runRequest } from "./common.ts";
import { startPlatformOps } from "./deploy.ts";
import { routeFiles } from "./files.ts";
import { killAll, routeProcesses } from "./processes.ts";

const apiPort = process.env.API_PORT ?? process.env.PORT ?? "8080";

function fatal(msg: string): never {
  console.error(`control plane: ${msg}`);
  process.exit(2);
}

/** The API token: read once, from a file only its owner can read or write. */
function loadToken(): Buffer {
  const file = process.env.SBX_API_TOKEN_FILE;
  if (!file) fatal("refusing to start: SBX_API_TOKEN_FILE is not set (the file that holds the API token)");
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  } catch (e) {
    fatal(`refusing to start: cannot open SBX_API_TOKEN_FILE ${file}: ${(e as NodeJS.ErrnoException).code ?? e}`);
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) fatal(`refusing to start: SBX_API_TOKEN_FILE ${file} is not a regular file`);
    if (st.mode & 0o066)
      fatal(
        `refusing to start: SBX_API_TOKEN_FILE ${file} is readable or writable by group or others ` +
          `(mode ${(st.mode & 0o777).toString(8)}); chmod 600 it`,
      );
    const token = fs.readFileSync(fd, "utf8").trim();
    if (token === "") fatal(`refusing to start: SBX_API_TOKEN_FILE ${file} is empty`);
    return Buffer.from(token, "utf8");
  } finally {
    fs.closeSync(fd);
  }
}

// Compare HMACs under a per-process key: equal lengths, constant time, whatever was sent.
const hmacKey = randomBytes(32);
const mac = (b: Buffer) => createHmac("sha256", hmacKey).update(b).digest();
const tokenMac = mac(loadToken());

function authorized(req: http.IncomingMessage): boolean {
  const h = req.headers.authorization ?? "";
  const m = /^Bearer (.+)$/.exec(h);
  const given = Buffer.from(m?.[1]?.trim() ?? "", "utf8");
  // Always compute and compare, so a missing header costs the same as a wrong one.
  return timingSafeEqual(mac(given), tokenMac) && m !== null;
}

const USAGE = RUN_USAGE;

const api = http.createServer(async (req, res) => {
  try {
    if (req.method === "GET" && req.url === "/health") return reply(res, 200, { ok: true, pid: process.pid });
    // Everything else: the token first, before reading the body or running anything.
    if (!authorized(req)) {
      res.setHeader("connection", "close");
      return reply(res, 401, { error: "unauthorized: send Authorization: Bearer <token>" }, { "www-authenticate": "Bearer" });
    }
    if (req.method === "POST" && req.url === "/exec") {
      const text = await readBody(req);
      if (text === undefined) return reply(res, 413, { error: `request body over ${MAX_BODY} bytes` });
      let body: Record<string, unknown>;
      try {
        body = JSON.parse(text);
      } catch {
        return reply(res, 400, { error: `invalid JSON; ${USAGE}` });
      }
      const run = runRequest(body ?? {});
      if (!run) return reply(res, 400, { error: USAGE });
      const { ctx, cmd, secrets, env, cwd, timeout } = run;
      if (typeof ctx !== "string") return reply(res, 400, { error: USAGE });
      if (!allowedContexts.has(ctx)) {
        return reply(res, 403, { error: `context ${JSON.stringify(ctx)} is not allowed here (SBX_ALLOWED_CONTEXTS)` });
      }
      // A client that hangs up ends its sandbox.
      const abort = new AbortController();
      res.on("close", () => {
        if (!res.writableFinished) abort.abort();
      });
      const r = await exec(ctx, cmd, {
        // SBX_POLICY: a policy file other than /etc/sbx/policy.toml or the embedded default.
        policy: process.env.SBX_POLICY || undefined,
        secrets,
        env,
        cwd,
        timeout: timeout as number | undefined,
        signal: abort.signal,
        throwOnError: false,
      });
      // Nothing ran: sbx-exec refused (exit 125, whatever the reason, or reason "refused", e.g. a
      // command not found). Its message says why and never holds a secret value.
      if (r.reason === "refused" || r.code === 125) {
        return reply(res, 422, {
          error: "refused",
          reason: "refused",
          exitCode: r.code,
          message: r.message ?? errorFor(r)?.message ?? `status ${r.code}`,
        });
      }
      return reply(res, 200, {
        exitCode: r.code,
        reason: r.reason,
        pid: r.pid,
        stdout: r.stdout,
        stderr: r.stderr,
        truncated: r.truncated,
      });
    }
    const url = new URL(req.url ?? "/", "http://localhost");
    if ((await routeProcesses(req, res, url)) || (await routeFiles(req, res, url))) return;
    reply(res, 404, { error: "not found" });
  } catch (e) {
    // Never echo the request body: it may hold secrets. Typed errors carry no secret values; a
    // TypeError is the client's check of the request (a bad name in env or secrets).
    if (e instanceof TypeError) return reply(res, 400, { error: USAGE });
    const status = e instanceof SbxUnavailable ? 503 : e instanceof SbxError ? 502 : 500;
    reply(res, status, { error: e instanceof Error ? e.name : "error" });
  }
});

// Platform operations (deploy.ts): only when DEPLOY_URL names a deploy service. Its credential
// is read (or the server refuses to start) before the API serves anything.
startPlatformOps().then(
  (ops) => console.error(`control plane ${process.pid}: platform operations ${ops ? `on ${ops.socket}: deploy` : "off (no DEPLOY_URL)"}`),
  (e) => console.error(`control plane ${process.pid}: platform operations unavailable: ${e instanceof Error ? e.message : e}`),
);

/** The inherited listening sockets: [{fd, name}] per LISTEN_FDS / LISTEN_FDNAMES. */
function inheritedSockets(): { fd: number; name: string }[] {
  if (process.env.LISTEN_PID !== String(process.pid)) return [];
  const n = Number(process.env.LISTEN_FDS ?? "0");
  const names = (process.env.LISTEN_FDNAMES ?? "").split(":");
  return Array.from({ length: n }, (_, i) => ({ fd: 3 + i, name: names[i] ?? "" }));
}

const sockets = inheritedSockets().filter((s) => s.name === apiPort || s.name === `${apiPort}v6`);
if (sockets.length > 0) {
  for (const { fd, name } of sockets) {
    net.createServer((conn) => api.emit("connection", conn)).listen({ fd }, () =>
      console.log(`control plane ${process.pid}: serving on inherited fd ${fd} (${name})`),
    );
  }
} else {
  // Outside sbx-exec (development only): bind the port ourselves.
  api.listen(Number(apiPort), () => console.log(`control plane ${process.pid}: bound :${apiPort} itself`));
}
process.on("SIGTERM", () => {
  console.log(`control plane ${process.pid}: SIGTERM, stopping`);
  killAll();
  process.exit(0);
});

