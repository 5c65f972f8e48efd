import { parseDigest, sha256Digest } from "./digest.ts";
import {
  DigestMismatchError, InvalidArtifactError, RegistryError, RegistryUnreachableError, RemoteNotFoundError, UnsupportedMediaTypeError,
} from "./errors.ts";
import { ensureSpaceFor } from "./disk-space.ts";
import { isTransientNetworkError, readSmallBody } from "./http.ts";
import { parseConfigFile, parseManifest } from "./manifest.ts";
import { SUPPORTED_CONFIG_MEDIA_TYPES, type Descriptor } from "./media-types.ts";
import type { ProgressReporter } from "./progress.ts";
import { DOCKER_HUB, DOCKER_HUB_HOST, type ModelReference } from "./reference.ts";
import { RegistryClient } from "./registry.ts";
import { runLimited } from "./run-limited.ts";
import { BlobMissingError, type StoredModel } from "./store.ts";
import { credentialSources, type DistributionContext, type RemoteModel, type TransferOptions } from "./types.ts";

/**
 * Pulling from OCI registries: which host to ask (registry mirrors for
 * docker.io, then Docker Hub), the manifest, the blobs (shared per process
 * through BlobDownloads) and the commit.
 */

/** A registry client for `ref` (or the mirror `via`) with the configured credentials and retries. */
export function registryClient(
  ctx: DistributionContext,
  ref: ModelReference,
  bearerToken: string | undefined,
  actions: "pull" | "pull,push",
  extraScopes: string[] = [],
  via?: { host: string; isInsecure: boolean; maxRetries?: number },
): RegistryClient {
  const options = ctx.options;
  const host = via?.host ?? (ref.registry === DOCKER_HUB ? (options.dockerHubHost ?? DOCKER_HUB_HOST) : ref.registryHost);
  const insecure = [...(options.insecureRegistries ?? []), ...(via?.isInsecure ? [host] : [])];
  const maxRetries = via?.maxRetries ?? options.maxRetries;
  return new RegistryClient(
    host,
    ref.repository,
    {
      ...credentialSources(options),
      ...(options.dispatcher ? { dispatcher: options.dispatcher } : {}),
      ...(insecure.length > 0 ? { insecureRegistries: insecure } : {}),
      ...(bearerToken ? { bearerToken } : {}),
      ...(maxRetries !== undefined ? { maxRetries } : {}),
      ...(options.retryBaseMs !== undefined ? { retryBaseMs: options.retryBaseMs } : {}),
    },
    actions,
    extraScopes,
  );
}

/**
 * Fetches the manifest `ref` names (an index is followed) with a client of
 * the host that answered, which then also serves the blobs. docker.io
 * references try each mirror first and move on when a mirror has no such
 * manifest (404) or cannot be reached; other errors (401, bad content) stop.
 */
async function resolveManifest(ctx: DistributionContext, ref: ModelReference, bearerToken: string | undefined, signal: AbortSignal) {
  const mirrors = ref.registry === DOCKER_HUB ? (ctx.options.registryMirrors ?? []).map(parseMirror) : [];
  for (const mirror of mirrors) {
    // One retry only: a dead mirror should cost little before Docker Hub is asked.
    const client = registryClient(ctx, ref, bearerToken, "pull", [], { ...mirror, maxRetries: Math.min(ctx.options.maxRetries ?? 1, 1) });
    try {
      return { client, ...(await client.getManifest(ref.digest ?? ref.tag, signal)) };
    } catch (e) {
      if (signal.aborted) throw signal.reason;
      const isUnreachable = e instanceof RegistryUnreachableError || (e instanceof RegistryError && e.code === "registry_error" && isTransientNetworkError(e.cause));
      if (!(e instanceof RemoteNotFoundError) && !isUnreachable) throw e;
    }
  }
  const client = registryClient(ctx, ref, bearerToken, "pull");
  return { client, ...(await client.getManifest(ref.digest ?? ref.tag, signal)) };
}

