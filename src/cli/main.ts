import { engineCommand } from "./engine.ts";
import { serveCommand } from "./serve.ts";

const USAGE = `Usage: mr COMMAND [ARGS]

Commands:
  serve     run the daemon in the foreground
  engine    run the built-in inference engine for one GGUF model

Run 'mr COMMAND --help' for more on a command.`;

const commands: Record<string, (argv: readonly string[]) => Promise<number>> = {
  serve: serveCommand,
  engine: engineCommand,
};

async function main(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(`${USAGE}\n`);
    return name === undefined ? 2 : 0;
  }
  const command = commands[name];
  if (!command) {
    process.stderr.write(`mr: unknown command "${name}". Run 'mr --help' for the list.\n`);
    return 2;
  }
  return command(rest);
}

process.exitCode = await main(process.argv.slice(2));
