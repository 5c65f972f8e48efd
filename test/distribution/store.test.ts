import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { freshDistribution, makeModelFiles, tempDir } from "./helpers.ts";
import { writeTinyModel } from "../../src/distribution/tiny-model.ts";
import {
  InvalidReferenceError, ModelConflictError, ModelNotFoundError, normalizeReference, openStore, parseAnyReference, parseReference,
  toDmrProgressLine,
} from "../../src/distribution/index.ts";

test("references normalize as Docker Model Runner does", () => {
  assert.equal(normalizeReference("smollm2"), "ai/smollm2:latest");
  assert.equal(parseReference("smollm2").registryHost, "registry-1.docker.io");
  assert.equal(normalizeReference("Foo/Bar:Q4"), "foo/bar:Q4");
  assert.equal(normalizeReference("hf.co/bartowski/Some-Repo:Q4_K_M"), "huggingface.co/bartowski/some-repo:Q4_K_M");
  assert.equal(normalizeReference("huggingface.co/bartowski/some-repo:Q4_K_M"), "huggingface.co/bartowski/some-repo:Q4_K_M");
  assert.equal(normalizeReference("registry.example.com/team/model:v2"), "registry.example.com/team/model:v2");
  assert.equal(normalizeReference("localhost:5000/team/model"), "localhost:5000/team/model:latest");
  assert.equal(normalizeReference("docker.io/ai/smollm2:360M"), "ai/smollm2:360M");
  assert.equal(parseReference("127.0.0.1:5000/a/b:v1").registryHost, "127.0.0.1:5000");
  assert.deepEqual(parseAnyReference("0123456789ab"), { kind: "id", idPrefix: "0123456789ab" });
  assert.deepEqual(parseAnyReference(`sha256:${"a".repeat(64)}`), { kind: "id", idPrefix: "a".repeat(64) });
  for (const bad of ["", "a b", "UPPER/../x", "ai/x:bad:tag!", "sha256:abc", "hf.co/only-org", "http://x.io/a"]) {
    assert.throws(() => parseAnyReference(bad), (e) => e instanceof InvalidReferenceError && e.status === 400 && e.message.includes(`"${bad}"`), bad);
  }
});

test("store: shared blobs stored once, tags, DMR delete semantics, partial names, tar round trip, shards", async (t) => {
  const dir = await tempDir();
  const files = await makeModelFiles(dir);
  const dist = await freshDistribution(t);
  const a = await dist.packageModel({ gguf: files.gguf, licenses: [files.license], tags: ["team/a:v1"] });
  const b = await dist.packageModel({ gguf: files.gguf, licenses: [files.license], contextSize: 512, tags: ["team/b:v1"] });
  assert.notEqual(a.id, b.id, "different configs");
  const blobs = async () => (await readdir(join(dist.store.root, "blobs", "sha256"))).filter((n) => /^[0-9a-f]{64}$/.test(n));
  assert.equal((await blobs()).length, 4, "gguf and license stored once, two configs");
  assert.equal((await dist.get(a.id.slice(7, 19))).id, a.id);
  assert.equal((await dist.get(a.id)).id, a.id);
  assert.equal((await dist.resolve("a")).id, a.id, "partial name");
  await assert.rejects(dist.get("team/none"), (e) => e instanceof ModelNotFoundError && e.status === 404);

  assert.equal(await dist.tag("team/a:v1", "Team/A:Latest"), "team/a:Latest");
  await assert.rejects(dist.remove(a.id), (e) => e instanceof ModelConflictError && e.status === 409);
  assert.deepEqual(await dist.remove("team/a:Latest"), [{ Untagged: "team/a:Latest" }]);
  assert.deepEqual(await dist.remove("team/a:v1"), [{ Untagged: "team/a:v1" }, { Deleted: a.id }]);
  assert.equal((await blobs()).length, 3, "a's config freed, shared blobs kept");
  assert.deepEqual(await dist.store.check(), []);

  // Tar export → load into another store gives the same model.
  const other = await freshDistribution(t);
  const loaded = await other.loadTar(dist.exportTar("team/b:v1"), { tags: ["loaded/b:v1"] });
  assert.equal(loaded.id, b.id);
  assert.equal(loaded.config.context_size, 512);
  assert.deepEqual(await other.store.check(), []);
  const bad = Buffer.concat(await Readable.from(dist.exportTar("team/b:v1")).toArray());
  bad[600] = bad[600]! ^ 1; // inside the first blob's body
  await assert.rejects(other.loadTar(Readable.from([bad])));

  // Shards: the first shard finds the rest; files come in order.
  const s1 = join(dir, "sharded-00001-of-00002.gguf");
  await writeTinyModel(s1, { seed: 7 });
  await writeTinyModel(join(dir, "sharded-00002-of-00002.gguf"), { seed: 8 });
  const sharded = await dist.packageModel({ gguf: s1, mmproj: files.gguf, chatTemplate: files.template, tags: ["team/sharded"] });
  assert.equal(sharded.files.ggufPaths.length, 2);
  assert.match(sharded.files.ggufPaths[0]!, /model-00001-of-00002\.gguf$/);
  assert.ok(sharded.files.mmprojPath && sharded.files.chatTemplatePath);
  assert.equal(sharded.manifest.layers.filter((l) => l.mediaType === "application/vnd.docker.ai.gguf.v3").length, 2);

  assert.ok((await dist.diskUsage()).modelsBytes > 0);
  await dist.purge();
  assert.deepEqual(await dist.list(), []);
  assert.deepEqual(await blobs(), []);
  assert.equal(toDmrProgressLine({ type: "success", mode: "pull", message: "ok", id: "x" }).type, "success");
});

