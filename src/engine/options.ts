import { availableParallelism } from "node:os";

/**
 * The engine's command line. Flag names, short forms and meanings are
 * llama.cpp's `llama-server` ones (common/arg.cpp of the bundled release), so
 * that the `llama.cpp` backend can drive either this engine or a real
 * `llama-server` binary with one argument list. Every flag in {@link FLAGS}
 * either takes effect or makes the engine refuse to start with a line naming
 * it and why; unknown flags are refused too. Silently ignoring a flag is how
 * context sizes (and KV-cache settings, and sampling defaults) get lost.
 */
export interface EngineOptions {
  modelPath: string;
  /** Where to listen: a Unix socket path or a TCP address. */
  listen: { kind: "socket"; path: string } | { kind: "tcp"; host: string; port: number };
  /** Total context across all parallel slots; 0 = the model's trained length. */
  contextSize: number;
  parallel: number;
  embeddings: boolean;
  alias: string | null;
  threads: number;
  /** GPU layers: a count, or "auto"/"all" as llama-server accepts. */
  gpuLayers: number | "auto" | "all";
  /** `-dev none`: no GPU at all, whatever `-ngl` says. */
  cpuOnly: boolean;
  /** Logical and physical batch size (node-llama-cpp uses one for both); null = node-llama-cpp's default. */
  batchSize: number | null;
  /** `--chat-template-file` (a path) or `--chat-template` (template text or a built-in name resolved to text). */
  chatTemplate: { kind: "file"; path: string } | { kind: "text"; template: string } | null;
  /** Keys accepted as Bearer token or X-Api-Key; empty = no authentication. */
  apiKeys: readonly string[];
  /** `--api-key-file`: read at start (one key a line, `#` comments), added to `apiKeys`. */
  apiKeyFile: string | null;
  /** Serve `/rerank` and `/score` on a ranking context (`--reranking`, or `--embeddings --pooling rank`). */
  reranking: boolean;
  /** `--pooling` other than rank; checked against the model's own pooling type at load. */
  pooling: Exclude<Pooling, "rank"> | null;
  /** Tokens a thought may use before it is closed: -1 unlimited, 0 thinking off. */
  reasoningBudget: number;
  /** "none" leaves thoughts in `content`; "deepseek"/"auto" return them as `reasoning_content`. */
  reasoningFormat: "none" | "deepseek" | "auto";
  /** `--mmap`/`--no-mmap`; null = node-llama-cpp's "auto". */
  useMmap: boolean | null;
  useMlock: boolean;
  /** `-fa on|off|auto`. */
  flashAttention: boolean | "auto";
  /** `-ctk`/`-ctv` as ggml type names (node-llama-cpp's `GgmlType` keys); null = F16. */
  kvCacheKeyType: KvCacheType | null;
  kvCacheValueType: KvCacheType | null;
  /**
   * `--context-shift`: when a generation fills the slot, drop half of the
   * tokens after the first `keep` and go on, as llama-server does; null
   * (the default, `--no-context-shift`) stops the generation with "length".
   */
  contextShift: { keep: number } | null;
  /**
   * GGUF metadata overrides from the RoPE flags, keyed below the
   * architecture (`rope.freq_base` for `llama.rope.freq_base`), typed as
   * llama.cpp reads them (it ignores an override of the wrong type).
   */
  ropeOverrides: Record<string, MetadataOverride>;
  /** `-to`/`--timeout`: socket read/write inactivity timeout in seconds; null = none. */
  timeoutSeconds: number | null;
  /**
   * The engine's default generation settings (llama-server's sampling flags),
   * under the request fields' own names. A request's field overrides its
   * default; see `withSamplingDefaults` in requests.ts.
   */
  samplingDefaults: SamplingDefaults;
  /** Serve Prometheus metrics on `/metrics` (`--metrics`; off by default, as in llama-server). */
  metrics: boolean;
  /** Serve `/slots` (`--slots`/`--no-slots`; on by default, as in llama-server). */
  slots: boolean;
  /**
   * Speculative decoding with a draft model (`--spec-type draft-simple -md
   * FILE`): null = none. llama-server's flags and defaults: up to
   * `maxTokens` (`--spec-draft-n-max`, default 3) tokens drafted a step,
   * drafting stops at a token whose draft probability is under `minProbability`
   * (`--spec-draft-p-min`, default 0).
   */
  draft: DraftOptions | null;
}

/** `EngineOptions.draft`: the draft model and how far it drafts. */
export interface DraftOptions {
  modelPath: string;
  maxTokens: number;
  minProbability: number;
}

/** llama-server's `--spec-type` names of this release (common/speculative.cpp); only `none` and `draft-simple` are served here. */
const SPEC_TYPES = ["none", "draft-simple", "draft-eagle3", "draft-mtp", "draft-dflash", "draft-dspark", "ngram-simple", "ngram-map-k", "ngram-map-k4v", "ngram-mod", "ngram-cache"] as const;
/** llama-server's default `--spec-draft-n-max` (common/common.h `common_params_speculative_draft`). */
export const DEFAULT_DRAFT_MAX = 3;

/**
 * Default generation settings set by flags, named as the request fields
 * they stand in for (llama-server's names). Absent = the request's own
 * default. `n_predict` stands in for a missing `n_predict`/`max_tokens`.
 */
