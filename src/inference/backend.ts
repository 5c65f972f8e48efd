import type { BackendMode } from "./mode.ts";

/**
 * The model a backend runs: files already in the local store. `name` is the
 * id that requests must carry in their `model` field.
 */
export interface ModelFiles {
  name: string;
  /** The GGUF file (the first shard for a sharded model). */
  ggufPath: string;
  /** A Jinja chat template packaged with the model, overriding the GGUF's own. */
  chatTemplatePath?: string | undefined;
  /** A multimodal projector packaged with the model. */
  mmprojPath?: string | undefined;
}

/** Per-runner settings (from `_configure` or the model's own config). */
export interface BackendConfig {
  /** Total context tokens; undefined = the backend's default. */
  contextSize?: number | undefined;
  /** Parallel sequences decoded together; undefined = 1. */
  parallel?: number | undefined;
  /** Extra engine flags, already checked against the backend's allowlist. */
  runtimeFlags?: readonly string[] | undefined;
  /**
   * Which of the backend's engines runs the model (the `llama.cpp` backend:
   * `built-in` or `llama-server`); undefined = the backend's default.
   * Backends with one engine reject any other value.
   */
  engine?: string | undefined;
  /** Speculative decoding with a draft model from the store; undefined = none. */
  speculative?: SpeculativeSettings | undefined;
}

/** A draft model and how far it drafts; absent numbers = the engine's defaults. */
export interface SpeculativeSettings {
  /** The draft model's GGUF file (its vocabulary was checked against the model's). */
  draftPath: string;
  /** Tokens drafted per step (llama-server's `--spec-draft-n-max`). */
  numTokens?: number | undefined;
  /** DMR's `min_acceptance_rate`: llama-server's `--spec-draft-p-min`, the draft probability under which drafting stops. */
  minAcceptanceRate?: number | undefined;
}

/** What an explicit install (`mr install-runner`, `POST /engines/install-backend`) asks for. */
export interface InstallOptions {
  /** The engine to install; undefined = the backend's default engine. */
  engine?: string | undefined;
  /**
   * True for an explicit install: the backend may download or build what is
   * missing. False (the daemon's start-up check): it only finds and checks
   * what is there, so a daemon never compiles on its own.
   */
  acquire?: boolean | undefined;
  /**
   * What a build targets (`auto`, `cpu`, `cuda`, `vulkan`, `metal`; only
   * with `acquire`). Undefined = `auto`.
   */
  gpu?: string | undefined;
  /** The HTTP client for downloads (the seed's `Install(ctx, httpClient)`). */
  fetch?: typeof fetch | undefined;
  /** Progress lines for users. */
  onProgress?: ((line: string) => void) | undefined;
}

export interface RunRequest {
  /** Unix socket path the backend's server must listen on. */
  socket: string;
  model: ModelFiles;
  mode: BackendMode;
  config?: BackendConfig | undefined;
  /**
   * Called once with the pid of the engine process (the leader of its own
   * process group) right after it is spawned, so the caller can record it
   * and stop the group should this daemon die without cleaning up.
   */
  onSpawn?: ((pid: number) => void) | undefined;
  /** Called once, when the server answers `/health` with 200. */
  onReady?: (() => void) | undefined;
  /** Receives the engine's log output, line by line. */
  onLog?: ((line: string) => void) | undefined;
  /**
   * Called while the model loads with the fraction loaded so far (0..1,
   * rising, thinned by the engine to about every 5 %), from engines that
   * report it: the llama.cpp backend's built-in engine does; llama-server
   * reports none, so this is never called for it.
   */
  onLoadProgress?: ((fraction: number) => void) | undefined;
}

/**
 * An inference engine backend: the TypeScript form of Docker Model Runner's
 * `inference.Backend`. Implementations need not be safe for concurrent calls
 * of these methods, but the servers they run must serve concurrent requests.
 */
export interface Backend {
  /**
   * The backend's name: lowercase, usable as a path component in HTTP paths
   * and socket file names, and shown to users.
   */
  readonly name: string;

  /**
   * True if the backend manages models itself (it is handed a reference, not
   * files); false if it runs models from the shared local store.
   */
  readonly usesExternalModelManagement: boolean;

  /**
   * Ensures the backend is installed. Resolves if it is (or already was);
   * rejects with the reason it cannot be. Safe to call more than once.
   */
  install(signal: AbortSignal, options?: InstallOptions): Promise<void>;

  /**
   * Removes what `install` put on the machine for `engine` (default: every
   * engine it installed). Resolves true if something was removed. Optional:
   * a backend with nothing of its own on disk has no uninstall.
   */
  uninstall?(engine?: string): Promise<boolean>;

  /**
   * The engine that serves a runner with `config` (shown by `ps`). Throws an
   * InvalidRequestError for an engine the backend does not have. Optional:
   * a backend with one engine omits it.
   */
  engineFor?(config: BackendConfig | undefined): string;

  /**
   * The engine a new runner for `model` gets: `config.engine` when set, else
   * the backend's choice for this model (the llama.cpp backend: llama-server
   * for a model with a projector when one is installed, else its default).
   * Optional: a backend with one engine omits it.
   */
  chooseEngine?(model: ModelFiles, config: BackendConfig | undefined): Promise<string>;

  /**
   * Null when a runner on `engine` takes image input through the model's
   * projector; otherwise the reason for users, with what to do (install or
   * configure an engine). `configured`: the engine was set for this model
   * rather than chosen. Optional: a backend without it takes no images.
   */
  imageInputRefusal?(engine: string | undefined, configured: boolean): string | null;

  /**
   * Runs an OpenAI-compatible server on `request.socket` for exactly
   * `request.model`. Requests naming any other model are answered with 421.
   *
   * One-shot: it never restarts a failed process. It resolves only when
   * `signal` aborts, and then only after every process it started has exited.
   * If the server fails (fails to start, never becomes healthy, or dies), it
   * rejects with the cause, including the tail of the engine's output. In
   * every case no child process survives the settled promise.
   */
  run(request: RunRequest, signal: AbortSignal): Promise<void>;

  /** The backend's state for users, e.g. `Running: ...`, `Not Installed: ...`, `Error: ...`. */
  status(): string;
}
