import { fileURLToPath } from "node:url";
import { ConfigError, loadCliConfig, type CliConfig } from "../config.ts";
import { describeFlags, parseCommandArgs, suggest } from "./args.ts";
import { COMMANDS, RAW_COMMANDS, findCommand, registerRaw } from "./commands.ts";
import type { Cli, CliIo, Command } from "./context.ts";
import { ensureDaemon } from "./daemon.ts";
import { CancelledError, CliError, DaemonError, UsageError, isAbort } from "./errors.ts";
import { makeStyle } from "./output.ts";
import { withCurrentContext } from "./runner-contexts.ts";
import { flagNames as engineFlagNames } from "../engine/options.ts";

const BIN_PATH = fileURLToPath(new URL("../../bin/mr.js", import.meta.url));

registerRaw({
  name: "serve",
  summary: "Run the daemon in the foreground (--host, --port, --models-path, --api-key, --log-level, --json)",
  flags: ["host", "port", "models-path", "api-key", "log-level", "json"],
  // Loaded only when run: the daemon and the engine pull in fastify and node-llama-cpp,
  // which would slow every other command's start.
  run: async (argv) => (await import("./serve.ts")).serveCommand(argv),
});
registerRaw({
  name: "engine",
  summary: "Run the built-in inference engine for one GGUF model (llama-server's flags)",
  // Every spelling of the engine's flag table, so completion never drifts from the parser.
  flags: engineFlagNames(),
  run: async (argv, env) => (await import("./engine.ts")).engineCommand(argv, env),
});

registerRaw({
  name: "llama-server-wrapper",
  summary: "(internal) Run llama-server for the daemon: checks model names, dies with the daemon",
  flags: [],
  run: async (argv) => (await import("../inference/backends/llamacpp/llama-server-wrapper.ts")).runLlamaServerWrapper(argv),
});

function usage(): string {
  const visible = COMMANDS.filter((c) => !c.isHidden);
  const rows: [string, string][] = [
    ...RAW_COMMANDS.filter((r) => r.name === "serve").map((r) => [r.name, r.summary] as [string, string]),
    ...visible.map((c) => [[c.name, ...(c.aliases ?? [])].join(", "), c.summary] as [string, string]),
    ...RAW_COMMANDS.filter((r) => r.name !== "serve").map((r) => [r.name, r.summary] as [string, string]),
  ];
  const width = Math.max(...rows.map(([n]) => n.length));
  return `Usage: mr [--debug] [--no-autostart] COMMAND [ARGS]

Run AI models locally. Every command talks to the daemon at MODEL_RUNNER_HOST (default http://127.0.0.1:12434);
when nothing answers there and MODEL_RUNNER_HOST is unset, one is started in the background.

Commands:
${rows.map(([n, s]) => `  ${n.padEnd(width)}  ${s}`).join("\n")}

Examples:
  mr pull ai/smollm2
  mr run ai/smollm2 "Tell me a joke"
  mr ps

Run 'mr COMMAND --help' for more on a command. See docs/cli.md.`;
}

export function commandHelp(c: Command): string {
  let text = `Usage: ${c.usage}\n\n${c.summary}.\n`;
  if (c.aliases?.length) text += `Aliases: ${c.aliases.join(", ")}\n`;
  if (c.description) text += `\n${c.description}\n`;
  text += `\nOptions:\n${describeFlags(c.flags)}\n`;
  if (c.examples?.length) text += `\nExamples:\n${c.examples.map((e) => `  ${e}`).join("\n")}\n`;
  return text;
}

/** Every command name users may type, for "did you mean". */
const allNames = () => [...COMMANDS.flatMap((c) => [c.name, ...(c.aliases ?? [])]), ...RAW_COMMANDS.map((r) => r.name), "help"];

/**
 * Runs `mr ARGV` and returns the exit code: 0 ok, 1 failure, 2 usage error,
 * 130 after Ctrl-C. Errors are printed as one line (more with --debug).
 */
