import { execFile } from "node:child_process";
import { access, constants, rm } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { InvalidRequestError, messageOf, RunnerError } from "../../../errors.ts";
import { parseLoadProgressLine } from "../../../engine/load-progress.ts";
import { defaultThreads } from "../../../engine/options.ts";
import type { Backend, BackendConfig, InstallOptions, ModelFiles, RunRequest } from "../../backend.ts";
import { EngineFailedError, EngineProcess, waitForHealth } from "../../engine-process.ts";
import { buildLlamaCppArgs } from "./args.ts";
import { parseLlamaCppEngine, type LlamaCppEngine } from "./engines.ts";
import { buildLlamaServerArgs, ggufDeclaresPooling } from "./llama-server-args.ts";
import {
  findInstalledLlamaServer,
  installLlamaServer,
  llamaServerRoot,
  uninstallLlamaServer,
  BUNDLE_PATH,
  type ReleasePin,
} from "./llama-server-install.ts";
import { buildNativeBinding, keepNativeBuilds, keptBuildsDir, localBuildsDir, parseGpuChoice, restoreNativeBuilds, variantOf, type GpuChoice } from "./native-binding.ts";
import { nodeLlamaCppPackage } from "../../../engine/version.ts";
import { EngineInstallError } from "./build-tools.ts";

export const LLAMACPP_NAME = "llama.cpp";

const execFileAsync = promisify(execFile);

/** Where our own `mr` entry point lives, to start the built-in engine (and llama-server's wrapper) from. */
const MR_BIN = fileURLToPath(new URL("../../../../bin/mr.js", import.meta.url));

export interface LlamaCppBackendOptions {
  /**
   * The llama-server binary to use (`MODEL_RUNNER_LLAMA_SERVER`); it wins
   * over one installed under the home, and nothing is installed while set.
   */
  llamaServerPath?: string | null | undefined;
  /**
   * The engine for models not configured otherwise
   * (`MODEL_RUNNER_LLAMA_CPP_ENGINE`). Default: `llama-server` when
   * `llamaServerPath` is set, else `built-in`.
   */
  defaultEngine?: LlamaCppEngine | undefined;
  /** The model-runner home and log directory: llama-server installs and their build logs. Without them nothing is installed. */
  home?: string | undefined;
  logDir?: string | undefined;
  /** The bundled llama.cpp source and pinned release archives (tests inject their own). */
  bundlePath?: string | undefined;
  releasePins?: readonly ReleasePin[] | undefined;
  /** How long an engine may take to answer `/health` with 200. Default 5 minutes. */
  readyTimeoutMs?: number | undefined;
  /** SIGTERM → SIGKILL grace period when stopping. Default 5 s. */
  stopGraceMs?: number | undefined;
  /** Environment for engine processes (and builds). Default: this process's. */
  env?: NodeJS.ProcessEnv | undefined;
}

/** A model configured for llama-server when none is installed: DMR answers 412 with the command to run. */
export class EngineNotInstalledError extends RunnerError {
  readonly code = "engine_not_installed";
  readonly status = 412;
  constructor(engine: LlamaCppEngine) {
    super(`The llama.cpp engine "${engine}" is not installed; run: mr install-runner --engine ${engine}`);
  }
}

type State =
  | { kind: "not-installed" }
  | { kind: "installing"; progress: string }
  | { kind: "installed"; description: string }
  | { kind: "error"; message: string };

/**
 * The `llama.cpp` backend. It has two engines, chosen per model
 * (`BackendConfig.engine`) with a daemon default: our built-in engine
 * (node-llama-cpp, `mr engine`) and a real `llama-server` (given by
 * `MODEL_RUNNER_LLAMA_SERVER` or installed under the home). Each `run` is
 * one engine serving one model on a Unix socket.
 */
