import { readFileSync } from "node:fs";
import type { Command } from "./context.ts";
import { daemonClient } from "./client.ts";
import { json } from "./output.ts";

const CLI_VERSION = (JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }).version;

export const versionCommand: Command = {
  name: "version",
  summary: "Print the CLI's and the daemon's versions",
  usage: "mr version [OPTIONS]",
  examples: ["mr version", "mr version --json"],
  maxArgs: 0,
  flags: { json: { type: "boolean", description: "print {client, server} (server null when no daemon answers)" } },
  async run(cli, { values }) {
    // Only reports; a missing daemon is not started for this.
    const client = daemonClient(cli.config);
    const server = (await client.ping())
      ? ((await client.json<{ version?: string }>("GET", "/version", { signal: cli.signal }))?.version ?? null)
      : null;
    if (values.json) cli.io.stdout.write(json({ client: CLI_VERSION, server }));
    else cli.io.stdout.write(`Client: ${CLI_VERSION}\nServer: ${server ?? `not running at ${cli.config.baseUrl}`}\n`);
    return 0;
  },
};
