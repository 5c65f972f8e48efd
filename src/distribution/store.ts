import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream, statSync } from "node:fs";
import {
  copyFile, link, mkdir, open, readdir, readFile, rename, rm, stat, unlink, writeFile,
} from "node:fs/promises";
import { join } from "node:path";
import { Transform, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { digestHex, isDigest, parseDigest, sha256Digest, type Digest } from "./digest.ts";
import {
  DigestMismatchError, InvalidArtifactError, ModelConflictError, ModelNotFoundError, StoreError,
} from "./errors.ts";
import { isAlive, withFileLock } from "./lock.ts";
import { MediaTypes, type ImageManifest, type ModelConfig, type ModelConfigFile } from "./media-types.ts";
import { parseAnyReference, parseReference } from "./reference.ts";

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
export interface IndexEntry {
  /** The manifest digest, `sha256:<hex>`. */
  id: Digest;
  tags: string[];
  /** Config and layer blob digests. */
  files: Digest[];
  /** Unix seconds the model was stored. */
  created: number;
}

/** The runnable files of a stored model; every path is inside the store and hard-linked to a blob. */
export interface RunnableFiles {
  bundleDir: string;
  /** First (or only) GGUF file; null for a model without GGUF layers. */
  ggufPath: string | null;
  /** All GGUF files in shard order. */
  ggufPaths: string[];
  chatTemplatePath: string | null;
  mmprojPath: string | null;
  licensePaths: string[];
  /** The runtime config (`{"context_size":N}`), if the model sets one. */
  runtimeConfigPath: string;
}

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

interface IndexFile {
  models: IndexEntry[];
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

export class ModelStore {
  private indexCache: { version: string; models: IndexEntry[] } | null = null;
  private readonly described = new Map<Digest, StoredModel>();

  constructor(readonly root: string) {}

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

  blobPath(d: Digest): string {
    return join(this.root, "blobs", "sha256", digestHex(d));
  }
  /** Where an interrupted download of `d` lives until it completes (resumable). */
  partialPath(d: Digest): string {
    return `${this.blobPath(d)}.incomplete`;
  }
  manifestPath(d: Digest): string {
    return join(this.root, "manifests", "sha256", digestHex(d));
  }
  bundleDir(d: Digest): string {
    return join(this.root, "bundles", "sha256", digestHex(d));
  }
  /** A fresh temp path in the store's filesystem, named by our pid so cleanup knows when it is orphaned. */
  tmpPath(): string {
    return join(this.root, "tmp", `${process.pid}-${randomBytes(8).toString("hex")}`);
  }

  async hasBlob(d: Digest): Promise<boolean> {
    return (await stat(this.blobPath(d)).catch(() => null))?.isFile() ?? false;
  }

  /** Makes a verified temp file the blob `d`: fsync then rename. The temp file is consumed. */
  async commitBlobFile(tmp: string, d: Digest): Promise<void> {
    await fsyncPath(tmp);
    await rename(tmp, this.blobPath(d));
  }

  /**
   * Streams `source` into the store while hashing it; with `expected`, a
   * mismatch throws DigestMismatchError and nothing is kept. Never buffers the blob.
   */
  async ingest(source: Readable, opts: { expected?: Digest; signal?: AbortSignal } = {}): Promise<{ digest: Digest; size: number }> {
    const tmp = this.tmpPath();
    const hash = createHash("sha256");
    let size = 0;
    const tee = new Transform({
      transform(chunk: Buffer, _e, cb) {
        hash.update(chunk);
        size += chunk.length;
        cb(null, chunk);
      },
    });
    try {
      await pipeline(source, tee, createWriteStream(tmp), { signal: opts.signal });
      const digest = `sha256:${hash.digest("hex")}` as Digest;
      if (opts.expected && opts.expected !== digest) throw new DigestMismatchError(opts.expected, digest);
      if (await this.hasBlob(digest)) await unlink(tmp);
      else await this.commitBlobFile(tmp, digest);
      return { digest, size };
    } catch (e) {
      await rm(tmp, { force: true });
      throw e;
    }
  }

  /** Copies a local file into the store (streamed, hashed). */
  async ingestFile(path: string, signal?: AbortSignal): Promise<{ digest: Digest; size: number }> {
    return this.ingest(createReadStream(path, { highWaterMark: 1 << 20 }), { signal });
  }

  /** Stores a small in-memory blob (config JSON, manifests inside tars). */
  async putSmallBlob(data: Buffer, expected?: Digest): Promise<Digest> {
    const d = sha256Digest(data);
    if (expected && expected !== d) throw new DigestMismatchError(expected, d);
    if (!(await this.hasBlob(d))) await this.atomicWrite(this.blobPath(d), data);
    return d;
  }

  async readBlob(d: Digest): Promise<Buffer> {
    return readFile(this.blobPath(d));
  }

  /**
   * The index, as of now. Other processes may change it at any time, but
   * only by renaming a new file into place, so (inode, mtime, size) identify
   * a version: re-parsing is skipped while they are unchanged. This keeps
   * the per-request model lookup to one stat.
   */
  /**
   * A token that changes whenever the index does ((inode, mtime, size) of the
   * file renamed into place), read with one synchronous stat: lets callers
   * cache what they derived from the index (the daemon's per-request model
   * lookup) without an async round trip per request.
   */
  indexVersion(): string {
    const info = statSync(join(this.root, "models.json"), { throwIfNoEntry: false });
    return info === undefined ? "none" : `${info.ino}:${info.mtimeMs}:${info.size}`;
  }

  async readIndex(): Promise<IndexEntry[]> {
    const path = join(this.root, "models.json");
    const info = await stat(path).catch((e: NodeJS.ErrnoException) => {
      if (e.code === "ENOENT") return null;
      throw e;
    });
    if (info === null) return [];
    const version = `${info.ino}:${info.mtimeMs}:${info.size}`;
    if (this.indexCache?.version !== version) {
      const raw = await readFile(path, "utf8").catch((e: NodeJS.ErrnoException) => {
        if (e.code === "ENOENT") return null;
        throw e;
      });
      if (raw === null) return [];
      try {
        this.indexCache = { version, models: (JSON.parse(raw) as IndexFile).models ?? [] };
      } catch (e) {
        throw new StoreError(`The store index ${path} is damaged.`, { cause: e });
      }
    }
    // Callers edit what they get (under the lock) before writing it back.
    return this.indexCache.models.map((m) => ({ ...m, tags: [...m.tags], files: [...m.files] }));
  }

  private async writeIndex(models: IndexEntry[]): Promise<void> {
    await this.atomicWrite(join(this.root, "models.json"), JSON.stringify({ models }, null, 2));
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
      await this.buildBundle(id, manifest);
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
      await this.writeIndex(remaining);
      await this.deleteModelFiles(orphaned, remaining);
      return id;
    }, signal);
  }

  private async buildBundle(id: Digest, manifest: ImageManifest): Promise<void> {
    const dir = this.bundleDir(id);
    if (await exists(join(dir, "config.json"))) return;
    const tmp = this.tmpPath();
    await mkdir(join(tmp, "model"), { recursive: true });
    const ggufs = manifest.layers.filter((l) => l.mediaType === MediaTypes.gguf);
    const width = 5;
    for (const [i, l] of ggufs.entries()) {
      const name = ggufs.length === 1
        ? "model.gguf"
        : `model-${String(i + 1).padStart(width, "0")}-of-${String(ggufs.length).padStart(width, "0")}.gguf`;
      await hardLink(this.blobPath(parseDigest(l.digest)), join(tmp, "model", name));
    }
    const mmproj = manifest.layers.find((l) => l.mediaType === MediaTypes.mmproj);
    if (mmproj) await hardLink(this.blobPath(parseDigest(mmproj.digest)), join(tmp, "model", "model.mmproj"));
    const template = manifest.layers.find((l) => l.mediaType === MediaTypes.chatTemplate);
    if (template) await hardLink(this.blobPath(parseDigest(template.digest)), join(tmp, "model", "template.jinja"));
    const configFile = JSON.parse((await this.readBlob(parseDigest(manifest.config.digest))).toString("utf8")) as ModelConfigFile;
    const runtime = configFile.config?.context_size ? { context_size: configFile.config.context_size } : {};
    await writeFile(join(tmp, "config.json"), JSON.stringify(runtime));
    await rm(dir, { recursive: true, force: true }); // an incomplete leftover of a killed writer
    await rename(tmp, dir);
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
    const configFile = JSON.parse((await this.readBlob(parseDigest(manifest.config.digest))).toString("utf8")) as ModelConfigFile;
    const dir = this.bundleDir(e.id);
    const modelDir = join(dir, "model");
    const names = (await readdir(modelDir).catch(() => [] as string[])).sort();
    const ggufPaths = names.filter((n) => n.endsWith(".gguf")).map((n) => join(modelDir, n));
    return {
      id: e.id,
      tags: [...e.tags],
      created: e.created,
      config: configFile.config ?? {},
      manifest,
      sizeBytes: manifest.config.size + manifest.layers.reduce((n, l) => n + l.size, 0),
      files: {
        bundleDir: dir,
        ggufPath: ggufPaths[0] ?? null,
        ggufPaths,
        chatTemplatePath: names.includes("template.jinja") ? join(modelDir, "template.jinja") : null,
        mmprojPath: names.includes("model.mmproj") ? join(modelDir, "model.mmproj") : null,
        licensePaths: manifest.layers
          .filter((l) => l.mediaType === MediaTypes.license)
          .map((l) => this.blobPath(parseDigest(l.digest))),
        runtimeConfigPath: join(dir, "config.json"),
      },
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
        await this.writeIndex(models);
        return [{ Untagged: tag }];
      }
      if (!byName && entry.tags.length > 1 && !opts.force) {
        throw new ModelConflictError(
          `Model ${entry.id.slice(7, 19)} has several tags (${entry.tags.join(", ")}); remove them one by one or use force.`,
        );
      }
      for (const t of entry.tags) result.push({ Untagged: t });
      const remaining = models.filter((m) => m !== entry);
      await this.writeIndex(remaining);
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
  async purge(): Promise<void> {
    await this.locked(async () => {
      await this.writeIndex([]);
      for (const d of ["blobs/sha256", "manifests/sha256", "bundles/sha256"]) {
        await rm(join(this.root, d), { recursive: true, force: true });
        await mkdir(join(this.root, d), { recursive: true });
      }
    });
    await this.cleanup({ partials: true });
  }

  /**
   * Removes what killed writers left: temp files of dead pids, manifests and
   * bundles the index does not name, unreferenced blobs older than
   * `orphanGraceMs` (a live pull in another process may not have committed
   * them yet), and with `partials` the resumable partial downloads nobody is
   * writing. Returns the paths removed.
   */
  async cleanup(opts: { partials?: boolean; orphanGraceMs?: number } = {}): Promise<string[]> {
    const grace = opts.orphanGraceMs ?? 3_600_000;
    const removed: string[] = [];
    const drop = async (p: string) => {
      await rm(p, { recursive: true, force: true });
      removed.push(p);
    };
    for (const name of await readdir(join(this.root, "tmp"))) {
      if (!isAlive(Number.parseInt(name.split("-")[0] ?? "", 10))) await drop(join(this.root, "tmp", name));
    }
    await this.locked(async () => {
      const models = await this.readIndex();
      const ids = new Set(models.map((m) => digestHex(m.id)));
      const referenced = new Set(models.flatMap((m) => m.files.map(digestHex)));
      for (const kind of ["manifests", "bundles"]) {
        for (const n of await readdir(join(this.root, kind, "sha256"))) {
          if (!ids.has(n)) await drop(join(this.root, kind, "sha256", n));
        }
      }
      const blobDir = join(this.root, "blobs", "sha256");
      for (const n of await readdir(blobDir)) {
        const p = join(blobDir, n);
        if (/^[0-9a-f]{64}$/.test(n)) {
          if (referenced.has(n)) continue;
          const st = await stat(p).catch(() => null);
          if (st && Date.now() - st.mtimeMs >= grace) await drop(p);
        } else if (opts.partials && /\.incomplete(\.json)?$/.test(n)) {
          const lockFile = join(blobDir, `${n.slice(0, 64)}.lock`);
          const holder = await readFile(lockFile, "utf8").catch(() => null);
          if (holder === null || !isAlive(Number.parseInt(holder, 10))) await drop(p);
        }
      }
    });
    return removed;
  }

  /** Bytes used by blobs (complete and partial), as `GET /engines/df` reports. */
  async diskUsage(): Promise<{ modelsBytes: number }> {
    let total = 0;
    const blobDir = join(this.root, "blobs", "sha256");
    for (const n of await readdir(blobDir)) total += (await stat(join(blobDir, n)).catch(() => null))?.size ?? 0;
    return { modelsBytes: total };
  }

  /**
   * Checks the store's invariants and returns what is wrong (empty when
   * sound): the index parses; every model's manifest exists and hashes to its
   * ID; every blob it names exists with the right size and sha256; the bundle
   * links exist. Reads every blob: for tests and `mr doctor`, not hot paths.
   */
  async check(): Promise<string[]> {
    const problems: string[] = [];
    let models: IndexEntry[];
    try {
      models = await this.readIndex();
    } catch (e) {
      return [String(e)];
    }
    for (const m of models) {
      const raw = await readFile(this.manifestPath(m.id)).catch(() => null);
      if (!raw) {
        problems.push(`${m.id}: manifest missing`);
        continue;
      }
      if (sha256Digest(raw) !== m.id) problems.push(`${m.id}: manifest digest mismatch`);
      const manifest = parseManifest(raw);
      for (const d of [manifest.config, ...manifest.layers]) {
        const p = this.blobPath(parseDigest(d.digest));
        const st = await stat(p).catch(() => null);
        if (!st) {
          problems.push(`${m.id}: blob ${d.digest} missing`);
          continue;
        }
        if (st.size !== d.size) problems.push(`${m.id}: blob ${d.digest} has ${st.size} bytes, expected ${d.size}`);
        if ((await hashFile(p)) !== d.digest) problems.push(`${m.id}: blob ${d.digest} content mismatch`);
      }
      if (!(await exists(join(this.bundleDir(m.id), "config.json")))) problems.push(`${m.id}: bundle missing`);
    }
    return problems;
  }

  /** temp file + fsync + rename: readers see the old or the new content, never a mix. */
  async atomicWrite(path: string, data: string | Buffer): Promise<void> {
    const tmp = this.tmpPath();
    const fh = await open(tmp, "w");
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      await rename(tmp, path);
    } catch (e) {
      await rm(tmp, { force: true });
      throw e;
    }
  }
}

