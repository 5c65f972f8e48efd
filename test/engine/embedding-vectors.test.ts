import assert from "node:assert/strict";
import { test } from "node:test";
import { dimensionsError, normalizeEmbedding, shortenBase64Embedding, shortenEmbedding } from "../../src/engine/embedding-vectors.ts";

test("shortenEmbedding keeps the first values at unit length; a vector no longer than asked is unchanged", () => {
  const v = normalizeEmbedding([3, 4, 12, 0], 2);
  assert.deepEqual(shortenEmbedding(v, 2).map((x) => x.toFixed(6)), ["0.600000", "0.800000"]);
  assert.deepEqual(shortenEmbedding(v, 4), v);
  assert.deepEqual(shortenEmbedding(v, 9), v);
});

test("shortenBase64Embedding decodes float32 values wherever the decoded bytes sit", () => {
  const encoded = Buffer.from(new Float32Array([3, 4, 12]).buffer).toString("base64");
  // Many small decodes share Node's buffer pool at odd offsets.
  for (let i = 0; i < 5; i++) Buffer.from("abc", "base64");
  const short = Buffer.from(shortenBase64Embedding(encoded, 2), "base64");
  const floats = new Float32Array(short.buffer.slice(short.byteOffset, short.byteOffset + short.length));
  assert.deepEqual(Array.from(floats).map((x) => x.toFixed(6)), ["0.600000", "0.800000"]);
});

test("dimensionsError refuses only a size above the model's", () => {
  assert.equal(dimensionsError(64, 64), null);
  assert.equal(dimensionsError(1, 64), null);
  assert.match(dimensionsError(65, 64) ?? "", /'dimensions' is 65, but this model's embeddings have 64 dimensions/);
});
