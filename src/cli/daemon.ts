import { spawn } from "node:child_process";
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import type { CliConfig } from "../config.ts";
import { DaemonClient, daemonClient } from "./client.ts";
import { CliError, DaemonUnreachableError } from "./errors.ts";
import { isAlive, readPidFile } from "./pid-file.ts";

export interface EnsureDaemonOptions {
  config: CliConfig;
  binPath: string;
  note: (message: string) => void;
  /** How long a freshly started daemon may take to answer. */
  startTimeoutMs?: number;
  /** False (`mr --no-autostart`): fail as unreachable instead of starting a daemon. */
  isAutostartAllowed?: boolean;
  signal?: AbortSignal;
}

/**
 * Returns a client for a daemon that answers. When nothing answers at the
 * default address and MODEL_RUNNER_HOST is unset, starts `mr serve` in the
 * background (startDaemonInBackground) and waits for it; the daemon outlives
 * this process on purpose. With MODEL_RUNNER_HOST set, throws
 * DaemonUnreachableError naming the address.
 */
export async function ensureDaemon(opts: EnsureDaemonOptions): Promise<DaemonClient> {
  const { config } = opts;
  const client = daemonClient(config);
  const problem = await client.probe();
  if (problem === null) return client;
  if (config.hostSource !== null || opts.isAutostartAllowed === false) {
    throw new DaemonUnreachableError(config.baseUrl, config.hostSource, { cause: problem });
  }
  return startDaemonInBackground(opts);
}

/** `$MODEL_RUNNER_HOME/logs/daemon.log`: the output of a daemon `mr` started in the background. */
export const backgroundLogPath = (config: CliConfig) => join(config.logDir, "daemon.log");

/**
 * Starts `mr serve` in the background at the configured address (its own
 * session, output to logs/daemon.log) and resolves once it answers. Commands
 * that start one at the same time start one daemon: a lock file
 * ($MODEL_RUNNER_HOME/autostart.lock, created exclusively) lets the first
 * spawn it while the others wait for it to answer.
 */
export async function startDaemonInBackground(opts: EnsureDaemonOptions): Promise<DaemonClient> {
  const { config } = opts;
  const client = daemonClient(config);
  const timeoutMs = opts.startTimeoutMs ?? 30_000;
  const logPath = backgroundLogPath(config);
  mkdirSync(config.logDir, { recursive: true, mode: 0o700 });
  const lockPath = join(config.home, "autostart.lock");
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await client.ping(1000)) return client;
    if (!tryLock(lockPath)) {
      // Another command is starting it: wait for it to answer (or for its lock to go).
      removeStaleLock(lockPath, timeoutMs);
      await delay(100, undefined, opts.signal ? { signal: opts.signal } : {});
      continue;
    }
    try {
      if (await client.ping(1000)) return client; // it came up while we took the lock
      return await spawnAndWait(opts, client, logPath, deadline);
    } finally {
      rmSync(lockPath, { force: true });
    }
  }
  throw new CliError(`the model runner did not answer at ${config.baseUrl} within ${Math.round(timeoutMs / 1000)}s; see ${logPath}`);
}

async function spawnAndWait(opts: EnsureDaemonOptions, client: DaemonClient, logPath: string, deadline: number): Promise<DaemonClient> {
  const url = new URL(opts.config.baseUrl);
  const fd = openSync(logPath, "a", 0o600);
  let exitCode: number | null = null;
  try {
    const child = spawn(process.execPath, [opts.binPath, "serve", "--host", url.hostname.replace(/^\[|\]$/g, ""), "--port", url.port || "12434"], {
      detached: true,
      // The daemon must not hold our stdout (a data channel) or stdin.
      stdio: ["ignore", fd, fd],
    });
    child.once("exit", (code) => (exitCode = code ?? 1));
    child.unref();
    opts.note(`No model runner answered at ${opts.config.baseUrl}; started one in the background (pid ${child.pid}, logs: ${logPath}).`);
  } finally {
    closeSync(fd);
  }
  while (Date.now() < deadline) {
    if (exitCode !== null) {
      // It may have lost the port to a daemon started some other way; that one will do.
      if (await client.ping(1000)) return client;
      throw new CliError(`the model runner exited with code ${exitCode} while starting; see ${logPath}`);
    }
    if (await client.ping(1000)) return client;
    await delay(100, undefined, opts.signal ? { signal: opts.signal } : {});
  }
  throw new CliError(`the model runner did not answer at ${opts.config.baseUrl} in time; see ${logPath}`);
}

/** Creates the lock file holding our pid; false when it exists. */
function tryLock(path: string): boolean {
  let fd: number;
  try {
    fd = openSync(path, "wx");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw error;
  }
  writeSync(fd, `${process.pid}\n`);
  closeSync(fd);
  return true;
}

/** A lock whose holder died (or that is older than a start may take) is removed. */
function removeStaleLock(path: string, maxAgeMs: number): void {
  try {
    const pid = Number(readFileSync(path, "utf8").trim());
    const age = Date.now() - statSync(path).mtimeMs;
    if (!(pid > 1 && isAlive(pid)) || age > maxAgeMs + 5000) rmSync(path, { force: true });
  } catch {
    /* gone already */
  }
}

/**
 * Stops the daemon this home's pid file names (SIGTERM: it drains requests
 * and stops its engines) and resolves once it has exited. False when none is
 * running.
 */
export async function stopRecordedDaemon(config: CliConfig, signal?: AbortSignal, timeoutMs = 30_000): Promise<{ pid: number; url: string } | null> {
  const record = readPidFile(config.pidFile);
  if (!record) return null;
  process.kill(record.pid, "SIGTERM");
  const deadline = Date.now() + timeoutMs;
  while (isAlive(record.pid)) {
    if (Date.now() > deadline) throw new CliError(`the model runner (pid ${record.pid}) did not stop within ${timeoutMs / 1000}s`);
    await delay(100, undefined, signal ? { signal } : {});
  }
  return { pid: record.pid, url: record.url };
}
