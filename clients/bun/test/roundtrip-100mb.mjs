// 100 MiB through createSandbox's user.writeFile (from a ReadableStream) and user.readFileStream,
// in a process of its own, so that its peak RSS is the client's alone. Run by sandbox.test.ts
// under Bun (with src/index.ts) and Node (with dist/index.js):
//   bun|node roundtrip-100mb.mjs MODULE SBX_EXEC POLICY PATH
// Prints one JSON line: the SHA-256 of what was written and of what was read back, the size, the
// times, the RSS before the first call and the peak RSS (ru_maxrss) at the end, in bytes.
import { createHash, randomBytes } from "node:crypto";

const [mod, bin, policy, path] = process.argv.slice(2);
const { createSandbox } = await import(mod);
const sb = createSandbox({ sbxExec: bin, policy });
const MiB = 1 << 20;
const N = 100;

const rss0 = process.memoryUsage().rss;
const written = createHash("sha256");
let i = 0;
const source = new ReadableStream({
  pull(c) {
    if (i++ === N) return c.close();
    const b = randomBytes(MiB);
    written.update(b);
    c.enqueue(new Uint8Array(b.buffer, b.byteOffset, b.byteLength));
  },
}, { highWaterMark: 0 });
const t0 = performance.now();
await sb.user.writeFile(path, source);
const t1 = performance.now();
const read = createHash("sha256");
let size = 0;
const r = sb.user.readFileStream(path).getReader();
for (;;) {
  const { value, done } = await r.read();
  if (done) break;
  read.update(value);
  size += value.byteLength;
}
const t2 = performance.now();
console.log(JSON.stringify({
  written: written.digest("hex"),
  read: read.digest("hex"),
  size,
  writeMs: Math.round(t1 - t0),
  readMs: Math.round(t2 - t1),
  rss0,
  maxRss: process.resourceUsage().maxRSS * 1024,
}));
