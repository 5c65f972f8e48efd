import type { Command } from "./context.ts";
import { UsageError } from "./errors.ts";
import { benchCommand } from "./bench.ts";
import { completionScript, SHELLS } from "./completion.ts";
import { configureCommand } from "./configure.ts";
import { contextCommand } from "./context-command.ts";
import { createCommand } from "./create.ts";
import { dfCommand } from "./df.ts";
import { inspectCommand } from "./inspect.ts";
import { installRunnerCommand, reinstallRunnerCommand, uninstallRunnerCommand } from "./install-runner.ts";
import { launchCommand } from "./launch.ts";
import { listCommand } from "./list.ts";
import { logsCommand } from "./logs.ts";
import { packageCommand } from "./package.ts";
import { psCommand } from "./ps.ts";
import { pullCommand } from "./pull.ts";
import { purgeCommand } from "./purge.ts";
import { pushCommand } from "./push.ts";
import { requestsCommand } from "./requests.ts";
import { rmCommand } from "./rm.ts";
import { restartRunnerCommand, startRunnerCommand, stopRunnerCommand } from "./runner.ts";
import { runCommand } from "./run.ts";
import { searchCommand } from "./search.ts";
import { showCommand } from "./show.ts";
import { statusCommand } from "./status.ts";
import { tagCommand } from "./tag.ts";
import { unloadCommand } from "./unload.ts";
import { versionCommand } from "./version.ts";

/**
 * Commands that take their argv whole (they parse their own flags): the
 * daemon and the engine. They are listed in help and completion like the rest.
 */
export interface RawCommand {
  name: string;
  summary: string;
  flags: readonly string[];
  /** `env`: the environment main() was given (read through src/config.ts only). */
  run(argv: readonly string[], env: NodeJS.ProcessEnv): Promise<number>;
}

export const completionCommand: Command = {
  name: "completion",
  summary: "Print a shell completion script",
  usage: "mr completion bash|zsh|fish",
  examples: ["source <(mr completion bash)", "mr completion zsh > \"${fpath[1]}/_mr\"", "mr completion fish | source"],
  subcommands: SHELLS,
  flags: {},
  async run(cli, { positionals }) {
    const shell = positionals[0];
    if (positionals.length !== 1 || !(SHELLS as readonly string[]).includes(shell!)) {
      throw new UsageError(`completion takes one of ${SHELLS.join(", ")}`, "completion");
    }
    cli.io.stdout.write(completionScript(shell as (typeof SHELLS)[number], [...COMMANDS, ...rawAsCommands()]));
    return 0;
  },
};

/** In the order `mr --help` lists them. */
export const COMMANDS: readonly Command[] = [
  runCommand,
  pullCommand,
  pushCommand,
  listCommand,
  psCommand,
  inspectCommand,
  showCommand,
  tagCommand,
  rmCommand,
  packageCommand,
  createCommand,
  configureCommand,
  unloadCommand,
  benchCommand,
  dfCommand,
  purgeCommand,
  statusCommand,
  startRunnerCommand,
  stopRunnerCommand,
  restartRunnerCommand,
  installRunnerCommand,
  uninstallRunnerCommand,
  reinstallRunnerCommand,
  logsCommand,
  requestsCommand,
  searchCommand,
  launchCommand,
  contextCommand,
  versionCommand,
  completionCommand,
];

export const RAW_COMMANDS: RawCommand[] = [];

/** Registers a raw command (main.ts does this for `serve` and `engine`). */
export function registerRaw(command: RawCommand): void {
  if (!RAW_COMMANDS.some((c) => c.name === command.name)) RAW_COMMANDS.push(command);
}

function rawAsCommands(): Command[] {
  return RAW_COMMANDS.map((r) => ({
    name: r.name,
    summary: r.summary,
    usage: `mr ${r.name}`,
    flags: Object.fromEntries(r.flags.map((f) => [f, { type: "string" as const }])),
    run: async () => 0,
  }));
}

export function findCommand(name: string): Command | undefined {
  return COMMANDS.find((c) => c.name === name || c.aliases?.includes(name));
}
