#!/usr/bin/env bash
# Installs @sbx/client the ways a new user does, in fresh projects outside the repository, and
# runs one real call through sbx-exec from each, importing the package by its name:
#   1. `npm pack` of clients/bun, then `npm install ./sbx-client-*.tgz`  -> run under Node
#   2. the same tarball with `bun add ./sbx-client-*.tgz`                 -> run under Bun (a .ts
#      file that imports the package's types too; Bun strips them, it does not type-check)
#   3. `npm install /path/to/clients/bun` (the folder)                    -> run under Node
#   4. `bun add /path/to/clients/bun` (the folder)                        -> run under Bun
# No build step anywhere, and no network: the package has no dependencies, so every install runs
# with --offline and an empty cache of its own.
#
# Usage (as root, the sandbox needs it):  SBX_EXEC=/path/to/sbx-exec bash clients/bun/test/install-check.sh
# node, npm and bun are needed: a missing one is skipped with a message, and is a failure when
# CI=true.
set -euo pipefail

say() { printf 'install-check: %s\n' "$*"; }
die() {
    printf 'install-check: FAILED: %s\n' "$*" >&2
    exit 1
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
pkg=$(cd "$here/.." && pwd)                  # clients/bun
repo=$(cd "$pkg/../.." && pwd)

[ -n "${SBX_EXEC:-}" ] || die "set SBX_EXEC to the sbx-exec binary (e.g. target/\$(rustc -vV | sed -n 's/^host: //p')/debug/sbx-exec)"
case "$SBX_EXEC" in /*) ;; *) SBX_EXEC="$PWD/$SBX_EXEC" ;; esac
[ -x "$SBX_EXEC" ] || die "SBX_EXEC=$SBX_EXEC is not an executable file"
[ "$(id -u)" = 0 ] || die "run as root: sbx-exec's sandbox needs it (uid is $(id -u))"
export SBX_EXEC

missing_ok=true
[ "${CI:-}" = true ] && missing_ok=false
# have TOOL: true if TOOL is on PATH; otherwise say so, and fail under CI=true.
have() {
    if command -v "$1" >/dev/null 2>&1; then return 0; fi
    $missing_ok || die "$1 is not installed (CI=true: every install path must be checked)"
    say "SKIPPED what needs $1: it is not installed"
    return 1
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sbx-install-check.XXXXXX")
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT
case "$tmp/" in "$repo"/*) die "the temporary directory $tmp is inside the repository $repo" ;; esac
say "working in $tmp (removed at the end)"

# Caches of our own, empty: an install that works here needs nothing but the tarball or folder.
export npm_config_cache="$tmp/npm-cache"
export npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false
export BUN_INSTALL_CACHE_DIR="$tmp/bun-cache"

# The program each project runs: one real call, by package name, checked, and createSandbox's file
# operations (exists/readFile or ls inside the default policy's user). Exit status 0 only if it
# printed "hi" through the sandbox; then it must also exit promptly (checked by the caller).
write_node_check() {
    cat >"$1/check.mjs" <<'EOF'
import { createSandbox, exec, NotFound, Refused } from "@sbx/client";
const r = await exec("user", ["echo", "hi"], { bin: process.env.SBX_EXEC });
if (r.stdout !== "hi\n" || r.code !== 0 || r.reason !== "exited")
  throw new Error(`unexpected result: ${JSON.stringify(r)}`);
if (typeof Refused !== "function") throw new Error("Refused is not exported");
// createSandbox's file operations (sbx-exec file), inside the default policy's user context.
const sb = createSandbox({ sbxExec: process.env.SBX_EXEC });
if ((await sb.user.exists("/")) !== true) throw new Error("user.exists('/') is not true");
const missing = await sb.user.readFile("/no-such-file-of-install-check").then(() => undefined, (e) => e);
if (!(missing instanceof NotFound)) throw new Error(`user.readFile of a missing file: ${missing}`);
console.log(`ok: ${JSON.stringify(r.stdout)} from pid ${r.pid}, createSandbox file ops (${typeof Bun === "undefined" ? "node " + process.version : "bun " + Bun.version})`);
EOF
}
write_bun_check() {
    cat >"$1/check.ts" <<'EOF'
import { createSandbox, exec, type DirEntry, type ExecOptions, type ExecResult, type Sandbox } from "@sbx/client";
const opts: ExecOptions = { bin: process.env.SBX_EXEC };
const r: ExecResult = await exec("user", ["echo", "hi"], opts);
if (r.stdout !== "hi\n" || r.code !== 0 || r.reason !== "exited")
  throw new Error(`unexpected result: ${JSON.stringify(r)}`);
const sb: Sandbox = createSandbox({ sbxExec: process.env.SBX_EXEC });
const root: DirEntry[] = await sb.user.ls("/");
if (!root.some((e) => e.name === "etc")) throw new Error(`user.ls('/') has no etc: ${JSON.stringify(root)}`);
console.log(`ok: ${JSON.stringify(r.stdout)} from pid ${r.pid}, createSandbox file ops (bun ${Bun.version}, TypeScript)`);
EOF
}

# new_project NAME: a fresh, empty ESM project; prints its path.
new_project() {
    local d="$tmp/$1"
    mkdir -p "$d"
    printf '{ "name": "sbx-install-check-%s", "version": "1.0.0", "private": true, "type": "module" }\n' "$1" >"$d/package.json"
    printf '%s\n' "$d"
}

# check_installed DIR: what the install put in node_modules: package.json's entry points exist,
# types included, no dependency pulled in.
check_installed() {
    local m="$1/node_modules/@sbx/client"
    [ -f "$m/package.json" ] || die "$1: @sbx/client is not in node_modules"
    for f in dist/index.js dist/index.d.ts; do
        [ -s "$m/$f" ] || die "$1: the installed package has no $f"
    done
    local others
    others=$(find "$1/node_modules" -mindepth 1 -maxdepth 1 ! -name '@sbx' ! -name '.*' -printf '%f ' 2>/dev/null || true)
    [ -z "$others" ] || die "$1: installing @sbx/client pulled in other packages: $others"
}

# run_check DIR RUNTIME FILE: run the check in DIR and require it to exit within 10 s in all
# (a call takes milliseconds; the client must not keep the process alive afterwards).
run_check() {
    local dir="$1" runtime="$2" file="$3" out start end
    start=$(date +%s%N)
    out=$(cd "$dir" && timeout 10 "$runtime" "$file" 2>&1) || die "$dir: $runtime $file failed: $out"
    end=$(date +%s%N)
    say "  $runtime $file: $out ($(((end - start) / 1000000)) ms)"
    case "$out" in ok:*) ;; *) die "$dir: $runtime $file printed: $out" ;; esac
}

checked=0

# ------------------------------------------------------------------------------ npm pack + npm
if have npm; then
    say "npm $(npm --version): npm pack $pkg"
    (cd "$tmp" && npm pack --silent --pack-destination "$tmp" "$pkg" >"$tmp/pack.out") ||
        die "npm pack failed: $(cat "$tmp/pack.out")"
    tgz=$(find "$tmp" -maxdepth 1 -name 'sbx-client-*.tgz' | head -n 1)
    [ -n "$tgz" ] || die "npm pack wrote no sbx-client-*.tgz"
    contents=$(tar -tzf "$tgz" | sort | tr '\n' ' ')
    say "  $(basename "$tgz"): $contents"
    for f in package/package.json package/dist/index.js package/dist/index.d.ts package/README.md; do
        case " $contents " in *" $f "*) ;; *) die "the tarball lacks $f" ;; esac
    done
    case " $contents " in *node_modules* | *"/test/"* | *"/scripts/"*) die "the tarball ships more than the package: $contents" ;; esac

    if have node; then
        p=$(new_project npm-tarball)
        say "node $(node --version): npm install --offline $(basename "$tgz") into $p"
        (cd "$p" && npm install --offline --no-audit --no-fund --loglevel=error "$tgz" >"$tmp/npm1.out" 2>&1) ||
            die "npm install of the tarball failed: $(cat "$tmp/npm1.out")"
        check_installed "$p"
        write_node_check "$p"
        run_check "$p" node check.mjs
        checked=$((checked + 1))

        p=$(new_project npm-folder)
        say "npm install --offline $pkg (the folder) into $p"
        (cd "$p" && npm install --offline --no-audit --no-fund --loglevel=error "$pkg" >"$tmp/npm2.out" 2>&1) ||
            die "npm install of the folder failed: $(cat "$tmp/npm2.out")"
        check_installed "$p"
        write_node_check "$p"
        run_check "$p" node check.mjs
        checked=$((checked + 1))
    fi
fi

# ------------------------------------------------------------------------------------------ bun
if have bun; then
    if [ -n "${tgz:-}" ]; then
        p=$(new_project bun-tarball)
        cp "$tgz" "$p/"
        say "bun $(bun --version): bun add --offline ./$(basename "$tgz") in $p"
        (cd "$p" && bun add --offline --no-progress "./$(basename "$tgz")" >"$tmp/bun1.out" 2>&1) ||
            die "bun add of the tarball failed: $(cat "$tmp/bun1.out")"
        check_installed "$p"
        write_bun_check "$p"
        run_check "$p" bun check.ts
        write_node_check "$p"
        run_check "$p" bun check.mjs
        checked=$((checked + 1))
    fi

    p=$(new_project bun-folder)
    say "bun add --offline $pkg (the folder) in $p"
    (cd "$p" && bun add --offline --no-progress "$pkg" >"$tmp/bun2.out" 2>&1) ||
        die "bun add of the folder failed: $(cat "$tmp/bun2.out")"
    check_installed "$p"
    write_bun_check "$p"
    run_check "$p" bun check.ts
    if command -v node >/dev/null 2>&1; then
        write_node_check "$p"
        run_check "$p" node check.mjs
    fi
    checked=$((checked + 1))
fi

[ "$checked" -gt 0 ] || die "nothing was checked (no npm, node or bun)"
say "passed: $checked install paths, each with a real call through $SBX_EXEC"
