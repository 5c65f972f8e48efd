import { join } from "node:path";
import { ConfigError, loadDaemonConfig } from "../config.ts";
import { messageOf } from "../errors.ts";
import { startDaemon } from "../main.ts";
import { parseCommandArgs, type FlagSpecs } from "./args.ts";
import { UsageError } from "./errors.ts";
import { humanLogStream } from "./log-format.ts";
import { makeStyle } from "./output.ts";
import { removePidFile, writePidFile } from "./pid-file.ts";

/** `mr serve`'s flags; loadDaemonConfig parses them (all but --json) again into the daemon's config. */
export const SERVE_FLAGS: FlagSpecs = {
  host: { type: "string" },
  port: { type: "string" },
  "models-path": { type: "string", valueName: "DIR" },
  "api-key": { type: "string" },
  "log-level": { type: "string" },
  json: { type: "boolean" },
};

export const SERVE_USAGE = `Usage: mr serve [--host ADDR] [--port N] [--models-path DIR] [--api-key KEY] [--log-level LEVEL]

Runs the Model Runner daemon in the foreground: the model store, the scheduler
and the OpenAI, Ollama and Anthropic compatible APIs, on 127.0.0.1:12434 by default.

Options:
  --host ADDR          address to listen on (default 127.0.0.1; MODEL_RUNNER_HOST)
  --port N             port (default 12434; 0 picks a free one)
  --models-path DIR    model store (default $MODEL_RUNNER_HOME/models)
  --api-key KEY        require 'Authorization: Bearer KEY' (MODEL_RUNNER_API_KEY)
  --log-level LEVEL    error, warn, info or debug (default info)
  --json               log JSON lines on stderr even on a terminal (elsewhere they always are)

Examples:
  mr serve
  MODEL_RUNNER_MEMORY=8GiB mr serve --port 8080`;

/** `mr serve`: the daemon until SIGINT/SIGTERM, then a graceful stop. */
export async function serveCommand(argv: readonly string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(`${SERVE_USAGE}\n`);
    return 0;
  }
  const style = makeStyle(process.stderr.isTTY === true && process.env.NO_COLOR === undefined);
  // The same one-line errors as every other command: "Error: ...", a suggestion, exit 2 for usage.
  const fail = (message: string, code: number) => {
    process.stderr.write(`${style.red("Error:")} ${message}\n`);
    return code;
  };
  let config;
  let isJson = false;
  try {
    const parsed = parseCommandArgs("serve", SERVE_FLAGS, argv);
    if (parsed.positionals.length > 0) throw new UsageError(`serve takes no arguments, got "${parsed.positionals.join(" ")}"`, "serve");
    isJson = parsed.values.json === true;
    config = loadDaemonConfig(
      argv.filter((a) => a !== "--json"),
      process.env,
    );
  } catch (error) {
    if (error instanceof UsageError) return fail(`${error.message} (see 'mr serve --help')`, 2);
    const isUsage = error instanceof ConfigError || (error as { code?: string }).code?.startsWith("ERR_PARSE_ARGS");
    return fail(`${messageOf(error)}${isUsage ? " (see 'mr serve --help')" : ""}`, isUsage ? 2 : 1);
  }
  // On a terminal, log lines for people; elsewhere (and with --json) the JSON lines the log file has.
  const logStream = !isJson && process.stderr.isTTY === true ? humanLogStream(process.stderr, style) : undefined;
  let daemon;
  try {
    daemon = await startDaemon(config, logStream ? { logStream } : {});
  } catch (error) {
    return fail(`cannot start the model runner: ${messageOf(error)}`, 1);
  }
  writePidFile(config.pidFile, {
    pid: process.pid,
    url: daemon.url,
    started_at: new Date().toISOString(),
    log_file: join(config.logDir, "model-runner.log"),
  });
  // The one line scripts and tests wait for.
  process.stdout.write(`Model Runner listening on ${daemon.url}\n`);
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once("SIGINT", () => resolve("SIGINT"));
    process.once("SIGTERM", () => resolve("SIGTERM"));
  });
  daemon.log.info({ signal }, "stopping");
  try {
    await daemon.close();
  } finally {
    removePidFile(config.pidFile, process.pid);
  }
  return 0;
}
