import { spawn } from "node:child_process";
import { mkdirSync, openSync, closeSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import type { CliConfig } from "../config.ts";
import { DaemonClient } from "./client.ts";
import { CliError, DaemonUnreachableError } from "./errors.ts";

export interface EnsureDaemonOptions {
  config: CliConfig;
  binPath: string;
  note: (message: string) => void;
  /** False (`mr --no-autostart`): fail as unreachable instead of starting a daemon. */
  isAutostartAllowed?: boolean;
  /** How long a freshly started daemon may take to answer. */
  startTimeoutMs?: number;
}

/**
 * Returns a client for a daemon that answers. When nothing answers at the
 * default address and MODEL_RUNNER_HOST is unset, starts `mr serve` in the
 * background (its own session, output to $MODEL_RUNNER_HOME/logs/daemon.log)
 * and waits for it; the daemon outlives this process on purpose. With
 * MODEL_RUNNER_HOST set, throws DaemonUnreachableError naming the address.
 */
export async function ensureDaemon(opts: EnsureDaemonOptions): Promise<DaemonClient> {
  const { config } = opts;
  const client = new DaemonClient(config.baseUrl, config.apiKey);
  const problem = await client.probe();
  if (problem === null) return client;
  if (config.isHostExplicit || opts.isAutostartAllowed === false) throw new DaemonUnreachableError(config.baseUrl, { cause: problem });
  const url = new URL(config.baseUrl);
  mkdirSync(config.logDir, { recursive: true });
  const logPath = join(config.logDir, "daemon.log");
  const fd = openSync(logPath, "a");
  let exitCode: number | null = null;
  try {
    const child = spawn(process.execPath, [opts.binPath, "serve", "--host", url.hostname, "--port", url.port || "12434"], {
      detached: true,
      // The daemon must not hold our stdout (a data channel) or stdin.
      stdio: ["ignore", fd, fd],
    });
    child.once("exit", (code) => (exitCode = code ?? 1));
    child.unref();
    opts.note(`No model runner answered at ${config.baseUrl}; started one in the background (pid ${child.pid}, logs: ${logPath}).`);
  } finally {
    closeSync(fd);
  }
  const deadline = Date.now() + (opts.startTimeoutMs ?? 30_000);
  while (Date.now() < deadline) {
    if (exitCode !== null) throw new CliError(`the model runner exited with code ${exitCode} while starting; see ${logPath}`);
    if (await client.ping(1000)) return client;
    await delay(100);
  }
  throw new CliError(`the model runner did not answer at ${config.baseUrl} within ${Math.round((opts.startTimeoutMs ?? 30_000) / 1000)}s; see ${logPath}`);
}
