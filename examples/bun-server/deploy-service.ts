// A stand-in deploy service (think: a cloud provider's deploy API) for the `deploy` platform
// operation. It accepts a deploy only with its credential, which it reads as the control plane
// does (DEPLOY_TOKEN_FILE, else DEPLOY_TOKEN), and remembers each one.
//
//   POST /deploys (Authorization: Bearer CREDENTIAL, the artifact as the body, x-deploy-context,
//                  x-deploy-path, x-deploy-call)   -> 201 {id, url, sha256, size}
//   GET  /deploys (Authorization: Bearer CREDENTIAL) -> [{id, context, path, call, sha256, size}]
//   anything without the credential                -> 401
//
//   DEPLOY_TOKEN_FILE=... PORT=9090 bun run deploy-service.ts
import { createHash, timingSafeEqual } from "node:crypto";
import http from "node:http";
import { loadCredential } from "./credential.ts";

let credential: Buffer;
try {
  credential = createHash("sha256").update(loadCredential()).digest();
} catch (e) {
  console.error(`deploy service: refusing to start: ${(e as Error).message}`);
  process.exit(2);
}
const deploys: Record<string, unknown>[] = [];

function authorized(req: http.IncomingMessage): boolean {
  const given = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1] ?? "";
  return timingSafeEqual(createHash("sha256").update(given).digest(), credential);
}

const server = http.createServer(async (req, res) => {
  const answer = (status: number, body: unknown) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  };
  if (!authorized(req)) return answer(401, { error: "unauthorized" });
  if (req.method === "GET" && req.url === "/deploys") return answer(200, deploys);
  if (req.method !== "POST" || req.url !== "/deploys") return answer(404, { error: "not found" });
  const hash = createHash("sha256");
  let size = 0;
  for await (const chunk of req) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  const id = `d${deploys.length + 1}`;
  const header = (name: string) => String(req.headers[name] ?? "");
  const d = {
    id,
    context: header("x-deploy-context"),
    path: decodeURIComponent(header("x-deploy-path")),
    call: header("x-deploy-call"),
    sha256: hash.digest("hex"),
    size,
  };
  deploys.push(d);
  console.log(`deploy service: ${JSON.stringify(d)}`);
  answer(201, { id, url: `https://deploys.example.invalid/${id}`, sha256: d.sha256, size });
});

const port = Number(process.env.PORT ?? "9090");
server.listen(port, "127.0.0.1", () => console.log(`deploy service: listening on 127.0.0.1:${port}`));
