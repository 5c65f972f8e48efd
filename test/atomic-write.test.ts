import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { withAtomicFile, writeAtomic } from "../src/atomic-write.ts";
import { tempDir } from "./helpers/models.ts";

test("writeAtomic replaces the file whole and leaves no temp file; a failed write leaves the old content", async () => {
  const dir = await tempDir();
  const path = join(dir, "settings.json");
  await writeFile(path, "old");
  await writeAtomic(path, "new", { mode: 0o600 });
  assert.equal(await readFile(path, "utf8"), "new");
  await writeAtomic(join(dir, "private.json"), "x", { mode: 0o600 });
  assert.equal((await stat(join(dir, "private.json"))).mode & 0o777, 0o600);
  await assert.rejects(
    withAtomicFile(path, async (tmp) => {
      await writeFile(tmp, "half");
      throw new Error("disk trouble");
    }),
    /disk trouble/,
  );
  assert.equal(await readFile(path, "utf8"), "new");
  assert.deepEqual((await readdir(dir)).sort(), ["private.json", "settings.json"]);
});
