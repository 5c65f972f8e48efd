import type { Cli, Command } from "./context.ts";
import { backgroundLogPath, startDaemonInBackground, stopRecordedDaemon } from "./daemon.ts";
import { CliError } from "./errors.ts";
import { readPidFile } from "./pid-file.ts";

// DMR's names for the lifecycle of the daemon: `docker model start-runner` and friends.
// They act on the daemon `mr` starts for this MODEL_RUNNER_HOME (its pid file), never a remote one.

async function start(cli: Cli): Promise<number> {
  if (cli.config.hostSource !== null) {
    throw new CliError(`the address is ${cli.config.baseUrl} (${cli.config.hostSource}): start-runner starts a local daemon only; run 'mr serve' there`);
  }
  const client = await startDaemonInBackground({ config: cli.config, binPath: cli.binPath, note: () => {}, signal: cli.signal });
  const record = readPidFile(cli.config.pidFile);
  cli.io.stdout.write(
    `Model Runner is running at ${client.baseUrl}${record ? ` (pid ${record.pid}; logs: ${backgroundLogPath(cli.config)})` : ""}.\n`,
  );
  return 0;
}

async function stop(cli: Cli, isQuietWhenStopped: boolean): Promise<number> {
  const stopped = await stopRecordedDaemon(cli.config, cli.signal);
  if (stopped) cli.io.stdout.write(`Stopped the model runner at ${stopped.url} (pid ${stopped.pid}).\n`);
  else if (!isQuietWhenStopped) {
    throw new CliError(`no model runner started by mr is running for ${cli.config.home} (no live pid in ${cli.config.pidFile})`);
  }
  return 0;
}

export const startRunnerCommand: Command = {
  name: "start-runner",
  summary: "Start the model runner in the background (if it is not running)",
  usage: "mr start-runner",
  description: `Starts 'mr serve' in the background at the default address, as any command does when nothing answers;\noutput goes to $MODEL_RUNNER_HOME/logs/daemon.log, its pid to $MODEL_RUNNER_HOME/daemon.pid.`,
  maxArgs: 0,
  flags: {},
  run: (cli) => start(cli),
};

export const stopRunnerCommand: Command = {
  name: "stop-runner",
  summary: "Stop the model runner mr started (and its engines)",
  usage: "mr stop-runner",
  description: "Stops the daemon named by $MODEL_RUNNER_HOME/daemon.pid: it finishes requests in flight, stops its engines, then exits.",
  maxArgs: 0,
  flags: {},
  run: (cli) => stop(cli, false),
};

export const restartRunnerCommand: Command = {
  name: "restart-runner",
  summary: "Stop the model runner mr started, then start it again",
  usage: "mr restart-runner",
  maxArgs: 0,
  flags: {},
  async run(cli) {
    if (cli.config.hostSource !== null) return start(cli); // says why it cannot
    await stop(cli, true);
    return start(cli);
  },
};
