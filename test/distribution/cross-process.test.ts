import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { startTestRegistry } from "../doubles/test-registry.ts";
import { startRegistryProxy } from "../doubles/registry-proxy.ts";
import { freshDistribution, makeModelFiles, tempDir } from "./helpers.ts";
import { openStore } from "../../src/distribution/index.ts";

/** Starts a puller process and resolves once it is ready to pull. */
async function startPuller(root: string, ref: string): Promise<{ child: ChildProcess; output: () => string }> {
  const child = spawn(process.execPath, ["--import", "tsx", "test/fixtures/puller.ts", root, ref], { stdio: ["pipe", "pipe", "inherit"] });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  while (!out.includes("ready\n")) {
    if (child.exitCode !== null) throw new Error(`puller exited early: ${out}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return { child, output: () => out };
}

test("two processes pulling the same model into one store download each blob once and leave a sound store", async (t) => {
  const backend = await startTestRegistry();
  t.after(() => backend.close());
  const proxy = await startRegistryProxy(backend.url);
  t.after(() => proxy.close());
  const dir = await tempDir();
  const files = await makeModelFiles(dir, { embeddingLength: 512 });
  const src = await freshDistribution(t);
  const ref = `${proxy.host}/shared/big:v1`;
  const model = await src.packageModel({ gguf: files.gguf, licenses: [files.license], tags: [ref] });
  await src.push(ref);

  const root = join(dir, "shared-store");
  const pullers = [await startPuller(root, ref), await startPuller(root, ref)];
  t.after(() => {
    for (const p of pullers) if (p.child.exitCode === null) p.child.kill("SIGKILL");
  });
  // Each blob GET is held a while, so both processes are mid-pull together and
  // the second would fetch the same blobs itself were it not for the per-blob lock.
  proxy.faults = { blobGetDelayMs: 300 };
  proxy.blobGets.length = 0;
  const exits = pullers.map((p) => once(p.child, "exit"));
  for (const p of pullers) p.child.stdin!.end("go\n");
  const codes = (await Promise.all(exits)).map(([code]) => code);
  assert.deepEqual(codes, [0, 0], pullers.map((p) => p.output()).join("\n"));
  for (const p of pullers) assert.equal(p.output().trim().split("\n").at(-1), model.id);

  const perBlob = new Map<string, number>();
  for (const g of proxy.blobGets) perBlob.set(g.path, (perBlob.get(g.path) ?? 0) + 1);
  const blobs = [model.manifest.config, ...model.manifest.layers].map((b) => b.digest);
  assert.deepEqual(
    [...perBlob].sort(),
    blobs.map((d) => [`/v2/shared/big/blobs/${d}`, 1]).sort(),
    `one GET per blob: ${JSON.stringify(proxy.blobGets)}`,
  );

  const store = await openStore({ root });
  assert.deepEqual(await store.check(), []);
  const index = await store.readIndex();
  assert.deepEqual(index.map((m) => [m.id, m.tags]), [[model.id, [ref]]]);
});
