/**
 * Progress of a pull, push or load, as a typed union. `toDmrProgressLine`
 * turns an event into DMR's NDJSON line (dmr.md §3 "Progress format").
 */
export type TransferMode = "pull" | "push";

export type ProgressEvent =
  | {
      type: "progress";
      mode: TransferMode;
      /** One layer's bytes: `id` is the blob digest. */
      layer: { id: string; size: number; current: number };
      /** Bytes done over all layers, and the total to transfer. */
      current: number;
      total: number;
    }
  | { type: "warning"; mode: TransferMode; message: string }
  | { type: "success"; mode: TransferMode; message: string; id: string };

/** Receives progress events; must not throw or block. */
export type ProgressListener = (event: ProgressEvent) => void;

/** DMR's wire shape for one progress line. */
export interface DmrProgressLine {
  type: "progress" | "success" | "warning" | "error";
  message: string;
  total?: number;
  /** Bytes done over all layers (ours; DMR clients add up the layers instead). */
  current?: number;
  layer?: { id: string; size: number; current: number };
  mode: TransferMode;
}

export function toDmrProgressLine(e: ProgressEvent): DmrProgressLine {
  if (e.type === "progress") {
    const verb = e.mode === "pull" ? "Downloaded" : "Uploaded";
    return {
      type: "progress",
      message: `${verb}: ${(e.current / 1e6).toFixed(2)} MB`,
      total: e.total,
      current: e.current,
      layer: e.layer,
      mode: e.mode,
    };
  }
  return { type: e.type, message: e.message, mode: e.mode };
}

/**
 * Rate-limits per-layer progress: an event at most every `intervalMs` and
 * only after `minBytes` more, except a layer's first and last, which always go out.
 */
export class ProgressReporter {
  private readonly layers = new Map<string, { size: number; current: number; sentAt: number; sentBytes: number }>();

  constructor(
    readonly mode: TransferMode,
    private readonly listener: ProgressListener | undefined,
    private readonly intervalMs = 100,
    private readonly minBytes = 1 << 20,
  ) {}

  addLayer(id: string, size: number): void {
    if (!this.layers.has(id)) this.layers.set(id, { size, current: 0, sentAt: 0, sentBytes: -1 });
  }

  get total(): number {
    let n = 0;
    for (const l of this.layers.values()) n += l.size;
    return n;
  }

  update(id: string, current: number): void {
    const l = this.layers.get(id);
    if (!l || !this.listener) return;
    l.current = Math.min(current, l.size);
    const now = Date.now();
    const isEdge = l.sentBytes < 0 || l.current === l.size;
    if (!isEdge && (now - l.sentAt < this.intervalMs || l.current - l.sentBytes < this.minBytes)) return;
    if (l.current === l.sentBytes) return;
    l.sentAt = now;
    l.sentBytes = l.current;
    let done = 0;
    for (const x of this.layers.values()) done += x.current;
    this.listener({ type: "progress", mode: this.mode, layer: { id, size: l.size, current: l.current }, current: done, total: this.total });
  }

  warn(message: string): void {
    this.listener?.({ type: "warning", mode: this.mode, message });
  }

  success(message: string, id: string): void {
    this.listener?.({ type: "success", mode: this.mode, message, id });
  }
}
