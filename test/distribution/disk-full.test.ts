import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, open, readdir, rm, statfs } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startTestRegistry, type TestRegistry } from "../doubles/test-registry.ts";
import { freshDistribution, makeModelFiles, tempDir } from "./helpers.ts";
import { createModelDistribution, InsufficientStorageError, openStore, type ModelDistribution } from "../../src/distribution/index.ts";
import type { TestContext } from "node:test";
import { startBareDaemon } from "../helpers/daemon.ts";

/** Packages a generated model (`embeddingLength` 1024 ≈ 41 MiB, 512 ≈ 12.5 MiB) and pushes it as `ref`. */
async function pushModel(t: TestContext, ref: string, embeddingLength: number, seed: number): Promise<void> {
  const dist = await freshDistribution(t);
  const files = await makeModelFiles(await tempDir(), { seed, embeddingLength });
  await dist.packageModel({ gguf: files.gguf, tags: [ref] });
  await dist.push(ref);
}

async function partialFiles(dist: ModelDistribution): Promise<string[]> {
  return (await readdir(join(dist.store.root, "blobs", "sha256"))).filter((n) => n.includes(".incomplete"));
}

/**
 * A 30 MiB tmpfs (root only) on a fresh directory, unmounted and removed
 * after the test; `{skip}` with the reason when it cannot be mounted.
 */
async function mountSmallFs(t: TestContext): Promise<{ dir: string } | { skip: string }> {
  const dir = await mkdtemp(join(tmpdir(), "mr-small-fs-"));
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=30m", "tmpfs", dir], { stdio: "pipe" });
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    return { skip: `cannot mount a tmpfs here (needs root): ${String((e as { stderr?: Buffer }).stderr ?? e).trim()}` };
  }
  t.after(async () => {
    execFileSync("umount", ["-l", dir]);
    await rm(dir, { recursive: true, force: true });
  });
  return { dir };
}

test("free space is checked before downloading: a 507 insufficient_storage with both figures, nothing written (injected statfs)", async (t) => {
  const registry = await startTestRegistry();
  t.after(() => registry.close());
  const ref = `${registry.host}/team/big:v1`;
  await pushModel(t, ref, 512, 1);
  const statfsCalls: string[] = [];
  const dist = await freshDistribution(t, {
    // The store's filesystem, as the injected statfs reports it: 1 MiB free.
    statfs: async (path) => {
      statfsCalls.push(path);
      return { bavail: 256, bsize: 4096 };
    },
  });
  await assert.rejects(dist.pull(ref), (e: unknown) => {
    assert.ok(e instanceof InsufficientStorageError, String(e));
    assert.equal(e.status, 507);
    assert.equal(e.code, "insufficient_storage");
    assert.match(e.message, /needs 12\.\d MiB more, but only 1\.00 MiB is free in /);
    assert.equal(e.extra.available_bytes, 1 << 20);
    assert.ok(Number(e.extra.required_bytes) > 12 << 20);
    return true;
  });
  assert.deepEqual(statfsCalls, [dist.store.root]);
  assert.deepEqual(await partialFiles(dist), [], "nothing was downloaded");
});

