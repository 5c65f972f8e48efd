import type { Dispatcher } from "undici";
import type { CredentialSources, RegistryCredentials } from "./auth.ts";
import type { BlobDownloads } from "./blob-downloads.ts";
import type { Digest } from "./digest.ts";
import type { StatFs } from "./disk-space.ts";
import type { DownloadTuning } from "./download.ts";
import type { Descriptor, ModelConfig } from "./media-types.ts";
import type { ProgressListener } from "./progress.ts";
import type { ModelStore } from "./store.ts";

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
  /** Free space of the store's filesystem (default `fs.statfs`); injectable for tests. */
  statfs?: StatFs;
  /** Runs `docker-credential-<helper> get`; injectable for tests. */
  runCredentialHelper?: (helper: string, serverUrl: string) => Promise<RegistryCredentials | null>;
}

/** Per-call options of pull and push. */
export interface TransferOptions {
  signal?: AbortSignal;
  /** Sent as `Authorization: Bearer` (DMR's `bearer-token`); for hf.co, the HF token. */
  bearerToken?: string;
  onProgress?: ProgressListener;
  /** Ollama's `insecure`: this reference's registry is spoken to over plain HTTP (loopback ones always are). */
  isInsecure?: boolean;
}

/** Per-call options of `inspectRemote`. */
export interface RemoteOptions {
  signal?: AbortSignal;
  /** As for pull: `Authorization: Bearer` to the registry, or the HF token for hf.co. */
  bearerToken?: string;
  /** As for pull: plain HTTP to this reference's registry. */
  isInsecure?: boolean;
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

/** What pull, push, Hugging Face and archive code share: the options, the store and this process's downloads. */
export interface DistributionContext {
  readonly options: DistributionOptions;
  readonly store: ModelStore;
  readonly downloads: BlobDownloads;
}

/** The Docker credential sources of `options`, for a RegistryClient. */
export function credentialSources(options: DistributionOptions): CredentialSources {
  return {
    ...(options.dockerConfigPath ? { dockerConfigPath: options.dockerConfigPath } : {}),
    ...(options.dockerUsername ? { dockerUsername: options.dockerUsername } : {}),
    ...(options.dockerPassword ? { dockerPassword: options.dockerPassword } : {}),
    ...(options.runCredentialHelper ? { runCredentialHelper: options.runCredentialHelper } : {}),
  };
}