export interface SamplingDefaults {
  n_predict?: number;
  temperature?: number;
  top_k?: number;
  top_p?: number;
  min_p?: number;
  seed?: number;
  repeat_penalty?: number;
  repeat_last_n?: number;
  presence_penalty?: number;
  frequency_penalty?: number;
  mirostat?: number;
  mirostat_tau?: number;
  mirostat_eta?: number;
  typical_p?: number;
  dry_multiplier?: number;
  dry_base?: number;
  dry_allowed_length?: number;
  dry_penalty_last_n?: number;
  dry_sequence_breakers?: string[];
  xtc_probability?: number;
  xtc_threshold?: number;
  top_n_sigma?: number;
  dynatemp_range?: number;
  dynatemp_exponent?: number;
  samplers?: string[];
  ignore_eos?: boolean;
}

export type SamplingField = keyof SamplingDefaults;

/** One GGUF metadata override: llama.cpp checks the type, so floats and ints are told apart. */
export type MetadataOverride = { kind: "float" | "int"; value: number } | { kind: "string"; value: string };

const POOLINGS = ["none", "mean", "cls", "last", "rank"] as const;
type Pooling = (typeof POOLINGS)[number];

/** llama-server's `-ctk`/`-ctv` values (common/arg.cpp `kv_cache_types`), as node-llama-cpp's `GgmlType` keys. */
const KV_CACHE_TYPES = { f32: "F32", f16: "F16", bf16: "BF16", q8_0: "Q8_0", q4_0: "Q4_0", q4_1: "Q4_1", iq4_nl: "IQ4_NL", q5_0: "Q5_0", q5_1: "Q5_1" } as const;
export type KvCacheType = (typeof KV_CACHE_TYPES)[keyof typeof KV_CACHE_TYPES];

/** llama-server's sampler names for `--samplers` (common/sampling.cpp). */
const SAMPLER_NAMES = ["penalties", "dry", "top_n_sigma", "top_k", "typ_p", "typical_p", "top_p", "min_p", "xtc", "temperature", "infill"] as const;

export class EngineUsageError extends Error {
  override readonly name = "EngineUsageError";
}

/** The options being built, before the defaults are filled in. */
type Draft = { -readonly [K in keyof EngineOptions]?: EngineOptions[K] } & {
  host?: string;
  port?: number;
  samplingDefaults: SamplingDefaults;
  apiKeys: string[];
  threadsBatch?: number;
  ubatch?: number;
  contextShiftOn?: boolean;
  /** `--keep`: prompt tokens a context shift keeps (-1 = the whole prompt). */
  keep?: number;
  ctxSizeFlag?: string;
  draftModel?: string;
  draftMax?: number;
  draftPMin?: number;
  specType?: (typeof SPEC_TYPES)[number];
};

/** What a flag's value is; `null` for a switch. */
type ValueSpec =
  | { kind: "int"; meta: string; min?: number; max?: number }
  | { kind: "float"; meta: string; min?: number; max?: number }
  | { kind: "string"; meta: string }
  | { kind: "choice"; meta: string; choices: readonly string[] };

/** One flag of llama-server's, as the engine handles it. */
export interface FlagDef {
  /** llama-server's spellings, short forms first, as `--help` lists them. */
  names: readonly string[];
  /** The negated spellings of a switch (`--no-mmap` for `--mmap`). */
  negations?: readonly string[];
  value: ValueSpec | null;
  /** One line for `mr engine --help`: what it means (llama-server's meaning). */
  help: string;
  /** How it takes effect here, or why it is refused (docs/engine.md's flag table). */
  effect: string;
  /**
   * May a model's `_configure` runtime flags carry it? False for paths and
   * for what the runner sets itself (model, address, alias, mode, API key).
   */
  runtime: boolean;
  /** May be given several times, each adding to the value (the others: the last one wins). */
  repeatable?: boolean;
  /** For a sampling-default flag: the request field it gives a default to. */
  samplingField?: SamplingField;
  /** Applies a parsed value (`true`/`false` for a switch); throws EngineUsageError to refuse it. */
  apply: (draft: Draft, value: number | string | boolean, flag: string) => void;
}

const refuse = (why: string) => (_d: Draft, value: number | string | boolean, flag: string) => {
  throw new EngineUsageError(`${flag}${typeof value === "boolean" ? "" : ` ${value}`} is not supported: ${why}`);
};

const sampling =
  <F extends SamplingField>(field: F) =>
  (d: Draft, value: number | string | boolean) => {
    (d.samplingDefaults as Record<string, unknown>)[field] = value;
  };

/** A float RoPE override; 0 means the model's own value (no override). */
function setRope(d: Draft, key: string, value: number): void {
  const overrides = { ...d.ropeOverrides };
  if (value === 0) delete overrides[key];
  else overrides[key] = { kind: "float", value };
  d.ropeOverrides = overrides;
}

const int = (meta = "N", min?: number, max?: number): ValueSpec => ({ kind: "int", meta, ...(min !== undefined ? { min } : {}), ...(max !== undefined ? { max } : {}) });
const float = (meta = "N", min?: number, max?: number): ValueSpec => ({ kind: "float", meta, ...(min !== undefined ? { min } : {}), ...(max !== undefined ? { max } : {}) });
const str = (meta: string): ValueSpec => ({ kind: "string", meta });
const choice = (choices: readonly string[]): ValueSpec => ({ kind: "choice", meta: `{${choices.join(",")}}`, choices });

