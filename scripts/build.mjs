#!/usr/bin/env node
// Compiles src/ to dist/ (tsconfig.build.json), which bin/mr.js runs instead of
// the TypeScript sources once the build matches them (see bin/dist.js).
// `npm ci` / `npm install` run it as the `prepare` script; scripts/run-tests.mjs
// runs it when dist/ is stale. `--if-stale` skips a build that already matches.
//
// dist/ mirrors src/ at the same depth (rootDir src → outDir dist), so paths the
// code resolves from import.meta.url (../../bin/mr.js, ../package.json) hold
// for both. Files under src/ that are not TypeScript are copied beside the output.
//
// The build goes to a scratch folder that replaces dist/ only when complete, and
// its stamp holds the digest of the sources taken before compiling. Without
// typescript (an install that omits dev dependencies) it says so and exits 0:
// mr then runs the sources through tsx.
import { spawnSync } from "node:child_process";
import { cpSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join, relative } from "node:path";
import { PACKAGE_ROOT, STAMP_FILE, distStaleness, sourceDigest } from "../bin/dist.js";

const root = PACKAGE_ROOT;
const ifStale = process.argv.includes("--if-stale");
if (ifStale && distStaleness(root) === null) process.exit(0);

let tsc;
try {
  tsc = createRequire(join(root, "package.json")).resolve("typescript/bin/tsc");
} catch {
  console.error("build: typescript is not installed (dev dependencies omitted); mr will run src/ through tsx");
  process.exit(0);
}

process.exitCode = build();

function build() {
  const digest = sourceDigest(root);
  const scratch = join(root, `dist.build-${process.pid}`);
  const old = join(root, `dist.old-${process.pid}`);
  rmSync(scratch, { recursive: true, force: true });
  try {
    const result = spawnSync(process.execPath, [tsc, "-p", join(root, "tsconfig.build.json"), "--outDir", scratch], { stdio: "inherit" });
    // Exit 2 is "type errors, output written": that output is what tsx would
    // run too, so it is used; `npm run typecheck` (and `npm test`) is the gate
    // for types, and an install is not refused for them.
    if (result.status === 2) console.error("build: type errors above (npm run typecheck); dist/ written all the same, as tsx would run it");
    else if (result.status !== 0) {
      console.error(`build: tsc failed (${result.signal ?? `exit ${result.status}`}); dist/ left as it was`);
      return 1;
    }
    copyNonTypeScript(join(root, "src"), scratch);
    writeFileSync(join(scratch, STAMP_FILE), `${JSON.stringify({ sourceDigest: digest })}\n`);
    // Two renames, so a process starting meanwhile sees the old dist/ (its
    // stamp no longer matches: it runs src/) or the new one, never half of one.
    try {
      renameSync(join(root, "dist"), old);
    } catch (error) {
      if (error.code !== "ENOENT") throw error;
    }
    try {
      renameSync(scratch, join(root, "dist"));
    } catch (error) {
      // A build running beside this one put its complete dist/ there first.
      if (error.code !== "ENOTEMPTY" && error.code !== "EEXIST") throw error;
    }
    return 0;
  } finally {
    rmSync(scratch, { recursive: true, force: true });
    rmSync(old, { recursive: true, force: true });
  }
}

function copyNonTypeScript(from, to) {
  for (const entry of readdirSync(from, { withFileTypes: true })) {
    const source = join(from, entry.name);
    if (entry.isDirectory()) copyNonTypeScript(source, join(to, entry.name));
    else if (!entry.name.endsWith(".ts")) cpSync(source, join(to, relative(from, source)));
  }
}
