import { chmod, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { MR_BIN } from "./engine.ts";

/**
 * The real llama-server the suite runs (`.ci/run` builds one from the bundle and exports it as
 * MR_TEST_LLAMA_SERVER, a name no daemon reads, so it changes no other test's engine); null when none.
 */
export const LLAMA_SERVER_PATH = process.env.MR_TEST_LLAMA_SERVER || null;

/** One column of the engine matrix: the `llama.cpp` engine a test runs with, and the daemon environment that selects it. */
export interface EngineVariant {
  engine: "built-in" | "llama-server";
  /** Daemon environment choosing the engine (MODEL_RUNNER_LLAMA_CPP_ENGINE, MODEL_RUNNER_LLAMA_SERVER). */
  env: Record<string, string>;
  /** Why the variant is skipped, or false. */
  skip: string | false;
}

/**
 * The matrix every daemon inference test runs over: once with our built-in
 * engine, once with a real llama-server. The llama-server column is skipped,
 * with the reason, only when no binary is available.
 */
export const ENGINE_VARIANTS: readonly EngineVariant[] = [
  { engine: "built-in", env: { MODEL_RUNNER_LLAMA_CPP_ENGINE: "built-in" }, skip: false },
  {
    engine: "llama-server",
    env: LLAMA_SERVER_PATH ? { MODEL_RUNNER_LLAMA_CPP_ENGINE: "llama-server", MODEL_RUNNER_LLAMA_SERVER: LLAMA_SERVER_PATH } : {},
    skip: LLAMA_SERVER_PATH ? false : "no llama-server binary: set MR_TEST_LLAMA_SERVER (.ci/run builds one from the bundle)",
  },
];

/**
 * Test double for a llama-server binary, for the wrapper's own tests on a
 * machine without one: a script that takes llama-server's command line,
 * drops the flags only llama-server has (`--no-webui`, `--mmproj FILE`) and
 * runs our built-in engine with the rest (it accepts llama-server's flags).
 */
export async function llamaServerDouble(dir: string): Promise<string> {
  const script = join(dir, "llama-server-double");
  await writeFile(
    script,
    `#!/bin/sh
for a do
  shift
  case "$a" in
    --no-webui) ;;
    --mmproj) skip=1 ;;
    *) if [ -n "$skip" ]; then skip=; else set -- "$@" "$a"; fi ;;
  esac
done
exec '${process.execPath}' '${MR_BIN}' engine "$@"
`,
  );
  await chmod(script, 0o755);
  return script;
}
