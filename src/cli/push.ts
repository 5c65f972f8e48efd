import type { Command } from "./context.ts";
import { UsageError } from "./errors.ts";
import { encodeRef, isModelId, resolveModel } from "./models.ts";
import { followProgress, progressMode } from "./transfer.ts";

export const pushCommand: Command = {
  name: "push",
  summary: "Push a model to a registry",
  usage: "mr push [OPTIONS] MODEL",
  description: "Uploads MODEL from the daemon's store to the registry its name points at (credentials: docker login).",
  examples: ["mr push myregistry.example.com/team/model:v1"],
  flags: {
    quiet: { type: "boolean", short: "q", description: "print no progress" },
    insecure: { type: "boolean", description: "speak plain HTTP to the registry (as ollama push --insecure)" },
  },
  async run(cli, { values, positionals }) {
    if (positionals.length !== 1) throw new UsageError("push takes exactly one MODEL", "push");
    const client = await cli.daemon();
    const resolved = await resolveModel(client, positionals[0]!, cli.signal);
    // A push goes to the registry a name points at: an ID names none.
    if (isModelId(resolved.name)) throw new UsageError(`push needs a MODEL name (a tag), not an ID: tag it first (mr tag ${positionals[0]} REGISTRY/NAME:TAG)`, "push");
    const name = resolved.name;
    const res = await client.request("POST", `/models/${encodeRef(name)}/push`, {
      json: values.insecure === true ? { insecure: true } : {},
      headers: { accept: "application/json" },
      signal: cli.signal,
    });
    const message = await followProgress(cli, res, { mode: progressMode(cli, values.quiet === true), verb: "Uploading" });
    if (values.quiet !== true) cli.io.stdout.write(`${message || `Pushed ${name}`}\n`);
    return 0;
  },
};
