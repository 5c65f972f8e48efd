import { createHash } from "node:crypto";
import { open, readFile, rename, rm, stat, type FileHandle } from "node:fs/promises";
import { digestHex, type Digest } from "./digest.ts";
import { backoffMs } from "./backoff.ts";
import { DigestMismatchError, RegistryError, RegistryUnreachableError, RemoteNotFoundError, StalledDownloadError } from "./errors.ts";
import { header, isDialError, isTransientNetworkError, type HttpResponse } from "./http.ts";
import { FileLock, sleep } from "./lock.ts";
import type { ModelStore } from "./store.ts";

/** Fetches the blob, or the inclusive byte range of it, from wherever it lives. */
export type BlobOpener = (range: { start: number; end: number } | null, signal: AbortSignal) => Promise<HttpResponse>;

export interface DownloadTuning {
  /** Blobs at least this big are fetched in parallel ranges. Default 64 MiB. */
  parallelThresholdBytes?: number;
  /** Parallel range requests per blob. Default 4. */
  maxParallelRanges?: number;
  /** No byte for this long aborts the request and resumes it. Default 30 s. */
  stallTimeoutMs?: number;
  /** The reference being pulled (recorded with a partial download, see store-maintenance.ts removePartials). */
  reference?: string;
  /** Attempts without progress before giving up. Default 5. */
  maxRetries?: number;
  /** First backoff delay, doubled each retry. Default 200 ms. */
  retryBaseMs?: number;
}

interface Part {
  start: number;
  /** Exclusive. */
  end: number;
  /** Bytes of this part on disk, counted from `start`. Only ever advanced after the write returned. */
  done: number;
}

interface PartState {
  digest: string;
  size: number;
  parts: Part[];
  /** The reference being pulled when this was last written, so `rm` and a later pull of it can remove the partial. */
  reference?: string;
}

/**
 * Downloads blob `digest` of `size` bytes into the store, or returns at once
 * if it is already there.
 *
 * Bytes go from the socket straight to `<blob>.incomplete` at their offset;
 * `<blob>.incomplete.json` records how much of each range is on disk (written
 * after the data, so it never claims bytes that are not there). A hasher
 * follows the contiguous prefix on disk, so the sha256 is ready when the last
 * byte lands; a mismatch deletes the partial file (bad bytes are not resumed)
 * and throws DigestMismatchError. Transient failures (5xx, resets, stalls,
 * short bodies) resume with `Range` after a backoff. An abort stops at once
 * and leaves the partial file and its state for the next pull.
 *
 * Two processes downloading the same blob serialize on `<blob>.lock`; the
 * second finds the blob stored when it gets the lock.
 */
export async function downloadBlob(
  store: ModelStore,
  digest: Digest,
  size: number,
  openBlob: BlobOpener,
  opts: DownloadTuning & { signal: AbortSignal; onBytes?: (doneBytes: number) => void },
): Promise<void> {
  if (await store.hasBlob(digest)) return opts.onBytes?.(size);
  const lock = new FileLock(`${store.blobPath(digest)}.lock`);
  await lock.acquire(opts.signal);
  try {
    if (await store.hasBlob(digest)) return opts.onBytes?.(size);
    await new BlobDownload(store, digest, size, openBlob, opts).run();
  } finally {
    await lock.release();
  }
}

class BlobDownload {
  private readonly partial: string;
  private readonly statePath: string;
  private parts: Part[] = [];
  private fh!: FileHandle;
  private wake: (() => void) | null = null;
  private lastStateWrite = 0;
  private failed: unknown = null;

  constructor(
    private readonly store: ModelStore,
    private readonly digest: Digest,
    private readonly size: number,
    private readonly openBlob: BlobOpener,
    private readonly opts: DownloadTuning & { signal: AbortSignal; onBytes?: (doneBytes: number) => void },
  ) {
    this.partial = store.partialPath(digest);
    this.statePath = `${this.partial}.json`;
  }

