import type { Readable } from "node:stream";
import { exportTar, loadTar } from "./archive.ts";
import { BlobDownloads } from "./blob-downloads.ts";
import { parseDigest, sha256Digest, type Digest } from "./digest.ts";
import { isNoSpace, noSpaceError } from "./disk-space.ts";
import { ModelNotFoundError } from "./errors.ts";
import { inspectHuggingFace, pullHuggingFace } from "./huggingface.ts";
import { GgufMetadata } from "./gguf-metadata.ts";
import { parseConfigFile } from "./manifest.ts";
import { MediaTypes, type ImageManifest, type ModelConfigFile } from "./media-types.ts";
import { packageModel, type PackageOptions } from "./package.ts";
import { ProgressReporter } from "./progress.ts";
import { checkInsecureAllowed, parseAnyReference, parseReference, type ModelReference } from "./reference.ts";
import { inspectRegistry, pullFromRegistry } from "./pull.ts";
import { pushModel } from "./push.ts";
import { findByPartialName, type ModelStore, type RemoveResult, type StoredModel } from "./store.ts";
import type { DistributionContext, DistributionOptions, RemoteModel, RemoteOptions, TransferOptions } from "./types.ts";
import { InvalidRequestError } from "../errors.ts";

export type { DistributionOptions, RemoteModel, RemoteOptions, TransferOptions } from "./types.ts";

/** What `repackage` changes; everything else of the source is kept. */
export interface RepackageOptions {
  contextSize?: number;
  /** A local Jinja chat template file: replaces the source's chat template layer. */
  chatTemplate?: string;
  /** Local license files: added after the source's licenses (as Ollama's LICENSE adds one). */
  licenses?: readonly string[];
  /**
   * A new model, never one already stored: the config blob's creation time
   * is set to now (moved on by a millisecond while the result would be an
   * existing model), so the copy gets its own ID and its own configuration
   * (`mr create`, `/api/create` and chat's `/save` derive models this way).
   */
  isNewModel?: boolean;
  signal?: AbortSignal;
}

/**
 * The distribution facade the daemon routes call. All methods are safe to
 * call concurrently, also from several processes on the same store. Errors
 * are RunnerError subclasses (see errors.ts) with the HTTP status to answer.
 */
export interface ModelDistribution {
  readonly store: ModelStore;
  /**
   * Pulls `reference` (registry or hf.co) and tags it locally; resolves with
   * the stored model once it is committed. A model already stored is only
   * (re)tagged. Rejects with `signal.reason` when aborted, leaving resumable
   * partial files. Concurrent pulls share blob downloads.
   */
  pull(reference: string, opts?: TransferOptions): Promise<StoredModel>;
  /** Pushes a stored model to the registry its (name) reference names; resolves with the manifest digest. */
  push(reference: string, opts?: TransferOptions): Promise<{ digest: Digest; size: number }>;
  /**
   * Describes a remote model without pulling it: resolves the manifest
   * (following an image index) and fetches only the config blob, never a
   * layer. For hf.co it lists the repo and picks the files as pull would.
   * Throws RemoteNotFoundError (404), RegistryAuthError (401), RegistryError (502).
   */
  inspectRemote(reference: string, opts?: RemoteOptions): Promise<RemoteModel>;
  /**
   * Stores a copy of `source` under the new tag `target` with a changed
   * config (`contextSize`): same layers, a new config blob and manifest,
   * committed atomically. `source`'s tags are left alone (unless `target`
   * is one of them, which then moves). Resolves with the stored copy.
   */
  repackage(source: string, target: string, opts?: RepackageOptions): Promise<StoredModel>;
  list(): Promise<StoredModel[]>;
  /** Exact tag or ID (12/64 hex, `sha256:…`); throws ModelNotFoundError (404). */
  get(reference: string): Promise<StoredModel>;
  /** `get` with DMR's partial-name fallback (`smollm2` → `…/smollm2:latest`); 409 if ambiguous. */
  resolve(partialName: string): Promise<StoredModel>;
  /** Changes whenever the store's index does (a sync stat): a key for caching what `resolve` answered. */
  indexVersion(): string;
  /** Adds tag `target` to the model `source` names; resolves with the normalized target. */
  tag(source: string, target: string): Promise<string>;
  /**
   * DMR delete semantics; 409 when an ID/force-less delete would drop several
   * tags. Partial downloads of pulls of that name go too; a name with only
   * partials (a pull that failed) answers `{"Deleted": <blob digest>}` for each.
   */
  remove(reference: string, opts?: { force?: boolean }): Promise<RemoveResult>;
  purge(): Promise<void>;
  /** Bytes of complete blobs and of partial downloads (interrupted pulls, kept to resume). */
  diskUsage(): Promise<{ modelsBytes: number; partialBytes: number }>;
  /** Removes orphans of killed writers; with `partials`, resumable downloads too. */
  cleanup(opts?: { partials?: boolean; orphanGraceMs?: number }): Promise<string[]>;
  /**
   * The model's GGUF metadata as strings: the config's `gguf` map, or (for
   * artifacts whose config has none) the stored file's header, read once per
   * GGUF blob. `{}` for a model without a GGUF.
   */
  ggufMetadata(model: StoredModel): Promise<Record<string, string>>;
  /** Packages local GGUF (+ shards, licenses, template, mmproj) into the store under `tags`. */
  packageModel(opts: PackageOptions): Promise<StoredModel>;
  /** A tar (`manifest.json` = the raw manifest, `blobs/sha256/<hex>`), streamed from the store. */
  exportTar(reference: string): Readable;
  /** Loads a tar `exportTar` (or DMR) wrote; blobs are verified by their names. */
  loadTar(source: AsyncIterable<Buffer | Uint8Array>, opts?: { tags?: string[]; signal?: AbortSignal }): Promise<StoredModel>;
}

