// @sbx/client: run commands through sbx-exec from Bun or Node.
//
// Everything goes through node:child_process (Bun implements it, extra stdio pipes included), so
// one code path serves both runtimes. Per call, sbx-exec gets:
//   fd 3  --status-fd 3   JSON lines {"child-pid":N} then {"exit-code":C,"reason":R,...} (parsed
//                         tolerantly; a refusal is {"exit-code":125,"reason":"refused","message":M})
//   fd 4  --secrets-fd 4  the secrets as one JSON object, written while the process runs
//   cwd   /               never the caller's own directory: `--in-workdir` (the context's workdir)
//                         unless `opts.cwd` names one (`--cwd DIR`)
// Secrets never go into argv or the environment of sbx-exec. No runtime dependencies.
//
// dist/index.js and dist/index.d.ts are generated from this file by `npm run build` (tsc) and
// committed, so the package installs with no build step; a test checks they are up to date.

import { spawn as nodeSpawn, type ChildProcess } from "node:child_process";
import { constants as osConstants } from "node:os";
import { Readable, Writable } from "node:stream";

// ------------------------------------------------------------------------------------------ types

/** How a run ended. */
export type ExitReason =
  /** the command ran and exited on its own (any status) */
  | "exited"
  /** the command (or sbx-exec itself) was killed by a signal; `signal` names it */
  | "signaled"
  /** the policy's `timeout` or `opts.timeout` ran out (sbx-exec exited 124) */
  | "timeout"
  /** `opts.signal` was aborted: sbx-exec got SIGTERM (and SIGKILL after the grace period) */
  | "aborted"
  /** sbx-exec did not start the command (bad usage, policy, context, secrets, isolation) */
  | "refused"
  /** the kernel's OOM killer killed a process of the call (its cgroup's `memory_max`) */
  | "oom"
  /** the command failed after a fork was refused at the call's `pids_max` */
  | "pids_limit"
  /** the persistent context was stopped (`sbx-exec ctx stop`) while the command ran */
  | "stopped"
  /** the persistent context's keeper died while the command ran */
  | "keeper_died";

export interface ClientOptions {
  /** Path to sbx-exec. Default: $SBX_EXEC, else `sbx-exec` on PATH. */
  bin?: string;
  /** Policy file (`--policy FILE`); refused by sbx-exec in setuid mode. */
  policy?: string;
}

export interface RunOptions extends ClientOptions {
  /** Secrets for this call, written as JSON to a pipe on `--secrets-fd` (never argv, never env). */
  secrets?: Record<string, string>;
  /** Non-secret variables (`--env NAME=VALUE`); the context's `env.caller` must list each name. */
  env?: Record<string, string>;
  /**
   * Working directory inside the context, an absolute path (`--cwd DIR`). Default: the context's
   * own (`--in-workdir`: the policy's `workdir`, else its first writable area, else `/`), never
   * the directory of the calling process.
   */
  cwd?: string;
  /** Seconds before sbx-exec stops the command (`--timeout SECS`, at most the policy's `timeout`). */
  timeout?: number;
  /** Aborting ends the whole sandbox: SIGTERM to sbx-exec (forwarded), SIGKILL after `killGraceMs`. */
  signal?: AbortSignal;
  /** Milliseconds between SIGTERM and SIGKILL after an abort (default 5000). */
  killGraceMs?: number;
  /**
   * After sbx-exec exits, how long (ms) stdout/stderr may stay open without data before they are
   * closed (a background process of a persistent context may hold them). Default 1000.
   */
  stdioGraceMs?: number;
  /** Reject with a typed error unless the command exited 0 (`exec` default: true; `spawn`: false). */
  throwOnError?: boolean;
}

export interface ExecOptions extends RunOptions {
  /** Written to the command's stdin, which is then closed (default: stdin is /dev/null). */
  input?: string | Uint8Array;
  /** Bytes kept per stream (default 16 MiB); the rest is read and dropped, `truncated` is set. */
  maxBuffer?: number;
}

/** How one run ended. */
export interface Result {
  /** sbx-exec's exit status: the command's, 128+N for signal N, 124 timeout, 125 refused, 126, 127. */
  code: number;
  /** The command's pid (from the status fd); undefined if it never started. */
  pid: number | undefined;
  reason: ExitReason;
  /** Signal name when the command (or sbx-exec) died of a signal, e.g. "SIGTERM". */
  signal?: string;
  /**
   * Why sbx-exec refused (reason "refused", or status 125): its own message, from the status fd
   * (else from its stderr). Never holds a secret value.
   */
  message?: string;
}

export interface ExecResult extends Result {
  stdout: string;
  stderr: string;
  /** Some output was dropped because of `maxBuffer`. */
  truncated: boolean;
}

/** A running sandbox from `spawn()`. */
export interface SandboxProcess {
  stdout: ReadableStream<Uint8Array>;
  stderr: ReadableStream<Uint8Array>;
  /** The command's stdin; close it when the command reads to end of file. */
  stdin: WritableStream<Uint8Array | string>;
  /** The command's pid once sbx-exec reports it (`{"child-pid":N}`); undefined if it never starts. */
  pid: Promise<number | undefined>;
  /** The pid of sbx-exec itself. */
  sbxPid: number | undefined;
  /** Settles when sbx-exec exits; rejects with a typed error only if `throwOnError`. */
  exited: Promise<Result>;
  /** Send a signal (name or number) to sbx-exec, which forwards TERM, INT, HUP, QUIT, USR1, USR2, WINCH to the command. */
  kill(signal?: string | number): void;
}

/** One entry of `sbx-exec ctx list --json`. */
export interface ContextInfo {
  name: string;
  keeper_pid: number;
  /** processes besides the keeper */
  processes: number;
  age_secs: number;
  running: boolean;
  [more: string]: unknown;
}

/** `sbx-exec probe --json`. */
export interface ProbeReport {
  mode: "root" | "setuid" | "rootless" | "unprivileged" | string;
  namespaces: Record<string, boolean>;
  user_namespaces: { creatable: boolean; max_user_namespaces: number | null };
  landlock_abi: number;
  seccomp: boolean;
  cgroup: unknown;
  legacy_tiocsti: boolean | null;
  policy: string;
  contexts: Record<string, { status: "full" | "degraded" | "unavailable" | string; missing: string[]; degrade: boolean }>;
  /** every context runs as written */
  secure: boolean;
  rootless_loses: string[];
  [more: string]: unknown;
}

// ----------------------------------------------------------------------------------------- errors

/** Base of every error this package throws for a finished run. Never holds a secret it was given. */
export class SbxError extends Error {
  /** sbx-exec's exit status (-1 when it could not be started at all). */
  readonly code: number;
  /** What the run wrote to stderr (for `spawn`, the last 64 KiB that passed through). */
  readonly stderr: string;
  readonly stdout: string;
  readonly pid: number | undefined;
  readonly reason: ExitReason | undefined;
  /** For a file operation (`createSandbox`): what `sbx-exec file` reported (kind, op, path, errno). */
  readonly file: FileFailure | undefined;
  constructor(
    message: string,
    r: { code: number; stderr?: string; stdout?: string; pid?: number; reason?: ExitReason; file?: FileFailure },
  ) {
    super(message);
    this.name = new.target.name;
    this.code = r.code;
    this.stderr = r.stderr ?? "";
    this.stdout = r.stdout ?? "";
    this.pid = r.pid;
    this.reason = r.reason;
    this.file = r.file;
  }
}
/** Exit 125 (whatever the reason), or reason "refused": sbx-exec refused or failed; the message is
 * sbx-exec's own (the status fd's `message`, else its stderr). */
export class Refused extends SbxError {}
/** Exit 126: the command was found but cannot be executed. */
export class NotExecutable extends SbxError {}
/** Exit 127: the command was not found; or a file operation's path is not there (`not_found`). */
export class NotFound extends SbxError {}
/** Exit 124: the timeout ran out; the command was stopped. */
export class TimedOut extends SbxError {}
/** Exit 128+N: the command died of signal N. */
export class Signaled extends SbxError {
  readonly signal: string;
  readonly signo: number;
  constructor(message: string, r: ConstructorParameters<typeof SbxError>[1] & { signal: string; signo: number }) {
    super(message, r);
    this.signal = r.signal;
    this.signo = r.signo;
  }
}
/** `opts.signal` was aborted; the sandbox was ended. */
export class Aborted extends SbxError {}
/** Any other non-zero status. */
export class NonZeroExit extends SbxError {}
/** sbx-exec itself could not be started (missing binary, not executable). */
export class SbxUnavailable extends SbxError {}

// File operations (`createSandbox`): one class per kind `sbx-exec file` reports; `not_found` is
// `NotFound`, `refused` (a read-only mount, every 125) and `usage` are `Refused`, 124 `TimedOut`.
/** `permission_denied` (EACCES, EPERM): the context's identity may not do this. */
export class PermissionDenied extends SbxError {}
/** `is_a_directory` (EISDIR): e.g. reading or writing a directory. */
export class IsADirectory extends SbxError {}
/** `not_a_directory` (ENOTDIR): a component of the path, or what `ls` lists, is not a directory. */
export class NotADirectory extends SbxError {}
/** `exists` (EEXIST): e.g. `mkdir` of a path that is there. */
export class AlreadyExists extends SbxError {}
/** `not_empty` (ENOTEMPTY): `remove` of a directory with entries, without `recursive`. */
export class NotEmpty extends SbxError {}
/** `symlink` (ELOOP): a link where none is followed (the last component of `writeFile`, e.g. one
 * user code planted), a loop of links, or a magic /proc link. Nothing was written. */