/** A sampling-default flag: it sets `field` in `samplingDefaults`. */
function samplingFlag(names: readonly string[], field: SamplingField, value: ValueSpec, help: string): FlagDef {
  return { names, value, help, effect: `default of the request field \`${field}\` (a request's own \`${field}\` overrides it)`, runtime: true, apply: sampling(field), samplingField: field };
}

/**
 * Every flag the engine knows. The parser, `mr engine --help`, shell
 * completion, docs/engine.md's flag table and the daemon's runtime-flags
 * allowlist (src/scheduling/runtime-flags.ts) are all derived from it.
 */
export const FLAGS: readonly FlagDef[] = [
  // Model, address, identity: set by the runner, never runtime flags.
  { names: ["-m", "--model"], value: str("FILE"), help: "the GGUF file to serve (required)", effect: "loaded with node-llama-cpp's `loadModel`", runtime: false, apply: (d, v) => void (d.modelPath = String(v)) },
  { names: ["--host"], value: str("HOST"), help: "a Unix socket path (ending in .sock) or an address (default 127.0.0.1)", effect: "where the HTTP server listens", runtime: false, apply: (d, v) => void (d.host = String(v)) },
  { names: ["--port"], value: int("PORT", 0, 65535), help: "TCP port (default 8080)", effect: "where the HTTP server listens", runtime: false, apply: (d, v) => void (d.port = Number(v)) },
  { names: ["-a", "--alias"], value: str("NAME"), help: "the model id clients must use (default: the file name)", effect: "requests naming another model get 421", runtime: false, apply: (d, v) => void (d.alias = String(v)) },
  { names: ["--embedding", "--embeddings"], value: null, help: "serve /v1/embeddings instead of completions", effect: "an embedding context (`createEmbeddingContext`)", runtime: false, apply: (d) => void (d.embeddings = true) },
  { names: ["--rerank", "--reranking"], value: null, help: "serve /rerank and /score (implies --embeddings --pooling rank)", effect: "a ranking context (`createRankingContext`)", runtime: false, apply: (d) => void (d.reranking = true) },
  { names: ["--api-key"], value: str("KEY"), help: "require this key (a comma-separated list for several) as Bearer token or X-Api-Key", repeatable: true, effect: "checked on every route but /health and /v1/models; 401 otherwise", runtime: false, apply: (d, v) => void d.apiKeys.push(...String(v).split(",").filter((k) => k !== "")) },
  { names: ["--api-key-file"], value: str("FILE"), help: "a file of API keys, one per line (lines starting with # are comments)", effect: "read at start, keys added to --api-key's", runtime: false, apply: (d, v) => void (d.apiKeyFile = String(v)) },
  { names: ["--chat-template-file"], value: str("FILE"), help: "a Jinja chat template instead of the model's own", effect: "rendered with node-llama-cpp's `JinjaTemplateChatWrapper`", runtime: false, apply: (d, v) => void (d.chatTemplate = { kind: "file", path: String(v) }) },
  {
    names: ["--chat-template"],
    value: str("TEMPLATE"),
    help: `a Jinja chat template (the text itself) or a built-in name: ${Object.keys(builtinTemplates()).join(", ")}`,
    effect: "rendered with node-llama-cpp's `JinjaTemplateChatWrapper`; other built-in names of llama-server's are refused",
    runtime: true,
    apply: (d, v, flag) => {
      const value = String(v);
      if (value.includes("{{") || value.includes("{%")) d.chatTemplate = { kind: "text", template: value };
      else {
        const template = builtinTemplates()[value];
        if (template === undefined) {
          throw new EngineUsageError(`${flag} ${value} is not supported: built-in templates here are ${Object.keys(builtinTemplates()).join(", ")}; give the template text or --chat-template-file`);
        }
        d.chatTemplate = { kind: "text", template };
      }
    },
  },
  { names: ["--jinja"], negations: ["--no-jinja"], value: null, help: "use the Jinja template engine for chat (always on here)", effect: "--jinja: the model's Jinja template is always used; --no-jinja is refused (there is no non-Jinja renderer)", runtime: true, apply: (_d, on, flag) => { if (on === false) throw new EngineUsageError(`${flag} is not supported: the engine always renders chat with the Jinja template`); } },

  { names: ["--metrics"], value: null, help: "serve Prometheus metrics on /metrics (default off)", effect: "`GET /metrics` with llama-server's metric names; 501 without the flag", runtime: true, apply: (d) => void (d.metrics = true) },
  { names: ["--slots"], negations: ["--no-slots"], value: null, help: "serve /slots (default on)", effect: "`GET /slots` and `POST /slots/{id}?action=erase`; --no-slots answers 501", runtime: true, apply: (d, on) => void (d.slots = on === true) },

  // Context and slots.
  { names: ["-c", "--ctx-size"], value: int("N", 0), help: "total context across slots (default 4096; 0 = the model's trained length)", effect: "each slot's context is this divided by --parallel", runtime: true, apply: (d, v) => void (d.contextSize = Number(v)) },
  { names: ["-np", "--parallel"], value: int("N", 1), help: "parallel slots decoded together (default 1)", effect: "context sequences decoded in shared batches", runtime: true, apply: (d, v) => void (d.parallel = Number(v)) },
  { names: ["-n", "--predict", "--n-predict"], value: int("N", -1), help: "default number of tokens to predict (-1 = until the end of the context)", effect: "default of the request's `n_predict` when the request has neither `n_predict` nor `max_tokens`", runtime: true, apply: (d, v) => { if (Number(v) >= 0) d.samplingDefaults.n_predict = Number(v); else delete d.samplingDefaults.n_predict; }, samplingField: "n_predict" },
  { names: ["--context-shift"], negations: ["--no-context-shift"], value: null, help: "shift the context when a generation fills it (default: disabled)", effect: "on a full slot, the tokens after --keep are halved (node-llama-cpp's `contextShift` strategy) as llama-server does; off: the generation ends with `length`", runtime: true, apply: (d, on) => void (d.contextShiftOn = on === true) },
  { names: ["--keep"], value: int("N", -1), help: "prompt tokens kept by a context shift (default 0, -1 = all)", effect: "the start of the range a context shift drops", runtime: true, apply: (d, v) => void (d.keep = Number(v)) },
  { names: ["--cache-reuse"], value: int("N", 0), help: "min chunk size to reuse from the cache via KV shifting (default 0 = off)", effect: "0 (the default) honoured; the slots reuse the longest cached prefix only, so N > 0 is refused", runtime: true, apply: (_d, v, flag) => { if (Number(v) > 0) refuse("the engine reuses only a cached prefix, not shifted chunks")(_d, v, flag); } },

  // Speculative decoding (llama-server's names of this release; `--draft-max` was removed in it).
  {
    names: ["--spec-type"],
    value: choice(SPEC_TYPES),
    help: "speculative decoding type: none (default) or draft-simple (a draft model, -md)",
    effect: "draft-simple: each slot drafts with its own sequence of the draft model and verifies in one batch, as llama-server (src/engine/speculative.ts); none: no speculation; the other types are refused",
    runtime: false,
    apply: (d, v, flag) => {
      if (v !== "none" && v !== "draft-simple") refuse("only draft-simple (a draft model) is served here")(d, v, flag);
      d.specType = v as Draft["specType"];
    },
  },
  { names: ["-md", "--spec-draft-model", "--model-draft"], value: str("FNAME"), help: "draft model for speculative decoding (with --spec-type draft-simple)", effect: "loaded with `loadModel` beside the model; its vocabulary must match the model's (else the engine refuses to start)", runtime: false, apply: (d, v) => void (d.draftModel = String(v)) },
  { names: ["--spec-draft-n-max"], value: int("N", 1), help: `tokens to draft per step (default ${DEFAULT_DRAFT_MAX})`, effect: "the most tokens drafted before each verification step (fewer near the end of the reply or of the context, as llama-server)", runtime: false, apply: (d, v) => void (d.draftMax = Number(v)) },
  { names: ["--spec-draft-p-min", "--draft-p-min"], value: float("P", 0, 1), help: "minimum draft probability (greedy) to go on drafting (default 0)", effect: "drafting stops at a token whose probability among the draft's 10 best is under P (llama-server's top-k 10 draft sampler)", runtime: false, apply: (d, v) => void (d.draftPMin = Number(v)) },

  // Threads and batches.
  { names: ["-t", "--threads"], value: int("N", -1), help: "CPU threads (default: cores - 1; -1 = the default)", effect: "`getLlama({ maxThreads })` and the context's `threads`", runtime: true, apply: (d, v) => void (d.threads = Number(v)) },
  { names: ["-tb", "--threads-batch"], value: int("N", -1), help: "threads for prompt processing (default: same as --threads)", effect: "honoured when -1 or equal to --threads (node-llama-cpp uses one count for both); otherwise refused", runtime: true, apply: (d, v) => void (d.threadsBatch = Number(v)) },
  { names: ["-b", "--batch-size"], value: int("N", 1), help: "logical maximum batch size", effect: "the context's `batchSize`", runtime: true, apply: (d, v) => void (d.batchSize = Number(v)) },
  { names: ["-ub", "--ubatch-size"], value: int("N", 1), help: "physical maximum batch size", effect: "node-llama-cpp uses the batch size for both: -ub alone sets it, -ub equal to -b is honoured, a different -ub is refused", runtime: true, apply: (d, v) => void (d.ubatch = Number(v)) },
  { names: ["-to", "--timeout"], value: int("N", 0), help: "server read/write timeout in seconds (default: none)", effect: "the HTTP server's socket inactivity timeout", runtime: true, apply: (d, v) => void (d.timeoutSeconds = Number(v) === 0 ? null : Number(v)) },

  // Memory and devices.
  { names: ["-ngl", "--gpu-layers", "--n-gpu-layers"], value: str("N|auto|all"), help: "layers to offload to a GPU (default auto; 0 = CPU only)", effect: "`loadModel({ gpuLayers })` (`all` = `max`); 0 loads no GPU backend", runtime: true, apply: (d, v, flag) => {
    const s = String(v);
    if (s === "auto" || s === "all") d.gpuLayers = s;
    else if (/^\d+$/.test(s)) d.gpuLayers = Number(s);
    else throw new EngineUsageError(`${flag} needs an integer, "auto" or "all", got "${s}"`);
  } },
  { names: ["-dev", "--device"], value: str("none"), help: "devices to offload to; only none (CPU only) here", effect: "`none`: `getLlama({ gpu: false })`; naming devices is refused (node-llama-cpp picks the GPU itself)", runtime: true, apply: (d, v, flag) => { if (String(v) === "none") d.cpuOnly = true; else refuse("node-llama-cpp picks the GPU itself; only -dev none (CPU only) is supported")(d, v, flag); } },
  { names: ["-sm", "--split-mode"], value: choice(["none", "layer", "row", "tensor"]), help: "how to split the model across GPUs (refused)", effect: "refused: node-llama-cpp has no split-mode option", runtime: true, apply: refuse("node-llama-cpp has no split-mode option") },
  { names: ["-ts", "--tensor-split"], value: str("N0,N1,..."), help: "fraction of the model per GPU (refused)", effect: "refused: node-llama-cpp has no tensor-split option", runtime: true, apply: refuse("node-llama-cpp has no tensor-split option") },
  { names: ["-mg", "--main-gpu"], value: int("INDEX", 0), help: "the GPU for the model (refused)", effect: "refused: node-llama-cpp has no main-GPU option", runtime: true, apply: refuse("node-llama-cpp has no main-GPU option") },
  { names: ["--mmap"], negations: ["--no-mmap"], value: null, help: "memory-map the model file (default: auto)", effect: "`loadModel({ useMmap })`", runtime: true, apply: (d, on) => void (d.useMmap = on === true) },
  { names: ["--mlock"], value: null, help: "keep the model in RAM (no swapping)", effect: "`loadModel({ useMlock: true })`", runtime: true, apply: (d) => void (d.useMlock = true) },
  { names: ["-fa", "--flash-attn"], value: choice(["on", "off", "auto"]), help: "flash attention (default auto)", effect: "the context's `flashAttention` (true/false/\"auto\")", runtime: true, apply: (d, v) => void (d.flashAttention = v === "auto" ? "auto" : v === "on") },
  { names: ["-ctk", "--cache-type-k"], value: choice(Object.keys(KV_CACHE_TYPES)), help: "KV cache type for K (default f16)", effect: "the context's `experimentalKvCacheKeyType`", runtime: true, apply: (d, v) => void (d.kvCacheKeyType = KV_CACHE_TYPES[v as keyof typeof KV_CACHE_TYPES]) },
  { names: ["-ctv", "--cache-type-v"], value: choice(Object.keys(KV_CACHE_TYPES)), help: "KV cache type for V (default f16)", effect: "the context's `experimentalKvCacheValueType`", runtime: true, apply: (d, v) => void (d.kvCacheValueType = KV_CACHE_TYPES[v as keyof typeof KV_CACHE_TYPES]) },
  { names: ["-kvo", "--kv-offload"], negations: ["-nkvo", "--no-kv-offload"], value: null, help: "offload the KV cache to the GPU (default on)", effect: "--kv-offload (the default) honoured; --no-kv-offload refused: node-llama-cpp always keeps the KV cache with the offloaded layers", runtime: true, apply: (d, on, flag) => { if (on === false) refuse("node-llama-cpp always keeps the KV cache with the offloaded layers")(d, on, flag); } },
  // RoPE/YaRN: llama.cpp's context parameters fall back to the model's hparams, which it reads from these GGUF
  // keys for every architecture, so a metadata override at load is the same as llama-server's flag. 0 = the model's own.
  { names: ["--rope-scaling"], value: choice(["none", "linear", "yarn"]), help: "RoPE frequency scaling method (default: the model's)", effect: "GGUF override `<arch>.rope.scaling.type` at load (`loadModel({ metadataOverrides })`)", runtime: true, apply: (d, v) => void (d.ropeOverrides = { ...d.ropeOverrides, "rope.scaling.type": { kind: "string", value: String(v) } }) },
  { names: ["--rope-scale"], value: float("N", 0), help: "RoPE context scaling factor: expands the context by N", effect: "GGUF override `<arch>.rope.scaling.factor` = N", runtime: true, apply: (d, v) => setRope(d, "rope.scaling.factor", Number(v)) },
  { names: ["--rope-freq-base"], value: float("N", 0), help: "RoPE base frequency (default: the model's)", effect: "GGUF override `<arch>.rope.freq_base` = N", runtime: true, apply: (d, v) => setRope(d, "rope.freq_base", Number(v)) },
  { names: ["--rope-freq-scale"], value: float("N", 0), help: "RoPE frequency scaling factor: expands the context by 1/N", effect: "GGUF override `<arch>.rope.scaling.factor` = 1/N", runtime: true, apply: (d, v) => setRope(d, "rope.scaling.factor", Number(v) === 0 ? 0 : 1 / Number(v)) },
  { names: ["--yarn-orig-ctx"], value: int("N", 0), help: "YaRN: the model's original context size (default: its training context)", effect: "GGUF override `<arch>.rope.scaling.original_context_length` = N", runtime: true, apply: (d, v) => {
    const overrides = { ...d.ropeOverrides };
    if (Number(v) === 0) delete overrides["rope.scaling.original_context_length"];
    else overrides["rope.scaling.original_context_length"] = { kind: "int", value: Number(v) };
    d.ropeOverrides = overrides;
  } },
  ...["--yarn-ext-factor", "--yarn-attn-factor", "--yarn-beta-slow", "--yarn-beta-fast"].map(
    (name): FlagDef => ({
      names: [name],
      value: float(),
      help: "YaRN parameter (refused)",
      effect: "refused: node-llama-cpp has no YaRN context parameters, and llama.cpp reads them from the model file for a few architectures only",
      runtime: true,
      apply: refuse("node-llama-cpp has no YaRN context parameters, and llama.cpp reads them from the model file for a few architectures only"),
    }),
  ),
  { names: ["--pooling"], value: choice(POOLINGS), help: "pooling type for embeddings (rank = --reranking)", effect: "rank: a ranking context; another type is honoured only when it is the model's own pooling type (node-llama-cpp cannot change it), else the engine refuses to start", runtime: true, apply: (d, v) => { if (v === "rank") d.reranking = true; else d.pooling = v as Exclude<Pooling, "rank">; } },

  // Reasoning.
  { names: ["--reasoning-budget"], value: int("N", -1), help: "token budget for thinking: -1 unlimited, 0 off, N tokens (default -1)", effect: "the thought is closed after N tokens; a request's `reasoning_budget_tokens` (llama-server's; also `thinking_budget_tokens`, `reasoning_budget`) overrides it", runtime: true, apply: (d, v) => void (d.reasoningBudget = Number(v)) },
  {
    names: ["--reasoning-format"],
    value: choice(["none", "deepseek", "deepseek-legacy", "auto"]),
    help: "where thoughts go: none (in content), deepseek/auto (reasoning_content)",
    effect: "default of the request's `reasoning_format`; deepseek-legacy (tags kept in content too) is refused",
    runtime: true,
    apply: (d, v, flag) => {
      if (v === "deepseek-legacy") refuse("thoughts go either to content or to reasoning_content, not both")(d, v, flag);
      d.reasoningFormat = v as EngineOptions["reasoningFormat"];
    },
  },

  // Sampling defaults (llama-server's meanings; a request's field overrides each).
  samplingFlag(["--temp", "--temperature"], "temperature", float("N", 0), "default temperature (0.8)"),
  samplingFlag(["--top-k"], "top_k", int("N", 0), "default top-k sampling (40, 0 = disabled)"),
  samplingFlag(["--top-p"], "top_p", float("N", 0, 1), "default top-p sampling (0.95, 1.0 = disabled)"),
  samplingFlag(["--min-p"], "min_p", float("N", 0, 1), "default min-p sampling (0.05, 0.0 = disabled)"),
  { ...samplingFlag(["-s", "--seed"], "seed", int("SEED", -1), "default RNG seed (-1 = random)"), apply: (d, v) => { if (Number(v) >= 0) d.samplingDefaults.seed = Number(v); else delete d.samplingDefaults.seed; } },
  samplingFlag(["--repeat-penalty"], "repeat_penalty", float("N", 0), "default penalty for repeated tokens (1.0 = disabled)"),
  samplingFlag(["--repeat-last-n"], "repeat_last_n", int("N", -1), "default number of last tokens to penalize (64, 0 = disabled, -1 = context size)"),
  samplingFlag(["--presence-penalty"], "presence_penalty", float(), "default presence penalty (0.0 = disabled)"),
  samplingFlag(["--frequency-penalty"], "frequency_penalty", float(), "default frequency penalty (0.0 = disabled)"),
  samplingFlag(["--mirostat"], "mirostat", int("N", 0, 2), "default Mirostat sampling (0 = off, 1 = Mirostat, 2 = Mirostat 2.0)"),
  samplingFlag(["--mirostat-lr"], "mirostat_eta", float("N", 0), "default Mirostat learning rate, eta (0.1)"),
  samplingFlag(["--mirostat-ent"], "mirostat_tau", float("N", 0), "default Mirostat target entropy, tau (5.0)"),
  samplingFlag(["--typical", "--typical-p"], "typical_p", float("N", 0, 1), "default locally typical sampling p (1.0 = disabled)"),
  samplingFlag(["--dry-multiplier"], "dry_multiplier", float("N", 0), "default DRY multiplier (0.0 = disabled)"),
  samplingFlag(["--dry-base"], "dry_base", float("N", 0), "default DRY base (1.75)"),
  samplingFlag(["--dry-allowed-length"], "dry_allowed_length", int("N", 0), "default DRY allowed length (2)"),
  samplingFlag(["--dry-penalty-last-n"], "dry_penalty_last_n", int("N", -1), "default DRY penalty window (-1 = context size)"),
  {
    ...samplingFlag(["--dry-sequence-breaker"], "dry_sequence_breakers", str("STRING"), "add a DRY sequence breaker, clearing the defaults (none = no breakers); repeatable"),
    repeatable: true,
    apply: (d, v) => {
      const list = (d.samplingDefaults.dry_sequence_breakers ??= []);
      if (v === "none") list.length = 0;
      else list.push(String(v));
    },
  },
  samplingFlag(["--xtc-probability"], "xtc_probability", float("N", 0, 1), "default XTC probability (0.0 = disabled)"),
  samplingFlag(["--xtc-threshold"], "xtc_threshold", float("N", 0, 1), "default XTC threshold (0.1; > 0.5 disables)"),
  samplingFlag(["--top-nsigma", "--top-n-sigma"], "top_n_sigma", float("N", -1), "default top-n-sigma (-1 = disabled)"),
  samplingFlag(["--dynatemp-range"], "dynatemp_range", float("N", 0), "default dynamic temperature range (0.0 = disabled)"),
  samplingFlag(["--dynatemp-exp"], "dynatemp_exponent", float("N", 0), "default dynamic temperature exponent (1.0)"),
  {
    ...samplingFlag(["--samplers"], "samplers", str("SAMPLERS"), "default sampler order, separated by ';'"),
    apply: (d, v, flag) => {
      const names = String(v).split(";").filter((s) => s !== "");
      const bad = names.find((n) => !(SAMPLER_NAMES as readonly string[]).includes(n));
      if (bad !== undefined) throw new EngineUsageError(`${flag}: unknown sampler "${bad}" (known: ${SAMPLER_NAMES.join(", ")})`);
      d.samplingDefaults.samplers = names;
    },
  },
  { ...samplingFlag(["--ignore-eos"], "ignore_eos", { kind: "string", meta: "" }, "ignore end-of-stream tokens and keep generating"), value: null, apply: (d) => void (d.samplingDefaults.ignore_eos = true) },
];

