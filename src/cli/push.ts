import type { Command } from "./context.ts";
import { UsageError } from "./errors.ts";
import { encodeRef } from "./models.ts";
import { followProgress, progressMode } from "./transfer.ts";

export const pushCommand: Command = {
  name: "push",
  summary: "Push a model to a registry",
  usage: "mr push [OPTIONS] MODEL",
  description: "Uploads MODEL from the daemon's store to the registry its name points at (credentials: docker login).",
  examples: ["mr push myregistry.example.com/team/model:v1"],
  flags: { quiet: { type: "boolean", short: "q", description: "print no progress" } },
  async run(cli, { values, positionals }) {
    if (positionals.length !== 1) throw new UsageError("push takes exactly one MODEL", "push");
    const client = await cli.daemon();
    const res = await client.request("POST", `/models/${encodeRef(positionals[0]!)}/push`, {
      json: {},
      headers: { accept: "application/json" },
      signal: cli.signal,
    });
    const message = await followProgress(cli, res, { mode: progressMode(cli, values.quiet === true), verb: "Uploading" });
    if (values.quiet !== true) cli.io.stdout.write(`${message || `Pushed ${positionals[0]}`}\n`);
    return 0;
  },
};
