import { Readable } from "node:stream";
import type { Dispatcher } from "undici";
import type { CredentialSources, RegistryCredentials } from "./auth.ts";
import { parseDigest, sha256Digest, type Digest } from "./digest.ts";
import { downloadBlob, type BlobOpener, type DownloadTuning } from "./download.ts";
import {
  DigestMismatchError, InvalidArtifactError, InvalidReferenceError, RegistryError, RemoteNotFoundError, UnsupportedMediaTypeError,
} from "./errors.ts";
import {
  DEFAULT_HF_ENDPOINT, listHfFiles, openHfFile, selectHfFiles, type HfClientOptions,
} from "./huggingface.ts";
import { isTransientNetworkError, readSmallBody } from "./http.ts";
import {
  AnnotationFilePath, MediaTypes, SUPPORTED_CONFIG_MEDIA_TYPES, type Descriptor, type ImageManifest, type ModelConfig, type ModelConfigFile,
} from "./media-types.ts";
import { commitArtifact, formatBytes, packageModel, readGgufConfig, type PackageOptions } from "./package.ts";
import { ProgressReporter, type ProgressListener } from "./progress.ts";
import { DOCKER_HUB, DOCKER_HUB_HOST, parseAnyReference, parseReference, type ModelReference } from "./reference.ts";
import { RegistryClient } from "./registry.ts";
import {
  BlobMissingError, findByPartialName, parseManifest, type ModelStore, type RemoveResult, type StoredModel,
} from "./store.ts";
import { InvalidRequestError } from "../errors.ts";
import { readTar, tarHeader, tarPadding, TAR_END } from "./tar.ts";
import { createReadStream } from "node:fs";

/**
 * Everything the distribution layer needs, passed in by the daemon (which
 * reads env/flags in src/config.ts). Nothing here reads `process.env`.
 */
export interface DistributionOptions {
  store: ModelStore;
  /** undici dispatcher for registry and Hub traffic (proxies, connection limits, tests). */
  dispatcher?: Dispatcher;
  /** `~/.docker/config.json`; omit to ignore Docker credentials. */
  dockerConfigPath?: string;
  /** MODEL_RUNNER_INSECURE_REGISTRIES: `host[:port]` spoken to over HTTP. Loopback always is. */
  insecureRegistries?: readonly string[];
  /** DOCKER_USERNAME / DOCKER_PASSWORD (Basic, for every registry). */
  dockerUsername?: string;
  dockerPassword?: string;
  /** HF_ENDPOINT; default https://huggingface.co. */
  hfEndpoint?: string;
  /** HF_TOKEN. A request's bearer token overrides it for hf.co pulls. */
  hfToken?: string;
  /** Range/stall/retry tuning of downloads. */
  download?: DownloadTuning;
  /** Blobs above this are pushed in PATCH chunks of this size. Default 64 MiB. */
  pushChunkSizeBytes?: number;
  /** Registry request retries and first backoff (tests shorten these). */
  maxRetries?: number;
  retryBaseMs?: number;
  /** Progress rate limit; default 100 ms. */
  progressIntervalMs?: number;
  /**
   * MODEL_RUNNER_REGISTRY_MIRRORS: mirrors of docker.io (`host[:port]`, or a
   * URL; `http://` marks one as plain HTTP), tried in order before
   * `dockerHubHost`. A mirror that answers 404 or cannot be reached is
   * skipped; the next one (last: Docker Hub) is tried. Push never uses them.
   */
  registryMirrors?: readonly string[];
  /** Where docker.io references go after the mirrors; default registry-1.docker.io (tests point it at loopback). */
  dockerHubHost?: string;
  /** Runs `docker-credential-<helper> get`; injectable for tests. */
  runCredentialHelper?: (helper: string, serverUrl: string) => Promise<RegistryCredentials | null>;
}

/** Per-call options of pull and push. */
export interface TransferOptions {
  signal?: AbortSignal;
  /** Sent as `Authorization: Bearer` (DMR's `bearer-token`); for hf.co, the HF token. */
  bearerToken?: string;
  onProgress?: ProgressListener;
}

/** Per-call options of `inspectRemote`. */
export interface RemoteOptions {
  signal?: AbortSignal;
  /** As for pull: `Authorization: Bearer` to the registry, or the HF token for hf.co. */
  bearerToken?: string;
}

/**
 * A model as its registry (or the Hub) describes it, without pulling it: the
 * shape of a stored model's `{id, tags, created, config}` plus the layer
 * descriptors. For hf.co, `id` is null (the artifact is built at pull time),
 * `config` holds only what the file listing tells, and `files` lists the
 * chosen quantization's files.
 */
