// execSecure(): run a command through sbx-exec from Bun, handing secrets on a pipe (fd 3) so they
// never appear in argv, in the child's inherited environment, or in this server's logs.
import fs from "node:fs";

export type Context = "platform" | "user" | string;

export interface ExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  /** Secrets for this one call (only contexts whose policy allows them accept any). */
  secrets?: Record<string, string>;
  /** Path to sbx-exec (default: $SBX_EXEC or "sbx-exec" on PATH). */
  sbxExec?: string;
  /** Working directory of the command. */
  cwd?: string;
}

export async function execSecure(ctx: Context, cmd: string[], opts: ExecOptions = {}): Promise<ExecResult> {
  if (cmd.length === 0) throw new Error("execSecure: empty command");
  const sbx = opts.sbxExec ?? process.env.SBX_EXEC ?? "sbx-exec";
  const withSecrets = opts.secrets !== undefined && Object.keys(opts.secrets).length > 0;
  const argv = [sbx, "--ctx", ctx, ...(withSecrets ? ["--secrets-fd", "3"] : []), "--", ...cmd];
  const proc = Bun.spawn(argv, {
    cwd: opts.cwd,
    stdio: ["ignore", "pipe", "pipe", withSecrets ? "pipe" : "ignore"],
  });
  if (withSecrets) {
    // Bun gives the parent's end of the extra pipe as an fd number.
    const fd = proc.stdio[3] as unknown as number;
    try {
      fs.writeSync(fd, JSON.stringify(opts.secrets));
    } finally {
      fs.closeSync(fd);
    }
  }
  const [stdout, stderr, exitCode] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { exitCode, stdout, stderr };
}
