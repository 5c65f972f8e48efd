import type { Command } from "./context.ts";
import { intFlag, type ParsedArgs } from "./args.ts";
import { setTimeout as delay } from "node:timers/promises";
import type { DaemonClient } from "./client.ts";
import { CliError, UsageError } from "./errors.ts";
import { ENGINES } from "./install-runner.ts";
import { resolveModel } from "./models.ts";
import { json, table } from "./output.ts";
import type { RunnerStatus } from "./ps.ts";

/** GET /engines/_configure rows; `mr configure show --json` prints these unchanged. */
export interface ConfigureRow {
  backend: string;
  model: string;
  model_id?: string;
  mode?: string | null;
  context_size?: number | null;
  parallel?: number | null;
  runtime_flags?: string[] | null;
  keep_alive?: string | null;
  engine?: string | null;
  preset?: { system?: string; parameters?: Record<string, number | string[]>; messages?: Array<{ role: string; content: string }> } | null;
  speculative?: { draft_model: string; num_tokens: number; min_acceptance_rate: number } | null;
}

/**
 * The preset parameters `configure` has a flag for (Ollama's names; the flag
 * is the name with dashes: --top-k). The daemon checks the values; this list
 * only makes the flags (and so --help and shell completion).
 */
export const PRESET_PARAMETER_FLAGS = [
  ["temperature", "sampling temperature (0: always the likeliest token)"],
  ["top_k", "sample from the K likeliest tokens"],
  ["top_p", "sample from the tokens making up probability P"],
  ["min_p", "drop tokens under P times the likeliest one's probability"],
  ["typical_p", "locally typical sampling (1: off)"],
  ["num_predict", "most tokens an answer may have (-1: until the model stops)"],
  ["repeat_penalty", "penalty for repeating recent tokens (1: off)"],
  ["repeat_last_n", "how many recent tokens repeat_penalty looks at (-1: the context)"],
  ["presence_penalty", "penalty for tokens already present"],
  ["frequency_penalty", "penalty growing with a token's count"],
  ["seed", "random seed, for repeatable answers"],
  ["mirostat", "Mirostat sampling: 0 off, 1, 2"],
  ["mirostat_tau", "Mirostat target entropy"],
  ["mirostat_eta", "Mirostat learning rate"],
] as const;

const presetFlags = Object.fromEntries(
  PRESET_PARAMETER_FLAGS.map(([name, description]) => [name.replaceAll("_", "-"), { type: "string" as const, valueName: "N", description: `preset: ${description}` }]),
);

const MODES = ["completion", "embedding", "reranking"];
/** The `llama.cpp` backend's engines (the daemon checks; listed here for the usage error). */