export interface RemoteModel {
  /** The manifest digest (what the ID will be once pulled); null for hf.co. */
  id: Digest | null;
  tags: string[];
  /** Unix seconds from the config's `descriptor.created`; 0 when unknown. */
  created: number;
  config: ModelConfig;
  /** Layer descriptors; for hf.co one per file, with its path as `org.cncf.model.filepath` annotation. */
  layers: Descriptor[];
  /** hf.co only: the files a pull would fetch. */
  files?: Array<{ path: string; size: number; digest: Digest | null; kind: "gguf" | "mmproj" }>;
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
  repackage(source: string, target: string, opts?: { contextSize?: number; signal?: AbortSignal }): Promise<StoredModel>;
  list(): Promise<StoredModel[]>;
  /** Exact tag or ID (12/64 hex, `sha256:…`); throws ModelNotFoundError (404). */
  get(reference: string): Promise<StoredModel>;
  /** `get` with DMR's partial-name fallback (`smollm2` → `…/smollm2:latest`); 409 if ambiguous. */
  resolve(partialName: string): Promise<StoredModel>;
  /** Adds tag `target` to the model `source` names; resolves with the normalized target. */
  tag(source: string, target: string): Promise<string>;
  /** DMR delete semantics; 409 when an ID/force-less delete would drop several tags. */
  remove(reference: string, opts?: { force?: boolean }): Promise<RemoveResult>;
  purge(): Promise<void>;
  diskUsage(): Promise<{ modelsBytes: number }>;
  /** Removes orphans of killed writers; with `partials`, resumable downloads too. */
  cleanup(opts?: { partials?: boolean; orphanGraceMs?: number }): Promise<string[]>;
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

interface Inflight {
  promise: Promise<void>;
  controller: AbortController;
  users: number;
  listeners: Set<(n: number) => void>;
}

class Distribution implements ModelDistribution {
  readonly store: ModelStore;
  /** Blob downloads in progress in this process, shared by every pull that needs the blob. */
  private readonly inflight = new Map<string, Inflight>();

  constructor(private readonly o: DistributionOptions) {
    this.store = o.store;
  }

