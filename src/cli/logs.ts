import type { Command } from "./context.ts";
import { humanLogStream } from "./log-format.ts";

export const logsCommand: Command = {
  name: "logs",
  summary: "Print the daemon's logs",
  usage: "mr logs [OPTIONS]",
  description: "Lines read as: time, level, component (daemon, scheduler, engine), message, details. --json prints the\ndaemon's own JSON lines unchanged (one object a line, one `component` key).",
  examples: ["mr logs", "mr logs -f", "mr logs --no-engines", "mr logs --json | jq -r .msg"],
  maxArgs: 0,
  flags: {
    follow: { type: "boolean", short: "f", description: "keep printing new lines until Ctrl-C" },
    "no-engines": { type: "boolean", description: "leave out the engines' lines (daemon lines only)" },
    json: { type: "boolean", description: "print the JSON lines as the daemon writes them" },
  },
  async run(cli, { values }) {
    const client = await cli.daemon();
    const res = await client.request("GET", "/logs", {
      query: { follow: values.follow ? "true" : undefined, "no-engines": values["no-engines"] ? "true" : undefined },
      signal: cli.signal,
    });
    if (!res.body) return 0;
    const out = values.json ? cli.io.stdout : humanLogStream(cli.io.stdout, cli.style);
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) out.write(chunk);
      if (out !== cli.io.stdout) await new Promise<void>((resolve) => out.end(resolve));
    } catch (error) {
      if (cli.signal.aborted) throw cli.signal.reason;
      throw error;
    }
    return 0;
  },
};
