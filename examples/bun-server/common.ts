// What the routes share: JSON answers, request bodies, the contexts a request may name, and the
// one sandbox object (`@sbx/client`'s createSandbox) every route runs through.
import type http from "node:http";
import { createSandbox, type SandboxFiles } from "../../clients/bun/src/index.ts";

export const MAX_BODY = 4 * 1024 * 1024;

export function reply(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(JSON.stringify(body));
}

/** The whole body as text, or undefined past MAX_BODY. */
export async function readBody(req: http.IncomingMessage): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > MAX_BODY) return undefined;
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** A JSON object body; answers 413 or 400 (with `usage`) itself and returns undefined. An empty
 * body is `{}`. */
export async function readJson(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  usage: string,
): Promise<Record<string, unknown> | undefined> {
  const text = await readBody(req);
  if (text === undefined) {
    reply(res, 413, { error: `request body over ${MAX_BODY} bytes` });
    return undefined;
  }
  try {
    const v = text.trim() === "" ? {} : JSON.parse(text);
    if (v !== null && typeof v === "object" && !Array.isArray(v)) return v;
  } catch {
    // answered below
  }
  reply(res, 400, { error: `invalid JSON; ${usage}` });
  return undefined;
}

export const isStrings = (v: unknown): v is string[] => Array.isArray(v) && v.every((a) => typeof a === "string");
export const isStringMap = (v: unknown): v is Record<string, string> =>
  typeof v === "object" && v !== null && !Array.isArray(v) && Object.values(v).every((x) => typeof x === "string");

/** What a command request (`POST /exec`, `POST /processes`) carries. */
export const RUN_USAGE =
  "expected {ctx: string, cmd: string[], secrets?: {NAME: value}, env?: {NAME: value}, cwd?: absolute path, timeout?: seconds}";

export interface RunRequest {
  ctx: unknown;
  cmd: string[];
  secrets?: Record<string, string>;
  env?: Record<string, string>;
  cwd?: string;
  timeout?: number;
}

/** `body` as a command request; undefined when a field has the wrong type (`ctx` is checked by
 * each route: 400 or 403). */
export function runRequest(body: Record<string, unknown>): RunRequest | undefined {
  const { ctx, cmd, secrets, env, cwd, timeout } = body;
  if (
    !isStrings(cmd) ||
    cmd.length === 0 ||
    (secrets !== undefined && !isStringMap(secrets)) ||
    (env !== undefined && !isStringMap(env)) ||
    (cwd !== undefined && !(typeof cwd === "string" && cwd.startsWith("/"))) ||
    (timeout !== undefined && !(Number.isInteger(timeout) && (timeout as number) > 0))
  )
    return undefined;
  return { ctx, cmd, secrets, env, cwd, timeout } as RunRequest;
}

export const allowedContexts = new Set(
  (process.env.SBX_ALLOWED_CONTEXTS ?? "user")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean),
);

/** Whether a request may name `ctx`; answers 403 itself if not. */
export function contextAllowed(res: http.ServerResponse, ctx: unknown): ctx is string {
  if (typeof ctx === "string" && allowedContexts.has(ctx)) return true;
  res.setHeader("connection", "close"); // a body we never read (a PUT's) is not left on the socket
  reply(res, 403, { error: `context ${JSON.stringify(ctx)} is not allowed here (SBX_ALLOWED_CONTEXTS)` });
  return false;
}

/** Every route's sandbox: SBX_POLICY (else sbx-exec's own policy), SBX_EXEC (else sbx-exec on
 * PATH). `shared` is the work area handled in the `user` context (SBX_SHARED_ROOT, default
 * /workspace), so what the API writes there belongs to user code. */
export const sandbox = createSandbox({
  policy: process.env.SBX_POLICY || undefined,
  shared: { root: process.env.SBX_SHARED_ROOT || "/workspace" },
});

/** The file operations a request names by context: `shared`, allowed where its own context is,
 * or an allowed context. Answers 403 itself otherwise. */
export function filesOf(res: http.ServerResponse, name: string): SandboxFiles | undefined {
  if (name === "shared") return contextAllowed(res, sandbox.shared.name) ? sandbox.shared : undefined;
  return contextAllowed(res, name) ? sandbox.context(name) : undefined;
}
