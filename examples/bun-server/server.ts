// Example control plane: a Bun HTTP server that runs as `sbx-exec --ctx control -- bun server.ts`.
//
// It never binds its port: sbx-exec holds the reserved ports from the first instant and passes
// them as LISTEN_FDS (systemd socket activation). Bun's node:net adopts an inherited listening fd
// (node:http's listen({fd}) does not yet: oven-sh/bun#22559), so a net server accepts and hands
// each connection to the HTTP server.
//
//   GET  /health                      -> {"ok":true,"pid":N}
//   POST /exec {ctx, cmd, secrets?}   -> {"exitCode":N,"stdout":"...","stderr":"..."}
import http from "node:http";
import net from "node:net";
import { execSecure } from "./sbx";

const apiPort = process.env.API_PORT ?? "8080";

async function readBody(req: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

function reply(res: http.ServerResponse, status: number, body: unknown) {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

const api = http.createServer(async (req, res) => {
  try {
    if (req.method === "GET" && req.url === "/health") return reply(res, 200, { ok: true, pid: process.pid });
    if (req.method === "POST" && req.url === "/exec") {
      const { ctx, cmd, secrets } = JSON.parse(await readBody(req));
      if (typeof ctx !== "string" || !Array.isArray(cmd) || !cmd.every((a) => typeof a === "string")) {
        return reply(res, 400, { error: "expected {ctx: string, cmd: string[], secrets?: {NAME: value}}" });
      }
      return reply(res, 200, await execSecure(ctx, cmd, { secrets }));
    }
    reply(res, 404, { error: "not found" });
  } catch (e) {
    // Never echo the request body: it may hold secrets.
    reply(res, 500, { error: e instanceof Error ? e.name : "error" });
  }
});

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
  process.exit(0);
});