export class SymlinkRefused extends SbxError {}
/** `not_regular`: a FIFO, socket or device where a regular file is read or written. */
export class NotRegularFile extends SbxError {}
/** `too_large`: no space, a quota, or a file size limit. */
export class TooLarge extends SbxError {}
/** `io`: any other failure (an errno without a kind of its own, a broken stream). */
export class IoError extends SbxError {}

// ---------------------------------------------------------------------------------------- helpers

const STATUS_FD = 3;
const SECRETS_FD = 4;
const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const STDERR_TAIL = 64 * 1024;
const MESSAGE_MAX = 2000;

function binOf(o: ClientOptions): string {
  return o.bin ?? process.env.SBX_EXEC ?? "sbx-exec";
}

function signalName(n: number): string {
  for (const [name, num] of Object.entries(osConstants.signals)) if (num === n) return name;
  return `SIG${n}`;
}

function signalNumber(name: string): number {
  return (osConstants.signals as Record<string, number>)[name] ?? 0;
}

/** The argv for a run, without the binary. Exported for tests and debugging. */
export function buildArgs(ctx: string, argv: string[], opts: RunOptions, fds: { secrets: boolean }): string[] {
  if (typeof ctx !== "string" || ctx === "") throw new TypeError("sbx: ctx must be a non-empty string");
  if (!Array.isArray(argv) || argv.length === 0 || !argv.every((a) => typeof a === "string"))
    throw new TypeError("sbx: argv must be a non-empty array of strings");
  const args: string[] = [];
  if (opts.policy !== undefined) args.push("--policy", opts.policy);
  // The newer flags come before --ctx: an sbx-exec without them then refuses (125) instead of
  // taking `--env` for the command.
  for (const [k, v] of Object.entries(opts.env ?? {})) {
    if (!NAME.test(k)) throw new TypeError(`sbx: env: invalid variable name ${JSON.stringify(k)}`);
    if (typeof v !== "string" || v.includes("\0")) throw new TypeError(`sbx: env: ${k} must be a string without NUL`);
    args.push("--env", `${k}=${v}`);
  }
  // Never the caller's directory: sbx-exec would take it as the command's (it is spawned in /).
  if (opts.cwd !== undefined) {
    if (typeof opts.cwd !== "string" || !opts.cwd.startsWith("/") || opts.cwd.includes("\0"))
      throw new TypeError("sbx: cwd must be an absolute path");
    args.push("--cwd", opts.cwd);
  } else {
    args.push("--in-workdir");
  }
  if (opts.timeout !== undefined) {
    if (!Number.isInteger(opts.timeout) || opts.timeout <= 0)
      throw new TypeError("sbx: timeout must be a positive integer (seconds)");
    args.push("--timeout", String(opts.timeout));
  }
  args.push("--ctx", ctx, "--status-fd", String(STATUS_FD));
  if (fds.secrets) args.push("--secrets-fd", String(SECRETS_FD));
  args.push("--", ...argv);
  return args;
}

function checkSecrets(s: Record<string, string> | undefined): boolean {
  if (s === undefined || s === null) return false;
  if (typeof s !== "object") throw new TypeError("sbx: secrets must be an object of strings");
  const names = Object.keys(s);
  for (const k of names) {
    if (!NAME.test(k)) throw new TypeError(`sbx: secrets: invalid name ${JSON.stringify(k)}`);
    // Never name the value.
    if (typeof s[k] !== "string") throw new TypeError(`sbx: secrets: ${k} must be a string`);
  }
  return names.length > 0;
}

/** `p`, or undefined after `ms`; the timer is cleared as soon as `p` settles, so it never keeps
 * the process alive after the call is over. */
function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const t = new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), ms)));
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** A child's output as a web ReadableStream with backpressure, closable once the child is gone. */
class OutPipe {
  readonly stream: ReadableStream<Uint8Array>;
  readonly done: Promise<void>;
  private ended = false;
  private cancelled = false;
  private lastData = Date.now();
  private finish!: () => void;

  constructor(private readonly src: Readable, onChunk?: (b: Uint8Array) => void) {
    let resolveDone!: () => void;
    this.done = new Promise((r) => (resolveDone = r));
    this.stream = new ReadableStream<Uint8Array>(
      {
        start: (c) => {
          this.finish = () => {
            if (this.ended) return;
            this.ended = true;
            if (!this.cancelled) {
              try {
                c.close();
              } catch {}
            }
            resolveDone();
          };
          src.on("data", (b: Buffer | string) => {
            this.lastData = Date.now();
            const chunk = typeof b === "string" ? new TextEncoder().encode(b) : new Uint8Array(b);
            onChunk?.(chunk);
            if (this.cancelled || this.ended) return;
            c.enqueue(chunk);
            if ((c.desiredSize ?? 1) <= 0) src.pause();
          });
          src.on("end", () => this.finish());
          src.on("close", () => this.finish());
          src.on("error", () => this.finish());
        },
        pull: () => {
          src.resume();
        },
        cancel: () => {
          // Keep draining, so the command never blocks on a full pipe nobody reads.
          this.cancelled = true;
          src.resume();
        },
      },
      { highWaterMark: 64 * 1024, size: (ch) => ch?.byteLength ?? 0 },
    );
  }

  /** The child exited: end the stream once it has been flowing without data for `ms`. */
  closeWhenIdle(ms: number) {
    const check = () => {
      if (this.ended) return;
      if (!this.src.isPaused() && Date.now() - this.lastData >= ms) {
        this.src.destroy();
        this.finish();
      } else {
        setTimeout(check, ms).unref?.();
      }
    };
    setTimeout(check, ms).unref?.();
  }
}

function inPipe(dst: Writable): WritableStream<Uint8Array | string> {
  dst.on("error", () => {}); // EPIPE once the command is gone: reported by write()'s promise
  return new WritableStream<Uint8Array | string>({
    write: (chunk) =>
      new Promise<void>((resolve, reject) => {
        dst.write(chunk, (e) => (e ? reject(e) : resolve()));
      }),
    close: () => new Promise<void>((resolve) => dst.end(() => resolve())),
    abort: () => {
      dst.destroy();
    },
  });
}

/** The status fd's JSON lines, parsed tolerantly (unknown fields and non-JSON lines are ignored). */
class StatusReader {
  childPid: number | undefined;
  exitCode: number | undefined;
  reason: string | undefined;
  signal: string | undefined;
  message: string | undefined;
  readonly ended: Promise<void>;
  private rest = "";
  onPid: (pid: number) => void = () => {};

  constructor(private readonly src: Readable) {
    this.ended = new Promise((r) => {
      src.on("end", r);
      src.on("close", r);
      src.on("error", r);
    });
    src.setEncoding("utf8");
    src.on("data", (s: string) => {
      this.rest += s;
      let i: number;
      while ((i = this.rest.indexOf("\n")) >= 0) {
        this.line(this.rest.slice(0, i));
        this.rest = this.rest.slice(i + 1);
      }
    });
    src.on("end", () => this.rest && this.line(this.rest));
  }

  private line(text: string) {
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch {
      return;
    }
    if (v === null || typeof v !== "object") return;
    const o = v as Record<string, unknown>;
    if (typeof o["child-pid"] === "number") {
      this.childPid = o["child-pid"];
      this.onPid(this.childPid);
    }
    if (typeof o["exit-code"] === "number") this.exitCode = o["exit-code"];
    if (typeof o["reason"] === "string") this.reason = o["reason"];
    if (typeof o["signal"] === "string" && /^SIG[A-Z0-9+-]+$/.test(o["signal"])) this.signal = o["signal"];
    if (typeof o["message"] === "string") this.message = o["message"].slice(0, MESSAGE_MAX);
  }

  close() {
    this.src.destroy();
  }
}

const REASONS: ExitReason[] = [
  "exited", "signaled", "timeout", "aborted", "refused", "oom", "pids_limit", "stopped", "keeper_died",
];
/** Reasons whose status is not a signal death even when it is above 128. */
const NOT_A_SIGNAL: ExitReason[] = ["exited", "refused", "timeout"];