test("the store survives SIGKILL of a writer at random instants", async (t) => {
  const dir = await tempDir();
  const files = await makeModelFiles(dir);
  const root = join(dir, "models");
  const pids: number[] = [];
  t.after(() => {
    for (const p of pids) try { process.kill(p, "SIGKILL"); } catch { /* gone */ }
  });
  let killedMidWrite = 0;
  for (let round = 0; round < 8; round++) {
    const child = spawn(process.execPath, ["--import", "tsx", "test/fixtures/store-writer.ts", root, files.gguf, files.license], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    pids.push(child.pid!);
    let progressed = 0;
    child.stdout!.on("data", (d: Buffer) => (progressed += d.length));
    // Wait until it is writing, then kill it at a random instant.
    while (progressed === 0 && child.exitCode === null) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, Math.random() * 150));
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGKILL");
    await exited;
    if (progressed > 0) killedMidWrite++;
    const store = await openStore({ root });
    assert.deepEqual(await store.check(), [], `round ${round}`);
    await store.cleanup({ partials: true, orphanGraceMs: 0 });
    assert.deepEqual(await store.check(), [], `round ${round} after cleanup`);
    assert.deepEqual(await readdir(join(root, "tmp")), []);
    // The lock the dead writer may hold must not wedge the store.
    await writeFile(join(dir, "probe"), String(round));
    await store.locked(async () => {}, AbortSignal.timeout(5000));
  }
  assert.ok(killedMidWrite > 0);
  const st = await stat(join(root, "models.json")).catch(() => null);
  assert.ok(st, "the writer committed models before being killed");
});

test("the index version: this process's writes change it at once, another store's on the same root within 250 ms", async (t) => {
  const dir = await tempDir();
  const files = await makeModelFiles(dir);
  const dist = await freshDistribution(t);
  const before = dist.indexVersion();
  assert.equal(dist.indexVersion(), before, "unchanged without a write");
  await dist.packageModel({ gguf: files.gguf, tags: ["team/v:1"] });
  const afterPackage = dist.indexVersion();
  assert.notEqual(afterPackage, before, "a model packaged here");
  await dist.tag("team/v:1", "team/v:2");
  assert.notEqual(dist.indexVersion(), afterPackage, "a tag added here");
  // A second store object stands for another process on the same store: its write shows once the file is looked at again.
  const other = await openStore({ root: dist.store.root });
  const seen = dist.indexVersion();
  await other.tag("team/v:1", "team/v:3");
  await new Promise((r) => setTimeout(r, 300));
  assert.notEqual(dist.indexVersion(), seen, "another store's write");
});
