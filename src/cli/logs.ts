import type { Command } from "./context.ts";

export const logsCommand: Command = {
  name: "logs",
  summary: "Print the daemon's logs",
  usage: "mr logs [OPTIONS]",
  examples: ["mr logs", "mr logs -f"],
  flags: {
    follow: { type: "boolean", short: "f", description: "keep printing new lines until Ctrl-C" },
    "no-engines": { type: "boolean", description: "leave out the engines' lines (daemon lines only)" },
  },
  async run(cli, { values }) {
    const client = await cli.daemon();
    const res = await client.request("GET", "/logs", { query: { follow: values.follow ? "true" : undefined, "no-engines": values["no-engines"] ? "true" : undefined }, signal: cli.signal });
    if (!res.body) return 0;
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) cli.io.stdout.write(chunk);
    } catch (error) {
      if (cli.signal.aborted) throw cli.signal.reason;
      throw error;
    }
    return 0;
  },
};