export function createModelDistribution(options: DistributionOptions): ModelDistribution {
  return new Distribution(options);
}

/** The facade: each operation lives in its own module (pull.ts, push.ts, huggingface.ts, archive.ts, the store). */
class Distribution implements ModelDistribution {
  readonly store: ModelStore;
  private readonly ctx: DistributionContext;
  private readonly metadata = new GgufMetadata();

  constructor(private readonly options: DistributionOptions) {
    this.store = options.store;
    this.ctx = { options, store: options.store, downloads: new BlobDownloads(options.store, options.download ?? {}) };
  }

  async pull(reference: string, opts: TransferOptions = {}): Promise<StoredModel> {
    const signal = opts.signal ?? new AbortController().signal;
    const ref = parseReference(reference);
    const reporter = new ProgressReporter("pull", opts.onProgress, this.options.progressIntervalMs);
    const ctx = this.contextFor(ref, opts);
    return this.mapNoSpace(ref.isHuggingFace ? pullHuggingFace(ctx, ref, opts, reporter, signal) : pullFromRegistry(ctx, ref, opts, reporter, signal));
  }

  /** The context of one transfer: with `isInsecure`, the reference's registry joins the plain-HTTP ones. */
  private contextFor(ref: ModelReference, opts: { isInsecure?: boolean }): DistributionContext {
    if (!opts.isInsecure) return this.ctx;
    checkInsecureAllowed(ref);
    const insecureRegistries = [...(this.ctx.options.insecureRegistries ?? []), ref.registryHost];
    return { ...this.ctx, options: { ...this.ctx.options, insecureRegistries } };
  }

  /** A write that failed for want of space becomes the 507 that says so (disk-space.ts), whatever wrote. */
  private async mapNoSpace<T>(work: Promise<T>): Promise<T> {
    try {
      return await work;
    } catch (e) {
      if (isNoSpace(e)) throw await noSpaceError(this.store, e);
      throw e;
    }
  }

  async inspectRemote(reference: string, opts: RemoteOptions = {}): Promise<RemoteModel> {
    const signal = opts.signal ?? new AbortController().signal;
    const ref = parseReference(reference);
    const ctx = this.contextFor(ref, opts);
    if (ref.isHuggingFace) return inspectHuggingFace(ctx, ref, opts.bearerToken, signal);
    return inspectRegistry(ctx, ref, opts.bearerToken, signal);
  }