function findEntry(models: IndexEntry[], reference: string): IndexEntry {
  const parsed = parseAnyReference(reference);
  if (parsed.kind === "id") {
    const hits = models.filter((m) => digestHex(m.id).startsWith(parsed.idPrefix));
    if (hits.length === 1) return hits[0]!;
    if (hits.length > 1) throw new ModelConflictError(`ID ${parsed.idPrefix} matches several models; give more digits.`);
    throw new ModelNotFoundError(reference);
  }
  const exact = models.find((m) => m.tags.includes(parsed.ref.normalized));
  if (exact) return exact;
  throw new ModelNotFoundError(reference);
}

/**
 * DMR's partial-name fallback for `GET /models/{ref}`: `smollm2` finds
 * `ai/smollm2:latest` or, failing that, the one tag whose repository's last
 * path component is `smollm2` (any registry). Several matches are a 409.
 */
export function findByPartialName(models: IndexEntry[], reference: string): IndexEntry {
  try {
    return findEntry(models, reference);
  } catch (e) {
    if (!(e instanceof ModelNotFoundError)) throw e;
  }
  const want = reference.trim().toLowerCase();
  const [wantName, wantTag] = want.includes(":") ? [want.slice(0, want.lastIndexOf(":")), reference.trim().slice(want.lastIndexOf(":") + 1)] : [want, null];
  const hits = models.filter((m) =>
    m.tags.some((t) => {
      const colon = t.lastIndexOf(":");
      const name = t.slice(0, colon);
      const tag = t.slice(colon + 1);
      return (name === wantName || name.endsWith(`/${wantName}`)) && (wantTag === null || tag === wantTag);
    }),
  );
  if (hits.length === 1) return hits[0]!;
  if (hits.length > 1) throw new ModelConflictError(`"${reference}" matches several models: ${hits.flatMap((h) => h.tags).join(", ")}.`);
  throw new ModelNotFoundError(reference);
}

