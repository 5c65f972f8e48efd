import { cp, mkdir, open, readdir, rename, rm, stat } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { InvalidRequestError, RunnerError } from "../../../errors.ts";
import { type BuildStep, checkBuildTools, EngineInstallError, runLogged } from "./build-tools.ts";

/**
 * The built-in engine's native build: node-llama-cpp compiled for this
 * machine from the llama.cpp source it bundles (offline), instead of the
 * prebuilt binary it ships. Prompt processing is then as fast as
 * llama-server's (`../shared/reference/engine-notes.md`: ~2.5 s vs ~4.2 s
 * for 850 tokens). node-llama-cpp keeps the build in its own package folder
 * (`llama/localBuilds`) and prefers it at load time, so the engine needs no
 * option to use it. Reinstalling the package (`npm ci`) removes that folder,
 * so each build is also kept under the model-runner home, per node-llama-cpp
 * version, and put back at the next start (keptBuildsDir, restoreNativeBuilds).
 */

/** What `--gpu` / the install body's `gpu` take. */
export const GPU_CHOICES = ["auto", "cpu", "cuda", "vulkan", "metal"] as const;
export type GpuChoice = (typeof GPU_CHOICES)[number];

/** Validates a `gpu` value; a 400 naming the field otherwise. */
export function parseGpuChoice(value: unknown): GpuChoice {
  if (typeof value === "string" && (GPU_CHOICES as readonly string[]).includes(value)) return value as GpuChoice;
  throw new InvalidRequestError(`"gpu" must be one of ${GPU_CHOICES.join(", ")}, got ${JSON.stringify(value)}.`, "gpu");
}

/** The variant name the engine's version line uses for a choice (null: any). */
export const variantOf = (gpu: GpuChoice): string | null =>
  ({ auto: null, cpu: "CPU", cuda: "CUDA", vulkan: "Vulkan", metal: "Metal" })[gpu];

/** node-llama-cpp's own CLI (`node-llama-cpp source download`), next to its entry point. */
export function nodeLlamaCppCli(): string {
  const entry = createRequire(import.meta.url).resolve("node-llama-cpp");
  return join(dirname(entry), "cli", "cli.js");
}

/**
 * The one command of the build: node-llama-cpp clones its bundled release
 * (it uses `llama/gitRelease.bundle` when the release matches, so no
 * network) and compiles it with cmake for `gpu` (`cpu` = no GPU support).
 */
export function nativeBuildStep(gpu: GpuChoice, cli = nodeLlamaCppCli()): BuildStep {
  return {
    what: "compiling the built-in engine",
    command: process.execPath,
    args: [cli, "source", "download", "--gpu", gpu === "cpu" ? "false" : gpu, "--noUsageExample"],
  };
}

export interface NativeBuildOptions {
  gpu: GpuChoice;
  /** Where `built-in-build.log` goes. */
  logDir: string;
  env?: NodeJS.ProcessEnv | undefined;
  onProgress?: ((line: string) => void) | undefined;
  /** node-llama-cpp's CLI; default the installed package's. */
  cli?: string | undefined;
}

/**
 * Compiles the binding. A missing compiler or cmake is one line saying what
 * to install; any other failure names the log. The daemon calls this only
 * for an explicit install (`mr install-runner --engine built-in`).
 */
export async function buildNativeBinding(options: NativeBuildOptions, signal: AbortSignal): Promise<void> {
  const env = options.env ?? process.env;
  await checkBuildTools(env, "the built-in engine for this machine", "keep the prebuilt binary the package ships (it works; prompt processing is slower)");
  await mkdir(options.logDir, { recursive: true });
  const logPath = join(options.logDir, "built-in-build.log");
  const log = await open(logPath, "w");
  const progress = options.onProgress ?? (() => undefined);
  try {
    progress(`compiling the built-in engine for this machine from the bundled llama.cpp (about 15 minutes on 2 cores); log: ${logPath}`);
    await runLogged(nativeBuildStep(options.gpu, options.cli), env, log, signal, progress, "compiling the built-in engine");
  } catch (error) {
    if (signal.aborted) throw signal.reason;
    if (error instanceof RunnerError) throw error;
    throw new EngineInstallError(`Compiling the built-in engine failed: ${(error as Error).message}. See ${logPath}.`, { cause: error });
  } finally {
    await log.close();
  }
}

/** node-llama-cpp's folder of native builds, which it loads from first. */
export function localBuildsDir(packageRoot: string): string {
  return join(packageRoot, "llama", "localBuilds");
}

/** Where native builds for node-llama-cpp `version` are kept under the model-runner home. */
export function keptBuildsDir(home: string, version: string): string {
  return join(home, "engines", "built-in", `node-llama-cpp-${version}`);
}

/** What a build needs to load (node-llama-cpp checks all three): its `Release` folder (binary and metadata) and `buildDone.status`. */
const BUILD_PARTS = ["Release", "buildDone.status"];

/**
 * Keeps a copy of each finished build in `localBuilds` under `kept`
 * (the loadable parts only, ~13 MiB of the build tree's ~54), replacing
 * what was kept: written beside, then renamed into place.
 */
export async function keepNativeBuilds(localBuilds: string, kept: string): Promise<void> {
  const next = `${kept}.next`;
  await rm(next, { recursive: true, force: true });
  await mkdir(next, { recursive: true });
  for (const folder of await finishedBuilds(localBuilds)) {
    for (const part of BUILD_PARTS) await cp(join(localBuilds, folder, part), join(next, folder, part), { recursive: true });
  }
  await rm(kept, { recursive: true, force: true });
  await rename(next, kept);
}

/**
 * Puts kept builds back into `localBuilds` where that has none of the same
 * name (the package was reinstalled). Resolves with the folders restored.
 */
export async function restoreNativeBuilds(kept: string, localBuilds: string): Promise<string[]> {
  const restored: string[] = [];
  for (const folder of await finishedBuilds(kept)) {
    const target = join(localBuilds, folder);
    if (await exists(target)) continue;
    const partial = `${target}.restoring`;
    await rm(partial, { recursive: true, force: true });
    for (const part of BUILD_PARTS) await cp(join(kept, folder, part), join(partial, part), { recursive: true });
    await rename(partial, target);
    restored.push(folder);
  }
  return restored;
}

/** The build folders under `dir` that finished (a build that broke off has no `buildDone.status`). */
async function finishedBuilds(dir: string): Promise<string[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const done: string[] = [];
  for (const name of names) {
    if (name.endsWith(".next") || name.endsWith(".restoring")) continue; // this module's own work in progress
    if (await exists(join(dir, name, "buildDone.status"))) done.push(name);
  }
  return done;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
