/**
 * Output helpers: aligned tables for people, colour only on a terminal and
 * never with NO_COLOR, byte and time formatting. `--json` outputs are plain
 * JSON.stringify of documented shapes (docs/cli.md).
 */
export interface Style {
  bold(s: string): string;
  dim(s: string): string;
  red(s: string): string;
  green(s: string): string;
  yellow(s: string): string;
  cyan(s: string): string;
}

const sgr = (open: number, close: number) => (s: string) => `\x1b[${open}m${s}\x1b[${close}m`;

export function makeStyle(isColor: boolean): Style {
  if (!isColor) {
    const id = (s: string) => s;
    return { bold: id, dim: id, red: id, green: id, yellow: id, cyan: id };
  }
  return { bold: sgr(1, 22), dim: sgr(2, 22), red: sgr(31, 39), green: sgr(32, 39), yellow: sgr(33, 39), cyan: sgr(36, 39) };
}

const ANSI = /\x1b\[[0-9;?]*[A-Za-z]/g;
export const visibleLength = (s: string) => s.replace(ANSI, "").length;

/** Columns padded to the widest cell, separated by three spaces (docker's look). */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(visibleLength(h), ...rows.map((r) => visibleLength(r[i] ?? ""))));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c + " ".repeat(widths[i]! - visibleLength(c))))
      .join("   ")
      .trimEnd();
  return [line(headers), ...rows.map(line)].join("\n") + "\n";
}

export { formatBytes } from "../format-bytes.ts";

/** A size as the daemon's model config writes it ("256.35MiB", "1.2 GB") → bytes; null when it is not one. */
export function parseSize(text: string): number | null {
  const m = /^\s*([\d.]+)\s*(B|KiB|MiB|GiB|TiB|kB|KB|MB|GB|TB)\s*$/.exec(text);
  if (!m) return null;
  const factor: Record<string, number> = {
    B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3, TiB: 1024 ** 4, kB: 1e3, KB: 1e3, MB: 1e6, GB: 1e9, TB: 1e12,
  };
  return Number(m[1]) * factor[m[2]!]!;
}

/** Seconds → "3s", "2m5s", "1h4m". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "-";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60 ? `${s % 60}s` : ""}`;
  return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60) ? `${Math.floor((s % 3600) / 60)}m` : ""}`;
}

/** Unix seconds → "5 minutes ago" relative to `nowMs`. */
export function timeAgo(unixSeconds: number | null | undefined, nowMs = Date.now()): string {
  if (!unixSeconds) return "-";
  const diff = Math.max(0, Math.round(nowMs / 1000 - unixSeconds));
  const units: [number, string][] = [
    [365 * 86400, "year"],
    [30 * 86400, "month"],
    [7 * 86400, "week"],
    [86400, "day"],
    [3600, "hour"],
    [60, "minute"],
  ];
  for (const [size, name] of units) {
    if (diff >= size) {
      const n = Math.floor(diff / size);
      return `${n} ${name}${n > 1 ? "s" : ""} ago`;
    }
  }
  return diff < 5 ? "just now" : `${diff} seconds ago`;
}

/** ISO time in the future → "in 4 minutes"; past → "now". */
export function timeUntil(iso: string | null | undefined, nowMs = Date.now()): string {
  if (!iso) return "-";
  const ms = Date.parse(iso) - nowMs;
  if (!Number.isFinite(ms)) return "-";
  if (ms <= 0) return "now";
  return `in ${formatDuration(ms / 1000)}`;
}

/** `sha256:abcdef…` → the 12-hex short ID docker shows. */
export const shortId = (id: string) => id.replace(/^sha256:/, "").slice(0, 12);

export const json = (value: unknown) => `${JSON.stringify(value, null, 2)}\n`;