function classify(
  exit: { code: number | null; signal: NodeJS.Signals | null },
  status: StatusReader,
  aborted: boolean,
  stderr: string,
): Result {
  let code: number;
  let signal: string | undefined;
  if (status.exitCode !== undefined) code = status.exitCode;
  else if (exit.code !== null) code = exit.code;
  else {
    // sbx-exec itself was killed (SIGKILL after an abort, or by someone else).
    signal = exit.signal ?? "SIGKILL";
    code = 128 + signalNumber(signal);
  }
  signal ??= status.signal;
  if (signal === undefined && code > 128 && code <= 128 + 64) signal = signalName(code - 128);
  const pid = status.childPid;
  let reason: ExitReason;
  if (aborted) reason = "aborted";
  else if (status.reason !== undefined && (REASONS as string[]).includes(status.reason))
    reason = status.reason as ExitReason;
  else if (exit.code === null) reason = "signaled";
  // No (known) reason on the status fd: 125 is sbx-exec's own failure; 126/127 before anything
  // started is a refusal too.
  else if (code === 125) reason = "refused";
  else if (pid === undefined && (code === 126 || code === 127)) reason = "refused";
  else if (code === 124) reason = "timeout";
  else if (signal !== undefined) reason = "signaled";
  else reason = "exited";
  const r: Result = { code, pid, reason };
  if (signal !== undefined && !NOT_A_SIGNAL.includes(reason)) r.signal = signal;
  if (reason === "refused" || code === 125) {
    // Once the command may have run, its stderr is its own: only sbx-exec's lines are taken.
    const message = status.message ?? sbxMessage(stderr, pid === undefined);
    if (message) r.message = message;
  }
  return r;
}

/** sbx-exec's own message on stderr: its `sbx-exec: …`/`error: …` lines, else (only when
 * `lastLine`: nothing else can have written there) the last non-empty line. */
function sbxMessage(stderr: string, lastLine = true): string {
  const lines = stderr.split("\n").map((l) => l.trim()).filter(Boolean);
  const own = lines.filter((l) => l.startsWith("sbx-exec:") || l.startsWith("error:"));
  return (own.length ? own.join("; ") : lastLine ? lines.at(-1) ?? "" : "").slice(0, MESSAGE_MAX);
}

/** The typed error for a result that is not a success, or undefined. Exit 125 is always `Refused`
 * (sbx-exec's own status), with the message from the status fd, else from stderr. */
export function errorFor(r: Result & { stderr?: string; stdout?: string }): SbxError | undefined {
  if (r.code === 0 && r.reason !== "aborted" && r.reason !== "refused") return undefined;
  const d = { code: r.code, stderr: r.stderr, stdout: r.stdout, pid: r.pid, reason: r.reason };
  const why = r.message ?? sbxMessage(r.stderr ?? "", r.pid === undefined);
  if (r.reason === "aborted") return new Aborted(`sbx: aborted; the sandbox was ended (status ${r.code})`, d);
  if (r.code === 125 && r.reason === "exited" && !r.message)
    return new Refused("sbx: status 125, sbx-exec's refusal status (here the command itself exited 125)", d);
  if (r.code === 125) return new Refused(`sbx-exec refused: ${why || "exit 125"}`, d);
  if (r.code === 127) return new NotFound(`sbx: command not found (${why})`, d);
  if (r.code === 126) return new NotExecutable(`sbx: command not executable (${why})`, d);
  if (r.reason === "refused") return new Refused(`sbx-exec refused: ${why || `exit ${r.code}`}`, d);
  if (r.reason === "timeout") return new TimedOut("sbx: the timeout ran out; the command was stopped (exit 124)", d);
  const also = r.reason === "signaled" || r.reason === "exited" ? "" : `; reason ${r.reason}`;
  if (r.signal !== undefined)
    return new Signaled(`sbx: the command was killed by ${r.signal} (status ${r.code}${also})`, {
      ...d,
      signal: r.signal,
      signo: signalNumber(r.signal) || r.code - 128,
    });
  return new NonZeroExit(`sbx: the command exited with status ${r.code}${also}`, d);
}

// -------------------------------------------------------------------------------------- the calls

interface Started {
  proc: SandboxProcess;
  /** Never rejects. `stderr`: the last 64 KiB or more the run wrote there. */
  done: Promise<{ result: Result; err?: SbxError; stderr: string }>;
}

function start(ctx: string, argv: string[], opts: RunOptions, stdin: "pipe" | "ignore"): Started {
  const withSecrets = checkSecrets(opts.secrets);
  return launch(buildArgs(ctx, argv, opts, { secrets: withSecrets }), opts, stdin, withSecrets);
}

/** Start sbx-exec with `args` (which name `--status-fd 3`, and `--secrets-fd 4` if `withSecrets`). */
function launch(args: string[], opts: RunOptions, stdin: "pipe" | "ignore", withSecrets: boolean): Started {
  const bin = binOf(opts);
  const signal = opts.signal;
  if (signal?.aborted) throw new Aborted("sbx: aborted before start; nothing was run", { code: -1, reason: "aborted" });

  const stdio: ("pipe" | "ignore")[] = [stdin, "pipe", "pipe", "pipe"];
  if (withSecrets) stdio.push("pipe");
  // In /, so sbx-exec never sees this process's directory (it would use it as the command's).
  const child: ChildProcess = nodeSpawn(bin, args, { stdio, cwd: "/" });
  // A binary that cannot be started: Bun leaves the stdio null; 'error' then reports it.
  const none = () => Readable.from([]);
  const stdoutSrc = child.stdout ?? none();
  const stderrSrc = child.stderr ?? none();
  const statusSrc = (child.stdio[STATUS_FD] as Readable | null) ?? none();
  const stdinDst = child.stdin ?? new Writable({ write: (_c, _e, cb) => cb(new Error("sbx-exec did not start")) });

  // Secrets: one JSON object, written asynchronously while sbx-exec reads it (a 1 MiB value
  // cannot fill a pipe and deadlock). sbx-exec may refuse without reading: ignore EPIPE.
  if (withSecrets) {
    const s = child.stdio[SECRETS_FD] as Writable | null;
    s?.on("error", () => {});
    s?.end(JSON.stringify(opts.secrets));
  }

  const status = new StatusReader(statusSrc);
  let tail = "";
  const dec = new TextDecoder();
  const errp = new OutPipe(stderrSrc, (b) => {
    tail += dec.decode(b, { stream: true });
    if (tail.length > STDERR_TAIL * 2) tail = tail.slice(-STDERR_TAIL);
  });
  const out = new OutPipe(stdoutSrc);

  let resolvePid!: (p: number | undefined) => void;
  const pid = new Promise<number | undefined>((r) => (resolvePid = r));
  status.onPid = (p) => resolvePid(p);

  let exitedFlag = false;
  let aborted = false;
  let killTimer: ReturnType<typeof setTimeout> | undefined;
  const onAbort = () => {
    if (exitedFlag) return;
    aborted = true;
    try {
      child.kill("SIGTERM");
    } catch {}
    killTimer = setTimeout(() => {
      if (!exitedFlag) {
        try {
          child.kill("SIGKILL");
        } catch {}
      }
    }, opts.killGraceMs ?? 5000);
  };
  signal?.addEventListener("abort", onAbort, { once: true });

  const grace = opts.stdioGraceMs ?? 1000;
  const done = new Promise<{ result: Result; err?: SbxError; stderr: string }>((resolve) => {
    let settled = false;
    child.on("error", (e: NodeJS.ErrnoException) => {
      if (settled || child.pid !== undefined) return;
      settled = true;
      exitedFlag = true;
      signal?.removeEventListener("abort", onAbort);
      resolvePid(undefined);
      const err = new SbxUnavailable(`sbx: cannot start ${bin}: ${e.code ?? e.message}`, { code: -1 });
      resolve({ result: { code: -1, pid: undefined, reason: "refused" }, err, stderr: "" });
    });
    child.on("exit", async (code, sig) => {
      if (settled) return;
      settled = true;
      exitedFlag = true;
      if (killTimer) clearTimeout(killTimer);
      signal?.removeEventListener("abort", onAbort);
      // The status fd is held by sbx-exec alone: it ends now. Bound the wait anyway. (Every wait
      // here clears its timer when it is over: none may keep the process alive after the call.)
      await within(status.ended, 1000);
      status.close();
      resolvePid(status.childPid);
      // stdout/stderr end at once unless a background process of a persistent context holds
      // them: then they are closed after `grace` ms without data (they keep the loop alive
      // until then, so nothing written meanwhile is lost).
      out.closeWhenIdle(grace);
      errp.closeWhenIdle(grace);
      await within(errp.done, grace * 2);
      const result = classify({ code, signal: sig }, status, aborted, tail);
      resolve({ result, err: errorFor({ ...result, stderr: tail }), stderr: tail });
    });
  });

  const proc: SandboxProcess = {
    stdout: out.stream,
    stderr: errp.stream,
    stdin: stdin === "pipe" ? inPipe(stdinDst) : new WritableStream(),
    pid,
    sbxPid: child.pid,
    exited: done.then(({ result, err }) => {
      if (err instanceof SbxUnavailable) throw err;
      if (err && opts.throwOnError) throw err;
      return result;
    }),
    kill: (s = "SIGTERM") => {
      if (!exitedFlag) child.kill(s as NodeJS.Signals | number);
    },
  };
  proc.exited.catch(() => {}); // a caller that never awaits it must not get an unhandled rejection
  return { proc, done };
}

/** Start a command in context `ctx` and stream its stdio. */
export function spawn(ctx: string, argv: string[], opts: RunOptions = {}): SandboxProcess {
  return start(ctx, argv, opts, "pipe").proc;
}

