import { spawn, type ChildProcess } from "node:child_process";
import { request } from "node:http";
import { createInterface } from "node:readline";
import { ENGINE_PARENT_PIPE_ENV } from "../config.ts";
import { RunnerError } from "../errors.ts";
import { exitAfterOutput, signalGroup } from "../util/process.ts";
import { sleep } from "../util/signals.ts";

/** How much of the engine's output a failure carries. */
const TAIL_BYTES = 2048;

/** The engine process ended (or never got going); `message` carries the cause. */
export class EngineFailedError extends RunnerError {
  readonly code = "engine_failed";
  readonly status = 500;
  constructor(
    message: string,
    readonly outputTail: string,
    options?: ErrorOptions,
  ) {
    super(outputTail ? `${message}\n--- engine output (last lines) ---\n${outputTail}` : message, options);
  }
}

/**
 * Turns well-known engine failures into advice. The patterns match llama.cpp's
 * messages (ggml-cuda.cu "cudaMalloc failed", llama-model-loader "failed to
 * load model"), as Docker Model Runner's llamacpp/errors.go does.
 */
export function explainEngineOutput(tail: string): string | null {
  if (/cudaMalloc failed|out of memory|failed to allocate .*buffer/i.test(tail)) {
    return "not enough memory to load the model: try a smaller context size or a smaller quantization";
  }
  if (/failed to load model|error loading model|not a valid GGUF|invalid magic/i.test(tail)) {
    return "the engine could not load the model file: it may be corrupt or of an unsupported format";
  }
  return null;
}

export interface EngineProcessOptions {
  command: string;
  args: readonly string[];
  env?: NodeJS.ProcessEnv | undefined;
  /**
   * Give the engine a pipe as stdin that only this process holds, and set
   * ENGINE_PARENT_PIPE_ENV: our built-in engine then exits when this process
   * dies, however it died. An external llama-server ignores both.
   */
  parentPipe?: boolean | undefined;
  onLog?: ((line: string) => void) | undefined;
}

/**
 * One engine process in its own process group. The group is what gets
 * signalled, so helpers the engine forks die with it.
 */
export class EngineProcess {
  readonly child: ChildProcess;
  /** Settles when the process has exited (never rejects). */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private tail = "";

  constructor(options: EngineProcessOptions) {
    // Output is piped: the engine must never read the daemon's terminal nor
    // write into its stdout, which is a data channel. stdin is either closed
    // or the parent pipe, which we never write to and never close: the kernel
    // closes it when this process ends, and the engine reads EOF.
    const env = options.env ?? process.env;
    this.child = spawn(options.command, options.args, {
      detached: true,
      stdio: [options.parentPipe ? "pipe" : "ignore", "pipe", "pipe"],
      env: options.parentPipe ? { ...env, [ENGINE_PARENT_PIPE_ENV]: "stdin" } : env,
    });
    // An engine that exited makes the pipe broken; nothing is written, but never crash on it.
    this.child.stdin?.on("error", () => undefined);
    this.child.once("error", (error) => this.remember(`${error.message}\n`));
    // An engine is one process with what it forked: when the leader is gone, so is the rest of its group
    // (llama-server when its wrapper dies), and the output pipes they held close.
    this.child.once("exit", () => {
      if (this.child.pid !== undefined) signalGroup(this.child.pid, "SIGKILL");
    });
    // After the exit, once its output is read: a failure carries the engine's last lines.
    this.exited = exitAfterOutput(this.child);
    for (const stream of [this.child.stdout!, this.child.stderr!]) {
      const lines = createInterface({ input: stream, crlfDelay: Infinity });
      lines.on("line", (line) => {
        this.remember(`${line}\n`);
        options.onLog?.(line);
      });
    }
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get isRunning(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null && this.child.pid !== undefined;
  }

  /** The last few KiB the engine printed. */
  get outputTail(): string {
    return this.tail.trimEnd();
  }

  /**
   * Stops the whole group: SIGTERM, up to `graceMs` for a clean exit, then
   * SIGKILL. Resolves once the leader has exited. Safe to call repeatedly.
   */
  async stop(graceMs = 5000): Promise<void> {
    const pid = this.child.pid;
    if (pid === undefined) return;
    if (this.isRunning) {
      signalGroup(pid, "SIGTERM");
      let timer: NodeJS.Timeout | undefined;
      const grace = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, graceMs);
        timer.unref();
      });
      await Promise.race([this.exited, grace]);
      clearTimeout(timer);
    }
    // The group can outlive its leader (forked helpers), so sweep it either way.
    signalGroup(pid, "SIGKILL");
    await this.exited;
  }

  /** The failure to report when the process ended on its own. */
  failure(prefix: string, exit: { code: number | null; signal: NodeJS.Signals | null }): EngineFailedError {
    const how = exit.signal ? `was killed by ${exit.signal}` : exit.code === null ? "could not be started" : `exited with code ${exit.code}`;
    const advice = explainEngineOutput(this.tail);
    return new EngineFailedError(`${prefix} ${how}${advice ? `: ${advice}` : ""}`, this.outputTail);
  }

  private remember(text: string): void {
    this.tail = (this.tail + text).slice(-TAIL_BYTES);
  }
}

/** GET `path` over a Unix socket; resolves with the status code, rejects on connection errors. */
export function getStatusOverSocket(socketPath: string, path: string, signal: AbortSignal): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method: "GET", signal, timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("timeout", () => req.destroy(new Error("health check timed out")));
    req.on("error", reject);
    req.end();
  });
}

/**
 * Polls `/health` on the socket until it answers 200. Rejects with
 * `signal.reason` on abort. The interval starts small so a fast engine is
 * seen as ready within a few milliseconds, and grows to spare a slow one.
 */
export async function waitForHealth(socketPath: string, signal: AbortSignal): Promise<void> {
  let interval = 5;
  for (;;) {
    signal.throwIfAborted();
    try {
      if ((await getStatusOverSocket(socketPath, "/health", signal)) === 200) return;
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      void error; // not listening yet
    }
    await sleep(interval, signal);
    interval = Math.min(interval * 2, 250);
  }
}