export class LlamaCppBackend implements Backend {
  readonly name = LLAMACPP_NAME;
  readonly usesExternalModelManagement = false;
  readonly defaultEngine: LlamaCppEngine;
  private readonly states: Record<LlamaCppEngine, State> = { "built-in": { kind: "not-installed" }, "llama-server": { kind: "not-installed" } };
  private readonly installing = new Map<string, Promise<void>>();
  /** The llama-server binary found or installed; null until then. */
  private llamaServer: string | null;
  /** The one search for an installed llama-server (`llamaServerInstalled`); reset by install and uninstall. */
  private locating: Promise<boolean> | null = null;
  private readonly readyTimeoutMs: number;
  private readonly stopGraceMs: number;

  constructor(private readonly options: LlamaCppBackendOptions = {}) {
    this.readyTimeoutMs = options.readyTimeoutMs ?? 5 * 60_000;
    this.stopGraceMs = options.stopGraceMs ?? 5000;
    this.llamaServer = options.llamaServerPath || null;
    this.defaultEngine = options.defaultEngine ?? (options.llamaServerPath ? "llama-server" : "built-in");
  }

  engineFor(config: BackendConfig | undefined): LlamaCppEngine {
    return config?.engine === undefined ? this.defaultEngine : parseLlamaCppEngine(config.engine);
  }

  /**
   * A model with a projector runs on llama-server whenever one is installed
   * (node-llama-cpp has no multimodal API, so only llama-server's libmtmd
   * serves images); other models, and any model with an engine configured,
   * as `engineFor` says.
   */
  async chooseEngine(model: ModelFiles, config: BackendConfig | undefined): Promise<LlamaCppEngine> {
    if (config?.engine !== undefined || !model.mmprojPath) return this.engineFor(config);
    return (await this.llamaServerInstalled()) ? "llama-server" : this.defaultEngine;
  }

  imageInputRefusal(engine: string | undefined, configured: boolean): string | null {
    const which = engine === undefined ? this.defaultEngine : parseLlamaCppEngine(engine);
    if (which === "llama-server") return null;
    return configured
      ? 'it is configured to run on the built-in engine, which has no image input; configure it with engine "llama-server" (mr configure --engine llama-server).'
      : "images need the llama-server engine, which is not installed (the built-in engine has no image input); run: mr install-runner --engine llama-server";
  }

  /**
   * Whether a llama-server binary is there to run, looked for once (finding
   * one under the home hashes the bundled source) and again after each
   * install or uninstall.
   */
  private async llamaServerInstalled(): Promise<boolean> {
    if (this.llamaServer !== null) return true;
    this.locating ??= this.locateLlamaServer().then((found) => {
      this.llamaServer ??= found;
      return found !== null;
    });
    return this.locating;
  }

  /**
   * Without `acquire`: checks that the engine can start by asking it for
   * `--version` (the built-in engine then loads its native binding and
   * reports the variant; llama-server is looked for, never built). With
   * `acquire` (an explicit install), a missing llama-server is installed
   * under the home first. Concurrent calls for one engine share the work.
   */
  install(signal: AbortSignal, options: InstallOptions = {}): Promise<void> {
    const engine = options.engine === undefined ? this.defaultEngine : parseLlamaCppEngine(options.engine);
    let gpu: GpuChoice;
    try {
      gpu = options.gpu === undefined ? "auto" : parseGpuChoice(options.gpu);
    } catch (error) {
      return Promise.reject(error);
    }
    if (gpu !== "auto" && !options.acquire) return Promise.reject(new InvalidRequestError('"gpu" applies to an install (acquire) only.', "gpu"));
    if (engine === "llama-server" && gpu !== "auto" && gpu !== "cpu" && this.options.llamaServerPath) {
      return Promise.reject(
        new InvalidRequestError(`"gpu" cannot be chosen: MODEL_RUNNER_LLAMA_SERVER (${this.options.llamaServerPath}) is the llama-server used, and nothing is built.`, "gpu"),
      );
    }
    // An explicit install always runs: it may compile what the check found prebuilt, or a GPU build.
    if (this.states[engine].kind === "installed" && !options.acquire) return Promise.resolve();
    const key = `${engine}${options.acquire ? `+acquire:${gpu}` : ""}`;
    let pending = this.installing.get(key);
    if (!pending) {
      pending = this.doInstall(engine, options, gpu, signal).finally(() => this.installing.delete(key));
      this.installing.set(key, pending);
    }
    return pending;
  }