async function collect(s: ReadableStream<Uint8Array>, max: number): Promise<{ text: string; truncated: boolean }> {
  const parts: Uint8Array[] = [];
  let size = 0;
  let truncated = false;
  const reader = s.getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    if (size + value.byteLength > max) {
      truncated = true;
      const room = max - size;
      if (room > 0) parts.push(value.subarray(0, room));
      size = max;
      continue;
    }
    parts.push(value);
    size += value.byteLength;
  }
  return { text: Buffer.concat(parts).toString("utf8"), truncated };
}

/** Run a command in context `ctx` and buffer its output. Throws a typed error unless it exits 0
 * (with `throwOnError: false`, returns the result instead). */
export async function exec(ctx: string, argv: string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const st = start(ctx, argv, opts, opts.input === undefined ? "ignore" : "pipe");
  if (opts.input !== undefined) {
    const w = st.proc.stdin.getWriter();
    w.write(opts.input).then(() => w.close()).catch(() => {});
  }
  const max = opts.maxBuffer ?? 16 * 1024 * 1024;
  const [o, e, { result, err }] = await Promise.all([collect(st.proc.stdout, max), collect(st.proc.stderr, max), st.done]);
  const r: ExecResult = { ...result, stdout: o.text, stderr: e.text, truncated: o.truncated || e.truncated };
  if (err instanceof SbxUnavailable) throw err;
  if (err && opts.throwOnError !== false) throw errorFor(r) ?? err;
  return r;
}

// ------------------------------------------------------------------------- subcommands (as root)

function runSbx(opts: ClientOptions, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const bin = binOf(opts);
  return new Promise((resolve, reject) => {
    const c = nodeSpawn(bin, args, { stdio: ["ignore", "pipe", "pipe"], cwd: "/" });
    let stdout = "";
    let stderr = "";
    c.stdout?.setEncoding("utf8").on("data", (s: string) => (stdout += s));
    c.stderr?.setEncoding("utf8").on("data", (s: string) => (stderr += s));
    c.on("error", (e: NodeJS.ErrnoException) =>
      reject(new SbxUnavailable(`sbx: cannot start ${bin}: ${e.code ?? e.message}`, { code: -1 })),
    );
    c.on("close", (code, sig) => resolve({ code: code ?? 128 + signalNumber(sig ?? "SIGKILL"), stdout, stderr }));
  });
}

function refusedBy(r: { code: number; stdout: string; stderr: string }, what: string): SbxError {
  const d = { code: r.code, stderr: r.stderr, stdout: r.stdout, reason: "refused" as const };
  if (r.code === 125) return new Refused(`sbx-exec ${what} refused: ${sbxMessage(r.stderr) || "exit 125"}`, d);
  return new NonZeroExit(`sbx-exec ${what} exited with ${r.code}: ${sbxMessage(r.stderr)}`, d);
}

export const contexts = {
  /** `sbx-exec ctx list --json`: the persistent contexts (needs root). */
  async list(opts: ClientOptions = {}): Promise<ContextInfo[]> {
    const args = ["ctx", "list", "--json"];
    if (opts.policy !== undefined) args.push("--policy", opts.policy);
    const r = await runSbx(opts, args);
    if (r.code !== 0) throw refusedBy(r, "ctx list");
    const v = JSON.parse(r.stdout.trim() || "[]");
    if (!Array.isArray(v)) throw new SbxError("sbx-exec ctx list --json: not a JSON array", { code: r.code });
    return v as ContextInfo[];
  },
  /** `sbx-exec ctx stop NAME`: true once stopped, false if it was not running (needs root). */
  async stop(name: string, opts: ClientOptions & { timeout?: number } = {}): Promise<boolean> {
    const args = ["ctx", "stop", name];
    if (opts.timeout !== undefined) {
      if (!Number.isInteger(opts.timeout) || opts.timeout < 0)
        throw new TypeError("sbx: timeout must be a non-negative integer (seconds)");
      args.push("--timeout", String(opts.timeout));
    }
    if (opts.policy !== undefined) args.push("--policy", opts.policy);
    const r = await runSbx(opts, args);
    if (r.code === 0) return true;
    if (r.code === 1) return false;
    throw refusedBy(r, "ctx stop");
  },
};

/** `sbx-exec probe --json`: what this host can isolate, and each context's verdict. */
export async function probe(opts: ClientOptions = {}): Promise<ProbeReport> {
  const args = ["probe", "--json"];
  if (opts.policy !== undefined) args.push("--policy", opts.policy);
  const r = await runSbx(opts, args);
  // 0: every context runs as written; 1: some cannot; both print the report.
  if (r.code !== 0 && r.code !== 1) throw refusedBy(r, "probe");
  return JSON.parse(r.stdout) as ProbeReport;
}

/** Whether every context (or just `ctx`) of the effective policy runs as written, nothing degraded. */
export async function hasSecureExecution(opts: ClientOptions & { ctx?: string } = {}): Promise<boolean> {
  const p = await probe(opts);
  if (opts.ctx !== undefined) return p.contexts[opts.ctx]?.status === "full";
  return p.secure === true;
}

/** The same API with defaults (bin, policy) bound. */
export function createClient(defaults: ClientOptions) {
  const m = <T extends ClientOptions>(o?: T) => ({ ...defaults, ...(o ?? {}) }) as T;
  return {
    exec: (ctx: string, argv: string[], opts?: ExecOptions) => exec(ctx, argv, m(opts)),
    spawn: (ctx: string, argv: string[], opts?: RunOptions) => spawn(ctx, argv, m(opts)),
    contexts: {
      list: (opts?: ClientOptions) => contexts.list(m(opts)),
      stop: (name: string, opts?: ClientOptions & { timeout?: number }) => contexts.stop(name, m(opts)),
    },
    probe: (opts?: ClientOptions) => probe(m(opts)),
    hasSecureExecution: (opts?: ClientOptions & { ctx?: string }) => hasSecureExecution(m(opts)),
  };
}

// ------------------------------------------------------------------- createSandbox: contexts, files
//
// A context's commands go through `exec`/`spawn` above; its files through `sbx-exec file --ctx
// NAME OP PATH`, which does the operation *inside* the context (its namespaces and mount view, as
// its identity, with every wall up): a link user code planted can only lead a write where that
// code could write itself, and what is written for it belongs to it. The client never opens the
// path. Contents stream through the tool's stdin/stdout with backpressure, never held whole.

/** What `sbx-exec file` reports on failure (the last line of its stderr, one JSON object). */
export type FileErrorKind =
  | "not_found"
  | "permission_denied"
  | "is_a_directory"
  | "not_a_directory"
  | "exists"
  | "not_empty"
  | "symlink"
  | "not_regular"
  | "too_large"
  | "refused"
  | "usage"
  | "io";

export interface FileFailure {
  /** The kind sbx-exec file reported (a newer sbx-exec may report a kind not listed here). */
  kind: FileErrorKind | string;
  op: string;
  path: string;
  /** The errno's name, e.g. "ENOENT", when the kernel gave one. */
  errno?: string;
  /** sbx-exec's own message (names the path, never the contents). */
  message: string;
}

export type FileType = "file" | "directory" | "symlink" | "fifo" | "socket" | "char_device" | "block_device";

/** `stat`: of the entry itself (a link is not followed); ids as seen inside the context. */
export interface FileStat {
  type: FileType | string;
  size: number;
  /** permission bits (0o644 is 420) */
  mode: number;
  /** seconds since the epoch, and the nanoseconds beyond */
  mtime: number;
  mtime_nsec: number;
  uid: number;
  gid: number;
}

/** One entry of `ls` (sorted by name). */
export interface DirEntry {
  name: string;
  type: FileType | string;
  size: number;
}

/** Options of every file operation. */
export interface FileOptions {
  /** Seconds before sbx-exec stops the operation (`--timeout`, exit 124: `TimedOut`). */
  timeout?: number;
  /** Aborting ends the operation (`Aborted`); a write may then have written part of the file. */
  signal?: AbortSignal;
}

export interface WriteFileOptions extends FileOptions {
  /** Permission bits of a file created (default 0o644, under the umask; no setuid/setgid/sticky). */
  mode?: number;
  /** Add to the end of the file instead of truncating it. */
  append?: boolean;
}

/** What `writeFile` takes: text (UTF-8), bytes, or a stream of either (piped, never held whole). */
export type FileData =
  | string
  | Uint8Array
  | ReadableStream<Uint8Array | string>
  | AsyncIterable<Uint8Array | string>
  | Iterable<Uint8Array | string>;

/** A command: an argv array, or a string run by `/bin/sh -c` inside the context (the context
 * must let it run /bin/sh: a policy's `exec.allow` may not). */
export type Command = string | string[];