/**
 * Built-in template names of llama-server's that the engine knows, as Jinja
 * text that writes what llama.cpp's `llm_chat_apply_template` writes for them
 * (src/llama-chat.cpp of the bundled release).
 */
export function builtinTemplates(): Record<string, string> {
  return {
    chatml:
      "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
      "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
    llama3:
      "{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + (message['content'] | trim) + '<|eot_id|>' }}{% endfor %}" +
      "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}",
    // Gemma has no system role: the system text goes before the first user message.
    gemma:
      "{% set ns = namespace(system='') %}{% for message in messages %}{% if message['role'] == 'system' %}{% set ns.system = ns.system + (message['content'] | trim) %}" +
      "{% else %}{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}{{ '<start_of_turn>' + role + '\\n' }}" +
      "{% if ns.system != '' and role != 'model' %}{{ ns.system + '\\n\\n' }}{% set ns.system = '' %}{% endif %}" +
      "{{ (message['content'] | trim) + '<end_of_turn>\\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}",
  };
}

/** Every spelling of every flag, mapped to its definition and whether it is a negation. */
const BY_NAME: ReadonlyMap<string, { def: FlagDef; negated: boolean }> = new Map(
  FLAGS.flatMap((def) => [
    ...def.names.map((n): [string, { def: FlagDef; negated: boolean }] => [n, { def, negated: false }]),
    ...(def.negations ?? []).map((n): [string, { def: FlagDef; negated: boolean }] => [n, { def, negated: true }]),
  ]),
);