  async repackage(source: string, target: string, opts: RepackageOptions = {}): Promise<StoredModel> {
    const tag = parseReference(target).normalized;
    if (opts.contextSize !== undefined && !(Number.isInteger(opts.contextSize) && opts.contextSize >= 0 && opts.contextSize <= 0x7fffffff)) {
      throw new InvalidRequestError(`context_size must be a whole number from 0 to 2147483647, got ${opts.contextSize}.`, "context_size");
    }
    const entry = await this.store.lookup(source);
    const { manifest } = await this.store.readManifest(entry.id);
    // Keep every field of the config blob (also ones we do not know); change only what was asked.
    const configFile = parseConfigFile(await this.store.readBlob(parseDigest(manifest.config.digest))) as ModelConfigFile & Record<string, unknown>;
    const config = { ...(configFile.config ?? {}) };
    if (opts.contextSize !== undefined) config.context_size = opts.contextSize;
    let layers = manifest.layers;
    if (opts.chatTemplate !== undefined) {
      const { digest, size } = await this.mapNoSpace(this.store.ingestFile(opts.chatTemplate, opts.signal));
      layers = [...layers.filter((l) => l.mediaType !== MediaTypes.chatTemplate), { mediaType: MediaTypes.chatTemplate, size, digest }];
    }
    for (const license of opts.licenses ?? []) {
      const { digest, size } = await this.mapNoSpace(this.store.ingestFile(license, opts.signal));
      // The same text twice (a Modelfile from `show --modelfile` names the license it came with) is one layer.
      if (!layers.some((l) => l.digest === digest)) layers = [...layers, { mediaType: MediaTypes.license, size, digest }];
    }
    const rootfs = layers === manifest.layers || !configFile.rootfs ? configFile.rootfs : { ...configFile.rootfs, diff_ids: layers.map((l) => l.digest) };
    const existing = opts.isNewModel ? new Set((await this.store.readIndex()).map((m) => m.id as string)) : new Set<string>();
    let createdMs = Date.now();
    for (;;) {
      const descriptor = opts.isNewModel ? { ...(configFile.descriptor ?? {}), created: new Date(createdMs).toISOString() } : configFile.descriptor;
      const configBytes = Buffer.from(JSON.stringify({ ...configFile, config, ...(descriptor ? { descriptor } : {}), ...(rootfs ? { rootfs } : {}) }));
      const configDigest = await this.store.putSmallBlob(configBytes);
      const next: ImageManifest = { ...manifest, config: { ...manifest.config, digest: configDigest, size: configBytes.length }, layers };
      const raw = Buffer.from(JSON.stringify(next));
      if (existing.has(sha256Digest(raw))) {
        createdMs++;
        continue;
      }
      // commitModel writes the manifest and bundle, then adds the tag to the index in one rewrite under the lock.
      const id = await this.mapNoSpace(this.store.commitModel(raw, [tag], opts.signal));
      return this.store.get(id);
    }
  }

  ggufMetadata(model: StoredModel): Promise<Record<string, string>> {
    return this.metadata.of(model);
  }

  async push(reference: string, opts: TransferOptions = {}): Promise<{ digest: Digest; size: number }> {
    return pushModel(this.contextFor(parseReference(reference), opts), reference, opts);
  }

  list() {
    return this.store.list();
  }
  get(reference: string) {
    return this.store.get(reference);
  }
  indexVersion() {
    return this.store.indexVersion();
  }
  async resolve(partialName: string) {
    const entry = findByPartialName(await this.store.readIndex(), partialName);
    return this.store.get(entry.id);
  }
  tag(source: string, target: string) {
    return this.mapNoSpace(this.store.tag(source, target));
  }
  async remove(reference: string, opts: { force?: boolean } = {}): Promise<RemoveResult> {
    const parsed = parseAnyReference(reference);
    const name = parsed.kind === "name" ? parsed.ref.normalized : null;
    try {
      const result = await this.store.remove(reference, opts).catch(async (e: unknown) => {
        // The index rewrite needs a little room: on a full disk, the partial downloads nobody writes give it
        // (the user removing a model is freeing space), then the remove is tried once more.
        if (!isNoSpace(e)) throw e;
        await this.store.removePartials();
        return this.mapNoSpace(this.store.remove(reference, opts));
      });
      if (name !== null) await this.store.removePartials({ reference: name });
      return result;
    } catch (e) {
      if (!(e instanceof ModelNotFoundError) || name === null) throw e;
      const partials = await this.store.removePartials({ reference: name });
      if (partials.length === 0) throw e;
      return partials.map((d) => ({ Deleted: d }));
    }
  }
  purge() {
    return this.store.purge();
  }
  diskUsage() {
    return this.store.diskUsage();
  }
  cleanup(opts: { partials?: boolean; orphanGraceMs?: number } = {}) {
    return this.store.cleanup(opts);
  }

  async packageModel(opts: PackageOptions): Promise<StoredModel> {
    const tags = (opts.tags ?? []).map((t) => parseReference(t).normalized);
    const { id } = await this.mapNoSpace(packageModel(this.store, { ...opts, tags }));
    return this.store.get(id);
  }

  exportTar(reference: string): Readable {
    return exportTar(this.store, reference);
  }

  loadTar(source: AsyncIterable<Buffer | Uint8Array>, opts: { tags?: string[]; signal?: AbortSignal } = {}): Promise<StoredModel> {
    return this.mapNoSpace(loadTar(this.store, source, opts));
  }
}