/** A process from `startProcess`: started (its pid known), running until it exits or is killed. */
export interface ProcessHandle {
  /** The command's pid (as seen from the host's pid namespace, from sbx-exec's status fd). */
  readonly pid: number;
  /** The pid of the sbx-exec holding it. */
  readonly sbxPid: number | undefined;
  readonly context: string;
  readonly argv: string[];
  stdout: ReadableStream<Uint8Array>;
  stderr: ReadableStream<Uint8Array>;
  /** Its stdin; close it when the command reads to end of file. */
  stdin: WritableStream<Uint8Array | string>;
  /** Send a signal (default SIGTERM) through sbx-exec, which forwards TERM, INT, HUP, QUIT, USR1,
   * USR2 and WINCH to the command; SIGKILL ends sbx-exec and with it the whole sandbox. */
  kill(signal?: string | number): void;
  /** Settles when it has exited: the result, or (with `throwOnError`) the typed error. */
  wait(): Promise<Result>;
}

/** The file operations of one context. */
export interface SandboxFiles {
  /** The context they run in. */
  readonly name: string;
  /** Write `data` to `path` (created, or truncated unless `append`), as the context's identity.
   * A symbolic link as the last component is never followed (`SymlinkRefused`). A stream is piped:
   * if it fails, the operation is ended and its error thrown; the file may then hold part of it. */
  writeFile(path: string, data: FileData, opts?: WriteFileOptions): Promise<void>;
  /** The whole file, as bytes, or as text with `{encoding: "utf8"}` (use `readFileStream` for big ones). */
  readFile(path: string, opts?: FileOptions & { encoding?: "bytes" }): Promise<Uint8Array>;
  readFile(path: string, opts: FileOptions & { encoding: "utf8" }): Promise<string>;
  /** The file's contents as a stream; it errors with the typed error if the operation fails.
   * Cancelling it ends the operation. */
  readFileStream(path: string, opts?: FileOptions): ReadableStream<Uint8Array>;
  /** Whether the path is there (a link counts, even a dangling one). */
  exists(path: string, opts?: FileOptions): Promise<boolean>;
  /** A directory's entries, sorted by name (a link to a directory is followed). */
  ls(path: string, opts?: FileOptions): Promise<DirEntry[]>;
  /** Remove a file, a link (never what it names), an empty directory, or with `recursive` a tree. */
  remove(path: string, opts?: FileOptions & { recursive?: boolean }): Promise<void>;
  /** Make a directory (0755 under the umask); with `parents`, also the missing parents, and no
   * error if it exists. */
  mkdir(path: string, opts?: FileOptions & { parents?: boolean }): Promise<void>;
  /** The entry itself (a link is not followed). */
  stat(path: string, opts?: FileOptions): Promise<FileStat>;
}

/** One context: its commands and its files. */
export interface SandboxContext extends SandboxFiles {
  /** Run a command and buffer its output (as `exec`); throws a typed error unless it exits 0. */
  exec(cmd: Command, opts?: ExecOptions): Promise<ExecResult>;
  /** Start a command (as `spawn`) and resolve once it runs (its pid known); rejects with the
   * typed error if sbx-exec refused it or it could not start. */
  startProcess(cmd: Command, opts?: RunOptions): Promise<ProcessHandle>;
  /** The processes `startProcess` started in this context through this sandbox object that have
   * not exited yet, oldest first (in a persistent context they run across calls until killed).
   * What the context's code started by itself is not listed: see `listProcesses`. */
  processes(): ProcessHandle[];
  /** The processes running in the context now, as it sees them (read from its /proc by a
   * `/bin/sh -c` run there): for a persistent context also those earlier calls left running,
   * whoever started them. Without the listing itself and without pid 1 (a persistent context's
   * keeper, or a one-shot call's init). Pids are the context's own (its pid namespace); in a
   * context without one they are the host's. Needs a context that may run `/bin/sh`. */
  listProcesses(opts?: FileOptions): Promise<ContextProcess[]>;
}

/** A process as `listProcesses` reports it. */
export interface ContextProcess {
  /** Its pid inside the context (its pid namespace). */
  pid: number;
  /** Its parent's pid inside the context; 0 when the parent is outside it (a command a call of a
   * persistent context started, whose parent is that call's sbx-exec). */
  ppid: number;
  /** Its argv joined by spaces (as `ps -o args` shows it); `[name]` when it has none (a zombie). */
  command: string;
}

export interface SandboxOptions {
  /** Policy file (`--policy FILE`); refused by sbx-exec in setuid mode. Default: sbx-exec's own. */
  policy?: string;
  /** Path to sbx-exec. Default: `bin`, else $SBX_EXEC, else `sbx-exec` on PATH. */
  sbxExec?: string;
  /** Same as `sbxExec` (the name the other calls use). */
  bin?: string;
  /** The context names behind `platform` and `user` (default "platform" and "user"). */
  platform?: string;
  user?: string;
  /**
   * `shared`: the work area platform and user code both see (in the shipped policies
   * `/workspace`, writable in both). Its files are handled in `context` (default: the `user`
   * context), so what is written there belongs to user code and stays writable by it, and a link
   * it planted leads nowhere it could not write itself. Paths are confined to `root` (default
   * "/workspace"): a relative path is taken under it, one outside it is `Refused` without running.
   */
  shared?: { context?: string; root?: string };
  /** Where `registerPlatformOperation` listens (default {@link OPS_SOCKET}, the path sbx-exec
   * connects to). */
  opsSocket?: string;
}

/** The sandbox: `platform`, `user`, `shared`, and any context of the policy by name. */
export interface Sandbox {
  readonly platform: SandboxContext;
  readonly user: SandboxContext;
  /** The shared work area (see `SandboxOptions.shared`): files only, as the seeds' API has it. */
  readonly shared: SandboxFiles & { readonly root: string };
  /** Any context of the policy by name. */
  context(name: string): SandboxContext;
  /** The persistent contexts running (`sbx-exec ctx list --json`; needs root). */
  listContexts(): Promise<ContextInfo[]>;
  /** `sbx-exec probe --json` for this sandbox's policy. */
  probe(): Promise<ProbeReport>;
  /**
   * Perform platform operation `name` for user code that asks for it (`callPlatformOperation`,
   * `sbx-exec op NAME`, `POST http://sbx-ops/NAME`) from a context whose policy lists it in `ops`.
   * The first registration starts this sandbox's control plane (`serveOps` on `opsSocket`, as
   * root; `/run/sbx` is made 0700 if missing); later ones add to it. Resolves once it listens.
   * `name` as the policy's `ops` has it (a lowercase letter, then up to 62 of a-z 0-9 _ -), each
   * once: a second registration of a name is a `TypeError`. The handler runs here, with this
   * process's credentials; only its result (or its error's message) reaches user code.
   */
  registerPlatformOperation(name: string, handler: OpHandler): Promise<void>;
  /** Stop the control plane `registerPlatformOperation` started, if any (calls in flight finish,
   * the socket is removed); registering afterwards is refused. Processes started through the
   * sandbox and persistent contexts are left as they are. Calling it again does nothing. */
  close(): Promise<void>;
}

const FILE_ERRORS: Record<string, new (m: string, r: ConstructorParameters<typeof SbxError>[1]) => SbxError> = {
  not_found: NotFound,
  permission_denied: PermissionDenied,
  is_a_directory: IsADirectory,
  not_a_directory: NotADirectory,
  exists: AlreadyExists,
  not_empty: NotEmpty,
  symlink: SymlinkRefused,
  not_regular: NotRegularFile,
  too_large: TooLarge,
  refused: Refused,
  usage: Refused,
  io: IoError,
};

/** The JSON line `sbx-exec file` ends its stderr with on failure, if there is one. */
export function parseFileFailure(stderr: string): FileFailure | undefined {
  const lines = stderr.split("\n").map((l) => l.trim()).filter(Boolean);
  for (let i = lines.length - 1; i >= 0 && i >= lines.length - 3; i--) {
    let v: unknown;
    try {
      v = JSON.parse(lines[i]!);
    } catch {
      continue;
    }
    if (v === null || typeof v !== "object") continue;
    const o = v as Record<string, unknown>;
    if (typeof o["error"] !== "string") continue;
    const f: FileFailure = {
      kind: o["error"],
      op: typeof o["op"] === "string" ? o["op"] : "",
      path: typeof o["path"] === "string" ? o["path"] : "",
      message: typeof o["message"] === "string" ? o["message"].slice(0, MESSAGE_MAX) : "",
    };
    if (typeof o["errno"] === "string") f.errno = o["errno"];
    return f;
  }
  return undefined;
}

type FileOp = "read" | "write" | "stat" | "ls" | "exists" | "rm" | "mkdir";

/** The argv of a file operation, without the binary. Exported for tests and debugging. */
export function buildFileArgs(
  ctx: string,
  op: FileOp,
  path: string,
  opts: ClientOptions & FileOptions & { flags?: string[] } = {},
): string[] {
  if (typeof ctx !== "string" || ctx === "") throw new TypeError("sbx: ctx must be a non-empty string");
  if (typeof path !== "string" || path === "" || path.includes("\0"))
    throw new TypeError("sbx: path must be a non-empty string without NUL");
  const args: string[] = [];
  if (opts.policy !== undefined) args.push("--policy", opts.policy);
  args.push("file", "--ctx", ctx, "--status-fd", String(STATUS_FD));
  if (opts.timeout !== undefined) {
    if (!Number.isInteger(opts.timeout) || opts.timeout <= 0)
      throw new TypeError("sbx: timeout must be a positive integer (seconds)");
    args.push("--timeout", String(opts.timeout));
  }
  // `--` so a path starting with "-" is a path.
  args.push(op, ...(opts.flags ?? []), "--", path);
  return args;
}

