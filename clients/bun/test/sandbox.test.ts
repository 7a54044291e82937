// createSandbox: platform, user, shared and any context by name; commands, processes and files.
// File operations go through `sbx-exec file`, inside the context, as its identity: the tests
// check what that promises (a file written for user code belongs to it and stays writable by it;
// a link user code planted never leads a write outside what it may write itself; 100 MiB stream
// through without being held; failures are typed), against the real sbx-exec as root. Without
// the binary or root those tests are skipped locally and FAIL under CI=true; the first group uses
// a stand-in binary and runs everywhere.
//
// The work area is a stand-in for /workspace made under /var/lib, owned by host uid 100000 as the
// image makes /workspace; the sentinels are the test's own root-owned files in a root-owned
// directory beside it (writable in `user` by its mounts, so only its identity keeps them safe).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import {
  chmodSync,
  chownSync,
  createReadStream,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  Aborted,
  AlreadyExists,
  IoError,
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
  buildFileArgs,
  createSandbox,
  parseFileFailure,
} from "../src/index.ts";
import { BIN, CI, HERE, why } from "./env.ts";

if (why && CI) {
  test("the real sbx-exec is available (CI=true)", () => {
    throw new Error(why);
  });
}
if (why && !CI) console.warn(`skipping the createSandbox tests that need sbx-exec: ${why}`);
const real = why ? test.skip : test;
const T = 30_000;
/** The host uid and gid of the test policy's `user` (root inside). */
const MAPPED = 100000;

async function caught(p: Promise<unknown>): Promise<SbxError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof SbxError) return e;
    throw e;
  }
  throw new Error("expected an SbxError, got success");
}
function sleeps(m: string): number[] {
  const r = Bun.spawnSync(["pgrep", "-f", `^sleep ${m.replaceAll(".", "\\.")}$`]);
  if (r.exitCode === 1) return [];
  return r.stdout.toString().trim().split("\n").map(Number);
}
async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await Bun.sleep(50);
  }
  return cond();
}
const text = (s: ReadableStream<Uint8Array>) => new Response(s).text();

// -------------------------------------------------------------------- without sbx-exec (stand-in)

