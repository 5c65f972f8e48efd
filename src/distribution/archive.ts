import { createReadStream } from "node:fs";
import { Readable } from "node:stream";
import { parseDigest, type Digest } from "./digest.ts";
import { InvalidArtifactError, UnsupportedMediaTypeError } from "./errors.ts";
import { parseManifest } from "./manifest.ts";
import { SUPPORTED_CONFIG_MEDIA_TYPES } from "./media-types.ts";
import { parseReference } from "./reference.ts";
import { BlobMissingError, type ModelStore, type StoredModel } from "./store.ts";
import { readTar, tarHeader, tarPadding, TAR_END } from "./tar.ts";

/**
 * Model archives (`docker model save/load`): a tar with `manifest.json` (the
 * raw manifest) and `blobs/sha256/<hex>`, streamed from and into the store.
 */

/** A tar of the model `reference` names, streamed from the store. */
export function exportTar(store: ModelStore, reference: string): Readable {
  async function* gen(): AsyncGenerator<Buffer> {
    const entry = await store.lookup(reference);
    const { raw, manifest } = await store.readManifest(entry.id);
    for (const b of [manifest.config, ...manifest.layers]) {
      const d = parseDigest(b.digest);
      yield tarHeader(`blobs/sha256/${d.slice(7)}`, b.size, entry.created);
      for await (const c of createReadStream(store.blobPath(d), { highWaterMark: 1 << 20 })) yield c as Buffer;
      yield tarPadding(b.size);
    }
    yield tarHeader("manifest.json", raw.length, entry.created);
    yield raw;
    yield tarPadding(raw.length);
    yield TAR_END;
  }
  return Readable.from(gen(), { objectMode: false });
}

/** Loads a tar `exportTar` (or DMR) wrote; blobs are verified by their names. */
export async function loadTar(
  store: ModelStore,
  source: AsyncIterable<Buffer | Uint8Array>,
  opts: { tags?: string[]; signal?: AbortSignal } = {},
): Promise<StoredModel> {
  let raw: Buffer | null = null;
  for await (const e of readTar(source)) {
    opts.signal?.throwIfAborted();
    const blob = /^blobs\/sha256\/([0-9a-f]{64})$/.exec(e.name);
    if (e.name === "manifest.json") {
      if (e.size > 4 << 20) throw new InvalidArtifactError("manifest.json in the archive is too large.");
      const parts: Buffer[] = [];
      for await (const c of e.body) parts.push(c as Buffer);
      raw = Buffer.concat(parts);
    } else if (blob && e.type === "0") {
      await store.ingest(e.body, { expected: `sha256:${blob[1]}` as Digest, ...(opts.signal ? { signal: opts.signal } : {}) });
    }
  }
  if (!raw) throw new InvalidArtifactError("The archive has no manifest.json.");
  const manifest = parseManifest(raw);
  if (!SUPPORTED_CONFIG_MEDIA_TYPES.includes(manifest.config.mediaType)) throw new UnsupportedMediaTypeError(manifest.config.mediaType);
  const tags = (opts.tags ?? []).map((t) => parseReference(t).normalized);
  let id: Digest;
  try {
    id = await store.commitModel(raw, tags, opts.signal);
  } catch (e) {
    if (e instanceof BlobMissingError) throw new InvalidArtifactError(`The archive lacks blob ${e.digest}.`, { cause: e });
    throw e;
  }
  return store.get(id);
}
