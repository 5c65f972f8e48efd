import type { Command } from "./context.ts";
import { CliError, DaemonError, UsageError } from "./errors.ts";
import { encodeRef, resolveModel } from "./models.ts";

export const rmCommand: Command = {
  name: "rm",
  aliases: ["remove"],
  summary: "Remove models from the store",
  usage: "mr rm [OPTIONS] MODEL [MODEL...]",
  description:
    "Removes each MODEL's tag; the model's files go with its last tag. A model ID with several tags needs -f.\n" +
    "Every MODEL is tried; the exit code is 1 if any failed.",
  examples: ["mr rm ai/smollm2", "mr rm -f 0123456789ab"],
  flags: { force: { type: "boolean", short: "f", description: "remove even when that drops several tags" } },
  async run(cli, { values, positionals }) {
    if (positionals.length === 0) throw new UsageError("rm needs at least one MODEL", "rm");
    const client = await cli.daemon();
    let failed = 0;
    for (const ref of positionals) {
      try {
        const { name: model } = await resolveModel(client, ref, cli.signal);
        const result = await client.json<Array<{ Untagged?: string; Deleted?: string }>>("DELETE", `/models/${encodeRef(model)}`, {
          query: { force: values.force ? "true" : undefined },
          signal: cli.signal,
        });
        for (const r of result ?? []) {
          if (r.Untagged) cli.io.stdout.write(`Untagged: ${r.Untagged}\n`);
          if (r.Deleted) cli.io.stdout.write(`Deleted: ${r.Deleted}\n`);
        }
      } catch (caught) {
        let error = caught;
        if (error instanceof DaemonError && error.status === 409 && !values.force && /several tags/.test(error.message)) {
          // The daemon says "use force"; on the command line that is -f.
          error = new CliError(`${error.message.replace(/\s*or use force\.?$/, "")} or pass -f to remove them all (mr rm -f ${ref})`);
        }
        if (cli.signal.aborted || positionals.length === 1) throw error;
        cli.note(`Error: ${ref}: ${(error as Error).message}`);
        failed++;
      }
    }
    return failed > 0 ? 1 : 0;
  },
};
