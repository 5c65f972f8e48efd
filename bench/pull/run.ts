// Pull benchmark: a generated model (default 1 GiB, MODEL_MB to change) is
// pushed to a local docker-registry, then pulled by us and copied by
// `skopeo copy` into a directory, side by side, with our peak RSS growth.
// Run: node --import tsx bench/pull/run.ts
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { startTestRegistry } from "../../test/doubles/test-registry.ts";
import { createModelDistribution, openStore } from "../../src/distribution/index.ts";
import { writeTinyModel } from "../../src/distribution/tiny-model.ts";

const run = promisify(execFile);
const sizeMb = Number(process.argv[2] ?? 1024);
const dir = await mkdtemp(join(tmpdir(), "mr-bench-"));
const registry = await startTestRegistry();
try {
  // A real GGUF header followed by a big incompressible weights file packaged as a second GGUF shard would
  // need a real big model; writeTinyModel with a wide embedding makes one of about the requested size.
  const gguf = join(dir, "big.gguf");
  const emb = Math.round(Math.sqrt((sizeMb * 1024 * 1024) / 4 / 8)) & ~3;
  const bytes = await writeTinyModel(gguf, { embeddingLength: emb, blockCount: 2, feedForwardLength: emb });
  const src = createModelDistribution({ store: await openStore({ root: join(dir, "src") }) });
  const ref = `${registry.host}/bench/big:v1`;
  await src.packageModel({ gguf, tags: [ref] });
  await src.push(ref);
  await rm(join(dir, "src"), { recursive: true });

  const baseRss = process.memoryUsage().rss;
  let peakRss = baseRss;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 20);
  const dst = createModelDistribution({ store: await openStore({ root: join(dir, "dst") }) });
  let t0 = performance.now();
  await dst.pull(ref);
  const ours = (performance.now() - t0) / 1000;
  clearInterval(sampler);

  t0 = performance.now();
  await run("skopeo", ["copy", "--src-tls-verify=false", `docker://${ref}`, `dir:${join(dir, "skopeo")}`]);
  const skopeo = (performance.now() - t0) / 1000;
  const mib = bytes / (1 << 20);
  const out = {
    modelMiB: Math.round(mib),
    oursSeconds: +ours.toFixed(2),
    oursMiBps: Math.round(mib / ours),
    skopeoSeconds: +skopeo.toFixed(2),
    skopeoMiBps: Math.round(mib / skopeo),
    peakRssGrowthMiB: Math.round((peakRss - baseRss) / (1 << 20)),
  };
  console.log(JSON.stringify(out));
} finally {
  await registry.close();
  await rm(dir, { recursive: true, force: true });
}
