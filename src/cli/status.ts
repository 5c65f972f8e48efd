import { DaemonClient } from "./client.ts";
import type { Command } from "./context.ts";
import { DaemonUnreachableError } from "./errors.ts";
import { json, table } from "./output.ts";

export const statusCommand: Command = {
  name: "status",
  summary: "Say whether the model runner is running, and its engines' state",
  usage: "mr status [OPTIONS]",
  description: "Exit code 0 when the daemon answers, 1 when it does not. Never starts a daemon.",
  examples: ["mr status", "mr status --json"],
  flags: { json: { type: "boolean", description: "print {running, endpoint, version, engines}" } },
  async run(cli, { values }) {
    // Status reports; it must not start the daemon it is asked about.
    const client = new DaemonClient(cli.config.baseUrl, cli.config.apiKey);
    if (!(await client.ping())) {
      if (values.json) {
        cli.io.stdout.write(json({ running: false, endpoint: cli.config.baseUrl, version: null, engines: {} }));
        return 1;
      }
      throw new DaemonUnreachableError(cli.config.baseUrl);
    }
    const [version, engines] = await Promise.all([
      client.json<{ version: string }>("GET", "/version", { signal: cli.signal }),
      client.json<Record<string, string>>("GET", "/engines/status", { signal: cli.signal }),
    ]);
    if (values.json) {
      cli.io.stdout.write(json({ running: true, endpoint: cli.config.baseUrl, version: version?.version ?? null, engines: engines ?? {} }));
      return 0;
    }
    cli.io.stdout.write(`Model Runner is running at ${cli.config.baseUrl} (version ${version?.version ?? "unknown"})\n\n`);
    cli.io.stdout.write(table(["ENGINE", "STATUS"], Object.entries(engines ?? {}).map(([k, v]) => [k, String(v)])));
    return 0;
  },
};
