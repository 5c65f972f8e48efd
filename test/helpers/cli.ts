import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { MR_BIN } from "./engine.ts";

export interface MrResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface MrOptions {
  env?: Record<string, string | undefined>;
  /** Written to stdin, which is then closed; omitted: stdin is an empty pipe. */
  input?: string;
  timeoutMs?: number;
}

/** The environment tests give `mr`: none of the developer's own settings leak in. */
export function cleanEnv(extra: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(MODEL_RUNNER_|HF_|DOCKER_|NO_COLOR)/.test(k)) continue;
    env[k] = v;
  }
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) env[k] = v;
  return env;
}

/** Runs the real `mr` binary to completion (SIGKILL after timeoutMs). */
export async function runMr(args: readonly string[], opts: MrOptions = {}): Promise<MrResult> {
  const child = spawnMr(args, opts);
  child.stdin!.end(opts.input ?? "");
  return collect(child, opts.timeoutMs ?? 60_000);
}

export function spawnMr(args: readonly string[], opts: MrOptions = {}): ChildProcess {
  return spawn(process.execPath, [MR_BIN, ...args], { env: cleanEnv(opts.env ?? {}), stdio: ["pipe", "pipe", "pipe"] });
}

export async function collect(child: ChildProcess, timeoutMs: number): Promise<MrResult> {
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  const [code, signal] = (await once(child, "close")) as [number | null, NodeJS.Signals | null];
  clearTimeout(timer);
  return { code, signal, stdout, stderr };
}

export interface StartedDaemon {
  url: string;
  /** host:port, for MODEL_RUNNER_HOST. */
  host: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

/** Starts `mr serve --port 0` with `home`, resolving once it prints its address. */
export async function startDaemon(home: string, env: Record<string, string> = {}): Promise<StartedDaemon> {
  const child = spawn(process.execPath, [MR_BIN, "serve", "--host", "127.0.0.1", "--port", "0", "--log-level", "warn"], {
    env: cleanEnv({ MODEL_RUNNER_HOME: home, ...env }),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stderr!.on("data", (d: Buffer) => (output = (output + d.toString()).slice(-4000)));
  const exited = once(child, "exit");
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    }
  };
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`mr serve did not start:\n${output}`)), 30_000);
      child.stdout!.on("data", (d: Buffer) => {
        output += d.toString();
        const m = /listening on (http:\/\/\S+)/.exec(output);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      });
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`mr serve exited with ${code}:\n${output}`));
      });
    });
    return { url, host: url.replace(/^http:\/\//, ""), child, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/**
 * Tests that use the default address 127.0.0.1:12434 (auto-start only
 * happens there) take turns across test files, which run in parallel: an
 * exclusive lock file holding the owner's pid, released when the test ends
 * (or taken over when its owner died).
 */
export async function holdDefaultAddress(t: { after: (fn: () => void) => void }, timeoutMs = 240_000): Promise<void> {
  const { openSync, closeSync, writeSync, readFileSync, rmSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const { isAlive } = await import("../../src/util/process.ts");
  const path = `${tmpdir()}/mr-test-default-address.lock`;
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      const fd = openSync(path, "wx");
      writeSync(fd, String(process.pid));
      closeSync(fd);
      t.after(() => rmSync(path, { force: true }));
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    }
    const owner = Number(readFileSync(path, "utf8") || "0");
    if (owner > 0 && !isAlive(owner)) rmSync(path, { force: true });
    else if (Date.now() > until) throw new Error(`another test has held ${path} for ${timeoutMs / 1000} s`);
    else await new Promise((r) => setTimeout(r, 200));
  }
}

/** The address `mr` auto-starts a daemon at when MODEL_RUNNER_HOST is not set. */
export const DEFAULT_URL = "http://127.0.0.1:12434";

/** Whether something (a developer's own daemon) already answers at the default address. */
export async function isDefaultAddressAnswering(): Promise<boolean> {
  try {
    await (await fetch(DEFAULT_URL, { signal: AbortSignal.timeout(1000) })).arrayBuffer();
    return true;
  } catch {
    return false;
  }
}
