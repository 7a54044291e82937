// What the tests that run the real sbx-exec need: the binary (SBX_EXEC, default the debug build
// under ../../target/<host tuple>/) and root. `why` says what is missing, if anything: those
// tests are skipped locally and FAIL under CI=true (each test file registers that failure).
import { accessSync, constants, existsSync, readdirSync } from "node:fs";
import { createServer } from "node:net";
import { join, resolve } from "node:path";

export const HERE = import.meta.dir;
export const CI = process.env.CI === "true";
export const BIN = resolve(process.env.SBX_EXEC ?? defaultBin());

/** The debug build under target/<host tuple>/ (the repository's .cargo/config.toml puts it there). */
function defaultBin(): string {
  const target = join(HERE, "../../../target");
  const tuples = existsSync(target) ? readdirSync(target) : [];
  const found = tuples
    .map((t) => join(target, t, "debug/sbx-exec"))
    .find((p) => existsSync(p) && !p.includes("/target/debug/"));
  return found ?? join(target, "<host tuple>/debug/sbx-exec");
}

function missing(): string | undefined {
  try {
    accessSync(BIN, constants.X_OK);
  } catch {
    return `sbx-exec not found at ${BIN} (set SBX_EXEC, or run cargo build)`;
  }
  if (process.getuid?.() !== 0) return "not running as root (the sandbox needs namespaces)";
  return undefined;
}
export const why = missing();

/** A TCP port free on 127.0.0.1 now (the kernel's pick, released at once). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}
