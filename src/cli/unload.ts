import type { Command } from "./context.ts";
import { UsageError } from "./errors.ts";
import { resolveModel } from "./models.ts";

export const unloadCommand: Command = {
  name: "unload",
  aliases: ["stop"],
  summary: "Unload models from memory",
  usage: "mr unload [OPTIONS] [MODEL...]",
  description: "Stops the runners of each MODEL, or of every model with --all. Busy runners stop once their requests finish.",
  examples: ["mr unload ai/smollm2", "mr unload --all"],
  flags: {
    all: { type: "boolean", short: "a", description: "unload every model" },
    json: { type: "boolean", description: "print {unloaded_runners, deferred_runners}" },
  },
  async run(cli, { values, positionals }) {
    if (!values.all && positionals.length === 0) throw new UsageError("name a MODEL to unload, or pass --all", "unload");
    if (values.all && positionals.length > 0) throw new UsageError("--all takes no MODEL", "unload");
    const client = await cli.daemon();
    // Every name must be a model in the store: a typo is an error, not "No model was loaded".
    const models: string[] = [];
    for (const ref of positionals) models.push((await resolveModel(client, ref, cli.signal)).name);
    const body = await client.json<{ unloaded_runners: number; deferred_runners?: number }>("POST", "/engines/unload", {
      json: values.all ? { all: true } : { models },
      signal: cli.signal,
    });
    if (values.json) {
      cli.io.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
      return 0;
    }
    const n = body?.unloaded_runners ?? 0;
    const deferred = body?.deferred_runners ?? 0;
    if (n === 0 && deferred === 0) cli.io.stdout.write("No model was loaded.\n");
    else
      cli.io.stdout.write(
        `Unloaded ${n} model${n === 1 ? "" : "s"}${deferred ? `; ${deferred} will unload when their requests finish` : ""}.\n`,
      );
    return 0;
  },
};
