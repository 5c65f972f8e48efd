#!/usr/bin/env node
// Runs every test/**/*.test.ts file with node's own test runner (tsx as the
// loader). Node 20's --test takes no globs, so the files are listed here.
// Extra arguments are passed through: `npm test -- test/engine` runs one folder.
//
// The tests start `bin/mr.js` as users do, so dist/ is rebuilt first when it
// does not match src/ (bin/dist.js): the suite runs the compiled build, and an
// edit to src/ is never tested through an old one.
import { spawn, spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { distStaleness } from "../bin/dist.js";

function collect(path, out) {
  if (statSync(path).isDirectory()) {
    for (const entry of readdirSync(path).sort()) collect(join(path, entry), out);
  } else if (path.endsWith(".test.ts")) {
    out.push(path);
  }
  return out;
}

const stale = distStaleness();
if (stale !== null) {
  console.error(`run-tests: building dist/ (${stale})`);
  const build = spawnSync(process.execPath, [join(import.meta.dirname, "build.mjs")], { stdio: "inherit" });
  if (build.status !== 0) process.exit(1);
}

const roots = process.argv.slice(2).filter((a) => !a.startsWith("-"));
const flags = process.argv.slice(2).filter((a) => a.startsWith("-"));
const files = (roots.length > 0 ? roots : ["test"]).flatMap((r) => collect(r, []));
if (files.length === 0) {
  console.error("no test files found");
  process.exit(1);
}
// Every file runs with the leak check preloaded (test/helpers/leak-check.ts): a
// file that leaves a child process or a listening server behind fails.
const leakCheck = pathToFileURL(join(import.meta.dirname, "..", "test", "helpers", "leak-check.ts")).href;
const child = spawn(
  process.execPath,
  ["--import", "tsx", "--import", leakCheck, "--test", "--test-concurrency=2", "--test-timeout=300000", ...flags, ...files],
  { stdio: "inherit" },
);
child.on("exit", (code, signal) => process.exit(signal ? 1 : (code ?? 1)));
