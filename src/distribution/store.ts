import { statSync } from "node:fs";
import { mkdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { BlobStore } from "./blob-store.ts";
import { buildBundle, exists, readBundle, type RunnableFiles } from "./bundle.ts";
import { digestHex, parseDigest, sha256Digest, type Digest } from "./digest.ts";
import { ModelConflictError, StoreError } from "./errors.ts";
import { withFileLock } from "./lock.ts";
import { parseConfigFile, parseManifest } from "./manifest.ts";
import type { ImageManifest, ModelConfig } from "./media-types.ts";
import { findEntry, ModelIndex, type IndexEntry } from "./model-index.ts";
import { parseAnyReference, parseReference } from "./reference.ts";
import { checkStore, cleanupStore, purgeStore, removePartials, storeDiskUsage } from "./store-maintenance.ts";

export type { IndexEntry } from "./model-index.ts";
export { findByPartialName } from "./model-index.ts";
export type { RunnableFiles } from "./bundle.ts";
export { parseManifest } from "./manifest.ts";
export { fsyncPath, hashFile } from "./blob-store.ts";

/** How often indexVersion looks at the index file for another process's writes. */
const INDEX_RESTAT_MS = 250;

/**
 * The local model store: content-addressed blobs, raw manifests, an index of
 * tags and a runnable file layout per model, in DMR's layout (dmr.md §3):
 *
 *   layout.json                      {"version":"1.0.0"}
 *   models.json                      {"models":[{"id","tags","files","created"}]}
 *   blobs/sha256/<hex>               verified blobs; `<hex>.incomplete` (+ `.json` part state) while downloading
 *   manifests/sha256/<hex>           raw manifests, named by their digest (= the model ID)
 *   bundles/sha256/<hex>/model/…     model.gguf | model-0000i-of-0000N.gguf, model.mmproj, template.jinja,
 *                                    hard links to the blobs; bundles/…/config.json is the runtime config
 *   tmp/<pid>-<random>               files being written
 *   lock                             the index lock (see lock.ts)
 *
 * Crash safety. Every file appears by `rename` of a complete, fsynced temp
 * file, so no reader ever sees a half-written blob, manifest or index.
 * models.json is the single commit point: a model exists once the index names
 * it, and the index is only rewritten under the lock after everything it
 * will name is in place (blobs, manifest, bundle). Removal rewrites the index
 * first and deletes files after. A SIGKILL at any instant therefore leaves
 * either the old or the new index, both consistent, plus at worst orphans
 * (temp files of dead pids, unreferenced manifests/bundles/blobs, partial
 * downloads) that `cleanup()` removes and that nothing reads.
 *
 * Concurrency. Blobs are written without the index lock: they are content-
 * addressed, verified before the rename, and renaming the same content twice
 * is harmless. Two processes downloading the same blob serialize on a
 * per-blob lock (distribution layer). A remove can delete a blob that a pull
 * in another process wrote but has not committed yet; `commitModel` checks
 * under the lock that every blob exists and throws `BlobMissingError` so the
 * pull fetches it again instead of committing a broken model.
 */
/** A stored model, as `get`/`list` return it. */
export interface StoredModel {
  id: Digest;
  tags: string[];
  created: number;
  config: ModelConfig;
  manifest: ImageManifest;
  files: RunnableFiles;
  /** Sum of the config and layer sizes. */
  sizeBytes: number;
}

/** DMR's delete answer: `[{"Untagged":"ai/x:latest"},{"Deleted":"sha256:…"}]`. */
export type RemoveResult = Array<{ Untagged: string } | { Deleted: string }>;

/** Thrown by commitModel when a blob vanished before commit (a concurrent remove); the caller re-fetches. */
export class BlobMissingError extends StoreError {
  constructor(readonly digest: Digest) {
    super(`Blob ${digest} is missing from the store.`);
  }
}

const LAYOUT_VERSION = "1.0.0";

export interface OpenStoreOptions {
  /** The models directory (`$MODEL_RUNNER_HOME/models`). Created if missing. */
  root: string;
}

/** Opens (creating if needed) the store at `root`. */
export async function openStore(options: OpenStoreOptions): Promise<ModelStore> {
  const store = new ModelStore(options.root);
  await store.init();
  return store;
}

/**
 * The model store: the blobs (BlobStore), the index (model-index.ts), raw
 * manifests and bundles (bundle.ts), and the operations that change which
 * models exist. Maintenance lives in store-maintenance.ts.
 */
export class ModelStore extends BlobStore {
  readonly index: ModelIndex;
  private readonly described = new Map<Digest, StoredModel>();
  /** The index file's identity when last stat'ed (indexVersion). */
  private indexStat: { atMs: number; token: string } | null = null;

  constructor(root: string) {
    super(root);
    this.index = new ModelIndex(join(root, "models.json"), (path, data) => this.atomicWrite(path, data));
  }

  async init(): Promise<void> {
    for (const d of ["blobs/sha256", "manifests/sha256", "bundles/sha256", "tmp"]) {
      await mkdir(join(this.root, d), { recursive: true });
    }
    const layout = join(this.root, "layout.json");
    const existing = await readFile(layout, "utf8").catch(() => null);
    if (existing === null) {
      await this.atomicWrite(layout, JSON.stringify({ version: LAYOUT_VERSION }));
    } else {
      let version: unknown;
      try {
        version = (JSON.parse(existing) as { version?: unknown }).version;
      } catch (e) {
        throw new StoreError(`${layout} is not valid JSON; move the store aside and pull again.`, { cause: e });
      }
      if (version !== LAYOUT_VERSION) throw new StoreError(`Store layout ${String(version)} at ${this.root} is not supported.`);
    }
  }

  manifestPath(d: Digest): string {
    return join(this.root, "manifests", "sha256", digestHex(d));
  }
  bundleDir(d: Digest): string {
    return join(this.root, "bundles", "sha256", digestHex(d));
  }

  /**
   * A token that changes whenever the index does, without an async round
   * trip: lets callers cache what they derived from the index (the daemon's
   * per-request model lookup). This process's own writes change it at once
   * (ModelIndex.writes); another process's (a second daemon on the same
   * store) show within INDEX_RESTAT_MS, through (inode, mtime, size) of the
   * file renamed into place, stat'ed at most that often (a stat on every
   * request was a measurable part of the fast lane's CPU).
   */
  indexVersion(): string {
    const now = performance.now();
    if (this.indexStat === null || now - this.indexStat.atMs >= INDEX_RESTAT_MS) {
      const info = statSync(this.index.path, { throwIfNoEntry: false });
      this.indexStat = { atMs: now, token: info === undefined ? "none" : `${info.ino}:${info.mtimeMs}:${info.size}` };
    }
    return `${this.indexStat.token}/${this.index.writes}`;
  }

  /** The index, as of now (see ModelIndex.read). */
  readIndex(): Promise<IndexEntry[]> {
    return this.index.read();
  }

  /** Runs `fn` under the index lock (cross-process). */
  locked<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    return withFileLock(join(this.root, "lock"), signal, fn);
  }

  /**
   * Commits a model whose blobs are all stored: writes the manifest, builds the
   * runnable bundle, then (the commit point) adds it with `tags` to the index.
   * Tags move from any other model; a model left without tags is removed.
   * Returns the model ID (manifest digest).
   */
  async commitModel(rawManifest: Buffer, tags: string[], signal?: AbortSignal): Promise<Digest> {
    const id = sha256Digest(rawManifest);
    const manifest = parseManifest(rawManifest);
    const files = [parseDigest(manifest.config.digest), ...manifest.layers.map((l) => parseDigest(l.digest))];
    return this.locked(async () => {
      for (const f of files) if (!(await this.hasBlob(f))) throw new BlobMissingError(f);
      if (!(await exists(this.manifestPath(id)))) await this.atomicWrite(this.manifestPath(id), rawManifest);
      await buildBundle(this, this.bundleDir(id), manifest);
      const models = await this.readIndex();
      let entry = models.find((m) => m.id === id);
      if (!entry) {
        entry = { id, tags: [], files, created: Math.floor(Date.now() / 1000) };
        models.push(entry);
      }
      const orphaned: IndexEntry[] = [];
      for (const tag of tags) {
        for (const m of models) {
          if (m !== entry && m.tags.includes(tag)) {
            m.tags = m.tags.filter((t) => t !== tag);
            if (m.tags.length === 0) orphaned.push(m);
          }
        }
        if (!entry.tags.includes(tag)) entry.tags.push(tag);
      }
      const remaining = models.filter((m) => !orphaned.includes(m));
      await this.index.write(remaining);
      await this.deleteModelFiles(orphaned, remaining);
      return id;
    }, signal);
  }

  /** Resolves a tag, a partial name, or an ID (12/64 hex, `sha256:…`) to the index entry. */
  async lookup(reference: string): Promise<IndexEntry> {
    const models = await this.readIndex();
    return findEntry(models, reference);
  }

  async get(reference: string): Promise<StoredModel> {
    return this.describe(await this.lookup(reference));
  }

  async list(): Promise<StoredModel[]> {
    const out: StoredModel[] = [];
    for (const e of await this.readIndex()) out.push(await this.describe(e));
    return out;
  }

  async readManifest(id: Digest): Promise<{ raw: Buffer; manifest: ImageManifest }> {
    const raw = await readFile(this.manifestPath(id));
    return { raw, manifest: parseManifest(raw) };
  }

  private async describe(e: IndexEntry): Promise<StoredModel> {
    // A model's manifest, config and bundle never change for a given id (it
    // is their digest), so only tags and dates come from the index each time.
    const cached = this.described.get(e.id);
    if (cached) {
      return { ...cached, id: e.id, tags: [...e.tags], created: e.created };
    }
    const model = await this.describeFromDisk(e);
    this.described.set(e.id, model);
    return model;
  }

  private async describeFromDisk(e: IndexEntry): Promise<StoredModel> {
    const { manifest } = await this.readManifest(e.id);
    const configFile = parseConfigFile(await this.readBlob(parseDigest(manifest.config.digest)));
    return {
      id: e.id,
      tags: [...e.tags],
      created: e.created,
      config: configFile.config ?? {},
      manifest,
      sizeBytes: manifest.config.size + manifest.layers.reduce((n, l) => n + l.size, 0),
      files: await readBundle(this, this.bundleDir(e.id), manifest),
    };
  }

  /** Adds `target` (a name reference) as a tag of the model `source` resolves to. */
  async tag(source: string, target: string): Promise<string> {
    const normalized = parseReference(target).normalized;
    const entry = await this.lookup(source);
    const { raw } = await this.readManifest(entry.id);
    await this.commitModel(raw, [normalized]);
    return normalized;
  }

  /**
   * Removes a tag, or a whole model when given its ID or `force`. A model with
   * several tags addressed by ID needs `force` (ModelConflictError, 409).
   * Deleting a model frees the blobs no other model uses.
   */
  async remove(reference: string, opts: { force?: boolean } = {}): Promise<RemoveResult> {
    return this.locked(async () => {
      const models = await this.readIndex();
      const entry = findEntry(models, reference);
      const parsed = parseAnyReference(reference);
      const result: RemoveResult = [];
      const byName = parsed.kind === "name" && entry.tags.includes(parsed.ref.normalized);
      if (byName && !opts.force && entry.tags.length > 1) {
        const tag = (parsed as { ref: { normalized: string } }).ref.normalized;
        entry.tags = entry.tags.filter((t) => t !== tag);
        await this.index.write(models);
        return [{ Untagged: tag }];
      }
      if (!byName && entry.tags.length > 1 && !opts.force) {
        throw new ModelConflictError(
          `Model ${entry.id.slice(7, 19)} has several tags (${entry.tags.join(", ")}); remove them one by one or use force.`,
        );
      }
      for (const t of entry.tags) result.push({ Untagged: t });
      const remaining = models.filter((m) => m !== entry);
      await this.index.write(remaining);
      await this.deleteModelFiles([entry], remaining);
      result.push({ Deleted: entry.id });
      return result;
    });
  }

  /** Deletes manifests, bundles and the blobs of `removed` that no model in `remaining` references. */
  private async deleteModelFiles(removed: IndexEntry[], remaining: IndexEntry[]): Promise<void> {
    const keep = new Set(remaining.flatMap((m) => m.files));
    for (const m of removed) {
      await rm(this.bundleDir(m.id), { recursive: true, force: true });
      await rm(this.manifestPath(m.id), { force: true });
      for (const f of m.files) if (!keep.has(f)) await rm(this.blobPath(f), { force: true });
    }
  }

  /** Deletes every model and blob (DMR `DELETE /models/purge`); the store stays usable. */
  purge(): Promise<void> {
    return purgeStore(this);
  }

  /** Removes orphans of killed writers; with `partials`, resumable downloads nobody writes (store-maintenance.ts). */
  cleanup(opts: { partials?: boolean; orphanGraceMs?: number } = {}): Promise<string[]> {
    return cleanupStore(this, opts);
  }

  /** Bytes of complete blobs and of partial downloads, as `GET /engines/df` reports. */
  diskUsage(): Promise<{ modelsBytes: number; partialBytes: number }> {
    return storeDiskUsage(this);
  }

  /** Removes partial downloads nobody writes: all, or those of pulls of `reference` (store-maintenance.ts). */
  removePartials(opts: { reference?: string; keep?: ReadonlySet<Digest> } = {}): Promise<Digest[]> {
    return removePartials(this, opts);
  }

  /** The store's broken invariants; empty when sound (store-maintenance.ts). */
  check(): Promise<string[]> {
    return checkStore(this);
  }
}
