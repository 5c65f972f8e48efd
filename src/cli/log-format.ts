import { Writable } from "node:stream";
import type { Style } from "./output.ts";

const LEVELS: Record<number, string> = { 10: "TRACE", 20: "DEBUG", 30: "INFO", 40: "WARN", 50: "ERROR", 60: "FATAL" };
/** Keys every line has, shown in the fixed columns rather than as key=value. */
const FIXED = new Set(["level", "time", "component", "msg", "pid", "hostname"]);

/**
 * One of the daemon's JSON log lines (pino's shape: level, time, component,
 * msg, more fields) as a line for people:
 * `2026-12-01 21:04:05.123 INFO  daemon     model runner listening url=…`.
 * A line that is not such JSON comes back unchanged.
 */
export function formatLogLine(line: string, style: Style): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  if (!entry || typeof entry !== "object" || typeof entry.level !== "number") return line;
  const time = typeof entry.time === "number" ? new Date(entry.time).toISOString().replace("T", " ").replace("Z", "") : "-";
  const levelName = LEVELS[entry.level] ?? String(entry.level);
  const paint = entry.level >= 50 ? style.red : entry.level >= 40 ? style.yellow : entry.level <= 20 ? style.dim : (s: string) => s;
  const extras = Object.entries(entry)
    .filter(([k]) => !FIXED.has(k))
    .map(([k, v]) => `${k}=${render(v)}`);
  const message = typeof entry.msg === "string" ? entry.msg : "";
  return [style.dim(time), paint(levelName.padEnd(5)), String(entry.component ?? "-").padEnd(9), message, ...extras].join(" ").trimEnd();
}

function render(value: unknown): string {
  if (value && typeof value === "object" && "message" in value && typeof (value as { message: unknown }).message === "string") {
    return JSON.stringify((value as { message: string }).message); // an error: its message, not its stack
  }
  if (typeof value === "string") return /[\s"=]/.test(value) ? JSON.stringify(value) : value;
  return JSON.stringify(value);
}

/** A stream that takes JSON log lines and writes them to `out` formatted for people. */
export function humanLogStream(out: NodeJS.WritableStream, style: Style): Writable {
  let partial = "";
  return new Writable({
    write(chunk: Buffer | string, _encoding, done) {
      const lines = (partial + chunk.toString()).split("\n");
      partial = lines.pop()!;
      const text = lines.map((l) => `${formatLogLine(l, style)}\n`).join("");
      if (text) out.write(text);
      done();
    },
    final(done) {
      if (partial) out.write(`${formatLogLine(partial, style)}\n`);
      done();
    },
  });
}
