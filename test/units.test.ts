import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, relative, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { parseByteSize, parseDuration } from "../src/units.ts";

const SRC = fileURLToPath(new URL("../src/", import.meta.url));

/** Every src module `file` loads, following its static relative imports. */
function importClosure(file: string, seen = new Set<string>()): Set<string> {
  if (seen.has(file)) return seen;
  seen.add(file);
  const text = readFileSync(file, "utf8");
  for (const m of text.matchAll(/^(?:import|export)\s[^;]*?from\s+"(\.[^"]+)"/gms)) {
    if (/^import\s+type\s/.test(m[0]) || /^export\s+type\s/.test(m[0])) continue;
    importClosure(resolve(dirname(file), m[1]!), seen);
  }
  return seen;
}

test("configuration loads no scheduling or inference module (imports point one way)", () => {
  const loaded = [...importClosure(resolve(SRC, "config.ts"))].map((f) => relative(SRC, f));
  assert.deepEqual(loaded.filter((f) => /^(scheduling|inference|engine|api)\//.test(f)), []);
  assert.ok(loaded.includes("units.ts"));
});

test("the unit parsers live in src/units.ts", () => {
  assert.equal(parseDuration("1h30m"), 5_400_000);
  assert.equal(parseByteSize("2GiB"), 2 * 1024 ** 3);
});
