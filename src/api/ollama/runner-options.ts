import type { BackendMode } from "../../inference/index.ts";
import type { ConfigureRequest } from "../../scheduling/index.ts";
import type { OllamaDeps } from "./deps.ts";
import { RUNNER_OPTIONS, type MappedOptions, type RunnerOption } from "./options.ts";

/** Flags that take a value (`--threads 4` or `--threads=4`); the others stand alone (`--no-mmap`). */
const VALUED = new Set<string>(Object.values(RUNNER_OPTIONS).flatMap((o) => (o.type === "integer" ? o.flags : [])));

/**
 * `flags` with each given runner option's flag (in any spelling) replaced
 * by the value asked for, the other flags kept in their order.
 */
export function withRunnerOptions(flags: readonly string[], runner: MappedOptions["runner"]): string[] {
  const options = Object.keys(runner) as RunnerOption[];
  const replaced = new Set<string>(options.flatMap((o) => RUNNER_OPTIONS[o].flags));
  const kept: string[] = [];
  for (let i = 0; i < flags.length; i++) {
    const flag = flags[i]!;
    const name = flag.split("=")[0]!;
    if (!replaced.has(name)) {
      kept.push(flag);
      continue;
    }
    if (VALUED.has(name) && !flag.includes("=")) i++; // its value goes with it
  }
  for (const o of options) kept.push(...RUNNER_OPTIONS[o].flagsFor(runner[o]!));
  return kept;
}

/**
 * Ollama's `num_ctx` and runner options (`num_thread`, `num_batch`,
 * `num_gpu`, `main_gpu`, `use_mmap`) in terms of our scheduler: a persisted
 * `_configure` of the model's context size and runtime flags (the scheduler
 * has no per-request runner settings; Ollama reloads the model for them).
 * Only a change is applied; an idle runner restarts, a busy one makes it 409.
 */
export async function applyRunnerOptions(deps: OllamaDeps, model: string, mode: BackendMode, options: Pick<MappedOptions, "numCtx" | "runner">): Promise<void> {
  const hasRunner = Object.keys(options.runner).length > 0;
  if (options.numCtx === null && !hasRunner) return;
  const current = await deps.scheduler.effectiveSettings(model, mode);
  const request: ConfigureRequest = { model, mode };
  if (options.numCtx !== null && current.contextSize !== options.numCtx) request.contextSize = options.numCtx;
  if (hasRunner) {
    const flags = withRunnerOptions(current.runtimeFlags, options.runner);
    if (flags.join("\0") !== current.runtimeFlags.join("\0")) {
      // Runtime flags given replace the stored ones and the parallel count they implied: a stored count is kept.
      const stored = deps.scheduler.getConfigs(model).find((c) => c.mode === mode)?.parallel;
      request.runtimeFlags = [...flags, ...(stored !== undefined ? ["--parallel", String(stored)] : [])];
    }
  }
  if (request.contextSize !== undefined || request.runtimeFlags !== undefined) await deps.scheduler.configure(request);
}
