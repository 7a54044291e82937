// The platform operation `deploy` (sbx-exec's docs/ops.md): user code of a context whose policy
// lists `ops = ["deploy"]` runs `sbx-exec op deploy '{"path": "app/handler.js"}'`; this handler
// reads that file *in the calling context* (its identity, its mount view: what that code could
// read itself), sends it to the deploy service at DEPLOY_URL with the credential only this server
// holds, and answers the service's {id, url, sha256, size}. The credential never enters a sandbox,
// and the answer does not carry it.
//
// Started only when DEPLOY_URL is set, with the credential of credential.ts (DEPLOY_TOKEN_FILE or
// DEPLOY_TOKEN); without one the server refuses to start.
import { type OpCall, type OpsServer, serveOps } from "../../clients/bun/src/index.ts";
import { sandbox } from "./common.ts";
import { loadCredential } from "./credential.ts";

const MAX_DEPLOY = 8 * 1024 * 1024;

/** The file user code named, read in its own context: at most MAX_DEPLOY bytes. */
async function readForDeploy(call: OpCall, path: string): Promise<Uint8Array<ArrayBuffer>> {
  const parts: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of sandbox.context(call.context).readFileStream(path, { timeout: 60 })) {
    size += chunk.length;
    if (size > MAX_DEPLOY) throw new Error(`${path} is larger than ${MAX_DEPLOY} bytes`);
    parts.push(chunk);
  }
  return new Uint8Array(Buffer.concat(parts));
}

/** Listen for platform operations (on /run/sbx/ops.sock) with the `deploy` handler, if DEPLOY_URL
 * is set; undefined otherwise. */
export async function startPlatformOps(): Promise<OpsServer | undefined> {
  const url = process.env.DEPLOY_URL;
  if (!url) return undefined;
  let credential: string;
  try {
    credential = loadCredential();
  } catch (e) {
    console.error(`control plane: refusing to start: DEPLOY_URL is set, but ${(e as Error).message}`);
    process.exit(2);
  }
  return serveOps({
    handlers: {
      async deploy(params, call) {
        // params come from untrusted code: check them.
        const path = (params as { path?: unknown } | null)?.path;
        if (typeof path !== "string" || path === "" || path.includes("\0"))
          throw new Error('expected {"path": "FILE"} (absolute, or relative to the context\'s workdir)');
        const body = await readForDeploy(call, path);
        const r = await fetch(new URL("/deploys", url), {
          method: "POST",
          headers: {
            authorization: `Bearer ${credential}`,
            "content-type": "application/octet-stream",
            "x-deploy-context": call.context,
            "x-deploy-call": call.call,
            "x-deploy-path": encodeURIComponent(path),
          },
          body,
          signal: AbortSignal.timeout(60_000),
        });
        // Never relay what the service said on failure: only its status.
        if (r.status !== 201) throw new Error(`the deploy service answered ${r.status}`);
        const d = (await r.json()) as { id: string; url: string; sha256: string; size: number };
        return { id: d.id, url: d.url, sha256: d.sha256, size: d.size };
      },
    },
  });
}