/** The typed error of a finished file operation, or undefined if it did what was asked. */
function fileErrorFor(
  ctx: string,
  op: FileOp,
  path: string,
  done: { result: Result; err?: SbxError; stderr: string },
): SbxError | undefined {
  const { result: r, stderr } = done;
  if (done.err instanceof SbxUnavailable) return done.err;
  if (r.code === 0 && r.reason !== "aborted" && r.reason !== "refused") return undefined;
  if (op === "exists" && r.code === 1 && r.reason === "exited") return undefined;
  const f = parseFileFailure(stderr);
  const d = { code: r.code, stderr, pid: r.pid, reason: r.reason, file: f };
  const where = `sbx: file ${op} in context ${JSON.stringify(ctx)}`;
  if (r.reason === "aborted") return new Aborted(`${where}: aborted (status ${r.code})`, d);
  if (r.reason === "timeout" || (r.code === 124 && !f)) return new TimedOut(`${where}: the timeout ran out`, d);
  if (f) return new (FILE_ERRORS[f.kind] ?? IoError)(`${where}: ${f.message || f.kind} (${f.kind})`, d);
  const e = errorFor({ ...r, stderr });
  return e ?? new IoError(`${where}: status ${r.code}`, d);
}

function toArgv(cmd: Command): string[] {
  if (typeof cmd === "string") return ["/bin/sh", "-c", cmd];
  return cmd;
}

/** Feed `data` into `dst`. Rejects with `{source: e}` if the data itself failed, with the pipe's
 * error if the write failed (the operation ended early; its own error says why). */
async function feed(dst: WritableStream<Uint8Array | string>, data: FileData): Promise<void> {
  const w = dst.getWriter();
  if (typeof data === "string" || data instanceof Uint8Array) {
    await w.write(data);
    await w.close();
    return;
  }
  let next: () => Promise<IteratorResult<Uint8Array | string>>;
  let stop: () => void;
  if (data instanceof ReadableStream) {
    const r = (data as ReadableStream<Uint8Array | string>).getReader();
    next = () => r.read() as Promise<IteratorResult<Uint8Array | string>>;
    stop = () => void r.cancel().catch(() => {});
  } else if (data && typeof (data as AsyncIterable<unknown>)[Symbol.asyncIterator] === "function") {
    const it = (data as AsyncIterable<Uint8Array | string>)[Symbol.asyncIterator]();
    next = () => it.next();
    stop = () => void it.return?.()?.catch?.(() => {});
  } else if (data && typeof (data as Iterable<unknown>)[Symbol.iterator] === "function") {
    const it = (data as Iterable<Uint8Array | string>)[Symbol.iterator]();
    next = async () => it.next();
    stop = () => void it.return?.();
  } else {
    throw { source: new TypeError("sbx: writeFile: data must be a string, bytes, a ReadableStream or an iterable of chunks") };
  }
  for (;;) {
    let n: IteratorResult<Uint8Array | string>;
    try {
      n = await next();
    } catch (e) {
      throw { source: e };
    }
    if (n.done) break;
    const chunk = n.value;
    if (typeof chunk !== "string" && !(chunk instanceof Uint8Array)) {
      stop();
      throw { source: new TypeError("sbx: writeFile: a chunk must be a string or a Uint8Array") };
    }
    try {
      await w.write(chunk);
    } catch (e) {
      stop();
      throw e;
    }
  }
  await w.close();
}

/** The sandbox of the seeds' API over a policy's contexts. Nothing starts until a call is made. */
export function createSandbox(options: SandboxOptions = {}): Sandbox {
  const base: ClientOptions = {};
  const bin = options.sbxExec ?? options.bin;
  if (bin !== undefined) base.bin = bin;
  if (options.policy !== undefined) base.policy = options.policy;
  const cache = new Map<string, SandboxContext>();

  const fileOps = (ctx: string, where: (p: string) => string): SandboxFiles => {
    const run = (op: FileOp, path: string, opts: FileOptions, flags: string[], stdin: "pipe" | "ignore") => {
      const o: RunOptions = { ...base, ...opts };
      return launch(buildFileArgs(ctx, op, where(path), { ...o, flags }), o, stdin, false);
    };
    /** Run a buffered operation: its stdout (text) once it did what was asked. */
    const call = async (op: FileOp, path: string, opts: FileOptions = {}, flags: string[] = []) => {
      const st = run(op, path, opts, flags, "ignore");
      const [out, done] = await Promise.all([collect(st.proc.stdout, 64 * 1024 * 1024), st.done]);
      const err = fileErrorFor(ctx, op, where(path), done);
      if (err) throw err;
      return { out: out.text, code: done.result.code };
    };
    const readFileStream = (path: string, opts: FileOptions = {}): ReadableStream<Uint8Array> => {
      const st = run("read", path, opts, [], "ignore");
      const reader = st.proc.stdout.getReader();
      return new ReadableStream<Uint8Array>(
        {
          async pull(c) {
            const { value, done } = await reader.read();
            if (!done) {
              c.enqueue(value);
              return;
            }
            const err = fileErrorFor(ctx, "read", where(path), await st.done);
            if (err) c.error(err);
            else c.close();
          },
          cancel(reason) {
            st.proc.kill("SIGTERM");
            return reader.cancel(reason);
          },
        },
        { highWaterMark: 0 },
      );
    };
    async function readFile(path: string, opts?: FileOptions & { encoding?: "bytes" }): Promise<Uint8Array>;
    async function readFile(path: string, opts: FileOptions & { encoding: "utf8" }): Promise<string>;
    async function readFile(
      path: string,
      opts: FileOptions & { encoding?: "bytes" | "utf8" } = {},
    ): Promise<Uint8Array | string> {
      const { encoding, ...o } = opts;
      const parts: Uint8Array[] = [];
      const r = readFileStream(path, o).getReader();
      for (;;) {
        const { value, done } = await r.read();
        if (done) break;
        parts.push(value);
      }
      const all = Buffer.concat(parts);
      if (encoding === "utf8") return all.toString("utf8");
      return new Uint8Array(all.buffer, all.byteOffset, all.byteLength);
    }
    return {
      name: ctx,
      async writeFile(path, data, opts = {}) {
        const { mode, append, ...o } = opts;
        const flags: string[] = [];
        if (append) flags.push("--append");
        if (mode !== undefined) {
          if (!Number.isInteger(mode) || mode < 0 || mode > 0o777)
            throw new TypeError("sbx: writeFile: mode must be permission bits (0 to 0o777)");
          flags.push("--mode", mode.toString(8).padStart(4, "0"));
        }
        const st = run("write", path, o, flags, "pipe");
        let sourceError: { source: unknown } | undefined;
        const fed = feed(st.proc.stdin, data).catch((e) => {
          if (e && typeof e === "object" && "source" in e) {
            // The data failed: end the operation rather than let a truncated file pass for whole.
            sourceError = e as { source: unknown };
            st.proc.kill("SIGKILL");
          }
          // Otherwise the pipe broke: the operation ended early and says why.
        });
        const done = await st.done;
        await fed;
        if (sourceError) throw sourceError.source;
        const err = fileErrorFor(ctx, "write", where(path), done);
        if (err) throw err;
      },
      readFile,
      readFileStream,
      async exists(path, opts) {
        return (await call("exists", path, opts)).code === 0;
      },
      async ls(path, opts) {
        const v = JSON.parse((await call("ls", path, opts)).out);
        if (!Array.isArray(v)) throw new IoError(`sbx: file ls: not a JSON array`, { code: 0 });
        return v as DirEntry[];
      },
      async remove(path, opts = {}) {
        const { recursive, ...o } = opts;
        await call("rm", path, o, recursive ? ["-r"] : []);
      },
      async mkdir(path, opts = {}) {
        const { parents, ...o } = opts;
        await call("mkdir", path, o, parents ? ["-p"] : []);
      },
      async stat(path, opts) {
        return JSON.parse((await call("stat", path, opts)).out) as FileStat;
      },
    };
  };

  const context = (name: string): SandboxContext => {
    if (typeof name !== "string" || name === "") throw new TypeError("sbx: a context name must be a non-empty string");
    let c = cache.get(name);
    if (c) return c;
    const running = new Set<ProcessHandle>();
    c = {
      ...fileOps(name, (p) => p),
      exec: (cmd, opts) => exec(name, toArgv(cmd), { ...base, ...opts }),
      async startProcess(cmd, opts) {
        const argv = toArgv(cmd);
        const o: RunOptions = { ...base, ...opts };
        const p = spawn(name, argv, { ...o, throwOnError: false });
        const pid = await p.pid;
        if (pid === undefined) {
          const r = await p.exited;
          p.stdout.cancel().catch(() => {});
          throw errorFor(r) ?? new Refused(`sbx: the command did not start (status ${r.code})`, r);
        }
        // Off the list before anyone awaiting wait() runs on.
        const exited = p.exited.finally(() => running.delete(handle)).then((r) => {
          const e = o.throwOnError ? errorFor(r) : undefined;
          if (e) throw e;
          return r;
        });
        exited.catch(() => {});
        const handle: ProcessHandle = {
          pid,
          sbxPid: p.sbxPid,
          context: name,
          argv,
          stdout: p.stdout,
          stderr: p.stderr,
          stdin: p.stdin,
          kill: (s) => p.kill(s),
          wait: () => exited,
        };
        running.add(handle);
        return handle;
      },
      processes: () => [...running],
      listProcesses: async (opts = {}) =>
        parseProcessList((await exec(name, ["/bin/sh", "-c", LIST_PROCESSES], { ...base, ...opts })).stdout),
    };
    cache.set(name, c);
    return c;
  };

  const shared = options.shared ?? {};
  const root = posixNormalize(shared.root ?? "/workspace");
  if (!root.startsWith("/")) throw new TypeError("sbx: shared.root must be an absolute path");
  const inShared = (p: string): string => {
    if (typeof p !== "string" || p === "" || p.includes("\0"))
      throw new TypeError("sbx: path must be a non-empty string without NUL");
    const full = posixNormalize(p.startsWith("/") ? p : `${root}/${p}`);
    if (full !== root && !full.startsWith(root === "/" ? "/" : `${root}/`))
      throw new Refused(`sbx: shared: ${JSON.stringify(p)} is outside the shared area ${root}; nothing was run`, {
        code: -1,
        reason: "refused",
        file: { kind: "refused", op: "", path: p, message: `outside ${root}` },
      });
    return full;
  };
  const sharedCtx = shared.context ?? options.user ?? "user";

  // The control plane of registerPlatformOperation: started on the first registration.
  const opsSocket = options.opsSocket ?? OPS_SOCKET;
  const handlers = new Map<string, OpHandler>();
  let opsServer: Promise<OpsServer> | undefined;
  let closed = false;

  return {
    platform: context(options.platform ?? "platform"),
    user: context(options.user ?? "user"),
    shared: { ...fileOps(sharedCtx, inShared), root },
    context,
    listContexts: () => contexts.list(base),
    probe: () => probe(base),
    async registerPlatformOperation(name, handler) {
      checkOpName(name);
      if (typeof handler !== "function") throw new TypeError("sbx: registerPlatformOperation: the handler must be a function");
      if (closed) throw new TypeError("sbx: registerPlatformOperation: this sandbox is closed");
      if (handlers.has(name)) throw new TypeError(`sbx: platform operation ${name} is already registered`);
      handlers.set(name, handler);
      if (!opsServer) {
        opsServer = (async () => {
          const { mkdirSync } = await import("node:fs");
          mkdirSync(opsSocket.slice(0, opsSocket.lastIndexOf("/")) || "/", { recursive: true, mode: 0o700 });
          return listenOps(opsSocket, handlers);
        })();
        // A failed start (no root, say) is retried by the next registration.
        opsServer.catch(() => (opsServer = undefined));
      }
      try {
        await opsServer;
      } catch (e) {
        handlers.delete(name);
        throw e;
      }
    },
    async close() {
      closed = true;
      const s = opsServer;
      opsServer = undefined;
      if (s) await (await s.catch(() => undefined))?.close();
    },
  };
}

