import { test } from "node:test";
import assert from "node:assert/strict";
import { getEventListeners } from "node:events";
import { writeFile } from "node:fs/promises";
import { Readable } from "node:stream";
import { BlobDownloads } from "../../src/distribution/blob-downloads.ts";
import { sha256Digest } from "../../src/distribution/digest.ts";
import type { HttpResponse } from "../../src/distribution/http.ts";
import { InvalidArtifactError, openStore } from "../../src/distribution/index.ts";
import { freshDistribution, makeModelFiles, tempDir } from "./helpers.ts";

/** A blob server answering from memory: the registry is a boundary these unit tests do not need. */
function memoryOpener(data: Buffer) {
  return async (range: { start: number; end: number } | null): Promise<HttpResponse> => {
    const bytes = range ? data.subarray(range.start, range.end + 1) : data;
    const body = Object.assign(Readable.from([bytes]), { dump: async () => undefined }) as unknown as HttpResponse["body"];
    return {
      statusCode: range ? 206 : 200,
      headers: range ? { "content-range": `bytes ${range.start}-${range.end}/${data.length}` } : {},
      body,
      url: "memory://blob",
    };
  };
}

test("a damaged config blob is a 400 InvalidArtifactError from the store, not a SyntaxError", async (t) => {
  const dist = await freshDistribution(t);
  const files = await makeModelFiles(await tempDir());
  const model = await dist.packageModel({ gguf: files.gguf, tags: ["ai/broken:latest"] });
  const configPath = dist.store.blobPath(model.manifest.config.digest as never);
  await writeFile(configPath, "{not json");
  // A fresh store has no description cache: it reads the config blob again.
  const store = await openStore({ root: dist.store.root });
  await assert.rejects(store.get("ai/broken:latest"), (e: unknown) => e instanceof InvalidArtifactError && e.status === 400);
});

test("a shared blob download leaves no abort listener on the caller's signal", async (t) => {
  const store = await openStore({ root: await tempDir() });
  const downloads = new BlobDownloads(store);
  const signal = new AbortController().signal;
  for (let i = 0; i < 3; i++) {
    const data = Buffer.from(`blob ${i} `.repeat(1000));
    await downloads.fetch(sha256Digest(data), data.length, memoryOpener(data), () => {}, signal);
  }
  assert.equal(getEventListeners(signal, "abort").length, 0, "one daemon request's signal must not collect a listener per blob");
});