test("a pull into a full 30 MiB filesystem: 507 before downloading, `no space left on device` when a write fails anyway, partials counted and removed by rm, purge and a later pull", async (t) => {
  const fs = await mountSmallFs(t);
  if ("skip" in fs) return t.skip(fs.skip);
  const dir = fs.dir;
  const registry: TestRegistry = await startTestRegistry();
  t.after(() => registry.close());
  const ref = `${registry.host}/team/big:latest`;
  await pushModel(t, ref, 1024, 2);

  const store = await openStore({ root: join(dir, "models") });
  const dist = createModelDistribution({ store, retryBaseMs: 20, progressIntervalMs: 0 });
  // 1. The real free space is checked first: nothing is written.
  await assert.rejects(dist.pull(ref), (e: unknown) => {
    assert.ok(e instanceof InsufficientStorageError, String(e));
    assert.match(e.message, /it needs 4\d\.\d MiB more, but only (2\d|30)\.\d MiB is free in /);
    return true;
  });
  assert.deepEqual(await partialFiles(dist), []);

  // 2. A statfs that says there is room (another writer filled the disk since): the write fails with ENOSPC.
  const lying = createModelDistribution({ store, retryBaseMs: 20, progressIntervalMs: 0, statfs: async () => ({ bavail: 1e9, bsize: 4096 }) });
  const failWithNoSpace = async () => {
    await assert.rejects(lying.pull(ref), (e: unknown) => {
      assert.ok(e instanceof InsufficientStorageError, String(e));
      assert.equal(e.status, 507);
      assert.match(e.message, /^No space left on device while writing to .*\. \d+\.\d MiB of partial downloads are kept/);
      return true;
    });
    const usage = await dist.diskUsage();
    assert.ok(usage.partialBytes > 20 << 20, `partials are counted: ${usage.partialBytes}`);
  };
  await failWithNoSpace();
  const freeBefore = await statfs(dir);
  assert.ok(freeBefore.bavail * freeBefore.bsize < 4 << 20, "the partial fills the disk");

  // 3. `rm` of the name removes its partial download, and the space comes back.
  const removed = await dist.remove(ref);
  assert.ok(removed.length > 0 && removed.every((r) => "Deleted" in r), JSON.stringify(removed));
  assert.deepEqual(await partialFiles(dist), []);
  assert.equal((await dist.diskUsage()).partialBytes, 0);
  const freeAfter = await statfs(dir);
  assert.ok(freeAfter.bavail * freeAfter.bsize > 25 << 20);

  // 4. `purge` removes them too.
  await failWithNoSpace();
  await dist.purge();
  assert.deepEqual(await partialFiles(dist), []);

  // 5. The tag moves to a model that fits: its pull removes the useless partial of the old one (which fills the disk) and succeeds.
  await failWithNoSpace();
  await pushModel(t, ref, 512, 3);
  const pulled = await dist.pull(ref);
  assert.deepEqual(pulled.tags, [ref]);
  assert.deepEqual(await partialFiles(dist), []);
  assert.deepEqual(await dist.store.check(), []);

  // 6. Completely full (a partial of another model plus a filler file): removing the stored model still works,
  // the partials nobody writes make room for the index rewrite.
  const other = `${registry.host}/team/other:latest`;
  await pushModel(t, other, 1024, 5);
  await assert.rejects(lying.pull(other), InsufficientStorageError);
  const filler = await open(join(dir, "filler"), "w");
  for (let chunk = 1 << 20; chunk >= 512; ) {
    try {
      await filler.write(Buffer.alloc(chunk));
    } catch {
      chunk >>= 1; // ENOSPC: fill what is left with smaller writes
    }
  }
  await filler.close();
  const gone = await dist.remove(ref);
  assert.deepEqual(gone, [{ Untagged: ref }, { Deleted: pulled.id }]);
  assert.deepEqual(await dist.list(), []);
  assert.deepEqual(await dist.store.check(), []);
});

test("through the daemon: a pull into a full filesystem is a 507 saying so (not 'Internal server error'), and /engines/df counts partials", async (t) => {
  const fs = await mountSmallFs(t);
  if ("skip" in fs) return t.skip(fs.skip);
  const registry = await startTestRegistry();
  t.after(() => registry.close());
  const ref = `${registry.host}/team/big:latest`;
  await pushModel(t, ref, 1024, 4);
  const d = await startBareDaemon({ MODEL_RUNNER_HOME: fs.dir, MODEL_RUNNER_LOG_LEVEL: "error" });
  t.after(() => d.close());
  const res = await fetch(`${d.url}/models/create`, { method: "POST", headers: { accept: "application/json" }, body: JSON.stringify({ from: ref }) });
  const text = await res.text();
  assert.equal(res.status, 507, text);
  const body = JSON.parse(text) as { error: { code: string; message: string } };
  assert.equal(body.error.code, "insufficient_storage");
  assert.match(body.error.message, /^Not enough disk space for this pull: it needs 4\d\.\d MiB more, but only \d+\.\d MiB is free in /);
  const df = (await (await fetch(`${d.url}/engines/df`)).json()) as { models_disk_usage: number; partial_downloads_disk_usage: number };
  assert.equal(df.partial_downloads_disk_usage, 0);
});
