import { daemonClient } from "./client.ts";
import type { Command } from "./context.ts";
import { backgroundLogPath } from "./daemon.ts";
import { DaemonUnreachableError } from "./errors.ts";
import { formatDuration, json, table } from "./output.ts";
import { readPidFile } from "./pid-file.ts";

/** `mr status --json`. `pid`, `uptime_seconds` and `log_file` are null unless the daemon is the one this home's pid file names. */
export interface StatusJson {
  running: boolean;
  endpoint: string;
  version: string | null;
  pid: number | null;
  uptime_seconds: number | null;
  log_file: string | null;
  engines: Record<string, string>;
}

export const statusCommand: Command = {
  name: "status",
  summary: "Say whether the model runner is running: address, pid, uptime, logs, engines",
  usage: "mr status [OPTIONS]",
  description:
    "Exit code 0 when the daemon answers, 1 when it does not. Never starts a daemon. The pid, uptime and log file\n" +
    "come from $MODEL_RUNNER_HOME/daemon.pid, so they show for a daemon started on this machine with this home.",
  examples: ["mr status", "mr status --json"],
  maxArgs: 0,
  flags: { json: { type: "boolean", description: "print {running, endpoint, version, pid, uptime_seconds, log_file, engines}" } },
  async run(cli, { values }) {
    const { config } = cli;
    // Status reports; it must not start the daemon it is asked about.
    const client = daemonClient(config);
    const record = readPidFile(config.pidFile);
    const ours = record !== null && sameAddress(record.url, config.baseUrl) ? record : null;
    if (!(await client.ping())) {
      if (values.json) {
        const body: StatusJson = { running: false, endpoint: config.baseUrl, version: null, pid: null, uptime_seconds: null, log_file: null, engines: {} };
        cli.io.stdout.write(json(body));
        return 1;
      }
      throw new DaemonUnreachableError(config.baseUrl, config.hostSource);
    }
    const [version, engines] = await Promise.all([
      client.json<{ version: string }>("GET", "/version", { signal: cli.signal }),
      client.json<Record<string, string>>("GET", "/engines/status", { signal: cli.signal }),
    ]);
    const uptime = ours && Date.parse(ours.started_at) ? Math.max(0, (Date.now() - Date.parse(ours.started_at)) / 1000) : null;
    const body: StatusJson = {
      running: true,
      endpoint: config.baseUrl,
      version: version?.version ?? null,
      pid: ours?.pid ?? null,
      uptime_seconds: uptime === null ? null : Math.round(uptime),
      log_file: ours?.log_file || null,
      engines: engines ?? {},
    };
    if (values.json) {
      cli.io.stdout.write(json(body));
      return 0;
    }
    const rows: [string, string][] = [
      ["Address", config.baseUrl + (config.hostSource !== null ? ` (${config.hostSource})` : "")],
      ["Version", body.version ?? "unknown"],
    ];
    if (ours) {
      rows.push(["PID", String(ours.pid)], ["Uptime", uptime === null ? "-" : formatDuration(uptime)], ["Logs", ours.log_file]);
      const background = backgroundLogPath(config);
      if (background !== ours.log_file) rows.push(["Output", `${background} (when started in the background)`]);
    }
    cli.io.stdout.write(`Model Runner is running.\n${table(["", ""], rows).split("\n").slice(1).join("\n")}\n`);
    cli.io.stdout.write(table(["ENGINE", "STATUS"], Object.entries(body.engines).map(([k, v]) => [k, String(v)])));
    return 0;
  },
};

/** `http://localhost:12434` and `http://127.0.0.1:12434` are different strings for one address; compare port and loopback-ness. */
function sameAddress(a: string, b: string): boolean {
  try {
    const [x, y] = [new URL(a), new URL(b)];
    const loop = (h: string) => ["127.0.0.1", "localhost", "[::1]", "0.0.0.0", "[::]"].includes(h);
    return x.port === y.port && (x.hostname === y.hostname || (loop(x.hostname) && loop(y.hostname)));
  } catch {
    return false;
  }
}
