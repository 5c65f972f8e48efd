import assert from "node:assert/strict";
import { readdir, rm, stat } from "node:fs/promises";
import { request } from "node:http";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import type { TestContext } from "node:test";
import { writeTinyModel } from "../../src/distribution/tiny-model.ts";
import { tempDir } from "../helpers/models.ts";
import { childPids } from "../helpers/processes.ts";
export { childPids };
import { BackendRegistry, LlamaCppBackend, type LlamaCppBackendOptions } from "../../src/inference/index.ts";
import {
  createScheduler,
  estimateRunnerMemory,
  readGgufShape,
  type Lease,
  type ModelResolver,
  type ResolvedModel,
  type Scheduler,
  type SchedulerEvent,
  type SchedulerOptions,
} from "../../src/scheduling/index.ts";

/** Writes tiny models (distinct seeds, so distinct ids) and a resolver over them. */
export async function tinyModels(dir: string, names: readonly string[]): Promise<{ resolve: ModelResolver; models: Map<string, ResolvedModel> }> {
  const models = new Map<string, ResolvedModel>();
  let seed = 1;
  for (const name of names) {
    const ggufPath = join(dir, `${name}.gguf`);
    await writeTinyModel(ggufPath, { seed: seed++ });
    models.set(name, { id: `sha256:${name.padEnd(64, "0")}`, files: { name, ggufPath }, sizeBytes: (await stat(ggufPath)).size });
  }
  const resolve: ModelResolver = async (ref) => {
    const m = models.get(ref) ?? [...models.values()].find((v) => v.id === ref);
    if (!m) throw new Error(`no model ${ref}`);
    return m;
  };
  return { resolve, models };
}

export const ENGINE_SETTINGS = { defaultContextSize: 512, runnerOverheadBytes: 1024 * 1024 } as const;

export interface Harness {
  scheduler: Scheduler;
  events: SchedulerEvent[];
  dir: string;
  runDir: string;
  configPath: string;
  models: Map<string, ResolvedModel>;
  resolve: ModelResolver;
}

/**
 * A scheduler over real engines on tiny models. On teardown it shuts down
 * and asserts that no engine process survived.
 */
export async function harness(
  t: TestContext,
  options: Partial<SchedulerOptions> & {
    modelNames?: string[];
    backend?: LlamaCppBackendOptions;
    dir?: string;
    /** Sizes the memory budget so that this many tiny runners fit, and not one more. */
    runnersThatFit?: number;
  } = {},
): Promise<Harness> {
  const ownsDir = options.dir === undefined;
  const dir = options.dir ?? (await tempDir("mr-s-"));
  const { resolve, models } = await tinyModels(dir, options.modelNames ?? ["a", "b", "c"]);
  if (options.runnersThatFit !== undefined) {
    const est = await tinyEstimate(models.values().next().value!);
    options = { ...options, memoryBudgetBytes: Math.floor(est * (options.runnersThatFit + 0.5)) };
  }
  const events: SchedulerEvent[] = [];
  const runDir = join(dir, "run");
  const configPath = join(dir, "configs.json");
  const scheduler = await createScheduler({
    backends: new BackendRegistry([new LlamaCppBackend({ stopGraceMs: 2000, ...options.backend })]),
    resolveModel: resolve,
    runDir,
    configPath,
    memoryBudgetBytes: 1024 ** 3,
    ...ENGINE_SETTINGS,
    onEvent: (e) => events.push(e),
    ...options,
  });
  t.after(async () => {
    await scheduler.shutdown(0);
    assert.deepEqual(await childPids(), [], "an engine process survived");
    const left = (await readdir(runDir).catch(() => [] as string[])).filter((n) => n.endsWith(".sock") || n.endsWith(".pid"));
    assert.deepEqual(left, [], "sockets or pid files left behind");
    if (ownsDir) await rm(dir, { recursive: true, force: true });
  });
  return { scheduler, events, dir, runDir, configPath, models, resolve };
}

/** What the scheduler estimates for one tiny runner with ENGINE_SETTINGS and one slot. */
export async function tinyEstimate(model: ResolvedModel): Promise<number> {
  return estimateRunnerMemory({
    weightsBytes: model.sizeBytes,
    shape: await readGgufShape(model.files.ggufPath),
    contextTokens: ENGINE_SETTINGS.defaultContextSize,
    overheadBytes: ENGINE_SETTINGS.runnerOverheadBytes,
  }).totalBytes;
}

/** Sends a request over the lease's socket; resolves with status and parsed body. */
export function engineRequest(lease: Pick<Lease, "socketPath">, method: string, path: string, body?: object): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: lease.socketPath, path, method, headers: { "content-type": "application/json" } }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (text += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : null }));
    });
    req.on("error", reject);
    req.end(body ? JSON.stringify(body) : undefined);
  });
}

export function count(events: readonly SchedulerEvent[], type: SchedulerEvent["type"]): number {
  return events.filter((e) => e.type === type).length;
}

/** Resolves true if `promise` settles within `ms`. */
export async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  return Promise.race([promise.then(() => true, () => true), delay(ms).then(() => false)]);
}