/** Run by `listProcesses` inside the context: per process of its /proc (globbed before anything
 * is forked, so only the shell itself, skipped, is the listing's), one line `ARGS<TAB>STAT` with
 * the argv's NULs, newlines and tabs as spaces. */
const LIST_PROCESSES = [
  "for d in /proc/[0-9]*; do",
  "  p=${d#/proc/}",
  '  [ "$p" = "$$" ] && continue',
  '  { read -r s < "$d/stat"; } 2>/dev/null || continue',
  "  c=$(tr '\\000\\n\\t' '   ' < \"$d/cmdline\" 2>/dev/null)",
  "  printf '%s\\t%s\\n' \"$c\" \"$s\"",
  "done",
].join("\n");

/** `listProcesses`' lines to processes, pid 1 left out; a line that does not parse is skipped. */
export function parseProcessList(out: string): ContextProcess[] {
  const list: ContextProcess[] = [];
  for (const line of out.split("\n")) {
    const tab = line.indexOf("\t");
    if (tab < 0) continue;
    const args = line.slice(0, tab).trim();
    const stat = line.slice(tab + 1);
    // "PID (COMM) STATE PPID ...": COMM may hold anything, so it ends at the last ") ".
    const open = stat.indexOf(" (");
    const close = stat.lastIndexOf(") ");
    if (open < 0 || close < open) continue;
    const pid = Number(stat.slice(0, open));
    const ppid = Number(stat.slice(close + 2).split(" ")[1]);
    if (!Number.isInteger(pid) || !Number.isInteger(ppid) || pid <= 1) continue;
    list.push({ pid, ppid, command: args || `[${stat.slice(open + 2, close)}]` });
  }
  return list.sort((a, b) => a.pid - b.pid);
}

/** `path.posix.normalize` without node:path: `.`, `..` and repeated slashes folded lexically. */
function posixNormalize(p: string): string {
  const abs = p.startsWith("/");
  const out: string[] = [];
  for (const part of p.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (out.length && out[out.length - 1] !== "..") out.pop();
      else if (!abs) out.push("..");
      continue;
    }
    out.push(part);
  }
  const s = out.join("/");
  return abs ? `/${s}` : s || ".";
}

// ------------------------------------------------------------------------ platform operations

/** Where the control plane listens for platform operations (docs/ops.md of sbx-exec). */
export const OPS_SOCKET = "/run/sbx/ops.sock";

/** What a platform operation's handler is told besides its params. */
export interface OpCall {
  /** The operation's name. */
  op: string;
  /** The context whose user code asked (written by sbx-exec, never by the sandbox). */
  context: string;
  /** The call id, as sbx-exec's audit log writes it. */
  call: string;
}

/** A platform operation: its result is answered as `{"ok":true,"result":...}`; a throw as
 * `{"ok":false,"error":message}`. `params` is whatever JSON user code sent: check it. */
export type OpHandler = (params: unknown, call: OpCall) => unknown | Promise<unknown>;

export interface OpsServerOptions {
  /** The unix socket to listen on (default {@link OPS_SOCKET}); a socket already there is replaced
   * (one control plane per socket). */
  socket?: string;
  /** The operations this control plane performs, by name. */
  handlers: Record<string, OpHandler>;
}

export interface OpsServer {
  readonly socket: string;
  /** Stop listening (calls in flight finish) and remove the socket. */
  close(): Promise<void>;
}

/** The most bytes read from one connection: the header and the request lines (sbx-exec's gate
 * sends at most 64 KiB of params). */
const MAX_OPS_REQUEST = 1 << 20;
/** The most bytes of one answer line (the gate refuses longer ones). */
const MAX_OPS_ANSWER = 1 << 20;

/** The control plane's side of platform operations: listen on `socket` for sbx-exec's
 * connections, one call each — a header line `{"sbx_ops":1,"context","call","ops"}` written by
 * sbx-exec (root), then `{"op","params"}` written by its egress gate — and answer one JSON line.
 * An operation the header's `ops` does not list, or without a handler, is refused here too.
 * Node and Bun cannot read a unix socket's peer credentials (SO_PEERCRED): who may connect is
 * what the socket's directory allows (/run/sbx: root only, mode 0700) and the socket's mode
 * (0600, set here). */
export async function serveOps(options: OpsServerOptions): Promise<OpsServer> {
  return listenOps(options.socket ?? OPS_SOCKET, new Map(Object.entries(options.handlers)));
}

/** `serveOps` over a live map of handlers: the sandbox object adds to it after it listens. */
async function listenOps(socket: string, handlers: Map<string, OpHandler>): Promise<OpsServer> {
  const { createServer } = await import("node:net");
  const fs = await import("node:fs");
  try {
    if (fs.lstatSync(socket).isSocket()) fs.unlinkSync(socket);
  } catch {
    // nothing there
  }
  const server = createServer((conn) => {
    let buf = Buffer.alloc(0);
    let done = false;
    const answer = (value: unknown) => {
      done = true;
      let line = JSON.stringify(value);
      if (Buffer.byteLength(line) > MAX_OPS_ANSWER)
        line = JSON.stringify({ ok: false, error: `the answer is larger than ${MAX_OPS_ANSWER} bytes` });
      conn.end(`${line}\n`);
    };
    conn.on("error", () => conn.destroy());
    conn.on("data", (chunk: Buffer) => {
      if (done) return;
      buf = Buffer.concat([buf, chunk]);
      const first = buf.indexOf(10);
      const second = first < 0 ? -1 : buf.indexOf(10, first + 1);
      if (second < 0) {
        if (buf.length > MAX_OPS_REQUEST) answer({ ok: false, error: "the request is too large" });
        return;
      }
      done = true;
      const header = buf.subarray(0, first).toString("utf8");
      const request = buf.subarray(first + 1, second).toString("utf8");
      performOp(handlers, header, request).then(answer, (e) => answer({ ok: false, error: String(e) }));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(socket, () => {
      server.off("error", reject);
      resolve();
    });
  });
  fs.chmodSync(socket, 0o600);
  return {
    socket,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        try {
          fs.unlinkSync(socket);
        } catch {
          // already gone
        }
      }),
  };
}

