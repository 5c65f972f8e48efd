import { execFile } from "node:child_process";
import { access, constants, rm } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { messageOf } from "../../../errors.ts";
import type { Backend, RunRequest } from "../../backend.ts";
import { EngineFailedError, EngineProcess, waitForHealth } from "../../engine-process.ts";
import { buildLlamaCppArgs } from "./args.ts";

export const LLAMACPP_NAME = "llama.cpp";

const execFileAsync = promisify(execFile);

/** Where our own `mr` entry point lives, to start the built-in engine from. */
const MR_BIN = fileURLToPath(new URL("../../../../bin/mr.js", import.meta.url));

export interface LlamaCppBackendOptions {
  /**
   * An external llama-server binary to run instead of the built-in engine
   * (`MODEL_RUNNER_LLAMA_SERVER`). It receives the same arguments.
   */
  llamaServerPath?: string | null | undefined;
  /** How long an engine may take to answer `/health` with 200. Default 5 minutes. */
  readyTimeoutMs?: number | undefined;
  /** SIGTERM → SIGKILL grace period when stopping. Default 5 s. */
  stopGraceMs?: number | undefined;
  /** Environment for engine processes. Default: this process's. */
  env?: NodeJS.ProcessEnv | undefined;
}

type State =
  | { kind: "not-installed" }
  | { kind: "installing" }
  | { kind: "installed"; description: string }
  | { kind: "error"; message: string };

/**
 * The `llama.cpp` backend: our built-in engine (node-llama-cpp), or an
 * external `llama-server` binary when one is configured. Each `run` is one
 * engine process serving one model on a Unix socket.
 */
export class LlamaCppBackend implements Backend {
  readonly name = LLAMACPP_NAME;
  readonly usesExternalModelManagement = false;
  private state: State = { kind: "not-installed" };
  private installing: Promise<void> | null = null;
  private readonly readyTimeoutMs: number;
  private readonly stopGraceMs: number;

  constructor(private readonly options: LlamaCppBackendOptions = {}) {
    this.readyTimeoutMs = options.readyTimeoutMs ?? 5 * 60_000;
    this.stopGraceMs = options.stopGraceMs ?? 5000;
  }

  /** The command and leading arguments that start one engine. */
  private get command(): { command: string; prefix: string[]; kind: string } {
    const external = this.options.llamaServerPath;
    if (external) return { command: external, prefix: [], kind: `external llama-server (${external})` };
    return { command: process.execPath, prefix: [MR_BIN, "engine"], kind: "built-in" };
  }

  /**
   * Checks that the engine can start by asking it for `--version`, which
   * makes the built-in engine load its native binding and report the
   * variant (CPU, CUDA, Vulkan, Metal). Runs once; later calls share it.
   */
  install(signal: AbortSignal): Promise<void> {
    if (this.state.kind === "installed") return Promise.resolve();
    this.installing ??= this.probe(signal).finally(() => {
      this.installing = null;
    });
    return this.installing;
  }

  private async probe(signal: AbortSignal): Promise<void> {
    this.state = { kind: "installing" };
    const { command, prefix, kind } = this.command;
    try {
      if (this.options.llamaServerPath) await access(command, constants.X_OK);
      const { stdout, stderr } = await execFileAsync(command, [...prefix, "--version"], {
        signal,
        timeout: 60_000,
        env: this.options.env ?? process.env,
      });
      const version = `${stdout}\n${stderr}`.split("\n").map((l) => l.trim()).find((l) => l.startsWith("version:"));
      const details = version ? version.slice("version:".length).trim() : "version unknown";
      this.state = { kind: "installed", description: `llama.cpp ${kind}${details ? ` (${details})` : ""}` };
    } catch (error) {
      if (signal.aborted) {
        this.state = { kind: "not-installed" };
        throw signal.reason;
      }
      const message = (error as NodeJS.ErrnoException).code === "ENOENT" ? `binary not found: ${command}` : messageOf(error).split("\n")[0]!;
      this.state = { kind: "error", message };
      throw new EngineFailedError(`llama.cpp backend is not usable: ${message}`, "", { cause: error });
    }
  }

  status(): string {
    switch (this.state.kind) {
      case "not-installed":
        return this.options.llamaServerPath ? `Not Installed: ${this.options.llamaServerPath} not checked yet` : "Not Installed: not checked yet";
      case "installing":
        return "Installing: checking the engine";
      case "installed":
        return `Running: ${this.state.description}`;
      case "error":
        return `Error: ${this.state.message}`;
    }
  }

  async run(request: RunRequest, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return;
    const { command, prefix } = this.command;
    const engine = new EngineProcess({
      command,
      args: [...prefix, ...buildLlamaCppArgs(request)],
      env: this.options.env,
      // Our engine watches the pipe; an external llama-server has no such option (a daemon restart reaps it).
      parentPipe: !this.options.llamaServerPath,
      onLog: request.onLog,
    });
    if (engine.pid !== undefined) request.onSpawn?.(engine.pid);
    const stopped = new AbortController();
    const cleanups: Array<() => void> = [];
    const onAbort = () => stopped.abort(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
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
        throw engine.failure("the engine", first);
      }
      if (first.kind === "not-ready") {
        if (signal.aborted) return;
        throw new EngineFailedError(
          `the engine did not become healthy within ${Math.round(this.readyTimeoutMs / 1000)} s and was stopped`,
          engine.outputTail,
        );
      }
      request.onReady?.();
      const end = await Promise.race([exit, new Promise<{ kind: "abort" }>((resolve) => {
        if (stopped.signal.aborted) resolve({ kind: "abort" });
        else stopped.signal.addEventListener("abort", () => resolve({ kind: "abort" }), { once: true });
      })]);
      if (end.kind === "exit" && !signal.aborted) throw engine.failure("the engine", end);
    } finally {
      for (const cleanup of cleanups) cleanup();
      signal.removeEventListener("abort", onAbort);
      stopped.abort();
      await engine.stop(this.stopGraceMs);
      await rm(request.socket, { force: true });
    }
  }
}