export async function main(argv: readonly string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<number> {
  const args = [...argv];
  let debug = false;
  let isAutostartAllowed = true;
  // Global flags before the command: --debug, and --no-autostart (shell completion: a TAB must never start a daemon).
  for (;;) {
    if (args[0] === "--debug") debug = true;
    else if (args[0] === "--no-autostart") isAutostartAllowed = false;
    else break;
    args.shift();
  }
  const [name, ...rest] = args;
  let config: CliConfig | null = null;
  let configError: ConfigError | null = null;
  try {
    config = loadCliConfig(env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    configError = error;
  }
  const errStyle = makeStyle(io.stderr.isTTY === true && config?.isColorDisabled === false);
  const fail = (message: string) => io.stderr.write(`${errStyle.red("Error:")} ${message}\n`);
  if (name === undefined || name === "--help" || name === "-h") {
    (name === undefined ? io.stderr : io.stdout).write(`${usage()}\n`);
    return name === undefined ? 2 : 0;
  }
  if (name === "--version" || name === "-v") return main(["version"], env, io);
  if (name === "help") {
    const target = rest[0] ? findCommand(rest[0]) : undefined;
    io.stdout.write(target ? commandHelp(target) : `${usage()}\n`);
    return 0;
  }
  const raw = RAW_COMMANDS.find((r) => r.name === name);
  if (raw) return raw.run(rest, env);
  const command = findCommand(name);
  if (!command) {
    const hint = suggest(name, allNames());
    fail(`unknown command "${name}"${hint ? `; did you mean "${hint}"?` : ""} (see 'mr --help')`);
    return 2;
  }
  if (!config) {
    fail(configError!.message);
    return 2;
  }
  try {
    // `mr context` itself works whatever state the context in use is in (it is how one mends it).
    if (command.name !== "context") config = await withCurrentContext(config);
  } catch (error) {
    if (!(error instanceof CliError)) throw error;
    fail(error.message);
    return 1;
  }
  const controller = new AbortController();
  let interruptHandler: (() => boolean) | null = null;
  const onSigint = () => {
    if (interruptHandler?.()) return;
    if (controller.signal.aborted) process.exit(130); // a second Ctrl-C does not wait for cleanup
    controller.abort(new CancelledError());
  };
  process.on("SIGINT", onSigint);
  const cli: Cli = {
    config,
    io,
    style: makeStyle(io.stdout.isTTY === true && !config.isColorDisabled),
    errStyle,
    debug,
    signal: controller.signal,
    binPath: BIN_PATH,
    note: (message) => io.stderr.write(`${message}\n`),
    onInterrupt(handler) {
      interruptHandler = handler;
      return () => {
        if (interruptHandler === handler) interruptHandler = null;
      };
    },
    daemon: () => ensureDaemon({ config, binPath: BIN_PATH, isAutostartAllowed, note: (m) => io.stderr.write(`${m}\n`) }),
  };
  try {
    const parsed = parseCommandArgs(command.name, command.flags, rest);
    if (parsed.values.debug) cli.debug = debug = true;
    if (parsed.values.help) {
      io.stdout.write(commandHelp(command));
      return 0;
    }
    if (command.maxArgs !== undefined && parsed.positionals.length > command.maxArgs) {
      const extra = parsed.positionals.slice(command.maxArgs).join(" ");
      throw new UsageError(
        command.maxArgs === 0 ? `${command.name} takes no arguments, got "${extra}"` : `${command.name} takes at most ${command.maxArgs}, got "${extra}" too`,
        command.name,
      );
    }
    return await command.run(cli, parsed);
  } catch (error) {
    if (controller.signal.aborted && (isAbort(error) || error === controller.signal.reason || !(error instanceof DaemonError))) {
      io.stderr.write("\n");
      return 130;
    }
    if (error instanceof UsageError) {
      fail(`${error.message}${error.command ? ` (see 'mr ${error.command} --help')` : ""}`);
      return 2;
    }
    fail(error instanceof Error ? error.message.split("\n")[0]! : String(error));
    if (debug) io.stderr.write(`${debugDetail(error)}\n`);
    return exitCodeOf(error);
  } finally {
    process.off("SIGINT", onSigint);
  }
}

/**
 * 2 for what the user typed (a value the daemon rejected as invalid, 400/422,
 * is a bad value too), 1 for failures.
 */
function exitCodeOf(error: unknown): number {
  if (error instanceof DaemonError && (error.status === 400 || error.status === 422)) return 2;
  return 1;
}

function debugDetail(error: unknown): string {
  const parts: string[] = [];
  let e: unknown = error;
  while (e) {
    parts.push(e instanceof Error ? (e.stack ?? e.message) : String(e));
    e = e instanceof Error ? e.cause : undefined;
    if (e) parts.push("Caused by:");
  }
  return parts.join("\n");
}

// The entry point (bin/mr.js imports this module); the environment is read only by loadCliConfig.
if (!RAW_COMMANDS.some((r) => r.name === process.argv[2])) {
  // A reader that went away (`mr run m "hi" | head -c 100`) ends the command quietly with SIGPIPE's status (141), as
  // it ends Docker's CLI; the daemon sees the connection close and stops generating.
  process.stdout.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code !== "EPIPE") throw error;
    process.exit(141);
  });
}
const code = await main(process.argv.slice(2), process.env, { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr });
if (RAW_COMMANDS.some((r) => r.name === process.argv[2])) {
  process.exitCode = code;
} else {
  // Flush what is queued on pipes, then exit even if a keep-alive socket or stdin is still open.
  await new Promise<void>((resolve) => process.stdout.write("", () => resolve()));
  await new Promise<void>((resolve) => process.stderr.write("", () => resolve()));
  process.exit(code);
}
