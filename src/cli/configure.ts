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
}

const MODES = ["completion", "embedding", "reranking"];
/** The `llama.cpp` backend's engines (the daemon checks; listed here for the usage error). */

export const configureCommand: Command = {
  name: "configure",
  summary: "Set a model's runtime settings (context size, keep-alive, engine flags)",
  usage: "mr configure [OPTIONS] MODEL [-- RUNTIME FLAGS...]\n       mr configure show [MODEL]",
  description:
    "Stores settings the daemon applies whenever it loads MODEL; they persist across restarts. Flags after `--`\n" +
    "go to the engine (llama-server's, e.g. --threads 4). `configure show` prints what is stored.",
  examples: [
    "mr configure --context-size 8192 ai/smollm2",
    "mr configure --keep-alive 30m ai/smollm2 -- --threads 4",
    "mr configure --engine llama-server ai/smollm2",
    "mr configure show",
    "mr configure show --json ai/smollm2",
  ],
  subcommands: ["show"],
  flags: {
    "context-size": { type: "string", valueName: "N", description: "context window in tokens" },
    "keep-alive": { type: "string", valueName: "DURATION", description: "idle time before unloading: 5m, 1h, 0 (at once), -1 (never)" },
    mode: { type: "string", valueName: "MODE", description: `run mode: ${MODES.join(", ")}` },
    engine: { type: "string", valueName: "ENGINE", description: `llama.cpp engine: ${ENGINES.join(", ")} (llama-server: mr install-runner --engine llama-server)` },
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
    if (contextSize === undefined && mode === undefined && keepAlive === undefined && engine === undefined && rest.length === 0) {
      throw new UsageError("nothing to configure: pass --context-size, --keep-alive, --mode, --engine or runtime flags after --", "configure");
    }
    const client = await cli.daemon();
    // Stored under the model the name resolves to, so every later name for it (full, partial, ID) finds it.
    const { model, name } = await resolveModel(client, positionals[0]!, cli.signal);
    const result = await client.json<{ restarted?: boolean }>("POST", "/engines/_configure", {
      json: {
        model: name,
        ...(mode !== undefined ? { mode } : {}),
        ...(contextSize !== undefined ? { "context-size": contextSize } : {}),
        ...(keepAlive !== undefined ? { keep_alive: keepAlive } : {}),
        ...(engine !== undefined ? { engine } : {}),
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
      ["MODEL", "BACKEND", "MODE", "CONTEXT", "KEEP ALIVE", "RUNTIME FLAGS", "ENGINE"],
      rows.map((r) => [
        r.model,
        r.backend,
        r.mode ?? "-",
        r.context_size ? String(r.context_size) : "-",
        r.keep_alive ?? "-",
        (r.runtime_flags ?? []).join(" ") || "-",
        r.engine ?? "default",
      ]),
    ),
  );
  return 0;
}
