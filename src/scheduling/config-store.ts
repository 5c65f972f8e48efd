import { mkdir, readFile } from "node:fs/promises";
import { dirname } from "node:path";
import { writeAtomic } from "../atomic-write.ts";
import type { BackendMode } from "../inference/index.ts";
import { BACKEND_MODES } from "../inference/index.ts";
import type { Preset, PresetParameters } from "./preset.ts";

/** One model's settings, as `_configure` stored them. */
export interface RunnerConfig {
  backend: string;
  /** The reference the user configured (for display). */
  model: string;
  /** The store's id for it: what configurations are keyed by. */
  modelId: string;
  mode: BackendMode;
  /** Context tokens per request (each parallel slot gets this many). */
  contextSize?: number | undefined;
  parallel?: number | undefined;
  /** Validated, normalized flags passed to the engine as they are. */
  runtimeFlags: string[];
  /** The keep-alive as given ("5m", "0", "-1"); parsed with parseDuration. */
  keepAlive?: string | undefined;
  /** The backend engine (`llama.cpp`: built-in or llama-server); absent = the daemon's default. */
  engine?: string | undefined;
  /** Request defaults (system prompt, sampling parameters, few-shot messages); only on a `completion` configuration. */
  preset?: Preset | undefined;
  // ---- speculative decoding (its own block) ----
  /** A draft model for speculative decoding; absent = none. */
  speculative?: SpeculativeConfig | undefined;
}

/**
 * Speculative decoding as `_configure` stored it. The draft is kept as the
 * reference the user gave and resolved in the store at each load, like the
 * model itself.
 */
export interface SpeculativeConfig {
  draftModel: string;
  /** Tokens drafted per step (`--spec-draft-n-max`); absent = the engine's default. */
  numTokens?: number | undefined;
  /** DMR's min_acceptance_rate, passed as `--spec-draft-p-min`; absent = none. */
  minAcceptanceRate?: number | undefined;
}

/** The file's schema. zod is loaded only when there is a file to read (~6 MiB of RSS otherwise saved). */
async function fileSchema() {
  const { z } = await import("zod");
  const configSchema = z.object({
    backend: z.string(),
    model: z.string(),
    modelId: z.string(),
    mode: z.enum(BACKEND_MODES),
    contextSize: z.number().int().nonnegative().optional(),
    parallel: z.number().int().positive().optional(),
    runtimeFlags: z.array(z.string()).default([]),
    keepAlive: z.string().optional(),
    engine: z.string().optional(),
    preset: z
      .object({
        system: z.string().optional(),
        parameters: z.record(z.string(), z.union([z.number(), z.array(z.string())])).optional(),
        messages: z.array(z.object({ role: z.enum(["system", "user", "assistant"]), content: z.string() })).optional(),
      })
      .optional(),
    // ---- speculative decoding (its own block) ----
    speculative: z
      .object({
        draftModel: z.string().min(1),
        numTokens: z.number().int().positive().optional(),
        minAcceptanceRate: z.number().min(0).max(1).optional(),
      })
      .optional(),
  });
  return z.object({ version: z.literal(1), configs: z.array(configSchema) });
}

export const configKey = (backend: string, modelId: string, mode: BackendMode) => `${backend}\u0000${modelId}\u0000${mode}`;

/**
 * The persisted `_configure` settings: a JSON file rewritten atomically
 * (temporary file, then rename) on every change, so a crash leaves either the
 * old or the new file, never half of one. Users of Ollama and Docker Model
 * Runner lose context sizes across restarts; this file is why we do not.
 */
export class ConfigStore {
  private readonly configs = new Map<string, RunnerConfig>();
  private writing: Promise<void> = Promise.resolve();

  private constructor(private readonly path: string | null) {}

  /**
   * Loads the file at `path` (missing = empty). A corrupt file is an error:
   * silently starting from scratch would lose every setting. `null` keeps
   * configurations in memory only.
   */
  static async open(path: string | null): Promise<ConfigStore> {
    const store = new ConfigStore(path);
    if (path === null) return store;
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return store;
      throw error;
    }
    const parsed = (await fileSchema()).safeParse(JSON.parse(text));
    if (!parsed.success) throw new Error(`configuration file ${path} is not valid: ${parsed.error.message}`);
    for (const c of parsed.data.configs) {
      const config: RunnerConfig = { ...c, preset: c.preset ? { ...c.preset, parameters: c.preset.parameters as PresetParameters | undefined } : undefined };
      if (config.preset === undefined) delete config.preset;
      store.configs.set(configKey(c.backend, c.modelId, c.mode), config);
    }
    return store;
  }

  get(backend: string, modelId: string, mode: BackendMode): RunnerConfig | undefined {
    return this.configs.get(configKey(backend, modelId, mode));
  }

  all(): RunnerConfig[] {
    return [...this.configs.values()];
  }

  /** Stores `config` (replacing the one for its key) and resolves once it is on disk. */
  async set(config: RunnerConfig): Promise<void> {
    this.configs.set(configKey(config.backend, config.modelId, config.mode), config);
    await this.persist();
  }

  async delete(backend: string, modelId: string, mode: BackendMode): Promise<boolean> {
    const existed = this.configs.delete(configKey(backend, modelId, mode));
    if (existed) await this.persist();
    return existed;
  }

  /** Writes are serialized so an older snapshot never lands after a newer one. */
  private persist(): Promise<void> {
    const path = this.path;
    if (path === null) return Promise.resolve();
    const snapshot = JSON.stringify({ version: 1, configs: this.all() }, null, 2);
    const write = this.writing.then(async () => {
      await mkdir(dirname(path), { recursive: true });
      await writeAtomic(path, `${snapshot}\n`, { mode: 0o600 });
    });
    this.writing = write.catch(() => undefined);
    return write;
  }
}
