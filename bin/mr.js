#!/usr/bin/env node
// The entry point for `mr` and `model-runner`. It runs the compiled build in
// dist/ when that build matches the sources (bin/dist.js holds the rule), and
// otherwise the TypeScript in src/ through tsx's loader. The compiled path
// skips tsx's loader thread and transforms: ~30 MiB less for a long-running
// `mr serve` and each engine it starts, and a faster start. `npm ci` builds
// dist/ (the `prepare` script); an edit to src/ makes mr run src/ until the
// next `npm run build`, never a build that no longer matches it.
//
// `mr --debug ...` says on stderr which one runs and why.
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { PACKAGE_ROOT, distStaleness } from "./dist.js";

const stale = distStaleness();
if (process.argv[2] === "--debug") {
  process.stderr.write(stale === null ? "mr: running the compiled build in dist/\n" : `mr: running src/ through tsx (${stale}; npm run build compiles it)\n`);
}
if (stale === null) {
  await import(pathToFileURL(join(PACKAGE_ROOT, "dist", "cli", "main.js")).href);
} else {
  const { register } = await import("tsx/esm/api");
  register();
  await import("../src/cli/main.ts");
}
