import type { ProgressLine } from "./client.ts";
import { formatBytes, formatDuration } from "./output.ts";

/**
 * Renders pull/push/load progress lines. Three modes:
 * - `tty`: one bar per layer plus a total line with bytes, speed and ETA,
 *   redrawn in place (at most every `intervalMs`);
 * - `plain`: a line every `intervalMs` (default 1 s) when not on a terminal;
 * - `quiet`: nothing.
 * The renderer is fed the daemon's lines and owns no timers, so it cannot
 * keep the process alive. A library such as `cli-progress` could implement
 * the `tty` mode behind this same interface.
 */
export type ProgressMode = "tty" | "plain" | "quiet";

export interface ProgressRendererOptions {
  mode: ProgressMode;
  out: NodeJS.WritableStream & { columns?: number };
  /** "Downloading" / "Uploading" / "Loading". */
  verb: string;
  intervalMs?: number;
  now?: () => number;
}

interface LayerState {
  id: string;
  size: number;
  current: number;
}

export class ProgressRenderer {
  private readonly layers = new Map<string, LayerState>();
  private total = 0;
  private readonly startedAt: number;
  private lastDrawAt = -Infinity;
  private drawnLines = 0;
  /** Bytes already present when the transfer started (resumed or skipped layers) don't count for speed. */
  private baseBytes: number | null = null;
  private readonly now: () => number;
  private readonly intervalMs: number;

  constructor(private readonly opts: ProgressRendererOptions) {
    this.now = opts.now ?? Date.now;
    this.startedAt = this.now();
    this.intervalMs = opts.intervalMs ?? (opts.mode === "tty" ? 100 : 1000);
  }

  get currentBytes(): number {
    let n = 0;
    for (const l of this.layers.values()) n += l.current;
    return n;
  }

  /** Feeds one progress line; warnings are written through at once. */
  update(line: ProgressLine): void {
    if (line.type === "warning") {
      this.clear();
      if (this.opts.mode !== "quiet") this.opts.out.write(`Warning: ${line.message}\n`);
      this.lastDrawAt = -Infinity;
      return;
    }
    if (line.type !== "progress" || !line.layer) return;
    const { id, size, current } = line.layer;
    this.layers.set(id, { id, size, current });
    this.total = Math.max(line.total ?? 0, [...this.layers.values()].reduce((n, l) => n + l.size, 0));
    if (this.baseBytes === null) this.baseBytes = Math.max(0, this.currentBytes - (current === size ? 0 : current));
    const t = this.now();
    if (t - this.lastDrawAt >= this.intervalMs) {
      this.lastDrawAt = t;
      this.draw();
    }
  }

  /** Draws the final state (all done) and leaves the cursor below it. */
  finish(): void {
    if (this.layers.size > 0) this.draw(true);
  }

  /** Leaves the drawing as it is (on error or Ctrl-C) and moves to a fresh line. */
  stop(): void {
    this.drawnLines = 0;
  }

  private speed(): number {
    const seconds = (this.now() - this.startedAt) / 1000;
    const moved = this.currentBytes - (this.baseBytes ?? 0);
    return seconds > 0.2 ? moved / seconds : 0;
  }

  private totalLine(): string {
    const current = this.currentBytes;
    const speed = this.speed();
    const pct = this.total > 0 ? Math.floor((current / this.total) * 100) : 0;
    const eta = speed > 0 && current < this.total ? `, ETA ${formatDuration((this.total - current) / speed)}` : "";
    return `${formatBytes(current)} / ${formatBytes(this.total)} (${pct}%)${speed > 0 ? `, ${formatBytes(speed)}/s` : ""}${eta}`;
  }

  private draw(isFinal = false): void {
    const { mode, out, verb } = this.opts;
    if (mode === "quiet") return;
    if (mode === "plain") {
      out.write(`${isFinal ? `${verb} done` : verb}: ${this.totalLine()}\n`);
      return;
    }
    const width = Math.max(10, Math.min(40, (out.columns ?? 80) - 58));
    const bar = (current: number, size: number) => {
      const filled = size > 0 ? Math.min(width, Math.round((current / size) * width)) : width;
      return `[${"=".repeat(Math.max(0, filled - 1))}${filled > 0 ? (filled === width ? "=" : ">") : ""}${" ".repeat(width - filled)}]`;
    };
    const rows = [...this.layers.values()].map((l) => {
      const label = l.id.replace(/^sha256:/, "").slice(0, 12);
      const state = l.current >= l.size ? "done" : `${formatBytes(l.current)} / ${formatBytes(l.size)}`;
      return `${label}: ${bar(l.current, l.size)} ${state}`;
    });
    rows.push(`${verb} ${bar(this.currentBytes, this.total)} ${this.totalLine()}`);
    let text = this.drawnLines > 0 ? `\x1b[${this.drawnLines}F` : "";
    for (const r of rows) text += `\x1b[2K${r}\n`;
    out.write(text);
    this.drawnLines = rows.length;
  }

  private clear(): void {
    if (this.opts.mode !== "tty" || this.drawnLines === 0) return;
    this.opts.out.write(`\x1b[${this.drawnLines}F\x1b[0J`);
    this.drawnLines = 0;
  }
}