  private async doInstall(engine: LlamaCppEngine, options: InstallOptions, gpu: GpuChoice, signal: AbortSignal): Promise<void> {
    this.locating = null; // what is installed may change now
    const setProgress = (line: string) => {
      this.states[engine] = { kind: "installing", progress: line };
      options.onProgress?.(line);
    };
    setProgress("checking the engine");
    // An engine that was checked and works: a build that then fails leaves it serving (the prebuilt binary still does).
    let working: State | null = null;
    try {
      if (engine === "built-in") {
        await this.restoreKeptBuild(setProgress);
        const before = await this.probe("built-in", signal);
        working = { kind: "installed", description: before };
        this.states[engine] = { kind: "installed", description: await this.compileBuiltIn(before, options, gpu, setProgress, signal) };
        return;
      }
      // A GPU build asked for replaces whatever was found (installLlamaServer finds it if it was built before).
      const gpuBuildWanted = options.acquire && gpu !== "auto" && gpu !== "cpu";
      if (this.llamaServer === null || gpuBuildWanted) {
        this.llamaServer = gpuBuildWanted ? null : await this.locateLlamaServer();
        if (this.llamaServer === null && options.acquire) {
          const { home, logDir } = this.options;
          if (!home || !logDir) throw new EngineFailedError("llama-server cannot be installed: no model-runner home was given", "");
          this.llamaServer = await installLlamaServer(
            {
              home,
              logDir,
              bundlePath: this.options.bundlePath,
              pins: this.options.releasePins,
              fetch: options.fetch,
              gpu,
              onProgress: setProgress,
              env: this.options.env,
            },
            signal,
          );
        }
        if (this.llamaServer === null) {
          this.states[engine] = { kind: "not-installed" };
          throw new EngineNotInstalledError(engine);
        }
      }
      const description = await this.probe(engine, signal);
      this.states[engine] = { kind: "installed", description };
    } catch (error) {
      if (signal.aborted) {
        this.states[engine] = working ?? { kind: "not-installed" };
        throw signal.reason;
      }
      if (error instanceof EngineNotInstalledError) throw error;
      const message = error instanceof RunnerError ? error.message : messageOf(error).split("\n")[0]!;
      this.states[engine] = working ?? { kind: "error", message };
      if (error instanceof RunnerError) throw error;
      throw new EngineFailedError(`llama.cpp backend is not usable: ${message}`, "", { cause: error });
    }
  }

  /**
   * With `acquire`, compiles the built-in engine (checked: `before`) for this
   * machine unless it already runs a native build for `gpu`. Resolves with
   * the status description.
   */
  private async compileBuiltIn(before: string, options: InstallOptions, gpu: GpuChoice, progress: (line: string) => void, signal: AbortSignal): Promise<string> {
    if (!options.acquire || isNativeBuildFor(before, gpu)) return before;
    const { logDir } = this.options;
    if (!logDir) throw new EngineFailedError("the built-in engine cannot be compiled: no log directory was given", "");
    await buildNativeBinding({ gpu, logDir, env: this.options.env, onProgress: progress }, signal);
    const after = await this.probe("built-in", signal);
    if (!isNativeBuildFor(after, gpu)) {
      throw new EngineInstallError(`The build finished, but the engine still loads ${after.replace(/^llama\.cpp built-in /, "")}; see built-in-build.log in ${logDir}.`);
    }
    progress("the built-in engine is compiled for this machine");
    if (this.options.home) {
      const { root, version } = await nodeLlamaCppPackage();
      await keepNativeBuilds(localBuildsDir(root), keptBuildsDir(this.options.home, version));
    }
    return after;
  }

