import { parseEngineArgs, runEngine, EngineUsageError, checkSamplingDefaults } from "../engine/index.ts";
import { flagHelpLines } from "../engine/options.ts";
import { messageOf } from "../errors.ts";
import { engineVersionLine } from "../engine/version.ts";
import { watchParentPipe } from "../engine/parent-watch.ts";
import { engineWatchesParentPipe } from "../config.ts";

/** After the daemon is gone, how long a clean stop may take before the engine exits anyway (a model load cannot be cut short). */
const ORPHAN_EXIT_MS = 300;

/** `mr engine --help`: the option lines come from the engine's flag table (src/engine/options.ts FLAGS). */
export const ENGINE_USAGE = `Usage: mr engine -m FILE.gguf [--host PATH.sock | --host ADDR --port N] [options]

Serves one GGUF model with llama-server's API. Flags are llama-server's; each one
takes effect, or the engine refuses to start with a line naming it (docs/engine.md):
${flagHelpLines().join("\n")}

Example:
  mr engine -m model.gguf --port 8080 -c 8192 -np 4`;

/** `mr engine ...`: runs the built-in engine in the foreground until SIGINT/SIGTERM. */
export async function engineCommand(argv: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(`${ENGINE_USAGE}\n`);
    return 0;
  }
  if (argv.includes("--version")) {
    process.stdout.write(`${await engineVersionLine()}\n`);
    return 0;
  }
  let options;
  try {
    options = parseEngineArgs(argv);
    checkSamplingDefaults(options.samplingDefaults);
  } catch (error) {
    if (error instanceof EngineUsageError) {
      process.stderr.write(`mr engine: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
  // Only when the daemon spawned us: run by hand, stdin is the user's terminal.
  const unwatch = engineWatchesParentPipe(env)
    ? watchParentPipe(process.stdin, () => {
        process.stderr.write("engine: the daemon that started this engine is gone; exiting\n");
        controller.abort();
        setTimeout(() => process.exit(0), ORPHAN_EXIT_MS).unref();
      })
    : () => undefined;
  try {
    await runEngine(options, controller.signal);
    return 0;
  } catch (error) {
    process.stderr.write(`mr engine: ${messageOf(error)}\n`);
    return 1;
  } finally {
    unwatch();
  }
}
