import type { Command } from "./context.ts";
import { UsageError } from "./errors.ts";
import { encodeRef, type ApiModel } from "./models.ts";
import { json } from "./output.ts";

export const inspectCommand: Command = {
  name: "inspect",
  summary: "Print a model's details as JSON",
  usage: "mr inspect [OPTIONS] MODEL",
  description: "Prints the daemon's record of MODEL ({id, tags, created, config}). Partial names resolve (smollm2).",
  examples: ["mr inspect ai/smollm2", "mr inspect --remote ai/smollm2"],
  flags: {
    remote: { type: "boolean", short: "r", description: "ask the registry instead of the local store" },
    openai: { type: "boolean", description: "print the OpenAI /v1/models entry" },
  },
  async run(cli, { values, positionals }) {
    if (positionals.length !== 1) throw new UsageError("inspect takes exactly one MODEL", "inspect");
    const client = await cli.daemon();
    const ref = encodeRef(positionals[0]!);
    const body = values.openai
      ? await client.json<unknown>("GET", `/engines/v1/models/${ref}`, { signal: cli.signal })
      : await client.json<ApiModel>("GET", `/models/${ref}`, { query: { remote: values.remote ? "true" : undefined }, signal: cli.signal });
    cli.io.stdout.write(json(body));
    return 0;
  },
};