/** One call: the header and request lines parsed and checked, the handler run; the answer. */
async function performOp(handlers: Map<string, OpHandler>, headerLine: string, requestLine: string): Promise<unknown> {
  let header: { sbx_ops?: unknown; context?: unknown; call?: unknown; ops?: unknown };
  let request: { op?: unknown; params?: unknown };
  try {
    header = JSON.parse(headerLine);
    request = JSON.parse(requestLine);
  } catch {
    return { ok: false, error: "the header or the request is not JSON" };
  }
  const ops = Array.isArray(header?.ops) ? header.ops : [];
  if (header?.sbx_ops !== 1 || typeof header.context !== "string" || typeof header.call !== "string")
    return { ok: false, error: "not an sbx-exec platform operation header" };
  const op = request?.op;
  if (typeof op !== "string") return { ok: false, error: "the request names no operation" };
  if (!ops.includes(op)) return { ok: false, error: `operation ${op} is not in context ${header.context}'s ops` };
  const handler = handlers.get(op);
  if (handler === undefined) return { ok: false, error: `this control plane has no handler for operation ${op}` };
  try {
    const result = await handler(request.params, { op, context: header.context, call: header.call });
    return { ok: true, result: result ?? null };
  } catch (e) {
    return { ok: false, error: e instanceof Error ? e.message : String(e) };
  }
}

/** A platform operation's name, as the policy's `ops` takes it. */
const OP_NAME = /^[a-z][a-z0-9_-]{0,62}$/;

function checkOpName(name: unknown): asserts name is string {
  if (typeof name !== "string" || !OP_NAME.test(name))
    throw new TypeError(
      `sbx: ${JSON.stringify(name)} is not a platform operation name (a lowercase letter, then up to 62 of a-z 0-9 _ -)`,
    );
}

/** A platform operation asked for with `callPlatformOperation` did not give a result: the base
 * of `OperationRefused` and `OperationFailed`, and itself thrown when the gate could not be asked
 * or its answer read (no `HTTP_PROXY`, nothing listening there, a broken answer, the timeout). */
export class OperationError extends Error {
  /** The operation's name. */
  readonly op: string;
  constructor(message: string, op: string) {
    super(message);
    this.name = new.target.name;
    this.op = op;
  }
}
/** The egress gate refused the call (any status but 200), e.g. 403: the context's `ops` does not
 * list it; 503: no control plane listens. */
export class OperationRefused extends OperationError {
  /** The gate's HTTP status. */
  readonly status: number;
  /** Its reason, e.g. "operation migrate is not in this context's ops". */
  readonly reason: string;
  constructor(op: string, status: number, reason: string) {
    super(`sbx: operation ${op} was refused (${status}): ${reason}`, op);
    this.status = status;
    this.reason = reason;
  }
}
/** The control plane answered `{"ok":false,"error":...}`: the handler threw, or it has none. */
export class OperationFailed extends OperationError {
  /** The answer's `error`. */
  readonly error: string;
  /** The whole answer. */
  readonly answer: unknown;
  constructor(op: string, answer: { error?: unknown }) {
    const error = typeof answer.error === "string" ? answer.error : JSON.stringify(answer.error ?? null);
    super(`sbx: operation ${op} failed: ${error}`, op);
    this.error = error;
    this.answer = answer;
  }
}

export interface CallOperationOptions {
  /** The egress proxy, `http://HOST:PORT` (default `$HTTP_PROXY`, else `$http_proxy`: what
   * sbx-exec sets in a context whose policy lists `ops`). */
  proxy?: string;
  /** Seconds to wait for the answer (default 130: the gate gives the control plane 120). */
  timeout?: number;
}

/** The most bytes of the gate's response read (its answer line is at most 1 MiB). */
const MAX_OPS_RESPONSE = (1 << 20) + 64 * 1024;

/**
 * For user code inside a sandbox (Node or Bun): ask the control plane for platform operation
 * `name` with `params` (JSON; default `{}`), as `sbx-exec op NAME` does: `POST http://sbx-ops/NAME`
 * through the egress gate at `$HTTP_PROXY`, one HTTP/1.1 request over `node:net`. Resolves with
 * the answer's `result` when it says `"ok": true` (the whole answer when it says nothing of `ok`);
 * throws `OperationFailed` for `"ok": false`, `OperationRefused` (`status`, `reason`) when the gate
 * refused, `OperationError` when it could not be asked, and `TypeError` for a bad name or params
 * that are not JSON.
 */
export async function callPlatformOperation(
  name: string,
  params: unknown = {},
  opts: CallOperationOptions = {},
): Promise<any> {
  checkOpName(name);
  const body = JSON.stringify(params);
  if (body === undefined) throw new TypeError("sbx: callPlatformOperation: params must be JSON");
  const url = opts.proxy ?? process.env["HTTP_PROXY"] ?? process.env["http_proxy"];
  if (!url)
    throw new OperationError(
      `sbx: operation ${name}: HTTP_PROXY is not set (platform operations are asked for inside a sandbox whose context lists ops)`,
      name,
    );
  const m = /^http:\/\/([^/@]+?)(?::(\d+))?\/?$/.exec(url);
  if (!m) throw new OperationError(`sbx: operation ${name}: HTTP_PROXY=${JSON.stringify(url)} is not http://HOST:PORT`, name);
  const host = m[1]!.replace(/^\[(.*)\]$/, "$1");
  const port = Number(m[2] ?? 80);
  const timeout = opts.timeout ?? 130;
  if (!(timeout > 0)) throw new TypeError("sbx: callPlatformOperation: timeout must be a positive number of seconds");
  const { createConnection } = await import("node:net");
  const got = await new Promise<Buffer>((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    const fail = (why: string) => {
      conn.destroy();
      reject(new OperationError(`sbx: operation ${name}: ${why}`, name));
    };
    const conn = createConnection({ host, port }, () => {
      const payload = Buffer.from(body);
      conn.write(
        `POST http://sbx-ops/${name} HTTP/1.1\r\nHost: sbx-ops\r\nContent-Type: application/json\r\n` +
          `Content-Length: ${payload.length}\r\nConnection: close\r\n\r\n`,
      );
      // A refusal may come before the body is read: the answer is read all the same.
      conn.write(payload);
    });
    conn.setTimeout(timeout * 1000, () => fail(`no answer within ${timeout}s`));
    conn.on("data", (d: Buffer) => {
      size += d.length;
      if (size > MAX_OPS_RESPONSE) return fail("the answer is too large");
      parts.push(d);
    });
    conn.on("error", (e) => {
      // The gate may reset after answering a refusal: keep what arrived.
      if (parts.length) resolve(Buffer.concat(parts));
      else fail(`cannot reach the egress proxy at ${url}: ${e.message}`);
    });
    conn.on("end", () => resolve(Buffer.concat(parts)));
  });
  const { status, text } = parseHttpResponse(got, name);
  if (status !== 200) throw new OperationRefused(name, status, text.trim().replace(/^sbx-exec egress proxy: /, ""));
  let answer: unknown;
  try {
    answer = JSON.parse(text);
  } catch {
    throw new OperationError(`sbx: operation ${name}: the answer is not JSON`, name);
  }
  if (answer !== null && typeof answer === "object" && "ok" in answer) {
    const a = answer as { ok: unknown; result?: unknown; error?: unknown };
    if (a.ok === false) throw new OperationFailed(name, a);
    if (a.ok === true) return a.result;
  }
  return answer;
}

/** The status and body (UTF-8) of an HTTP/1.1 response read to its end. */
function parseHttpResponse(got: Buffer, op: string): { status: number; text: string } {
  const bad = (why: string) => new OperationError(`sbx: operation ${op}: ${why}`, op);
  const end = got.indexOf("\r\n\r\n");
  if (end < 0) throw bad(got.length ? "the egress proxy's answer is not an HTTP response" : "the egress proxy closed without an answer");
  const head = got.subarray(0, end).toString("latin1").split("\r\n");
  const sm = /^HTTP\/1\.[01] (\d{3})/.exec(head[0] ?? "");
  if (!sm) throw bad("the egress proxy's answer is not an HTTP response");
  let body = got.subarray(end + 4);
  for (const h of head.slice(1)) {
    const i = h.indexOf(":");
    if (i > 0 && h.slice(0, i).trim().toLowerCase() === "content-length") {
      const n = Number(h.slice(i + 1).trim());
      if (!Number.isInteger(n) || n < 0) throw bad("the egress proxy's answer has a bad Content-Length");
      if (body.length < n) throw bad(`the answer was cut short (${body.length} of ${n} bytes)`);
      body = body.subarray(0, n);
    }
  }
  return { status: Number(sm[1]), text: body.toString("utf8") };
}
