import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import { gguf } from "@huggingface/gguf";
import { tinyProjectorImageTokens, writeTinyProjector } from "../../src/distribution/tiny-projector.ts";
import { tempDir } from "../helpers/models.ts";

test("the tiny projector is a clip GGUF of type mlp whose output width is the text model's", async () => {
  const path = join(await tempDir(), "mm.gguf");
  const size = await writeTinyProjector(path, { textEmbeddingLength: 96 });
  const { metadata, tensorInfos } = await gguf(path, { allowLocalFile: true });
  const meta = metadata as Record<string, unknown>;
  assert.equal(meta["general.architecture"], "clip");
  assert.equal(meta["clip.projector_type"], "mlp");
  assert.equal(meta["clip.has_vision_encoder"], true);
  assert.deepEqual(meta["clip.vision.image_mean"], [0.5, 0.5, 0.5]);
  const dims = (name: string) => tensorInfos.find((t) => t.name === name)?.shape.map(Number);
  // clip.cpp's clip_n_mmproj_embd for mlp: mm.2.weight's ne[1].
  assert.deepEqual(dims("mm.2.weight"), [96, 96]);
  assert.deepEqual(dims("mm.0.weight"), [32, 96]);
  assert.deepEqual(dims("v.patch_embd.weight"), [8, 8, 3, 32]);
  assert.deepEqual(dims("v.position_embd.weight"), [32, 17]);
  assert.deepEqual(dims("v.blk.1.ffn_down.weight"), [64, 32]);
  assert.ok(size > 50_000 && size < 1_000_000, `size ${size}`);
  assert.equal(tinyProjectorImageTokens(), 16);
  assert.equal(tinyProjectorImageTokens({ imageSize: 64, patchSize: 16 }), 16);
});

test("the tiny projector refuses what clip.cpp would misread", async () => {
  const path = join(await tempDir(), "mm.gguf");
  await assert.rejects(writeTinyProjector(path, { textEmbeddingLength: 64, feedForwardLength: 32 }), /must differ/);
  await assert.rejects(writeTinyProjector(path, { textEmbeddingLength: 64, blockCount: 1 }), /at least 2/);
  await assert.rejects(writeTinyProjector(path, { textEmbeddingLength: 64, patchSize: 5 }), /does not divide/);
});