/** Every spelling, for completion and "did you mean". */
export function flagNames(): string[] {
  return [...BY_NAME.keys()];
}

/** Finds a flag by any spelling. */
export function findFlag(name: string): { def: FlagDef; negated: boolean } | undefined {
  return BY_NAME.get(name);
}

/** `mr engine --help`'s option lines, one per flag of {@link FLAGS}. */
export function flagHelpLines(): string[] {
  const rows = FLAGS.map((def) => {
    const spell = [...def.names, ...(def.negations ?? [])].join(", ");
    return [def.value && def.value.meta !== "" ? `${spell} ${def.value.meta}` : spell, def.help] as const;
  });
  const width = Math.min(32, Math.max(...rows.map(([s]) => s.length)));
  return rows.map(([s, h]) => (s.length > width ? `  ${s}\n  ${" ".repeat(width)}  ${h}` : `  ${s.padEnd(width)}  ${h}`));
}

/**
 * CPU threads that use the machine without oversubscribing it. ggml's worker
 * threads spin-wait: with as many threads as cores, the event loop and the
 * workers fight for the cores and decoding runs 10-50x slower (measured on a
 * 2-core machine: 1 thread ~2,500 tokens/s, 2 threads ~60 on a tiny model).
 * So one core is always left for everything else.
 */
