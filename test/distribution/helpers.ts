import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { writeTinyModel } from "../../src/distribution/tiny-model.ts";
import { tempDir } from "../helpers/models.ts";
export { tempDir } from "../helpers/models.ts";
import { openStore, createModelDistribution, type DistributionOptions } from "../../src/distribution/index.ts";
import type { TestContext } from "node:test";

/** A fresh store + distribution in a temp dir. */
export async function freshDistribution(t: TestContext, extra: Partial<DistributionOptions> = {}) {
  const root = join(await tempDir("mr-store-"), "models");
  const store = await openStore({ root });
  return createModelDistribution({ store, retryBaseMs: 20, progressIntervalMs: 0, ...extra });
}

/** Writes a tiny GGUF (+ license and template) into `dir`; `embeddingLength` 512 gives ~8 MB. */
export async function makeModelFiles(dir: string, opts: { seed?: number; embeddingLength?: number } = {}) {
  const gguf = join(dir, `model-${opts.seed ?? 1}.gguf`);
  await writeTinyModel(gguf, { seed: opts.seed ?? 1, embeddingLength: opts.embeddingLength ?? 64, heads: 4 });
  const license = join(dir, "LICENSE");
  await writeFile(license, "Apache-2.0 test license\n");
  const template = join(dir, "template.jinja");
  await writeFile(template, "{{ messages }}");
  return { gguf, license, template };
}