/** Pulls a registry reference and tags it locally (see ModelDistribution.pull). */
export async function pullFromRegistry(
  ctx: DistributionContext,
  ref: ModelReference,
  opts: TransferOptions,
  reporter: ProgressReporter,
  signal: AbortSignal,
): Promise<StoredModel> {
  const store = ctx.store;
  const { client, raw, digest } = await resolveManifest(ctx, ref, opts.bearerToken, signal);
  const manifest = parseManifest(raw);
  if (!SUPPORTED_CONFIG_MEDIA_TYPES.includes(manifest.config.mediaType)) {
    throw new UnsupportedMediaTypeError(manifest.config.mediaType);
  }
  const tag = ref.normalized;
  const existing = await store.readIndex();
  if (existing.some((m) => m.id === digest)) {
    await store.commitModel(raw, [tag], signal);
    const model = await store.get(digest);
    reporter.success(`Using cached model: ${model.config.size ?? ""}`.trim(), digest);
    return model;
  }
  const blobs: Descriptor[] = [manifest.config, ...manifest.layers];
  // Partials an earlier pull of this tag left for blobs it no longer has (another version of it) are of no use:
  // drop them before counting the free space, which they may be filling.
  await store.removePartials({ reference: tag, keep: new Set(blobs.map((b) => parseDigest(b.digest))) });
  await ensureSpaceFor(store, blobs.map((b) => ({ digest: parseDigest(b.digest), size: b.size })), ctx.options.statfs);
  for (const b of blobs) reporter.addLayer(b.digest, b.size);
  for (let attempt = 0; ; attempt++) {
    await runLimited(blobs, 3, async (b) => {
      const d = parseDigest(b.digest);
      await ctx.downloads.fetch(d, b.size, (range, s) => client.getBlob(d, range, s), (n) => reporter.update(b.digest, n), signal, tag);
      reporter.update(b.digest, b.size);
    });
    try {
      await store.commitModel(raw, [tag], signal);
      break;
    } catch (e) {
      // A concurrent remove in another process freed a blob we had; fetch it again once.
      if (!(e instanceof BlobMissingError) || attempt > 0) throw e;
    }
  }
  const model = await store.get(digest);
  if (!model.config.format) reporter.warn("The model config has no format; assuming GGUF.");
  reporter.success("Model pulled successfully", digest);
  return model;
}

/** Describes a registry model without pulling it: the manifest and the config blob, never a layer. */
export async function inspectRegistry(
  ctx: DistributionContext,
  ref: ModelReference,
  bearerToken: string | undefined,
  signal: AbortSignal,
): Promise<RemoteModel> {
  const { client, raw, digest } = await resolveManifest(ctx, ref, bearerToken, signal);
  const manifest = parseManifest(raw);
  if (!SUPPORTED_CONFIG_MEDIA_TYPES.includes(manifest.config.mediaType)) throw new UnsupportedMediaTypeError(manifest.config.mediaType);
  const configDigest = parseDigest(manifest.config.digest);
  if (manifest.config.size > 4 << 20) throw new InvalidArtifactError(`The config blob of ${ref.normalized} is ${manifest.config.size} bytes; configs are small.`);
  const res = await client.getBlob(configDigest, null, signal);
  if (res.statusCode === 404) {
    await res.body.dump();
    throw new RemoteNotFoundError(`The config blob of ${ref.normalized} is missing from ${client.host}.`);
  }
  if (res.statusCode !== 200) throw await client.unexpected(res, "GET config blob");
  const bytes = await readSmallBody(res.body, 4 << 20);
  const actual = sha256Digest(bytes);
  if (actual !== configDigest) throw new DigestMismatchError(configDigest, actual);
  const configFile = parseConfigFile(bytes);
  const created = Date.parse(configFile.descriptor?.created ?? "");
  return {
    id: digest,
    tags: [ref.normalized],
    created: Number.isFinite(created) ? Math.floor(created / 1000) : 0,
    config: configFile.config ?? {},
    layers: manifest.layers,
  };
}

/** `host[:port]`, `https://host`, or `http://host` (plain HTTP) → the host and whether it is insecure. */
function parseMirror(entry: string): { host: string; isInsecure: boolean } {
  const m = /^(https?):\/\/([^/]+)\/*$/i.exec(entry.trim());
  if (m) return { host: m[2]!.toLowerCase(), isInsecure: m[1]!.toLowerCase() === "http" };
  return { host: entry.trim().replace(/\/+$/, "").toLowerCase(), isInsecure: false };
}