  async run(): Promise<void> {
    await this.loadState();
    this.fh = await open(this.partial, (await stat(this.partial).catch(() => null)) ? "r+" : "w+");
    const ac = new AbortController();
    const signal = AbortSignal.any([this.opts.signal, ac.signal]);
    const abortAll = (e: unknown) => {
      this.failed ??= e;
      ac.abort(e);
      this.notify();
    };
    let hashed: Digest;
    try {
      const workers = this.parts.map((p) => this.fetchPart(p, signal).catch(abortAll));
      const hasher = this.hashFollower(signal);
      hasher.catch(() => {}); // observed below; a worker failure makes it reject first
      await Promise.all(workers);
      if (this.failed) throw this.failed;
      hashed = await hasher;
    } catch (e) {
      await this.saveState(true).catch(() => {});
      await this.fh.close().catch(() => {});
      if (this.opts.signal.aborted) throw this.opts.signal.reason;
      throw this.failed ?? e;
    }
    if (hashed !== this.digest) {
      await this.fh.close();
      await rm(this.partial, { force: true });
      await rm(this.statePath, { force: true });
      throw new DigestMismatchError(this.digest, hashed);
    }
    await this.fh.sync();
    await this.fh.close();
    await rename(this.partial, this.store.blobPath(this.digest));
    await rm(this.statePath, { force: true });
  }

  /** Resume state: the part file if it matches, else the partial's length as one sequential part. */
  private async loadState(): Promise<void> {
    const partialSize = (await stat(this.partial).catch(() => null))?.size ?? null;
    if (partialSize !== null) {
      try {
        const s = JSON.parse(await readFile(this.statePath, "utf8")) as PartState;
        if (s.digest === this.digest && s.size === this.size && Array.isArray(s.parts) && s.parts.length > 0) {
          this.parts = s.parts;
          return;
        }
      } catch {
        /* no state: a sequential download, or one killed before writing any */
      }
      this.parts = [{ start: 0, end: this.size, done: Math.min(partialSize, this.size) }];
      return;
    }
    const threshold = this.opts.parallelThresholdBytes ?? 64 << 20;
    const n = this.size >= threshold ? Math.max(1, Math.min(this.opts.maxParallelRanges ?? 4, Math.ceil(this.size / (16 << 20)))) : 1;
    const step = Math.ceil(this.size / n);
    for (let s = 0; s < this.size || this.parts.length === 0; s += step) {
      this.parts.push({ start: s, end: Math.min(this.size, s + step), done: 0 });
      if (step === 0) break;
    }
    await this.saveState(true);
  }

  private async saveState(force: boolean): Promise<void> {
    if (!force && Date.now() - this.lastStateWrite < 500) return;
    this.lastStateWrite = Date.now();
    const state: PartState = {
      digest: this.digest,
      size: this.size,
      parts: this.parts,
      ...(this.opts.reference ? { reference: this.opts.reference } : {}),
    };
    await this.store.atomicWrite(this.statePath, JSON.stringify(state));
  }

  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private reportBytes(): void {
    this.opts.onBytes?.(this.parts.reduce((n, p) => n + p.done, 0));
  }

  /** Fetches one range until it is complete, resuming after transient failures. */
  private async fetchPart(part: Part, signal: AbortSignal): Promise<void> {
    let attempt = 0;
    while (part.done < part.end - part.start) {
      signal.throwIfAborted();
      const before = part.done;
      try {
        await this.fetchOnce(part, signal);
      } catch (e) {
        if (signal.aborted) throw signal.reason;
        if (isDialError(e)) throw new RegistryUnreachableError(dialTarget(e), e);
        const retryable = e instanceof StalledDownloadError || (e instanceof RegistryError ? e.retryable : isTransientNetworkError(e));
        if (!retryable) throw e;
        if (part.done > before) attempt = 0; // progress was made: the link works, keep going
        if (attempt >= (this.opts.maxRetries ?? 5)) {
          throw new RegistryError(`Download of ${this.digest} kept failing: ${(e as Error).message}`, { cause: e });
        }
        await sleep(backoffMs(attempt++, { baseMs: this.opts.retryBaseMs ?? 200, retryAfter: retryAfterOf(e) }), signal);
      }
    }
  }

