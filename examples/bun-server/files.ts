// File routes: each runs `sbx-exec file` inside the named context, as its identity, in its mount
// view (createSandbox's file operations). This server never opens the path itself, so a link user
// code planted cannot turn a write into root's, and what it writes for user code is user code's.
//
//   GET    /files/CTX?path=P                     the contents, streamed (application/octet-stream)
//   PUT    /files/CTX?path=P[&append=1][&mode=644]  the body, streamed into the file -> 204
//   GET    /files/CTX/stat?path=P                -> {type, size, mode, mtime, mtime_nsec, uid, gid}
//   GET    /files/CTX/exists?path=P              -> {exists: bool}
//   GET    /files/CTX/ls?path=P                  -> {entries: [{name, type, size}]}
//   POST   /files/CTX/mkdir?path=P[&parents=1]   -> 204
//   DELETE /files/CTX?path=P[&recursive=1]       -> 204
//
// CTX is a context of SBX_ALLOWED_CONTEXTS, or `shared` (the work area, handled in `user`).
// Failures are typed: {error: kind, message, path} with the status of FILE_STATUS.
import type http from "node:http";
import {
  AlreadyExists,
  IsADirectory,
  NotADirectory,
  NotEmpty,
  NotFound,
  NotRegularFile,
  PermissionDenied,
  Refused,
  SbxError,
  SbxUnavailable,
  SymlinkRefused,
  TimedOut,
  TooLarge,
} from "../../clients/bun/src/index.ts";
import { filesOf, reply } from "./common.ts";

/** The HTTP status of each typed error; anything else is 502 (sbx-exec failed) or 500. */
const FILE_STATUS: [new (...a: never[]) => SbxError, number][] = [
  [NotFound, 404],
  [PermissionDenied, 403], // the context's identity may not (a root-owned file for user)
  [SymlinkRefused, 403], // a link where none is followed (planted by user code, say)
  [IsADirectory, 409],
  [NotADirectory, 409],
  [AlreadyExists, 409],
  [NotEmpty, 409],
  [NotRegularFile, 409],
  [TooLarge, 413],
  [TimedOut, 504],
  [SbxUnavailable, 503],
];

function statusOf(e: SbxError): number {
  for (const [cls, status] of FILE_STATUS) if (e instanceof cls) return status;
  if (e instanceof Refused) {
    // The context's walls (a read-only mount, a path outside `shared`): 403; a request sbx-exec
    // could not take (usage): 400; sbx-exec refused the call itself (an unknown context): 422.
    if (e.file?.kind === "refused") return 403;
    if (e.file?.kind === "usage") return 400;
    return 422;
  }
  return 502;
}

function replyError(res: http.ServerResponse, e: unknown) {
  if (e instanceof TypeError) return reply(res, 400, { error: "usage", message: e.message });
  if (!(e instanceof SbxError)) throw e;
  // sbx-exec's messages name the path, never the contents.
  reply(res, statusOf(e), { error: e.file?.kind ?? e.name, message: e.message, path: e.file?.path });
}

/** Handle a /files route; false if the URL is not one. */
export async function routeFiles(req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<boolean> {
  const m = /^\/files\/([A-Za-z0-9_.-]+)(?:\/(stat|exists|ls|mkdir))?$/.exec(url.pathname);
  if (!m) return false;
  const [, ctx, op] = m as unknown as [string, string, string | undefined];
  const path = url.searchParams.get("path");
  const flag = (name: string) => ["1", "true"].includes(url.searchParams.get(name) ?? "");
  const route = `${req.method} ${op ?? ""}`;
  const known = ["GET ", "PUT ", "DELETE ", "GET stat", "GET exists", "GET ls", "POST mkdir"];
  if (!known.includes(route)) {
    reply(res, 405, { error: `${req.method} is not a file operation here` });
    return true;
  }
  if (!path) {
    reply(res, 400, { error: "usage", message: "expected ?path=PATH (absolute, or relative to the context's workdir)" });
    return true;
  }
  const files = filesOf(res, ctx);
  if (!files) return true;
  // A client that hangs up ends the operation.
  const abort = new AbortController();
  res.on("close", () => {
    if (!res.writableFinished) abort.abort();
  });
  const opts = { signal: abort.signal };
  try {
    switch (route) {
      case "GET ":
        await streamFile(res, files.readFileStream(path, opts));
        break;
      case "PUT ": {
        const mode = url.searchParams.get("mode");
        if (mode !== null && !/^0?[0-7]{3}$/.test(mode)) {
          reply(res, 400, { error: "usage", message: "mode: octal permission bits, e.g. 644" });
          break;
        }
        // The request itself is the data: piped into the operation, never held whole.
        await files.writeFile(path, req, {
          ...opts,
          append: flag("append"),
          ...(mode !== null ? { mode: parseInt(mode, 8) } : {}),
        });
        res.writeHead(204).end();
        break;
      }
      case "DELETE ":
        await files.remove(path, { ...opts, recursive: flag("recursive") });
        res.writeHead(204).end();
        break;
      case "GET stat":
        reply(res, 200, await files.stat(path, opts));
        break;
      case "GET exists":
        reply(res, 200, { exists: await files.exists(path, opts) });
        break;
      case "GET ls":
        reply(res, 200, { entries: await files.ls(path, opts) });
        break;
      case "POST mkdir":
        await files.mkdir(path, { ...opts, parents: flag("parents") });
        res.writeHead(204).end();
        break;
    }
  } catch (e) {
    if (res.headersSent) res.destroy();
    else replyError(res, e);
  }
  return true;
}

/** Answer with the stream's contents. The status waits for the first chunk (or the end), so a
 * failure to open the file is an HTTP error; a failure later cuts the connection (no clean end). */
async function streamFile(res: http.ServerResponse, stream: ReadableStream<Uint8Array>) {
  const reader = stream.getReader();
  res.on("close", () => void reader.cancel().catch(() => {}));
  let next = await reader.read();
  res.writeHead(200, { "content-type": "application/octet-stream" });
  while (!next.done && !res.destroyed) {
    if (!res.write(next.value)) await new Promise((r) => (res.once("drain", r), res.once("close", r)));
    next = await reader.read();
  }
  res.end();
}
