import type { Command } from "./context.ts";
import { formatBytes, json, table } from "./output.ts";

export const dfCommand: Command = {
  name: "df",
  summary: "Show the disk space models and engines use",
  usage: "mr df [OPTIONS]",
  examples: ["mr df", "mr df --json"],
  maxArgs: 0,
  flags: {
    json: { type: "boolean", description: "print {models_disk_usage, default_backend_disk_usage, partial_downloads_disk_usage} in bytes" },
  },
  async run(cli, { values }) {
    const client = await cli.daemon();
    const body = await client.json<{ models_disk_usage: number; default_backend_disk_usage: number; partial_downloads_disk_usage?: number }>("GET", "/engines/df", {
      signal: cli.signal,
    });
    if (values.json) cli.io.stdout.write(json(body));
    else
      cli.io.stdout.write(
        table(
          ["TYPE", "SIZE"],
          [
            ["Models", formatBytes(body.models_disk_usage)],
            ["Inference engine", formatBytes(body.default_backend_disk_usage)],
            // Interrupted pulls (kept to resume); `mr rm MODEL` or `mr purge` removes them.
            ...(body.partial_downloads_disk_usage ? [["Partial downloads", formatBytes(body.partial_downloads_disk_usage)]] : []),
          ],
        ),
      );
    return 0;
  },
};
