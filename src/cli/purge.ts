import { createInterface } from "node:readline/promises";
import type { Command } from "./context.ts";
import { UsageError } from "./errors.ts";

export const purgeCommand: Command = {
  name: "purge",
  summary: "Remove every model from the store",
  usage: "mr purge [OPTIONS]",
  description: "Deletes the whole model store. On a terminal it asks first; elsewhere it needs -f.",
  examples: ["mr purge", "mr purge -f"],
  maxArgs: 0,
  flags: { force: { type: "boolean", short: "f", description: "do not ask" } },
  async run(cli, { values }) {
    if (!values.force) {
      if (!cli.io.stdin.isTTY) throw new UsageError("purge removes every model; pass -f to confirm when not on a terminal", "purge");
      const rl = createInterface({ input: cli.io.stdin, output: cli.io.stderr });
      const answer = await rl.question("This removes every model in the store. Continue? [y/N] ", { signal: cli.signal }).finally(() => rl.close());
      if (!/^y(es)?$/i.test(answer.trim())) {
        cli.note("Nothing removed.");
        return 1;
      }
    }
    const client = await cli.daemon();
    await client.request("DELETE", "/models/purge", { signal: cli.signal });
    cli.io.stdout.write("Removed every model.\n");
    return 0;
  },
};