  private client(
    ref: ModelReference,
    bearerToken: string | undefined,
    actions: "pull" | "pull,push",
    extraScopes: string[] = [],
    via?: { host: string; isInsecure: boolean; maxRetries?: number },
  ) {
    const creds: CredentialSources = {
      ...(this.o.dockerConfigPath ? { dockerConfigPath: this.o.dockerConfigPath } : {}),
      ...(this.o.dockerUsername ? { dockerUsername: this.o.dockerUsername } : {}),
      ...(this.o.dockerPassword ? { dockerPassword: this.o.dockerPassword } : {}),
      ...(this.o.runCredentialHelper ? { runCredentialHelper: this.o.runCredentialHelper } : {}),
    };
    const host = via?.host ?? (ref.registry === DOCKER_HUB ? (this.o.dockerHubHost ?? DOCKER_HUB_HOST) : ref.registryHost);
    const insecure = [...(this.o.insecureRegistries ?? []), ...(via?.isInsecure ? [host] : [])];
    const maxRetries = via?.maxRetries ?? this.o.maxRetries;
    return new RegistryClient(
      host,
      ref.repository,
      {
        ...creds,
        ...(this.o.dispatcher ? { dispatcher: this.o.dispatcher } : {}),
        ...(insecure.length > 0 ? { insecureRegistries: insecure } : {}),
        ...(bearerToken ? { bearerToken } : {}),
        ...(maxRetries !== undefined ? { maxRetries } : {}),
        ...(this.o.retryBaseMs !== undefined ? { retryBaseMs: this.o.retryBaseMs } : {}),
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
  private async resolveManifest(ref: ModelReference, bearerToken: string | undefined, signal: AbortSignal) {
    const mirrors = ref.registry === DOCKER_HUB ? (this.o.registryMirrors ?? []).map(parseMirror) : [];
    for (const mirror of mirrors) {
      // One retry only: a dead mirror should cost little before Docker Hub is asked.
      const client = this.client(ref, bearerToken, "pull", [], { ...mirror, maxRetries: Math.min(this.o.maxRetries ?? 1, 1) });
      try {
        return { client, ...(await client.getManifest(ref.digest ?? ref.tag, signal)) };
      } catch (e) {
        if (signal.aborted) throw signal.reason;
        const isUnreachable = e instanceof RegistryError && e.code === "registry_error" && isTransientNetworkError(e.cause);
        if (!(e instanceof RemoteNotFoundError) && !isUnreachable) throw e;
      }
    }
    const client = this.client(ref, bearerToken, "pull");
    return { client, ...(await client.getManifest(ref.digest ?? ref.tag, signal)) };
  }

  /** Downloads `d` once per process however many pulls want it; a pull's abort only detaches that pull. */
  private async fetchBlob(d: Digest, size: number, open: BlobOpener, onBytes: (n: number) => void, signal: AbortSignal): Promise<void> {
    let f = this.inflight.get(d);
    if (!f) {
      const controller = new AbortController();
      const listeners = new Set<(n: number) => void>();
      const entry: Inflight = {
        controller,
        users: 0,
        listeners,
        promise: downloadBlob(this.store, d, size, open, {
          ...(this.o.download ?? {}),
          signal: controller.signal,
          onBytes: (n) => listeners.forEach((l) => l(n)),
        }).finally(() => {
          if (this.inflight.get(d) === entry) this.inflight.delete(d);
        }),
      };
      entry.promise.catch(() => {});
      this.inflight.set(d, entry);
      f = entry;
    }
    const entry = f;
    entry.users++;
    entry.listeners.add(onBytes);
    const onAbort = () => {
      if (--entry.users === 0) {
        // Detach it now: a pull starting while it winds down must start afresh (it waits on the blob lock).
        if (this.inflight.get(d) === entry) this.inflight.delete(d);
        entry.controller.abort(signal.reason);
      }
    };
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      signal.throwIfAborted();
      await Promise.race([
        entry.promise,
        new Promise<never>((_, reject) => signal.addEventListener("abort", () => reject(signal.reason), { once: true })),
      ]);
    } finally {
      signal.removeEventListener("abort", onAbort);
      entry.listeners.delete(onBytes);
      if (!signal.aborted) entry.users--;
    }
  }

  async pull(reference: string, opts: TransferOptions = {}): Promise<StoredModel> {
    const signal = opts.signal ?? new AbortController().signal;
    const ref = parseReference(reference);
    const reporter = new ProgressReporter("pull", opts.onProgress, this.o.progressIntervalMs);
    if (ref.isHuggingFace) return this.pullHuggingFace(ref, opts, reporter, signal);
    const { client, raw, digest } = await this.resolveManifest(ref, opts.bearerToken, signal);
    const manifest = parseManifest(raw);
    if (!SUPPORTED_CONFIG_MEDIA_TYPES.includes(manifest.config.mediaType)) {
      throw new UnsupportedMediaTypeError(manifest.config.mediaType);
    }
    const tag = ref.normalized;
    const existing = await this.store.readIndex();
    if (existing.some((m) => m.id === digest)) {
      await this.store.commitModel(raw, [tag], signal);
      const model = await this.store.get(digest);
      reporter.success(`Using cached model: ${model.config.size ?? ""}`.trim(), digest);
      return model;
    }
    const blobs: Descriptor[] = [manifest.config, ...manifest.layers];
    for (const b of blobs) reporter.addLayer(b.digest, b.size);
    for (let attempt = 0; ; attempt++) {
      await runLimited(blobs, 3, async (b) => {
        const d = parseDigest(b.digest);
        await this.fetchBlob(d, b.size, (range, s) => client.getBlob(d, range, s), (n) => reporter.update(b.digest, n), signal);
        reporter.update(b.digest, b.size);
      });
      try {
        await this.store.commitModel(raw, [tag], signal);
        break;
      } catch (e) {
        // A concurrent remove in another process freed a blob we had; fetch it again once.
        if (!(e instanceof BlobMissingError) || attempt > 0) throw e;
      }
    }
    const model = await this.store.get(digest);
    if (!model.config.format) reporter.warn("The model config has no format; assuming GGUF.");
    reporter.success("Model pulled successfully", digest);
    return model;
  }

  async inspectRemote(reference: string, opts: RemoteOptions = {}): Promise<RemoteModel> {
    const signal = opts.signal ?? new AbortController().signal;
    const ref = parseReference(reference);
    if (ref.isHuggingFace) return this.inspectHuggingFace(ref, opts.bearerToken, signal);
    const { client, raw, digest } = await this.resolveManifest(ref, opts.bearerToken, signal);
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

  private async inspectHuggingFace(ref: ModelReference, bearerToken: string | undefined, signal: AbortSignal): Promise<RemoteModel> {
    const repo = ref.repository;
    const selection = selectHfFiles(repo, await listHfFiles(repo, this.hfOptions(bearerToken), signal), ref.tag);
    const files = [...selection.gguf, ...(selection.mmproj ? [selection.mmproj] : [])];
    const ggufBytes = selection.gguf.reduce((n, f) => n + f.size, 0);
    const quant = /(?:^|[-_.])((?:I?Q\d\w*|[BF]F?16|F32))(?:[-_.]|$)/i.exec(selection.gguf[0]!.path.split("/").pop()!.replace(/-\d{5}-of-\d{5}/, ""));
    return {
      id: null,
      tags: [`huggingface.co/${repo}:${ref.tag}`],
      created: 0,
      config: { format: "gguf", ...(quant ? { quantization: quant[1]!.toUpperCase() } : {}), size: formatBytes(ggufBytes) },
      layers: files.map((f) => ({
        mediaType: f.kind === "gguf" ? MediaTypes.gguf : MediaTypes.mmproj,
        digest: f.digest ?? "",
        size: f.size,
        annotations: { [AnnotationFilePath]: f.path },
      })),
      files: files.map((f) => ({ path: f.path, size: f.size, digest: f.digest, kind: f.kind })),
    };
  }

  private hfOptions(bearerToken: string | undefined): HfClientOptions {
    const token = bearerToken ?? this.o.hfToken;
    return {
      endpoint: this.o.hfEndpoint ?? DEFAULT_HF_ENDPOINT,
      ...(token ? { token } : {}),
      ...(this.o.dispatcher ? { dispatcher: this.o.dispatcher } : {}),
    };
  }

  async repackage(source: string, target: string, opts: { contextSize?: number; signal?: AbortSignal } = {}): Promise<StoredModel> {
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
    const configBytes = Buffer.from(JSON.stringify({ ...configFile, config }));
    const configDigest = await this.store.putSmallBlob(configBytes);
    const next: ImageManifest = { ...manifest, config: { ...manifest.config, digest: configDigest, size: configBytes.length } };
    // commitModel writes the manifest and bundle, then adds the tag to the index in one rewrite under the lock.
    const id = await this.store.commitModel(Buffer.from(JSON.stringify(next)), [tag], opts.signal);
    return this.store.get(id);
  }

  private async pullHuggingFace(ref: ModelReference, opts: TransferOptions, reporter: ProgressReporter, signal: AbortSignal): Promise<StoredModel> {
    const repo = ref.repository;
    const hf = this.hfOptions(opts.bearerToken);
    const selection = selectHfFiles(repo, await listHfFiles(repo, hf, signal), ref.tag);
    const files = [...selection.gguf, ...(selection.mmproj ? [selection.mmproj] : [])];
    for (const f of files) reporter.addLayer(f.digest ?? f.path, f.size);
    const layers: Descriptor[] = [];
    for (const f of files) {
      const open = openHfFile(repo, f.path, hf);
      let d: Digest;
      if (f.digest) {
        d = f.digest;
        await this.fetchBlob(d, f.size, open, (n) => reporter.update(f.digest!, n), signal);
      } else {
        // Not an LFS file, so no sha256 is known up front: hash while storing, no resume.
        const res = await open(null, signal);
        if (res.statusCode !== 200) {
          await res.body.dump();
          throw new InvalidArtifactError(`hf.co/${repo}/${f.path} answered ${res.statusCode}.`);
        }
        d = (await this.store.ingest(res.body, { signal })).digest;
      }
      reporter.update(f.digest ?? f.path, f.size);
      layers.push({ mediaType: f.kind === "gguf" ? MediaTypes.gguf : MediaTypes.mmproj, size: f.size, digest: d });
    }
    const shardPaths = layers.filter((l) => l.mediaType === MediaTypes.gguf).map((l) => this.store.blobPath(parseDigest(l.digest)));
    const config = await readGgufConfig(shardPaths);
    const tag = `huggingface.co/${repo}:${ref.tag}`;
    // Same files → same artifact bytes, so re-pulling yields the same ID.
    const created = new Date(0);
    const { id } = await commitArtifact(this.store, config, layers, [tag], created, signal);
    reporter.success("Model pulled successfully", id);
    return this.store.get(id);
  }

  async push(reference: string, opts: TransferOptions = {}): Promise<{ digest: Digest; size: number }> {
    const signal = opts.signal ?? new AbortController().signal;
    const parsed = parseAnyReference(reference);
    if (parsed.kind !== "name") throw new InvalidReferenceError(reference, "push needs a name, not an ID");
    const ref = parsed.ref;
    if (ref.isHuggingFace) throw new InvalidReferenceError(reference, "pushing to Hugging Face is not supported yet");
    const entry = await this.store.lookup(reference);
    const { raw, manifest } = await this.store.readManifest(entry.id);
    // Other tags of this model in the same registry are repositories we can mount blobs from.
    const sources = entry.tags
      .map((t) => parseReference(t))
      .filter((r) => r.registryHost === ref.registryHost && r.repository !== ref.repository)
      .map((r) => r.repository);
    const client = this.client(ref, opts.bearerToken, "pull,push", sources.map((s) => `repository:${s}:pull`));
    const reporter = new ProgressReporter("push", opts.onProgress, this.o.progressIntervalMs);
    const blobs = [...manifest.layers, manifest.config];
    for (const b of blobs) reporter.addLayer(b.digest, b.size);
    await runLimited(blobs, 3, async (b) => {
      const d = parseDigest(b.digest);
      if (await client.hasBlob(d, signal)) return reporter.update(b.digest, b.size);
      for (const from of sources) if (await client.mountBlob(d, from, signal)) return reporter.update(b.digest, b.size);
      let sent = 0;
      await client.uploadBlob(d, this.store.blobPath(d), b.size, {
        chunkSizeBytes: this.o.pushChunkSizeBytes ?? 64 << 20,
        signal,
        onBytes: (n) => reporter.update(b.digest, (sent += n)),
      });
      reporter.update(b.digest, b.size);
    });
    await client.putManifest(ref.digest ?? ref.tag, raw, manifest.mediaType ?? MediaTypes.ociManifest, signal);
    reporter.success("Model pushed successfully", entry.id);
    return { digest: entry.id, size: raw.length };
  }

  list() {
    return this.store.list();
  }
  get(reference: string) {
    return this.store.get(reference);
  }
  async resolve(partialName: string) {
    const entry = findByPartialName(await this.store.readIndex(), partialName);
    return this.store.get(entry.id);
  }
  tag(source: string, target: string) {
    return this.store.tag(source, target);
  }
  remove(reference: string, opts: { force?: boolean } = {}) {
    return this.store.remove(reference, opts);
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
    const { id } = await packageModel(this.store, { ...opts, tags });
    return this.store.get(id);
  }

  exportTar(reference: string): Readable {
    const store = this.store;
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

  async loadTar(source: AsyncIterable<Buffer | Uint8Array>, opts: { tags?: string[]; signal?: AbortSignal } = {}): Promise<StoredModel> {
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
        await this.store.ingest(e.body, { expected: `sha256:${blob[1]}` as Digest, ...(opts.signal ? { signal: opts.signal } : {}) });
      }
    }
    if (!raw) throw new InvalidArtifactError("The archive has no manifest.json.");
    const manifest = parseManifest(raw);
    if (!SUPPORTED_CONFIG_MEDIA_TYPES.includes(manifest.config.mediaType)) throw new UnsupportedMediaTypeError(manifest.config.mediaType);
    const tags = (opts.tags ?? []).map((t) => parseReference(t).normalized);
    let id: Digest;
    try {
      id = await this.store.commitModel(raw, tags, opts.signal);
    } catch (e) {
      if (e instanceof BlobMissingError) throw new InvalidArtifactError(`The archive lacks blob ${e.digest}.`, { cause: e });
      throw e;
    }
    return this.store.get(id);
  }
}

/** `host[:port]`, `https://host`, or `http://host` (plain HTTP) → the host and whether it is insecure. */
function parseMirror(entry: string): { host: string; isInsecure: boolean } {
  const m = /^(https?):\/\/([^/]+)\/*$/i.exec(entry.trim());
  if (m) return { host: m[2]!.toLowerCase(), isInsecure: m[1]!.toLowerCase() === "http" };
  return { host: entry.trim().replace(/\/+$/, "").toLowerCase(), isInsecure: false };
}

function parseConfigFile(bytes: Buffer): ModelConfigFile {
  try {
    const parsed = JSON.parse(bytes.toString("utf8")) as ModelConfigFile;
    if (parsed && typeof parsed === "object") return parsed;
  } catch (e) {
    throw new InvalidArtifactError("The model config blob is not valid JSON.", { cause: e });
  }
  throw new InvalidArtifactError("The model config blob is not a JSON object.");
}

/** Runs `fn` over `items` with at most `limit` at once; the first failure rejects (others still settle). */
async function runLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed: unknown = null;
  const worker = async () => {
    while (next < items.length && failed === null) {
      const item = items[next++]!;
      try {
        await fn(item);
      } catch (e) {
        failed ??= e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failed !== null) throw failed;
}
