import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { InvalidArtifactError, type StoredModel } from "../../src/distribution/index.ts";
import { GgufMetadata } from "../../src/distribution/gguf-metadata.ts";
import { freshDistribution, makeModelFiles, tempDir } from "./helpers.ts";

/** The model as an artifact made by another tool would store it: a config without the `gguf` map. */
const withoutMap = (m: StoredModel, files: Partial<StoredModel["files"]> = {}): StoredModel => {
  const { gguf: _dropped, ...config } = m.config;
  return { ...m, config, files: { ...m.files, ...files } };
};

test("a config's gguf map is the metadata; without one the stored file's header gives the same map, read once per blob", async (t) => {
  const dist = await freshDistribution(t);
  const dir = await tempDir();
  const { gguf } = await makeModelFiles(dir, { seed: 3 });
  const model = await dist.packageModel({ gguf, tags: ["ai/meta:v1"] });
  assert.ok(model.config.gguf && Object.keys(model.config.gguf).length > 5);

  const metadata = new GgufMetadata();
  assert.equal(await metadata.of(model), model.config.gguf, "the config's own map, not a header read");
  const bare = withoutMap(model);
  const read = await metadata.of(bare);
  assert.deepEqual(read, model.config.gguf, "the header read has the packager's form");
  assert.equal(read["general.architecture"], "llama");
  // Cached by the GGUF layer's digest: the same object again, even when the file is no longer where it was.
  assert.equal(await metadata.of(withoutMap(model, { ggufPaths: [join(dir, "gone.gguf")] })), read);

  // Another blob whose file is no GGUF: a typed error, and the failure is not cached.
  const junk = join(dir, "junk.gguf");
  await writeFile(junk, "not a gguf at all");
  const other: StoredModel = {
    ...bare,
    manifest: { ...bare.manifest, layers: bare.manifest.layers.map((l) => (l.digest === bare.manifest.layers[0]!.digest ? { ...l, digest: `sha256:${"1".repeat(64)}` } : l)) },
    files: { ...bare.files, ggufPaths: [junk] },
  };
  await assert.rejects(metadata.of(other), InvalidArtifactError);
  await assert.rejects(metadata.of(other), InvalidArtifactError);
  // The facade uses the same reader.
  assert.deepEqual(await dist.ggufMetadata(bare), model.config.gguf);
  // A model without a GGUF layer has no metadata.
  assert.deepEqual(await metadata.of({ ...bare, manifest: { ...bare.manifest, layers: [] }, files: { ...bare.files, ggufPaths: [] } }), {});
});
