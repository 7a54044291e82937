// Process routes: commands started in a context that outlive the request (a dev server, a
// tunnel), through createSandbox's startProcess. The server reads their output as it comes (the
// first MAX_OUTPUT bytes of each stream are kept) and forgets a process once it is waited for, or
// KEEP_MS after it exited.
//
//   POST /processes {ctx, cmd, secrets?, env?, cwd?, timeout?} -> 201 {id, ctx, pid, cmd}
//                                       sbx-exec refused it: -> 422 {error:"refused", reason, exitCode, message}
//   GET  /processes?ctx=NAME                 -> {processes: [{id, ctx, pid, cmd, running}]} (not yet waited for)
//   POST /processes/ID/kill {signal?}        -> {id, signal, running}   (default SIGTERM)
//   GET  /processes/ID/wait                  -> {id, exitCode, reason, signal?, stdout, stderr, truncated}
//
// `pid` is what sbx-exec's status fd reports: in a context with a pid namespace, the sandbox's
// init, whose child the command is. SIGKILL ends sbx-exec and with it the whole sandbox.
import { randomBytes } from "node:crypto";
import type http from "node:http";
import { errorFor, type ProcessHandle, type Result, SbxError, SbxUnavailable } from "../../clients/bun/src/index.ts";
import { contextAllowed, readJson, reply, RUN_USAGE, runRequest, sandbox } from "./common.ts";

const MAX_OUTPUT = 1024 * 1024;
const KEEP_MS = 10 * 60 * 1000;
const SIGNALS = ["SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH", "SIGKILL"];
const USAGE = RUN_USAGE;

interface Entry {
  id: string;
  ctx: string;
  handle: ProcessHandle;
  result?: Result;
  done: Promise<{ result: Result; stdout: Output; stderr: Output }>;
}
interface Output {
  text: string;
  truncated: boolean;
}

const table = new Map<string, Entry>();

/** Read a stream to its end, keeping the first MAX_OUTPUT bytes. */
async function drain(s: ReadableStream<Uint8Array>): Promise<Output> {
  const kept: Uint8Array[] = [];
  let size = 0;
  let truncated = false;
  for await (const chunk of s) {
    if (size + chunk.length <= MAX_OUTPUT) kept.push(chunk);
    else truncated = true;
    size += chunk.length;
  }
  return { text: Buffer.concat(kept).toString("utf8"), truncated };
}

const view = (e: Entry) => ({ id: e.id, ctx: e.ctx, pid: e.handle.pid, cmd: e.handle.argv, running: !e.result });

async function start(req: http.IncomingMessage, res: http.ServerResponse) {
  const body = await readJson(req, res, USAGE);
  if (!body) return;
  const run = runRequest(body);
  if (!run) return reply(res, 400, { error: USAGE });
  const { ctx, cmd, secrets, env, cwd, timeout } = run;
  if (!contextAllowed(res, ctx)) return;
  let handle: ProcessHandle;
  try {
    handle = await sandbox.context(ctx).startProcess(cmd, { secrets, env, cwd, timeout: timeout as number | undefined });
  } catch (e) {
    if (e instanceof TypeError) return reply(res, 400, { error: USAGE });
    if (e instanceof SbxUnavailable || !(e instanceof SbxError)) throw e;
    // Nothing runs: sbx-exec refused, or the command could not start. Its message holds no secret.
    return reply(res, 422, { error: "refused", reason: e.reason ?? "refused", exitCode: e.code, message: e.message });
  }
  void handle.stdin.close().catch(() => {}); // nothing to feed it: a command reading stdin sees its end
  const id = randomBytes(8).toString("hex");
  const entry: Entry = {
    id,
    ctx,
    handle,
    done: Promise.all([handle.wait(), drain(handle.stdout), drain(handle.stderr)]).then(([result, stdout, stderr]) => {
      entry.result = result;
      setTimeout(() => table.delete(id), KEEP_MS).unref();
      return { result, stdout, stderr };
    }),
  };
  table.set(id, entry);
  reply(res, 201, view(entry));
}

/** Handle a /processes route; false if the URL is not one. */
export async function routeProcesses(req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<boolean> {
  if (url.pathname === "/processes") {
    if (req.method === "POST") await start(req, res);
    else if (req.method === "GET") {
      const ctx = url.searchParams.get("ctx");
      if (!contextAllowed(res, ctx)) return true;
      reply(res, 200, { processes: [...table.values()].filter((e) => e.ctx === ctx).map(view) });
    } else reply(res, 405, { error: "GET or POST" });
    return true;
  }
  const m = /^\/processes\/([0-9a-f]{16})\/(kill|wait)$/.exec(url.pathname);
  if (!m) return false;
  const entry = table.get(m[1]!);
  if (!entry) {
    reply(res, 404, { error: `no process ${m[1]} (never started here, or already waited for)` });
    return true;
  }
  if (m[2] === "kill" && req.method === "POST") {
    const body = await readJson(req, res, `expected {signal?: one of ${SIGNALS.join(", ")}}`);
    if (!body) return true;
    const signal = body.signal ?? "SIGTERM";
    if (typeof signal !== "string" || !SIGNALS.includes(signal)) {
      reply(res, 400, { error: `signal: one of ${SIGNALS.join(", ")}` });
      return true;
    }
    if (!entry.result) entry.handle.kill(signal);
    reply(res, 200, { id: entry.id, signal, running: !entry.result });
  } else if (m[2] === "wait" && req.method === "GET") {
    const { result: r, stdout, stderr } = await entry.done;
    table.delete(entry.id);
    reply(res, 200, {
      id: entry.id,
      exitCode: r.code,
      reason: r.reason,
      ...(r.signal ? { signal: r.signal } : {}),
      ...(r.reason === "refused" ? { message: r.message ?? errorFor(r)?.message } : {}),
      stdout: stdout.text,
      stderr: stderr.text,
      truncated: stdout.truncated || stderr.truncated,
    });
  } else reply(res, 405, { error: `${m[2] === "kill" ? "POST" : "GET"} only` });
  return true;
}

/** Stop every process still running (the server is stopping): SIGKILL ends each sandbox. */
export function killAll() {
  for (const e of table.values()) if (!e.result) e.handle.kill("SIGKILL");
}