export const configureCommand: Command = {
  name: "configure",
  summary: "Set a model's runtime settings and defaults (context size, keep-alive, system prompt, sampling, engine flags)",
  usage: "mr configure [OPTIONS] MODEL [-- RUNTIME FLAGS...]\n       mr configure show [MODEL]",
  description:
    "Stores settings the daemon applies whenever it loads MODEL; they persist across restarts. Flags after `--`\n" +
    "go to the engine (llama-server's, e.g. --threads 4). The preset flags (--system, --temperature, --stop, ...) set\n" +
    "defaults that every request for MODEL gets unless it sets them itself, on every API; they apply at once, without\n" +
    "reloading the model. `configure show` prints what is stored.",
  examples: [
    "mr configure --context-size 8192 ai/smollm2",
    "mr configure --keep-alive 30m ai/smollm2 -- --threads 4",
    "mr configure --engine llama-server ai/smollm2",
    'mr configure --system "Answer in French." --temperature 0.2 --stop "<|end|>" ai/smollm2',
    "mr configure --unset temperature --unset system ai/smollm2",
    "mr configure --speculative-draft-model ai/smollm2:135M --speculative-num-tokens 4 ai/smollm2:1.7B",
    'mr configure --speculative-draft-model "" ai/smollm2:1.7B',
    "mr configure show",
    "mr configure show --json ai/smollm2",
  ],
  subcommands: ["show"],
  flags: {
    "context-size": { type: "string", valueName: "N", description: "context window in tokens" },
    "keep-alive": { type: "string", valueName: "DURATION", description: "idle time before unloading: 5m, 1h, 0 (at once), -1 (never)" },
    mode: { type: "string", valueName: "MODE", description: `run mode: ${MODES.join(", ")}` },
    engine: { type: "string", valueName: "ENGINE", description: `llama.cpp engine: ${ENGINES.join(", ")} (llama-server: mr install-runner --engine llama-server)` },
    system: { type: "string", valueName: "TEXT", description: "preset: the system prompt of conversations that have none" },
    ...presetFlags,
    stop: { type: "string", multiple: true, valueName: "TEXT", description: "preset: a stop sequence (repeatable; replaces the stored ones)" },
    unset: { type: "string", multiple: true, valueName: "NAME", description: "preset: remove a parameter, system or messages (repeatable)" },
    "reset-preset": { type: "boolean", description: "preset: remove the whole preset" },
    "speculative-draft-model": { type: "string", valueName: "MODEL", description: 'draft model for speculative decoding (same vocabulary; "" turns it off)' },
    "speculative-num-tokens": { type: "string", valueName: "N", description: "tokens the draft model proposes per step (default 3)" },
    "speculative-min-acceptance-rate": { type: "string", valueName: "P", description: "draft probability under which drafting stops, 0-1 (llama-server's --spec-draft-p-min; default 0)" },
    json: { type: "boolean", description: "with show: print JSON" },
  },
  async run(cli, args) {
    if (args.positionals[0] === "show") return show(cli, args);
    const { values, positionals, rest } = args;
    if (positionals.length !== 1) throw new UsageError("configure takes exactly one MODEL (runtime flags go after --)", "configure");
    const contextSize = intFlag("configure", "context-size", values["context-size"]);
    const mode = values.mode as string | undefined;
    if (mode !== undefined && !MODES.includes(mode)) throw new UsageError(`--mode must be one of ${MODES.join(", ")}, got "${mode}"`, "configure");
    const keepAlive = values["keep-alive"] as string | undefined;
    const engine = values.engine as string | undefined;
    if (engine !== undefined && !(ENGINES as readonly string[]).includes(engine)) throw new UsageError(`--engine must be one of ${ENGINES.join(", ")}, got "${engine}"`, "configure");
    const preset = presetOf(values);
    const speculative = speculativeFlags(values);
    if (contextSize === undefined && mode === undefined && keepAlive === undefined && engine === undefined && preset === undefined && speculative === undefined && rest.length === 0) {
      throw new UsageError(
        "nothing to configure: pass --context-size, --keep-alive, --mode, --engine, preset flags (--system, --temperature, ...), --speculative-draft-model or runtime flags after --",
        "configure",
      );
    }
    const client = await cli.daemon();
    // Stored under the model the name resolves to, so every later name for it (full, partial, ID) finds it.
    const { model, name } = await resolveModel(client, positionals[0]!, cli.signal);
    // The draft is named like any model (full, partial, ID); the daemon resolves it in the store at each load.
    if (speculative !== undefined && speculative.draft_model !== "") {
      speculative.draft_model = (await resolveModel(client, speculative.draft_model, cli.signal)).name;
    }
    const result = await client.json<{ restarted?: boolean }>("POST", "/engines/_configure", {
      json: {
        model: name,
        ...(mode !== undefined ? { mode } : {}),
        ...(contextSize !== undefined ? { "context-size": contextSize } : {}),
        ...(keepAlive !== undefined ? { keep_alive: keepAlive } : {}),
        ...(engine !== undefined ? { engine } : {}),
        ...(preset !== undefined ? { preset } : {}),
        ...(speculative !== undefined ? { speculative } : {}),
        ...(rest.length > 0 ? { "runtime-flags": rest } : {}),
      },
      signal: cli.signal,
    });
    // A loaded runner restarts with the new settings in the background (DMR answers 202); wait for it, so
    // that a load failure is reported here and the next command does not find the runner busy loading.
    if (result?.restarted) await waitForReload(client, model.id, cli.signal);
    cli.io.stdout.write(`Configured ${name}.\n`);
    return 0;
  },
};

/** The `_configure` preset patch the flags ask for; undefined when they ask for none. */
function presetOf(values: ParsedArgs["values"]): Record<string, unknown> | null | undefined {
  if (values["reset-preset"]) {
    if (PRESET_PARAMETER_FLAGS.some(([n]) => values[n.replaceAll("_", "-")] !== undefined) || values.system !== undefined || values.stop || values.unset) {
      throw new UsageError("--reset-preset removes the whole preset: give it alone, then set new values", "configure");
    }
    return null;
  }
  const parameters: Record<string, unknown> = {};
  for (const [name] of PRESET_PARAMETER_FLAGS) {
    const value = values[name.replaceAll("_", "-")];
    if (typeof value === "string") parameters[name] = value;
  }
  const stop = values.stop as string[] | undefined;
  if (stop) parameters.stop = stop;
  const patch: Record<string, unknown> = {};
  if (typeof values.system === "string") patch.system = values.system;
  for (const name of (values.unset as string[] | undefined) ?? []) {
    const key = name.replaceAll("-", "_");
    if (key === "system" || key === "messages") patch[key] = null;
    else if (key === "stop" || PRESET_PARAMETER_FLAGS.some(([n]) => n === key)) {
      if (parameters[key] !== undefined) throw new UsageError(`--unset ${name} and --${name.replaceAll("_", "-")} contradict each other`, "configure");
      parameters[key] = null;
    } else throw new UsageError(`--unset takes system, messages, stop or a parameter name (${PRESET_PARAMETER_FLAGS.map(([n]) => n).join(", ")}), got "${name}"`, "configure");
  }
  if (Object.keys(parameters).length > 0) patch.parameters = parameters;
  return Object.keys(patch).length > 0 ? patch : undefined;
}