  /**
   * Puts back a native build kept under the home that node-llama-cpp's
   * folder lost (a reinstall of the package). A failure leaves the prebuilt
   * binary serving, as before the build.
   */
  private async restoreKeptBuild(progress: (line: string) => void): Promise<void> {
    if (!this.options.home) return;
    try {
      const { root, version } = await nodeLlamaCppPackage();
      const kept = keptBuildsDir(this.options.home, version);
      const restored = await restoreNativeBuilds(kept, localBuildsDir(root));
      if (restored.length > 0) progress(`restored the native build of the built-in engine kept in ${kept}`);
    } catch (error) {
      progress(`the native build kept under the home could not be restored (${messageOf(error)}); the prebuilt binary serves`);
    }
  }

  /** MODEL_RUNNER_LLAMA_SERVER, else one installed before under the home. */
  private async locateLlamaServer(): Promise<string | null> {
    if (this.options.llamaServerPath) return this.options.llamaServerPath;
    if (!this.options.home) return null;
    return findInstalledLlamaServer(llamaServerRoot(this.options.home), this.options.bundlePath ?? BUNDLE_PATH, this.options.releasePins);
  }

  /** Asks the engine for `--version`; resolves with the status description. */
  private async probe(engine: LlamaCppEngine, signal: AbortSignal): Promise<string> {
    const command = engine === "built-in" ? process.execPath : this.llamaServer!;
    const prefix = engine === "built-in" ? [MR_BIN, "engine"] : [];
    const kind = engine === "built-in" ? "built-in" : `llama-server (${command})`;
    if (engine === "llama-server") {
      await access(command, constants.X_OK).catch((error: unknown) => {
        throw new Error((error as NodeJS.ErrnoException).code === "ENOENT" ? `binary not found: ${command}` : messageOf(error));
      });
    }
    const { stdout, stderr } = await execFileAsync(command, [...prefix, "--version"], {
      signal,
      timeout: 60_000,
      env: this.options.env ?? process.env,
    });
    const version = `${stdout}\n${stderr}`.split("\n").map((l) => l.trim()).find((l) => l.startsWith("version:"));
    const details = version ? version.slice("version:".length).trim() : "version unknown";
    return `llama.cpp ${kind}${details ? ` (${details})` : ""}`;
  }

  async uninstall(engine?: string): Promise<boolean> {
    const which = engine === undefined ? "llama-server" : parseLlamaCppEngine(engine);
    if (which === "built-in") return false; // it ships inside this package
    if (!this.options.home) return false;
    const removed = await uninstallLlamaServer(this.options.home);
    this.locating = null;
    if (this.llamaServer !== null && this.llamaServer !== this.options.llamaServerPath) {
      this.llamaServer = null;
      this.states["llama-server"] = { kind: "not-installed" };
    }
    return removed;
  }

  /** The default engine's state first (DMR's one-line form), then the other engine's when it is known. */
  status(): string {
    const describe = (engine: LlamaCppEngine): string => {
      const state = this.states[engine];
      switch (state.kind) {
        case "not-installed":
          if (engine === "llama-server" && this.options.llamaServerPath) return `Not Installed: ${this.options.llamaServerPath} not checked yet`;
          return engine === "llama-server" ? "Not Installed: llama-server (mr install-runner --engine llama-server)" : "Not Installed: not checked yet";
        case "installing":
          return `Installing: ${state.progress}`;
        case "installed":
          // Prompt processing of the prebuilt binary is ~0.6x a native build's (engine-notes.md).
          return engine === "built-in" && state.description.includes("prebuilt")
            ? `Running: ${state.description}; mr install-runner --engine built-in compiles it for this machine (faster prompt processing)`
            : `Running: ${state.description}`;
        case "error":
          return `Error: ${state.message}`;
      }
    };
    const other: LlamaCppEngine = this.defaultEngine === "built-in" ? "llama-server" : "built-in";
    const main = describe(this.defaultEngine);
    return this.states[other].kind === "not-installed" ? main : `${main}; ${describe(other)}`;
  }

