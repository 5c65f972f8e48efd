import { randomBytes } from "node:crypto";
import { open, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

/** Where and how `writeAtomic`/`withAtomicFile` write before the rename. */
export interface AtomicWriteOptions {
  /** The temp file; default `<dir>/.<name>.<random>.tmp` beside the target (same filesystem, so the rename is atomic). */
  tmpPath?: string;
  /** File mode of a new file (e.g. 0o600 for private settings). */
  mode?: number;
  /** fsync the temp file before the rename (default true): after a power cut the file is old or new, never empty. */
  sync?: boolean;
}

/**
 * The one atomic file write: a temp file is written, fsynced, then renamed
 * over `path`, so readers (also in other processes) see the old or the new
 * content, never a mix; on failure the temp file is removed and `path` is
 * untouched.
 */
export async function writeAtomic(path: string, data: string | Uint8Array, opts: AtomicWriteOptions = {}): Promise<void> {
  await withAtomicFile(
    path,
    async (tmp) => {
      const fh = await open(tmp, "w", opts.mode ?? 0o666);
      try {
        await fh.writeFile(data);
      } finally {
        await fh.close();
      }
    },
    opts,
  );
}

/**
 * `write` fills the temp file it is given (streaming, for large files);
 * then it is fsynced and renamed over `path`. Resolves with what `write` returned.
 */
export async function withAtomicFile<T>(path: string, write: (tmpPath: string) => Promise<T>, opts: AtomicWriteOptions = {}): Promise<T> {
  const tmp = opts.tmpPath ?? join(dirname(path), `.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`);
  try {
    const result = await write(tmp);
    if (opts.sync !== false) {
      const fh = await open(tmp, "r+");
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
    }
    await rename(tmp, path);
    return result;
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}
