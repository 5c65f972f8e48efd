import { ConfigError, loadDaemonConfig } from "../config.ts";
import { messageOf } from "../errors.ts";
import { startDaemon } from "../main.ts";

export const SERVE_USAGE = `Usage: mr serve [--host ADDR] [--port N] [--models-path DIR] [--api-key KEY] [--log-level LEVEL]

Runs the Model Runner daemon in the foreground: the model store, the scheduler
and the OpenAI, Ollama and Anthropic compatible APIs, on 127.0.0.1:12434 by default.

Options:
  --host ADDR          address to listen on (default 127.0.0.1; MODEL_RUNNER_HOST)
  --port N             port (default 12434; 0 picks a free one)
  --models-path DIR    model store (default $MODEL_RUNNER_HOME/models)
  --api-key KEY        require 'Authorization: Bearer KEY' (MODEL_RUNNER_API_KEY)
  --log-level LEVEL    error, warn, info or debug (default info)

Examples:
  mr serve
  MODEL_RUNNER_MEMORY=8GiB mr serve --port 8080`;

/** `mr serve`: the daemon until SIGINT/SIGTERM, then a graceful stop. */
export async function serveCommand(argv: readonly string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(`${SERVE_USAGE}\n`);
    return 0;
  }
  let config;
  try {
    config = loadDaemonConfig(argv, process.env);
  } catch (error) {
    process.stderr.write(`mr serve: ${messageOf(error)}\n`);
    return error instanceof ConfigError || (error as { code?: string }).code?.startsWith("ERR_PARSE_ARGS") ? 2 : 1;
  }
  let daemon;
  try {
    daemon = await startDaemon(config);
  } catch (error) {
    process.stderr.write(`mr serve: cannot start: ${messageOf(error)}\n`);
    return 1;
  }
  // The one line scripts and tests wait for; logs go to stderr as JSON.
  process.stdout.write(`Model Runner listening on ${daemon.url}\n`);
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once("SIGINT", () => resolve("SIGINT"));
    process.once("SIGTERM", () => resolve("SIGTERM"));
  });
  daemon.log.info({ signal }, "stopping");
  await daemon.close();
  return 0;
}
