import { spawn } from "node:child_process";
import { access, constants, type FileHandle } from "node:fs/promises";
import { delimiter, join } from "node:path";
import { RunnerError } from "../../../errors.ts";
import { exitAfterOutput } from "../../../util/process.ts";

/**
 * What the two native builds of the llama.cpp backend share (llama-server
 * from the bundle, and node-llama-cpp's binding for the built-in engine):
 * the tool check that turns a missing compiler into one line, and running a
 * build step with its output in a log and its `[ 42%]` lines as progress.
 */

/** A tool the build needs is missing: one line saying what to install. */
export class MissingBuildToolError extends RunnerError {
  readonly code = "build_tool_missing";
  readonly status = 500;
  /** `what` is what was to be built; `otherwise` what the user can do instead of installing the tools. */
  constructor(
    readonly missing: readonly string[],
    what: string,
    otherwise: string,
  ) {
    super(
      `Cannot build ${what}: ${missing.join(", ")} not found on PATH. Install ${missing.join(" and ")} ` +
        `(Debian/Ubuntu: apt-get install cmake g++ make git)${otherwise ? `, or ${otherwise}` : ""}.`,
    );
  }
}

/** An install or build of an engine failed; the message says where its log is. */
export class EngineInstallError extends RunnerError {
  readonly code = "install_failed";
  readonly status = 500;
}

/** The tools a build needs, each as alternatives found on PATH. */
const BUILD_TOOLS: ReadonlyArray<{ name: string; anyOf: readonly string[] }> = [
  { name: "git", anyOf: ["git"] },
  { name: "cmake", anyOf: ["cmake"] },
  { name: "a C++ compiler (g++)", anyOf: ["c++", "g++", "clang++"] },
  { name: "make", anyOf: ["make", "ninja"] },
];

export const isExecutable = (path: string) => access(path, constants.X_OK).then(() => true, () => false);

async function onPath(name: string, env: NodeJS.ProcessEnv): Promise<boolean> {
  for (const dir of (env.PATH ?? "").split(delimiter).filter(Boolean)) {
    if (await isExecutable(join(dir, name))) return true;
  }
  return false;
}

/** Throws MissingBuildToolError naming every missing tool. */
export async function checkBuildTools(env: NodeJS.ProcessEnv, what = "llama-server", otherwise = "set MODEL_RUNNER_LLAMA_SERVER to a llama-server binary"): Promise<void> {
  const missing: string[] = [];
  for (const tool of BUILD_TOOLS) {
    let found = false;
    for (const name of tool.anyOf) if (!found && (await onPath(name, env))) found = true;
    if (!found) missing.push(tool.name);
  }
  if (missing.length > 0) throw new MissingBuildToolError(missing, what, otherwise);
}

/** One command of a build. */
export interface BuildStep {
  what: string;
  command: string;
  args: string[];
}

/**
 * Runs one step with its output appended to `log`; the build tool's
 * progress lines (`[ 42%]`, `[117/277]`) become `${label}: 42%` progress. Rejects with the step, its exit and the
 * last lines of its output.
 */
export function runLogged(
  step: BuildStep,
  env: NodeJS.ProcessEnv,
  log: FileHandle,
  signal: AbortSignal,
  progress: (line: string) => void,
  label = "building llama-server",
): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(step.command, step.args, { env, stdio: ["ignore", "pipe", "pipe"], signal });
    let last = -1;
    let tail = "";
    const onData = (chunk: Buffer) => {
      void log.write(chunk);
      const text = chunk.toString("utf8");
      tail = (tail + text).slice(-2000);
      // Make prints `[ 42%]`; Ninja (node-llama-cpp's build uses it when found) prints `[117/277]`.
      for (const m of text.matchAll(/^\[\s*(?:(\d+)%|(\d+)\/(\d+))\]/gm)) {
        const pct = m[1] !== undefined ? Number(m[1]) : Math.floor((Number(m[2]) * 100) / Math.max(1, Number(m[3])));
        if (pct !== last) {
          last = pct;
          progress(`${label}: ${pct}%`);
        }
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.once("error", reject);
    // After the exit, once its output is read, so that a failure quotes the build's last lines.
    void exitAfterOutput(child).then(({ code, signal: sig }) => {
      if (code === 0) resolve();
      else reject(new Error(`${step.what} (${step.command}) ${sig ? `was killed by ${sig}` : `exited with code ${code}`}: ${tail.trim().split("\n").slice(-3).join(" | ")}`));
    });
  });
}
