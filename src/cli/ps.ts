import type { Command } from "./context.ts";
import { formatBytes, json, shortId, table, timeAgo, timeUntil } from "./output.ts";

/** One runner as GET /engines/ps returns it; `mr ps --json` prints these unchanged. */
export interface RunnerStatus {
  backend_name: string;
  model_name: string;
  model_id?: string;
  mode: string;
  state?: "loading" | "ready" | "stopping" | "failed";
  in_flight?: number;
  waiting?: number;
  last_used?: number | null;
  keep_alive?: string | null;
  expires_at?: string | null;
  memory_bytes?: number | null;
  context_size?: number | null;
  parallel?: number | null;
  pid?: number | null;
  /** state "failed": the load's error, and when the next request tries again. */
  error?: string;
  retry_at?: string;
  /** The backend engine serving it (llama.cpp: built-in, llama-server). */
  engine?: string | null;
}

export const psCommand: Command = {
  name: "ps",
  summary: "List the models loaded in memory",
  usage: "mr ps [OPTIONS]",
  examples: ["mr ps", "mr ps --json"],
  maxArgs: 0,
  flags: { json: { type: "boolean", description: "print the daemon's runner list as JSON" } },
  async run(cli, { values }) {
    const client = await cli.daemon();
    const runners = (await client.json<RunnerStatus[]>("GET", "/engines/ps", { signal: cli.signal })) ?? [];
    if (values.json) {
      cli.io.stdout.write(json(runners));
      return 0;
    }
    cli.io.stdout.write(
      table(
        ["MODEL NAME", "ID", "BACKEND", "MODE", "STATE", "MEMORY", "CONTEXT", "REQUESTS", "LAST USED", "UNTIL", "ENGINE"],
        runners.map((r) => [
          r.model_name,
          r.model_id ? shortId(r.model_id) : "-",
          r.backend_name,
          r.mode,
          r.state ?? "-",
          r.memory_bytes ? formatBytes(r.memory_bytes) : "-",
          r.context_size ? String(r.context_size) : "-",
          `${r.in_flight ?? 0}${r.waiting ? ` (+${r.waiting} waiting)` : ""}`,
          r.in_flight ? "now" : timeAgo(r.last_used),
          r.state === "failed"
            ? `retry ${timeUntil(r.retry_at ?? null)}`
            : r.keep_alive === "-1" || r.keep_alive === "forever"
              ? "forever"
              : r.in_flight
                ? "-"
                : timeUntil(r.expires_at),
          r.engine ?? "-",
        ]),
      ),
    );
    // The cause of a failed load, one line each (the table has no room for it): the
    // summary and the engine's last line, which names the problem. --json has all of it.
    for (const r of runners.filter((x) => x.state === "failed" && x.error)) {
      const lines = r.error!.split("\n").filter((l) => l.trim() !== "" && !l.startsWith("---"));
      const cause = lines.length > 1 ? `${lines[0]}: ${lines.at(-1)}` : (lines[0] ?? "");
      cli.io.stdout.write(`${r.model_name}: failed to load: ${cause}\n`);
    }
    return 0;
  },
};
