import { parseDigest, type Digest } from "./digest.ts";
import { InvalidReferenceError } from "./errors.ts";
import { MediaTypes } from "./media-types.ts";
import { ProgressReporter } from "./progress.ts";
import { parseAnyReference, parseReference } from "./reference.ts";
import { registryClient } from "./pull.ts";
import { runLimited } from "./run-limited.ts";
import type { DistributionContext, TransferOptions } from "./types.ts";

/**
 * Pushes a stored model to the registry its (name) reference names: blobs
 * the registry has are skipped, blobs in another repository of the same
 * registry (another tag of this model) are mounted, the rest uploaded (in
 * PATCH chunks when large); the manifest goes last. Push never uses mirrors.
 */
export async function pushModel(ctx: DistributionContext, reference: string, opts: TransferOptions = {}): Promise<{ digest: Digest; size: number }> {
  const store = ctx.store;
  const signal = opts.signal ?? new AbortController().signal;
  const parsed = parseAnyReference(reference);
  if (parsed.kind !== "name") throw new InvalidReferenceError(reference, "push needs a name, not an ID");
  const ref = parsed.ref;
  if (ref.isHuggingFace) throw new InvalidReferenceError(reference, "pushing to Hugging Face is not supported yet");
  const entry = await store.lookup(reference);
  const { raw, manifest } = await store.readManifest(entry.id);
  // Other tags of this model in the same registry are repositories we can mount blobs from.
  const sources = entry.tags
    .map((t) => parseReference(t))
    .filter((r) => r.registryHost === ref.registryHost && r.repository !== ref.repository)
    .map((r) => r.repository);
  const client = registryClient(ctx, ref, opts.bearerToken, "pull,push", sources.map((s) => `repository:${s}:pull`));
  const reporter = new ProgressReporter("push", opts.onProgress, ctx.options.progressIntervalMs);
  const blobs = [...manifest.layers, manifest.config];
  for (const b of blobs) reporter.addLayer(b.digest, b.size);
  await runLimited(blobs, 3, async (b) => {
    const d = parseDigest(b.digest);
    if (await client.hasBlob(d, signal)) return reporter.update(b.digest, b.size);
    for (const from of sources) if (await client.mountBlob(d, from, signal)) return reporter.update(b.digest, b.size);
    let sent = 0;
    await client.uploadBlob(d, store.blobPath(d), b.size, {
      chunkSizeBytes: ctx.options.pushChunkSizeBytes ?? 64 << 20,
      signal,
      onBytes: (n) => reporter.update(b.digest, (sent += n)),
    });
    reporter.update(b.digest, b.size);
  });
  await client.putManifest(ref.digest ?? ref.tag, raw, manifest.mediaType ?? MediaTypes.ociManifest, signal);
  reporter.success("Model pushed successfully", entry.id);
  return { digest: entry.id, size: raw.length };
}
