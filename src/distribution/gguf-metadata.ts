import { InvalidArtifactError } from "./errors.ts";
import { MediaTypes } from "./media-types.ts";
import { ggufMetadataMap } from "./package.ts";
import type { StoredModel } from "./store.ts";

/** Header maps kept; a store holds few models, and each map is small (vocabularies are left out). */
const MAX_ENTRIES = 64;

/**
 * A stored model's GGUF metadata: the config's `gguf` map when the artifact
 * carries one (ours and DMR's do), else read from the header of the stored
 * GGUF file (artifacts made by other tools have none), in the same string
 * form. A blob never changes, so a header read is cached by the GGUF layer's
 * digest: /api/show reads each file once, not per request.
 */
export class GgufMetadata {
  private readonly byDigest = new Map<string, Promise<Record<string, string>>>();

  /** `{}` for a model without a GGUF (safetensors); InvalidArtifactError when the stored file has no readable header. */
  async of(model: StoredModel): Promise<Record<string, string>> {
    const stored = model.config.gguf;
    if (stored && Object.keys(stored).length > 0) return stored;
    const layer = model.manifest.layers.find((l) => l.mediaType === MediaTypes.gguf);
    // The first shard's header has the model's metadata (as in readGgufConfig).
    const path = model.files.ggufPaths[0];
    if (!layer || !path) return {};
    let pending = this.byDigest.get(layer.digest);
    if (!pending) {
      pending = readHeader(path);
      this.byDigest.set(layer.digest, pending);
      // A failed read is not cached: the next request tries again.
      pending.catch(() => this.byDigest.delete(layer.digest));
      if (this.byDigest.size > MAX_ENTRIES) this.byDigest.delete(this.byDigest.keys().next().value!);
    }
    return pending;
  }
}

async function readHeader(path: string): Promise<Record<string, string>> {
  try {
    // Only the header is read: @huggingface/gguf fetches the file in ranges.
    const { gguf } = await import("@huggingface/gguf");
    const { metadata } = await gguf(path, { allowLocalFile: true });
    return ggufMetadataMap(metadata as unknown as Record<string, unknown>);
  } catch (e) {
    throw new InvalidArtifactError(`The stored GGUF ${path} has no readable header.`, { cause: e });
  }
}