export function defaultThreads(cores = availableParallelism()): number {
  return Math.max(1, cores - 1);
}

export const DEFAULT_CONTEXT_SIZE = 4096;

function closest(flag: string): string | null {
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const candidate of BY_NAME.keys()) {
    const d = editDistance(flag, candidate);
    if (d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  return bestDistance <= 3 ? best : null;
}

/** Levenshtein distance, for "did you mean" hints. */
export function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length]!;
}

/** Checks a flag's value against its spec; returns it as the apply function wants it. */
export function parseFlagValue(flag: string, spec: ValueSpec, value: string): number | string {
  switch (spec.kind) {
    case "int":
    case "float": {
      const ok = spec.kind === "int" ? /^-?\d+$/.test(value) : /^-?(\d+\.?\d*|\.\d+)(e-?\d+)?$/i.test(value);
      if (!ok) throw new EngineUsageError(`${flag} needs ${spec.kind === "int" ? "an integer" : "a number"}, got "${value}"`);
      const n = Number(value);
      if (spec.min !== undefined && n < spec.min) throw new EngineUsageError(`${flag} must be at least ${spec.min}, got ${value}`);
      if (spec.max !== undefined && n > spec.max) throw new EngineUsageError(`${flag} must be at most ${spec.max}, got ${value}`);
      return n;
    }
    case "choice":
      if (!spec.choices.includes(value)) throw new EngineUsageError(`${flag} must be one of ${spec.choices.join(", ")}, got "${value}"`);
      return value;
    case "string":
      return value;
  }
}

