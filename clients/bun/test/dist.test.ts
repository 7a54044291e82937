// The package as it installs: dist/ (committed) is generated from the current src/index.ts and
// not edited by hand; package.json points at it and has no dependency of any kind; dist exports
// what src does. With the compiler of tools/ installed (`npm run build-tools`), dist/ is also
// rebuilt with the pinned TypeScript and compared byte for byte, and a strict consumer is
// type-checked against dist/index.d.ts; without it those two are skipped locally and FAIL under
// CI=true. Needs no sbx-exec.
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { OUTPUTS, compile, parseGenerated, sourceHash, typescript } from "../scripts/build.mjs";
import { CI } from "./env.ts";

const ROOT = join(import.meta.dir, "..");
const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));
const hasTsc = existsSync(join(ROOT, "tools/node_modules/typescript/package.json"));
if (!hasTsc && CI)
  test("the TypeScript compiler of tools/ is installed (CI=true)", () => {
    throw new Error("clients/bun/tools/node_modules has no typescript: run `npm run build-tools` in clients/bun");
  });
if (!hasTsc && !CI)
  console.warn(
    "dist.test.ts: the TypeScript compiler of tools/ is not installed (npm run build-tools): dist/ is " +
      "checked by its hashes only, not rebuilt, and the type check of a consumer is skipped",
  );

describe("dist/", () => {
  for (const name of OUTPUTS) {
    test(`dist/${name} was generated from the current src/index.ts and not edited since`, () => {
      const file = join(ROOT, "dist", name);
      expect(existsSync(file)).toBe(true);
      const g = parseGenerated(readFileSync(file, "utf8"));
      if (g === undefined) throw new Error(`dist/${name} has no generated header: run \`npm run build\` in clients/bun`);
      if (g.source !== sourceHash())
        throw new Error(`dist/${name} is stale (src/index.ts changed since): run \`npm run build\` in clients/bun`);
      if (g.body !== g.actualBody)
        throw new Error(`dist/${name} was edited by hand: edit src/index.ts and run \`npm run build\``);
    });
  }

  (hasTsc ? test : test.skip)("dist/ is what the pinned TypeScript writes from src/ now", async () => {
    const files = await compile(ROOT);
    for (const name of OUTPUTS) expect(readFileSync(join(ROOT, "dist", name), "utf8")).toBe(files[name]!);
  }, 60_000);

  test("package.json: main, types and exports point at dist/; no runtime dependency; dist/ ships", () => {
    expect(pkg.type).toBe("module");
    expect(pkg.main).toBe("./dist/index.js");
    expect(pkg.types).toBe("./dist/index.d.ts");
    expect(pkg.exports["."]).toEqual({ types: "./dist/index.d.ts", default: "./dist/index.js" });
    // None of any kind: `bun add <folder>` installs a folder's devDependencies too.
    for (const k of ["dependencies", "devDependencies", "peerDependencies", "optionalDependencies", "bundleDependencies"])
      expect({ [k]: pkg[k] }).toEqual({ [k]: undefined });
    expect(pkg.files).toContain("dist");
    // No install or pack step that needs a tool the user may not have.
    for (const s of ["preinstall", "install", "postinstall", "prepare", "prepack"])
      expect(pkg.scripts?.[s]).toBeUndefined();
  });

  test("dist/index.js exports the same names as src/index.ts, and is plain JavaScript", async () => {
    const src = await import("../src/index.ts");
    const dist = await import("../dist/index.js");
    expect(Object.keys(dist).sort()).toEqual(Object.keys(src).sort());
    expect(Object.keys(dist).length).toBeGreaterThan(10);
    const text = readFileSync(join(ROOT, "dist/index.js"), "utf8");
    expect(text).not.toMatch(/^import type|: string\)|interface [A-Z]/m);
  });

  test("dist/index.d.ts declares every runtime export, and no Node-only type in the API", () => {
    const dts = readFileSync(join(ROOT, "dist/index.d.ts"), "utf8");
    const declared = new Set(
      [...dts.matchAll(/^export (?:declare )?(?:class|function|const|interface|type) ([A-Za-z_$][\w$]*)/gm)].map((m) => m[1]),
    );
    return import("../dist/index.js").then((dist) => {
      for (const name of Object.keys(dist)) expect({ name, declared: declared.has(name) }).toEqual({ name, declared: true });
      for (const t of ["ExecOptions", "ExecResult", "RunOptions", "Result", "SandboxProcess", "ExitReason", "ProbeReport"])
        expect({ t, declared: declared.has(t) }).toEqual({ t, declared: true });
      // A consumer without @types/node must not need the NodeJS namespace.
      expect(dts).not.toContain("NodeJS.");
    });
  });

  (hasTsc ? test : test.skip)("a strict TypeScript consumer type-checks against dist/index.d.ts", async () => {
    const ts = await typescript(ROOT);
    const consumer = join(ROOT, "test/fixtures/consumer.ts");
    const program = ts.createProgram([consumer], {
      strict: true,
      noEmit: true,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      types: ["node"],
      exactOptionalPropertyTypes: true,
      noUncheckedIndexedAccess: true,
      typeRoots: [join(ROOT, "tools/node_modules/@types")],
    });
    const diags = ts.getPreEmitDiagnostics(program);
    const text = ts.formatDiagnostics(diags, {
      getCanonicalFileName: (f: string) => f,
      getCurrentDirectory: () => ROOT,
      getNewLine: () => "\n",
    });
    expect(text).toBe("");
    // And a wrong use is an error (the check can fail).
    const bad = ts.createProgram([join(ROOT, "test/fixtures/consumer-wrong.ts")], program.getCompilerOptions());
    const badText = ts.formatDiagnostics(ts.getPreEmitDiagnostics(bad), {
      getCanonicalFileName: (f: string) => f,
      getCurrentDirectory: () => ROOT,
      getNewLine: () => "\n",
    });
    expect(badText).toContain("consumer-wrong.ts");
    expect(badText).toContain("TS2322"); // a number where the API wants a string
  }, 60_000);
});
