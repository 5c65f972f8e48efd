import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

export const MR_BIN = fileURLToPath(new URL("../../bin/mr.js", import.meta.url));

export interface StartedEngine {
  child: ChildProcess;
  /** `http://127.0.0.1:PORT` for TCP engines. */
  baseUrl: string;
  output: () => string;
  stop: () => Promise<void>;
}

/**
 * Starts `mr engine` with `args` on 127.0.0.1 and a random port (unless args
 * name a socket), resolving once it logs its address and `/health` is 200.
 */
export async function startEngine(args: readonly string[], timeoutMs = 30_000): Promise<StartedEngine> {
  const tcp = !args.some((a) => a.endsWith(".sock"));
  const child = spawn(process.execPath, [MR_BIN, "engine", ...args, ...(tcp ? ["--port", "0"] : [])], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout!.on("data", (d) => (output += d));
  const lines = createInterface({ input: child.stderr! });
  const exited = once(child, "exit");
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
    }
  };
  const baseUrl = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`engine did not start:\n${output}`)), timeoutMs);
    lines.on("line", (line) => {
      output += `${line}\n`;
      const m = /listening on (\S+)/.exec(line);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`engine exited with ${code}:\n${output}`));
    });
  }).catch(async (error) => {
    await stop();
    throw error;
  });
  if (tcp) {
    for (;;) {
      const res = await fetch(`${baseUrl}/health`).catch(() => null);
      if (res?.status === 200) break;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  return { child, baseUrl, output: () => output, stop };
}
