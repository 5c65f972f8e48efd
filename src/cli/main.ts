
const USAGE = `Usage: mr COMMAND [ARGS]

Commands:
  serve     run the daemon in the foreground
  engine    run the built-in inference engine for one GGUF model

Run 'mr COMMAND --help' for more on a command.`;

// Commands load lazily: `mr engine` must not pay for importing the daemon, nor a
// quick command for the engine's native bindings.
const commands: Record<string, (argv: readonly string[]) => Promise<number>> = {
  serve: async (argv) => (await import("./serve.ts")).serveCommand(argv),
  engine: async (argv) => (await import("./engine.ts")).engineCommand(argv),
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