export function parseManifest(raw: Buffer): ImageManifest {
  let m: ImageManifest;
  try {
    m = JSON.parse(raw.toString("utf8")) as ImageManifest;
  } catch (e) {
    throw new InvalidArtifactError("The manifest is not valid JSON.", { cause: e });
  }
  if (!m || typeof m !== "object" || !m.config || !Array.isArray(m.layers)) {
    throw new InvalidArtifactError("The manifest has no config or layers.");
  }
  for (const d of [m.config, ...m.layers]) {
    if (!isDigest(d.digest) || !Number.isSafeInteger(d.size) || d.size < 0) {
      throw new InvalidArtifactError(`The manifest has an invalid descriptor (${JSON.stringify(d).slice(0, 200)}).`);
    }
  }
  return m;
}

async function exists(p: string): Promise<boolean> {
  return (await stat(p).catch(() => null)) !== null;
}

async function hardLink(from: string, to: string): Promise<void> {
  try {
    await link(from, to);
  } catch (e) {
    // Filesystems without hard links (some FUSE/SMB mounts): a copy still runs.
    if ((e as NodeJS.ErrnoException).code === "EPERM" || (e as NodeJS.ErrnoException).code === "ENOTSUP") await copyFile(from, to);
    else throw e;
  }
}

export async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, "r+");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export async function hashFile(path: string): Promise<Digest> {
  const h = createHash("sha256");
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  return `sha256:${h.digest("hex")}` as Digest;
}
