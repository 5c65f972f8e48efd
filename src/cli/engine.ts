import { parseEngineArgs, runEngine, EngineUsageError } from "../engine/index.ts";
import { messageOf } from "../errors.ts";
import { engineVersionLine } from "../engine/version.ts";

export const ENGINE_USAGE = `Usage: mr engine -m FILE.gguf [--host PATH.sock | --host ADDR --port N] [options]

Serves one GGUF model with an OpenAI-compatible API. Flags are llama-server's:
  -m, --model FILE         the GGUF file to serve (required)
  --host PATH.sock | ADDR  a Unix socket path (ending in .sock) or an address (default 127.0.0.1)
  --port N                 TCP port (default 8080)
  -c, --ctx-size N         total context across slots (default 4096; 0 = the model's trained length)
  -np, --parallel N        parallel slots decoded together (default 1)
  --embeddings             serve /v1/embeddings instead of completions
  -a, --alias NAME         the model id clients must use (default: the file name)
  -t, --threads N          CPU threads (default: cores - 1)
  -ngl, --gpu-layers N     layers to offload to a GPU (default auto; 0 = CPU only)
  -b, --batch-size N       prompt batch size
  --chat-template-file F   a Jinja chat template instead of the model's own
  --api-key KEY            require this key as Bearer token or X-Api-Key
  --metrics                serve Prometheus metrics on /metrics
  --slots, --no-slots      serve /slots (default on)

Example:
  mr engine -m model.gguf --port 8080 -c 8192 -np 4`;

/** `mr engine ...`: runs the built-in engine in the foreground until SIGINT/SIGTERM. */
export async function engineCommand(argv: readonly string[]): Promise<number> {
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
  try {
    await runEngine(options, controller.signal);
    return 0;
  } catch (error) {
    process.stderr.write(`mr engine: ${messageOf(error)}\n`);
    return 1;
  }
}
