import type { Digest } from "./digest.ts";
import { downloadBlob, type BlobOpener, type DownloadTuning } from "./download.ts";
import type { ModelStore } from "./store.ts";

interface Inflight {
  promise: Promise<void>;
  controller: AbortController;
  users: number;
  listeners: Set<(n: number) => void>;
}

/**
 * Blob downloads in progress in this process, shared by every pull that
 * needs the blob: two pulls of models with a common layer fetch it once.
 * (Across processes, download.ts serializes on the per-blob lock.)
 */
export class BlobDownloads {
  private readonly inflight = new Map<string, Inflight>();

  constructor(
    private readonly store: ModelStore,
    private readonly tuning: DownloadTuning = {},
  ) {}

  /** Downloads `d` once per process however many pulls want it; a pull's abort only detaches that pull. */
  async fetch(
    d: Digest,
    size: number,
    open: BlobOpener,
    onBytes: (n: number) => void,
    signal: AbortSignal,
    /** The reference being pulled, recorded with the partial download. */
    reference?: string,
  ): Promise<void> {
    let f = this.inflight.get(d);
    if (!f) {
      const controller = new AbortController();
      const listeners = new Set<(n: number) => void>();
      const entry: Inflight = {
        controller,
        users: 0,
        listeners,
        promise: downloadBlob(this.store, d, size, open, {
          ...this.tuning,
          ...(reference ? { reference } : {}),
          signal: controller.signal,
          onBytes: (n) => listeners.forEach((l) => l(n)),
        }).finally(() => {
          if (this.inflight.get(d) === entry) this.inflight.delete(d);
        }),
      };
      entry.promise.catch(() => {});
      this.inflight.set(d, entry);
      f = entry;
    }
    const entry = f;
    entry.users++;
    entry.listeners.add(onBytes);
    const onAbort = () => {
      if (--entry.users === 0) {
        // Detach it now: a pull starting while it winds down must start afresh (it waits on the blob lock).
        if (this.inflight.get(d) === entry) this.inflight.delete(d);
        entry.controller.abort(signal.reason);
      }
    };
    let rejectOnAbort!: () => void;
    const aborted = new Promise<never>((_, reject) => {
      rejectOnAbort = () => reject(signal.reason);
    });
    signal.addEventListener("abort", onAbort, { once: true });
    signal.addEventListener("abort", rejectOnAbort, { once: true });
    try {
      signal.throwIfAborted();
      await Promise.race([entry.promise, aborted]);
    } finally {
      // Both listeners go: a long-lived signal (one per daemon request) must not collect one per blob.
      signal.removeEventListener("abort", onAbort);
      signal.removeEventListener("abort", rejectOnAbort);
      entry.listeners.delete(onBytes);
      if (!signal.aborted) entry.users--;
    }
  }
}