  /** The command that starts one engine for `request`. */
  private async commandFor(request: RunRequest, engine: LlamaCppEngine, signal: AbortSignal): Promise<{ command: string; args: string[] }> {
    if (engine === "built-in") return { command: process.execPath, args: [MR_BIN, "engine", ...buildLlamaCppArgs(request)] };
    // Only found here, not probed: the scheduler's install() before run does that.
    this.llamaServer ??= await this.locateLlamaServer();
    if (this.llamaServer === null) throw new EngineNotInstalledError(engine);
    const innerSocket = `${request.socket}.llama-server.sock`;
    const modelDeclaresPooling = request.mode === "embedding" ? await ggufDeclaresPooling(request.model.ggufPath) : false;
    const args = buildLlamaServerArgs(request, { innerSocket, threads: defaultThreads(), modelDeclaresPooling });
    return { command: process.execPath, args: [MR_BIN, "llama-server-wrapper", request.socket, request.model.name, this.llamaServer!, ...args] };
  }

  async run(request: RunRequest, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return;
    const engineName = this.engineFor(request.config);
    const { command, args } = await this.commandFor(request, engineName, signal);
    if (signal.aborted) return;
    const engine = new EngineProcess({
      command,
      args,
      env: this.options.env,
      // The built-in engine exits when the daemon's pipe closes; llama-server's wrapper watches its parent pid instead.
      parentPipe: engineName === "built-in",
      onLog: (line) => {
        // The built-in engine's load progress lines (src/engine/load-progress.ts); llama-server prints none.
        if (request.onLoadProgress) {
          const fraction = parseLoadProgressLine(line);
          if (fraction !== null) request.onLoadProgress(fraction);
        }
        request.onLog?.(line);
      },
    });
    if (engine.pid !== undefined) request.onSpawn?.(engine.pid);
    const stopped = new AbortController();
    const cleanups: Array<() => void> = [];
    const onAbort = () => stopped.abort(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    const what = engineName === "built-in" ? "the engine" : "llama-server";
    try {
      const exit = engine.exited.then((e) => ({ kind: "exit" as const, ...e }));
      // A plain timer rather than AbortSignal.timeout inside AbortSignal.any:
      // on Node 20 the composite can lose an unreferenced timeout signal to
      // GC, and the wait for /health would then never end.
      const deadline = new AbortController();
      const timer = setTimeout(() => deadline.abort(new Error("health deadline")), this.readyTimeoutMs);
      stopped.signal.addEventListener("abort", () => deadline.abort(stopped.signal.reason), { once: true });
      cleanups.push(() => clearTimeout(timer));
      const health = waitForHealth(request.socket, deadline.signal).then(
        () => ({ kind: "ready" as const }),
        (error: unknown) => ({ kind: "not-ready" as const, error }),
      );
      const first = await Promise.race([exit, health]);
      if (first.kind === "exit") {
        if (signal.aborted) return;
        throw engine.failure(what, first);
      }
      if (first.kind === "not-ready") {
        if (signal.aborted) return;
        throw new EngineFailedError(
          `${what} did not become healthy within ${Math.round(this.readyTimeoutMs / 1000)} s and was stopped`,
          engine.outputTail,
        );
      }
      request.onReady?.();
      const end = await Promise.race([exit, new Promise<{ kind: "abort" }>((resolve) => {
        if (stopped.signal.aborted) resolve({ kind: "abort" });
        else stopped.signal.addEventListener("abort", () => resolve({ kind: "abort" }), { once: true });
      })]);
      if (end.kind === "exit" && !signal.aborted) throw engine.failure(what, end);
    } finally {
      for (const cleanup of cleanups) cleanup();
      signal.removeEventListener("abort", onAbort);
      stopped.abort();
      await engine.stop(this.stopGraceMs);
      await rm(request.socket, { force: true });
      await rm(`${request.socket}.llama-server.sock`, { force: true });
    }
  }
}

/** True when a built-in engine description says it runs a native build of `gpu`'s variant (any variant for `auto`). */
function isNativeBuildFor(description: string, gpu: GpuChoice): boolean {
  const native = /native (\w+) build/.exec(description);
  if (!native) return false;
  const wanted = variantOf(gpu);
  return wanted === null || native[1] === wanted;
}