/** Parses llama-server-style arguments; throws EngineUsageError naming the bad flag. */
export function parseEngineArgs(argv: readonly string[]): EngineOptions {
  const d: Draft = { samplingDefaults: {}, apiKeys: [] };
  for (let i = 0; i < argv.length; i++) {
    const raw = argv[i]!;
    const eq = raw.startsWith("--") ? raw.indexOf("=") : -1;
    const flag = eq > 0 ? raw.slice(0, eq) : raw;
    const found = BY_NAME.get(flag);
    if (!found) {
      const hint = closest(flag);
      throw new EngineUsageError(`unknown argument: ${flag}${hint ? ` (did you mean ${hint}?)` : ""}`);
    }
    const { def, negated } = found;
    if (def.value === null) {
      if (eq > 0) throw new EngineUsageError(`${flag} takes no value`);
      def.apply(d, !negated, flag);
      continue;
    }
    const value = eq > 0 ? raw.slice(eq + 1) : argv[++i];
    if (value === undefined) throw new EngineUsageError(`${flag} needs a value`);
    def.apply(d, parseFlagValue(flag, def.value, value), flag);
  }
  const modelPath = d.modelPath;
  if (typeof modelPath !== "string" || modelPath === "") throw new EngineUsageError("-m/--model is required");
  const host = d.host ?? "127.0.0.1";
  const threads = d.threads === undefined || d.threads === -1 ? defaultThreads() : d.threads;
  if (threads < 1) throw new EngineUsageError(`--threads must be at least 1 (or -1), got ${threads}`);
  if (d.threadsBatch !== undefined && d.threadsBatch !== -1 && d.threadsBatch !== threads) {
    throw new EngineUsageError(`-tb ${d.threadsBatch} is not supported: node-llama-cpp uses one thread count for prompts and generation (--threads ${threads})`);
  }
  let batchSize = d.batchSize ?? null;
  if (d.ubatch !== undefined) {
    if (batchSize === null) batchSize = d.ubatch;
    else if (batchSize !== d.ubatch) {
      throw new EngineUsageError(`-ub ${d.ubatch} is not supported: node-llama-cpp uses the batch size (-b ${batchSize}) as the physical batch size too`);
    }
  }
  const reranking = d.reranking === true;
  const keep = d.keep ?? 0; // llama-server's default n_keep
  const draft = draftOf(d, reranking || d.embeddings === true);
  return {
    modelPath,
    listen: host.endsWith(".sock") ? { kind: "socket", path: host } : { kind: "tcp", host, port: d.port ?? 8080 },
    contextSize: d.contextSize ?? DEFAULT_CONTEXT_SIZE,
    parallel: d.parallel ?? 1,
    embeddings: d.embeddings === true || reranking,
    reranking,
    pooling: d.pooling ?? null,
    reasoningBudget: d.reasoningBudget ?? -1,
    reasoningFormat: d.reasoningFormat ?? "auto",
    alias: d.alias ?? null,
    threads,
    gpuLayers: d.cpuOnly ? 0 : (d.gpuLayers ?? "auto"),
    cpuOnly: d.cpuOnly === true,
    batchSize,
    chatTemplate: d.chatTemplate ?? null,
    apiKeys: d.apiKeys,
    apiKeyFile: d.apiKeyFile ?? null,
    useMmap: d.useMmap ?? null,
    useMlock: d.useMlock === true,
    flashAttention: d.flashAttention ?? "auto",
    kvCacheKeyType: d.kvCacheKeyType ?? null,
    kvCacheValueType: d.kvCacheValueType ?? null,
    contextShift: d.contextShiftOn === true ? { keep } : null,
    timeoutSeconds: d.timeoutSeconds ?? null,
    ropeOverrides: d.ropeOverrides ?? {},
    samplingDefaults: d.samplingDefaults,
    metrics: d.metrics === true,
    slots: d.slots !== false,
    draft,
  };
}

/**
 * The draft settings, or null without one. Settings that would do nothing are
 * refused rather than dropped: a draft model without `--spec-type
 * draft-simple` (this llama-server release loads it and never drafts), draft
 * flags without a model, a draft in embedding mode.
 */
function draftOf(d: Draft, embeddings: boolean): DraftOptions | null {
  const type = d.specType ?? "none";
  if (type === "none") {
    if (d.draftModel !== undefined) throw new EngineUsageError("-md needs --spec-type draft-simple: without it a draft model is loaded and never used");
    if (d.draftMax !== undefined || d.draftPMin !== undefined) throw new EngineUsageError("--spec-draft-n-max and --spec-draft-p-min need --spec-type draft-simple and a draft model (-md)");
    return null;
  }
  if (d.draftModel === undefined || d.draftModel === "") throw new EngineUsageError("--spec-type draft-simple needs a draft model (-md FILE)");
  if (embeddings) throw new EngineUsageError("-md is not supported with --embeddings or --reranking: speculative decoding is for generation");
  return { modelPath: d.draftModel, maxTokens: d.draftMax ?? DEFAULT_DRAFT_MAX, minProbability: d.draftPMin ?? 0 };
}