/** A stored preset in one cell: `system="…" temperature=0.2 stop="a","b"`. */
function presetCell(preset: ConfigureRow["preset"]): string {
  if (!preset) return "-";
  const parts: string[] = [];
  if (preset.system) parts.push(`system=${JSON.stringify(preset.system.length > 24 ? `${preset.system.slice(0, 23)}…` : preset.system)}`);
  for (const [k, v] of Object.entries(preset.parameters ?? {})) parts.push(`${k}=${Array.isArray(v) ? v.map((x) => JSON.stringify(x)).join(",") : v}`);
  if (preset.messages?.length) parts.push(`messages=${preset.messages.length}`);
  return parts.join(" ") || "-";
}

/**
 * DMR's `speculative` object from the --speculative-* flags, or undefined
 * without them. The numbers need a draft model: alone they would change nothing.
 */
function speculativeFlags(values: ParsedArgs["values"]): { draft_model: string; num_tokens?: number; min_acceptance_rate?: number } | undefined {
  const draft = values["speculative-draft-model"] as string | undefined;
  const numTokens = intFlag("configure", "speculative-num-tokens", values["speculative-num-tokens"]);
  const rateText = values["speculative-min-acceptance-rate"] as string | undefined;
  let rate: number | undefined;
  if (rateText !== undefined) {
    rate = Number(rateText);
    if (rateText.trim() === "" || !Number.isFinite(rate) || rate < 0 || rate > 1) {
      throw new UsageError(`--speculative-min-acceptance-rate must be a number from 0 to 1, got "${rateText}"`, "configure");
    }
  }
  if (draft === undefined) {
    if (numTokens !== undefined || rate !== undefined) {
      throw new UsageError("--speculative-num-tokens and --speculative-min-acceptance-rate need --speculative-draft-model", "configure");
    }
    return undefined;
  }
  if (numTokens !== undefined && numTokens < 1) throw new UsageError(`--speculative-num-tokens must be at least 1, got ${numTokens}`, "configure");
  return { draft_model: draft, ...(numTokens !== undefined ? { num_tokens: numTokens } : {}), ...(rate !== undefined ? { min_acceptance_rate: rate } : {}) };
}

/** Resolves once no runner of `modelId` is loading or stopping (ready, or gone because the load failed). */
async function waitForReload(client: DaemonClient, modelId: string, signal: AbortSignal, timeoutMs = 300_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let settledSince: number | null = null;
  while (Date.now() < deadline) {
    const mine = ((await client.json<RunnerStatus[]>("GET", "/engines/ps", { signal })) ?? []).filter((r) => r.model_id === modelId);
    if (mine.some((r) => r.state === "ready") && !mine.some((r) => r.state === "loading" || r.state === "stopping")) return;
    // No runner at all: the old one stopped and the new one may not exist yet; give it a moment.
    if (mine.length === 0) {
      settledSince ??= Date.now();
      if (Date.now() - settledSince > 2000) return;
    } else settledSince = null;
    await delay(200, undefined, { signal });
  }
  throw new CliError(`the model was configured, but its runner did not finish reloading within ${timeoutMs / 1000}s (see 'mr ps')`);
}

async function show(cli: Parameters<Command["run"]>[0], { values, positionals }: ParsedArgs): Promise<number> {
  if (positionals.length > 2) throw new UsageError("configure show takes at most one MODEL", "configure");
  const client = await cli.daemon();
  // By model ID: settings are stored per model, whatever name they were set or are asked under.
  const modelId = positionals[1] !== undefined ? (await resolveModel(client, positionals[1], cli.signal)).model.id : undefined;
  const rows = (await client.json<ConfigureRow[]>("GET", "/engines/_configure", { query: { model: modelId }, signal: cli.signal })) ?? [];
  if (values.json) {
    cli.io.stdout.write(json(rows));
    return 0;
  }
  cli.io.stdout.write(
    table(
      ["MODEL", "BACKEND", "MODE", "CONTEXT", "KEEP ALIVE", "RUNTIME FLAGS", "ENGINE", "PRESET", "DRAFT"],
      rows.map((r) => [
        r.model,
        r.backend,
        r.mode ?? "-",
        r.context_size ? String(r.context_size) : "-",
        r.keep_alive ?? "-",
        (r.runtime_flags ?? []).join(" ") || "-",
        r.engine ?? "default",
        presetCell(r.preset),
        r.speculative ? `${r.speculative.draft_model}${r.speculative.num_tokens ? ` (${r.speculative.num_tokens} tokens)` : ""}` : "-",
      ]),
    ),
  );
  return 0;
}