  private async fetchOnce(part: Part, outer: AbortSignal): Promise<void> {
    const stallMs = this.opts.stallTimeoutMs ?? 30_000;
    const ac = new AbortController();
    const signal = AbortSignal.any([outer, ac.signal]);
    let timer = setTimeout(() => ac.abort(new StalledDownloadError(this.digest, stallMs)), stallMs);
    const kick = () => {
      clearTimeout(timer);
      timer = setTimeout(() => ac.abort(new StalledDownloadError(this.digest, stallMs)), stallMs);
    };
    try {
      const from = part.start + part.done;
      const whole = from === 0 && part.end === this.size;
      let res: HttpResponse;
      try {
        res = await this.openBlob(whole && this.size > 0 ? null : { start: from, end: part.end - 1 }, signal);
      } catch (e) {
        if (ac.signal.aborted && !outer.aborted) throw ac.signal.reason;
        throw e;
      }
      if (res.statusCode === 404) {
        await res.body.dump();
        throw new RemoteNotFoundError(`Blob ${this.digest} is not in the registry.`);
      }
      if (res.statusCode >= 500 || res.statusCode === 429) {
        await res.body.dump();
        throw new ServerBusyError(`Blob ${this.digest}: server answered ${res.statusCode}.`, header(res.headers, "retry-after"));
      }
      if (res.statusCode === 200 && !whole) {
        // The server ignored Range. Only the first part can use a full body; others give up their range to it.
        await res.body.dump();
        if (part.start !== 0) throw new RegistryError(`${res.url} ignores Range requests; cannot resume.`);
        part.done = 0;
        throw new RegistryError("Range ignored; restarting from 0", { retryable: true });
      }
      if (res.statusCode !== 200 && res.statusCode !== 206) {
        await res.body.dump();
        throw new RegistryError(`Blob ${this.digest}: server answered ${res.statusCode}.`);
      }
      if (res.statusCode === 206) {
        const cr = header(res.headers, "content-range") ?? "";
        const m = /bytes (\d+)-/.exec(cr);
        if (!m || Number(m[1]) !== from) {
          await res.body.dump();
          throw new RegistryError(`Blob ${this.digest}: asked for bytes from ${from}, got "${cr}".`);
        }
      }
      let pos = from;
      try {
        for await (const chunk of res.body) {
          kick();
          const buf = chunk as Buffer;
          const room = part.end - pos;
          const take = buf.length > room ? buf.subarray(0, room) : buf;
          let written = 0;
          while (written < take.length) {
            const { bytesWritten } = await this.fh.write(take, written, take.length - written, pos + written);
            written += bytesWritten;
          }
          pos += take.length;
          part.done = pos - part.start;
          this.reportBytes();
          this.notify();
          void this.saveState(false).catch(() => {});
          if (pos >= part.end) break;
        }
      } catch (e) {
        if (ac.signal.aborted && !outer.aborted) throw ac.signal.reason;
        throw e;
      }
      if (pos < part.end) throw new RegistryError(`Blob ${this.digest}: body ended early at ${pos}.`, { retryable: true });
      res.body.destroy();
    } finally {
      clearTimeout(timer);
    }
  }

  /** Hashes the file's contiguous on-disk prefix as it grows; resolves with the digest at the end. */
  private async hashFollower(signal: AbortSignal): Promise<Digest> {
    const hash = createHash("sha256");
    const buf = Buffer.allocUnsafe(1 << 20);
    let hashed = 0;
    while (hashed < this.size) {
      if (this.failed) throw this.failed;
      signal.throwIfAborted();
      let frontier = 0;
      for (const p of this.parts) {
        frontier = p.start + p.done;
        if (p.done < p.end - p.start) break;
      }
      if (frontier > hashed) {
        const { bytesRead } = await this.fh.read(buf, 0, Math.min(buf.length, frontier - hashed), hashed);
        if (bytesRead === 0) throw new RegistryError(`Partial file of ${this.digest} is shorter than recorded.`);
        hash.update(buf.subarray(0, bytesRead));
        hashed += bytesRead;
        continue;
      }
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        setTimeout(resolve, 200); // belt and braces: never sleep on a missed wake-up
      });
    }
    return `sha256:${hash.digest("hex")}` as Digest;
  }
}

/** A 5xx or 429 for a blob: retried, after at least the `Retry-After` the server asked for. */
class ServerBusyError extends RegistryError {
  constructor(
    message: string,
    readonly retryAfter: string | undefined,
  ) {
    super(message, { retryable: true });
  }
}

function retryAfterOf(e: unknown): string | undefined {
  return e instanceof ServerBusyError ? e.retryAfter : undefined;
}

/** The host (or address) a dial error names, for the message. */
function dialTarget(e: unknown): string {
  const x = e as { hostname?: string; address?: string; port?: number };
  return x.hostname ?? (x.address ? `${x.address}${x.port ? `:${x.port}` : ""}` : "the download host");
}


export { digestHex };
