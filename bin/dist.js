// Which code `mr` runs: the compiled JavaScript in dist/, or the TypeScript in
// src/ through tsx's loader. Plain JavaScript, so it runs before any loader.
//
// The rule: dist/ is used only when its build stamp holds the same digest as
// the sources have now. The digest covers every file under src/ (path and
// bytes) and both tsconfig files, and scripts/build.mjs computes it *before*
// compiling, so an edit made during a build also leaves the stamp behind.
// Anything else (no dist/, no stamp, an edit, a new or deleted file, a
// checkout of another branch) falls back to src/ through tsx: slower to start
// and ~35 MiB heavier, but never an old build. The digest reads the files'
// bytes rather than trusting mtimes, which tar, rsync -a and npm's packer
// rewrite or preserve; hashing the ~600 KB of sources costs a few ms per start.
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";

/** The package root: bin/ sits directly under it. */
export const PACKAGE_ROOT = fileURLToPath(new URL("..", import.meta.url));

/** dist/'s stamp file: `{ "sourceDigest": "sha256:..." }`, written last by the build. */
export const STAMP_FILE = "build-stamp.json";

const CONFIG_FILES = ["tsconfig.json", "tsconfig.build.json"];

function listFiles(dir, out) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) listFiles(path, out);
    else out.push(path);
  }
  return out;
}

/** The digest of what a build compiles from: every file under src/ and the tsconfig files. */
export function sourceDigest(root = PACKAGE_ROOT) {
  const hash = createHash("sha256");
  const files = [...listFiles(join(root, "src"), []), ...CONFIG_FILES.map((f) => join(root, f))];
  // Sorted by their portable relative name, so the digest does not depend on readdir order.
  const named = files.map((path) => [relative(root, path).split(sep).join("/"), path]).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  for (const [name, path] of named) {
    let bytes;
    try {
      bytes = readFileSync(path);
    } catch (error) {
      if (error.code === "ENOENT") continue; // a config file that is not there
      throw error;
    }
    hash.update(`${name}\0${bytes.length}\0`).update(bytes);
  }
  return `sha256:${hash.digest("hex")}`;
}

/** The stamp's digest, or null when dist/ has no readable stamp. */
export function stampedDigest(root = PACKAGE_ROOT) {
  try {
    const stamp = JSON.parse(readFileSync(join(root, "dist", STAMP_FILE), "utf8"));
    return typeof stamp.sourceDigest === "string" ? stamp.sourceDigest : null;
  } catch {
    return null;
  }
}

/**
 * Why dist/ cannot be used, or null when it matches src/. The reasons are for
 * `mr --debug` and the test runner, not for parsing.
 */
export function distStaleness(root = PACKAGE_ROOT) {
  const stamped = stampedDigest(root);
  if (stamped === null) return "dist/ has not been built";
  if (stamped !== sourceDigest(root)) return "src/ changed since dist/ was built";
  return null;
}