describe("createSandbox without sbx-exec", () => {
  const dir = mkdtempSync(join(tmpdir(), "sbx-sandbox-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  /** A stand-in sbx-exec: prints its argv on stdout, `line` on stderr, exits `code`. */
  function fake(code: number, line = ""): string {
    const p = join(dir, `fake-${Math.random().toString(36).slice(2)}`);
    writeFileSync(p, `#!/bin/sh\nprintf '{"child-pid":9}\\n{"exit-code":${code}}\\n' >&3\nprintf '%s ' "$@"\nprintf '%s\\n' '${line}' >&2\nexit ${code}\n`);
    chmodSync(p, 0o755);
    return p;
  }

  test("file argv: policy, file --ctx, status fd, timeout, the op, its flags, --, the path", () => {
    expect(buildFileArgs("user", "write", "-x", { policy: "p.toml", timeout: 5, flags: ["--append"] })).toEqual([
      "--policy", "p.toml", "file", "--ctx", "user", "--status-fd", "3", "--timeout", "5", "write", "--append", "--", "-x",
    ]);
    expect(buildFileArgs("user", "read", "a")).toEqual(["file", "--ctx", "user", "--status-fd", "3", "read", "--", "a"]);
    for (const p of ["", "a\0b"]) expect(() => buildFileArgs("user", "read", p)).toThrow(TypeError);
    expect(() => buildFileArgs("", "read", "a")).toThrow(TypeError);
    expect(() => buildFileArgs("user", "read", "a", { timeout: 0 })).toThrow(TypeError);
  });

  test("the failure line is the last JSON object on stderr; other lines are ignored", () => {
    const line = '{"error":"symlink","op":"write","path":"/w/x","errno":"ELOOP","message":"/w/x: is a symbolic link"}';
    expect(parseFileFailure(`noise\n${line}\n`)).toEqual({
      kind: "symlink", op: "write", path: "/w/x", errno: "ELOOP", message: "/w/x: is a symbolic link",
    });
    expect(parseFileFailure("sbx-exec: something\n")).toBeUndefined();
    expect(parseFileFailure('{"exit-code":3}\n')).toBeUndefined();
  });

  test("each kind sbx-exec file reports is its own error class, with kind, op, path and errno", async () => {
    const classes: [string, Function][] = [
      ["not_found", NotFound], ["permission_denied", PermissionDenied], ["is_a_directory", IsADirectory],
      ["not_a_directory", NotADirectory], ["exists", AlreadyExists], ["not_empty", NotEmpty],
      ["symlink", SymlinkRefused], ["not_regular", NotRegularFile], ["too_large", TooLarge],
      ["refused", Refused], ["usage", Refused], ["io", IoError], ["a_kind_from_the_future", IoError],
    ];
    for (const [kind, cls] of classes) {
      const bin = fake(kind === "refused" ? 125 : 3, JSON.stringify({ error: kind, op: "read", path: "/w/f", errno: "EX", message: `/w/f: ${kind}` }));
      const e = await caught(createSandbox({ sbxExec: bin }).user.readFile("/w/f"));
      expect({ kind, cls: e.constructor.name }).toEqual({ kind, cls: cls.name });
      expect(e.file).toEqual({ kind, op: "read", path: "/w/f", errno: "EX", message: `/w/f: ${kind}` });
      expect(e.message).toContain(`/w/f: ${kind}`);
    }
    // 124 without a line is the timeout; a missing binary SbxUnavailable.
    expect(await caught(createSandbox({ sbxExec: fake(124) }).user.stat("/w"))).toBeInstanceOf(TimedOut);
    expect(await caught(createSandbox({ sbxExec: join(dir, "none") }).user.stat("/w"))).toBeInstanceOf(SbxUnavailable);
  });

  test("an aborted file operation is Aborted, and its sbx-exec is ended", async () => {
    const bin = join(dir, "slow-sbx");
    writeFileSync(bin, '#!/bin/sh\nprintf \'{"child-pid":9}\\n\' >&3\nexec sleep 30\n');
    chmodSync(bin, 0o755);
    const ac = new AbortController();
    const p = createSandbox({ sbxExec: bin }).user.readFile("/w/f", { signal: ac.signal });
    setTimeout(() => ac.abort(), 100);
    const t0 = Date.now();
    expect(await caught(p)).toBeInstanceOf(Aborted);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(await caught(createSandbox({ sbxExec: bin }).user.stat("/w", { signal: AbortSignal.abort() }))).toBeInstanceOf(Aborted);
  });

  test("exists: 0 is true, 1 false, anything else an error; contexts by name", async () => {
    const sb = createSandbox({ sbxExec: fake(0), policy: "p.toml" });
    expect(await sb.user.exists("/a")).toBe(true);
    expect(await createSandbox({ sbxExec: fake(1) }).platform.exists("/a")).toBe(false);
    expect(await caught(createSandbox({ sbxExec: fake(3, '{"error":"permission_denied"}') }).user.exists("/a"))).toBeInstanceOf(PermissionDenied);
    expect([sb.platform.name, sb.user.name, sb.shared.name, sb.context("agent").name]).toEqual(["platform", "user", "user", "agent"]);
    expect(sb.context("agent")).toBe(sb.context("agent"));
    const named = createSandbox({ platform: "tools", user: "box", shared: { context: "notebook", root: "/srv/w/" } });
    expect([named.platform.name, named.user.name, named.shared.name, named.shared.root]).toEqual(["tools", "box", "notebook", "/srv/w"]);
  });

  test("shared: relative paths are under its root; a path outside it is Refused and nothing runs", async () => {
    const bin = fake(0);
    const sb = createSandbox({ sbxExec: bin });
    expect(sb.shared.root).toBe("/workspace");
    // The stand-in prints its argv: the path sbx-exec gets.
    expect(await sb.shared.readFile("app/handler.js", { encoding: "utf8" })).toEndWith("read -- /workspace/app/handler.js ");
    expect(await sb.shared.readFile("/workspace/a/../b", { encoding: "utf8" })).toEndWith("read -- /workspace/b ");
    const none = createSandbox({ sbxExec: join(dir, "none") });
    for (const p of ["/etc/passwd", "/workspace/../etc/passwd", "../x", "/workspacex/a"]) {
      const e = await caught(none.shared.writeFile(p, "x"));
      expect({ p, cls: e.constructor.name }).toEqual({ p, cls: "Refused" }); // not SbxUnavailable: nothing was started
      expect(e.message).toContain("outside the shared area /workspace");
    }
  });

  test("writeFile: a failing source ends the operation and its error is thrown; bad data is a TypeError", async () => {
    const bin = join(dir, "cat-sbx");
    writeFileSync(bin, '#!/bin/sh\nprintf \'{"child-pid":9}\\n\' >&3\ncat >/dev/null\nprintf \'{"exit-code":0}\\n\' >&3\n');
    chmodSync(bin, 0o755);
    const sb = createSandbox({ sbxExec: bin });
    await sb.user.writeFile("/w/ok", (async function* () { yield "a"; yield new Uint8Array([98]); })());
    const boom = new Error("source broke");
    const failing = new ReadableStream({ start(c) { c.enqueue(new Uint8Array(3)); }, pull(c) { c.error(boom); } });
    await expect(sb.user.writeFile("/w/x", failing)).rejects.toBe(boom);
    await expect(sb.user.writeFile("/w/x", 42 as unknown as string)).rejects.toBeInstanceOf(TypeError);
    await expect(sb.user.writeFile("/w/x", [1, 2] as unknown as Uint8Array[])).rejects.toBeInstanceOf(TypeError);
  });
});

// ------------------------------------------------------------------------- the real sbx-exec (root)

describe("createSandbox", () => {
  const tag = `sbx-client-${process.pid}-${Date.now()}`;
  const WORK = `/var/lib/${tag}`;
  const ROOTONLY = `/var/lib/${tag}-root`;
  const SENTINEL = join(ROOTONLY, "sentinel");
  const SENTINEL2 = join(ROOTONLY, "sentinel2");
  const keep = mkdtempSync(join(tmpdir(), "sbx-sandbox-policy-"));
  const POLICY = join(keep, "policy.toml");
  const sb = createSandbox({ sbxExec: BIN, policy: POLICY, shared: { root: WORK } });
  const w = (name: string) => join(WORK, name);

  beforeAll(() => {
    if (why) return;
    mkdirSync(WORK, { mode: 0o755 });
    chownSync(WORK, MAPPED, MAPPED);
    mkdirSync(ROOTONLY, { mode: 0o755 });
    writeFileSync(SENTINEL, "root's own\n", { mode: 0o644 });
    writeFileSync(SENTINEL2, "root's own too\n", { mode: 0o644 });
    const template = readFileSync(join(HERE, "policy-sandbox.toml"), "utf8");
    writeFileSync(POLICY, template.replaceAll("@WORK@", WORK).replaceAll("@ROOTONLY@", ROOTONLY));
  });
  const PERSISTENT = "sbx-client-sandbox";
  afterAll(() => {
    if (!why) Bun.spawnSync([BIN, "--policy", POLICY, "ctx", "stop", PERSISTENT, "--timeout", "2"]);
    for (const d of [WORK, ROOTONLY, keep]) rmSync(d, { recursive: true, force: true });
  });
  /** A file's content, size, inode and mtime: any write would change one of them. */
  const probeFile = (p: string) => {
    const s = lstatSync(p);
    return { text: readFileSync(p, "utf8"), size: s.size, ino: s.ino, mtime: s.mtimeMs, uid: s.uid };
  };

  real("round trip: a file user.writeFile wrote reads back the same, belongs to user code and stays writable by it", async () => {
    const bytes = new Uint8Array(256 * 4).map((_, i) => i % 256);
    await sb.user.writeFile(w("bytes.bin"), bytes);
    expect(await sb.user.readFile(w("bytes.bin"))).toEqual(bytes);
    await sb.user.writeFile(w("notes.txt"), "héllo\n");
    expect(await sb.user.readFile(w("notes.txt"), { encoding: "utf8", timeout: 5 })).toBe("héllo\n");
    // Its identity's: host uid/gid 100000 outside, root inside.
    const host = statSync(w("notes.txt"));
    expect([host.uid, host.gid, host.mode & 0o777]).toEqual([MAPPED, MAPPED, 0o644]);
    expect(await sb.user.stat(w("notes.txt"))).toMatchObject({ type: "file", size: 7, mode: 0o644, uid: 0, gid: 0 });
    // User code changes it afterwards (a root-side write would leave it read-only to that code).
    await sb.user.exec(`echo more >> ${w("notes.txt")}`);
    expect(readFileSync(w("notes.txt"), "utf8")).toBe("héllo\nmore\n");
    // append and mode; a relative path is the context's workdir's.
    await sb.user.writeFile("notes.txt", "again\n", { append: true });
    expect(readFileSync(w("notes.txt"), "utf8")).toBe("héllo\nmore\nagain\n");
    await sb.user.writeFile(w("private"), "p", { mode: 0o600 });
    expect(statSync(w("private")).mode & 0o777).toBe(0o600);
    // Streams: a ReadableStream in, readFileStream out.
    await sb.user.writeFile(w("streamed"), new Blob(["one ", "two"]).stream());
    expect(await text(sb.user.readFileStream(w("streamed")))).toBe("one two");
  }, T);

  real("a link user code planted is not followed by writeFile: the sentinel is unchanged; a normal write works", async () => {
    const before = probeFile(SENTINEL);
    await sb.user.exec(["ln", "-s", SENTINEL, w("planted")]);
    expect(lstatSync(w("planted")).isSymbolicLink()).toBe(true);
    const e = await caught(sb.user.writeFile(w("planted"), "pwned\n"));
    expect(e).toBeInstanceOf(SymlinkRefused);
    expect(e.file).toMatchObject({ kind: "symlink", op: "write", errno: "ELOOP" });
    // platform (root, as a control plane) through the same link: refused too.
    expect(await caught(sb.platform.writeFile(w("planted"), "pwned\n"))).toBeInstanceOf(SymlinkRefused);
    // A link to the directory, followed inside the context: the write lands where user code
    // could write itself, which is not root's file.
    await sb.user.exec(["ln", "-s", ROOTONLY, w("dirlink")]);
    expect(await caught(sb.user.writeFile(w("dirlink/sentinel"), "pwned\n"))).toBeInstanceOf(PermissionDenied);
    expect(await caught(sb.user.exec(`echo pwned > ${SENTINEL}`))).toBeInstanceOf(SbxError); // nor can its code
    expect(probeFile(SENTINEL)).toEqual(before);
    expect(await sb.user.exists(w("planted"))).toBe(true); // the link itself is still there
    // The control: a normal path is written, as user code's.
    await sb.user.writeFile(w("normal"), "fine\n");
    expect(readFileSync(w("normal"), "utf8")).toBe("fine\n");
    expect(statSync(w("normal")).uid).toBe(MAPPED);
    // And the attack is real: a root-side write through the same kind of link reaches its target.
    symlinkSync(SENTINEL2, w("planted2"));
    writeFileSync(w("planted2"), "overwritten by a confused deputy\n");
    expect(readFileSync(SENTINEL2, "utf8")).toBe("overwritten by a confused deputy\n");
  }, T);

  real("100 MiB stream through writeFile and readFileStream with equal SHA-256, in bounded memory (Bun and Node)", async () => {
    const node = Bun.which("node");
    if (!node && CI) throw new Error("node is not on PATH");
    const runs: [string, string, string][] = [["bun", process.execPath, join(HERE, "../src/index.ts")]];
    if (node) runs.push(["node", node, join(HERE, "../dist/index.js")]);
    for (const [name, runtime, mod] of runs) {
      const path = w(`big-${name}`);
      const r = Bun.spawnSync([runtime, join(HERE, "roundtrip-100mb.mjs"), mod, BIN, POLICY, path], {
        env: { PATH: process.env.PATH ?? "" },
      });
      expect({ name, code: r.exitCode, stderr: r.stderr.toString() }).toEqual({ name, code: 0, stderr: "" });
      const m = JSON.parse(r.stdout.toString());
      expect(m.size).toBe(100 * 1024 * 1024);
      expect(m.read).toBe(m.written);
      // What is on disk, hashed here: the same, and user code's.
      const onDisk = createHash("sha256");
      for await (const chunk of createReadStream(path)) onDisk.update(chunk as Buffer);
      expect(onDisk.digest("hex")).toBe(m.written);
      expect(statSync(path).uid).toBe(MAPPED);
      const grew = m.maxRss - m.rss0;
      console.log(
        `100 MiB under ${name}: write ${m.writeMs} ms, read ${m.readMs} ms, peak RSS ${(m.maxRss / 2 ** 20).toFixed(1)} MiB ` +
          `(+${(grew / 2 ** 20).toFixed(1)} MiB over the ${(m.rss0 / 2 ** 20).toFixed(1)} MiB before the first call)`,
      );
      // Held whole, the file alone would add 100 MiB (and a copy more); what is left is the
      // generator's and the stream's garbage before the collector runs.
      expect(grew).toBeLessThan(96 * 2 ** 20);
      rmSync(path);
    }
  }, 120_000);

  real("typed errors: a missing file, a directory, and the rest of what sbx-exec file reports", async () => {
    const missing = await caught(sb.user.readFile(w("no-such-file")));
    expect(missing).toBeInstanceOf(NotFound);
    expect(missing.file).toMatchObject({ kind: "not_found", op: "read", path: w("no-such-file"), errno: "ENOENT" });
    expect(missing.code).toBe(3);
    // The stream errors with the same class.
    expect(await caught(text(sb.user.readFileStream(w("no-such-file"))))).toBeInstanceOf(NotFound);
    await sb.user.mkdir(w("dir/sub"), { parents: true });
    expect(await caught(sb.user.readFile(w("dir")))).toBeInstanceOf(IsADirectory);
    expect(await caught(sb.user.writeFile(w("dir"), "x"))).toBeInstanceOf(IsADirectory);
    expect(await caught(sb.user.mkdir(w("dir")))).toBeInstanceOf(AlreadyExists);
    expect(await caught(sb.user.remove(w("dir")))).toBeInstanceOf(NotEmpty);
    await sb.user.writeFile(w("dir/f"), "f");
    expect(await caught(sb.user.ls(w("dir/f/x")))).toBeInstanceOf(NotADirectory);
    expect(await caught(sb.user.stat(w("no-such-file")))).toBeInstanceOf(NotFound);
    // The context's walls: / is read-only there.
    const ro = await caught(sb.user.writeFile("/etc/sbx-client-test", "x"));
    expect([ro.constructor, ro.file?.errno]).toEqual([Refused, "EROFS"]);
    // A context the policy does not have: sbx-exec refuses (125).
    const unknown = await caught(sb.context("nope").readFile("/etc/hostname"));
    expect([unknown.constructor, unknown.code]).toEqual([Refused, 125]);
    expect(unknown.message).toContain('unknown context "nope"');
    // A FIFO is refused without blocking.
    Bun.spawnSync(["mkfifo", w("fifo")]);
    expect(await caught(sb.user.readFile(w("fifo")))).toBeInstanceOf(NotRegularFile);
  }, T);

  real("exists, ls, stat, mkdir and remove", async () => {
    await sb.user.mkdir(w("tree/a/b"), { parents: true });
    await sb.user.writeFile(w("tree/a/b/c.txt"), "abc");
    await sb.user.writeFile(w("tree/z"), "");
    expect(await sb.user.ls(w("tree"))).toEqual([
      { name: "a", type: "directory", size: expect.any(Number) },
      { name: "z", type: "file", size: 0 },
    ]);
    expect(await sb.user.exists(w("tree/a/b/c.txt"))).toBe(true);
    expect(await sb.user.exists(w("tree/nothing"))).toBe(false);
    await sb.user.exec(["ln", "-s", "/nowhere", w("tree/dangling")]);
    expect(await sb.user.exists(w("tree/dangling"))).toBe(true);
    expect((await sb.user.stat(w("tree/dangling"))).type).toBe("symlink");
    await sb.user.remove(w("tree/dangling"));
    expect(await sb.user.exists(w("tree/dangling"))).toBe(false);
    await sb.user.mkdir(w("tree/a"), { parents: true }); // -p: no error when it is there
    const st = await sb.user.stat(w("tree/a"));
    expect([st.type, st.uid, statSync(w("tree/a")).uid]).toEqual(["directory", 0, MAPPED]);
    await sb.user.remove(w("tree"), { recursive: true });
    expect(await sb.user.exists(w("tree"))).toBe(false);
  }, T);

  real("shared: files in the work area, written as user code's and read by platform; outside it Refused", async () => {
    await sb.shared.mkdir("app", { parents: true });
    await sb.shared.writeFile("app/handler.js", "export const x = 1;\n");
    expect(readFileSync(w("app/handler.js"), "utf8")).toBe("export const x = 1;\n");
    expect(statSync(w("app/handler.js")).uid).toBe(MAPPED);
    expect(await sb.platform.readFile(w("app/handler.js"), { encoding: "utf8" })).toBe("export const x = 1;\n");
    expect(await sb.shared.exists("app/handler.js")).toBe(true);
    expect((await sb.shared.ls("app")).map((e) => e.name)).toEqual(["handler.js"]);
    await sb.user.exec(`echo '// edited' >> ${w("app/handler.js")}`);
    expect(await sb.shared.readFile(w("app/handler.js"), { encoding: "utf8" })).toBe("export const x = 1;\n// edited\n");
    expect(await caught(sb.shared.readFile("/etc/hostname"))).toBeInstanceOf(Refused);
  }, T);

  real("exec: a string runs under sh -c, an array as argv", async () => {
    expect((await sb.user.exec("echo $((6 * 7)) && id -u")).stdout).toBe("42\n0\n");
    expect((await sb.platform.exec(["printf", "%s", "a b"])).stdout).toBe("a b");
    expect(await caught(sb.user.exec("exit 3"))).toMatchObject({ code: 3 });
  }, T);

  real("startProcess: the pid, its output streaming, kill and wait", async () => {
    const m = `100.${Date.now() % 1e6}${Math.floor(Math.random() * 1e6)}`;
    const p = await sb.user.startProcess(`echo ready; exec sleep ${m}`);
    try {
      expect(typeof p.pid).toBe("number");
      expect([p.context, p.argv]).toEqual(["user", ["/bin/sh", "-c", `echo ready; exec sleep ${m}`]]);
      const reader = p.stdout.getReader();
      expect(new TextDecoder().decode((await reader.read()).value)).toBe("ready\n");
      expect(await until(() => sleeps(m).length === 1, 5000)).toBe(true);
      // The pid sbx-exec reports: the command's, or (in a pid namespace) the sandbox's init,
      // whose child it is.
      expect(sb.user.processes()).toEqual([p]);
      const [sleep] = sleeps(m);
      const ppid = Number(/^PPid:\s+(\d+)$/m.exec(readFileSync(`/proc/${sleep}/status`, "utf8"))![1]);
      expect(sleep === p.pid || ppid === p.pid).toBe(true);
      p.kill("SIGTERM");
      expect(await p.wait()).toMatchObject({ pid: p.pid, reason: "signaled", signal: "SIGTERM", code: 143 });
      expect(await until(() => sleeps(m).length === 0, 5000)).toBe(true);
      expect(sb.user.processes()).toEqual([]);
    } finally {
      p.kill("SIGKILL");
    }
    // stdin; and a command that cannot start rejects.
    const cat = await sb.user.startProcess(["cat"]);
    const wr = cat.stdin.getWriter();
    await wr.write("through\n");
    await wr.close();
    expect(await text(cat.stdout)).toBe("through\n");
    expect(await cat.wait()).toMatchObject({ code: 0, reason: "exited" });
    expect(await caught(sb.context("nope").startProcess(["true"]))).toBeInstanceOf(Refused);
    const failing = await sb.user.startProcess(["sh", "-c", "exit 4"], { throwOnError: true });
    expect(await caught(failing.wait())).toMatchObject({ code: 4 });
  }, T);

  real("readFileStream: cancelling the stream ends the operation", async () => {
    await sb.user.writeFile(w("ten-mib"), new Uint8Array(10 * 2 ** 20));
    const stream = sb.user.readFileStream(w("ten-mib"));
    const reader = stream.getReader();
    expect(((await reader.read()).value?.byteLength ?? 0) > 0).toBe(true);
    const running = () => Bun.spawnSync(["pgrep", "-f", `file --ctx user .*read -- ${w("ten-mib")}$`]).exitCode === 0;
    expect(running()).toBe(true); // blocked on the pipe nobody reads: 10 MiB do not fit
    await reader.cancel();
    expect(await until(() => !running(), 5000)).toBe(true);
  }, T);

  real("a persistent context: its private /tmp and its processes outlive a call; file ops see them", async () => {
    const ctx = sb.context(PERSISTENT);
    await ctx.writeFile("/tmp/state.json", '{"n":1}');
    // A later command of the context sees it (the same mount namespace), and a later file op too.
    expect((await ctx.exec("cat /tmp/state.json")).stdout).toBe('{"n":1}');
    await ctx.exec("echo 2 >> /tmp/state.json");
    expect(await ctx.readFile("/tmp/state.json", { encoding: "utf8" })).toBe('{"n":1}2\n');
    expect((await ctx.ls("/tmp")).map((e) => e.name)).toContain("state.json");
    // Not on the host, nor in the one-shot user.
    expect(await sb.user.exists("/tmp/state.json")).toBe(false);
    const m = `100.${Date.now() % 1e6}${Math.floor(Math.random() * 1e6)}`;
    const p = await ctx.startProcess(["sleep", m]);
    try {
      expect(await until(() => sleeps(m).length === 1, 5000)).toBe(true);
      // A later call sees it and can signal it.
      expect((await ctx.exec(`pgrep -f "sleep ${m}"`)).stdout.trim()).not.toBe("");
      expect((await sb.listContexts()).find((c) => c.name === PERSISTENT)).toMatchObject({ running: true });
      p.kill("SIGTERM");
      expect(await p.wait()).toMatchObject({ reason: "signaled", signal: "SIGTERM" });
      expect(await until(() => sleeps(m).length === 0, 5000)).toBe(true);
    } finally {
      p.kill("SIGKILL");
    }
  }, T);

  real("under Node, with the committed dist/: every method once", async () => {
    const node = Bun.which("node");
    if (!node && CI) throw new Error("node is not on PATH");
    if (!node) return console.warn("skipping the Node run of createSandbox: node is not on PATH");
    const script = join(keep, "node-sandbox.mjs");
    writeFileSync(
      script,
      `import { createSandbox, NotFound, IsADirectory, SymlinkRefused } from ${JSON.stringify(join(HERE, "../dist/index.js"))};
import { Readable } from "node:stream";
const [bin, policy, work] = process.argv.slice(2);
const sb = createSandbox({ sbxExec: bin, policy, shared: { root: work } });
const out = {};
const kind = (p) => p.then(() => "none", (e) => e.constructor.name);
await sb.user.mkdir(work + "/node/d", { parents: true });
await sb.user.writeFile(work + "/node/a.txt", Readable.from(["from ", Buffer.from("node")]));
await sb.shared.writeFile("node/b.txt", "shared");
out.read = await sb.user.readFile(work + "/node/a.txt", { encoding: "utf8" });
out.bytes = Array.from(await sb.platform.readFile(work + "/node/b.txt")).length;
let streamed = ""; for await (const c of sb.user.readFileStream(work + "/node/a.txt")) streamed += Buffer.from(c).toString();
out.streamed = streamed;
out.exists = [await sb.user.exists(work + "/node/a.txt"), await sb.shared.exists("node/none")];
out.ls = (await sb.user.ls(work + "/node")).map((e) => e.name + ":" + e.type);
out.stat = (await sb.user.stat(work + "/node/a.txt")).size;
await sb.user.remove(work + "/node/b.txt");
out.removed = await sb.user.exists(work + "/node/b.txt");
out.errors = [await kind(sb.user.readFile(work + "/node/none")), await kind(sb.user.readFile(work + "/node/d"))];
await sb.user.exec(["ln", "-s", "/etc/hostname", work + "/node/link"]);
out.errors.push(await kind(sb.user.writeFile(work + "/node/link", "x")));
out.exec = (await sb.user.exec("echo hi")).stdout;
const p = await sb.user.startProcess(["sleep", "30"]);
p.kill("SIGTERM");
out.wait = (await p.wait()).signal;
out.runtime = typeof process.versions.bun === "string" ? "bun" : "node";
console.log(JSON.stringify(out));
`,
    );
    const r = Bun.spawnSync([node, script, BIN, POLICY, WORK], { env: { PATH: process.env.PATH ?? "" } });
    expect(r.stderr.toString()).toBe("");
    expect(JSON.parse(r.stdout.toString())).toEqual({
      read: "from node",
      bytes: 6,
      streamed: "from node",
      exists: [true, false],
      ls: ["a.txt:file", "b.txt:file", "d:directory"],
      stat: 9,
      removed: false,
      errors: ["NotFound", "IsADirectory", "SymlinkRefused"],
      exec: "hi\n",
      wait: "SIGTERM",
      runtime: "node",
    });
  }, T);
});
