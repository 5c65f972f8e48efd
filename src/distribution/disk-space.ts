import { stat, statfs as fsStatfs } from "node:fs/promises";
import { formatBytes } from "../format-bytes.ts";
import type { Digest } from "./digest.ts";
import { InsufficientStorageError } from "./errors.ts";
import type { ModelStore } from "./store.ts";

/**
 * Disk space and the store: is there room for a pull before it starts, and
 * what the user is told when a write fails anyway. Partial downloads count
 * (they already hold part of the bytes) and are reported by `mr df`.
 */

/** `fs.statfs`'s shape; injectable so the check can be tested without filling a disk. */
export type StatFs = (path: string) => Promise<{ bavail: number | bigint; bsize: number | bigint }>;

/** Bytes a partial download already occupies on disk (allocated blocks: parallel downloads write sparse files). */
export async function partialDiskBytes(store: ModelStore, d: Digest): Promise<number> {
  const st = await stat(store.partialPath(d)).catch(() => null);
  return st ? Math.min(st.size, st.blocks * 512) : 0;
}

/**
 * Throws InsufficientStorageError (507) when the store's filesystem has less
 * free space than the blobs of `blobs` that are not stored yet, less what
 * their partial downloads already hold.
 */
export async function ensureSpaceFor(
  store: ModelStore,
  blobs: ReadonlyArray<{ digest: Digest | null; size: number }>,
  statfs: StatFs = fsStatfs,
): Promise<void> {
  let needed = 0;
  for (const b of blobs) {
    if (b.digest !== null && (await store.hasBlob(b.digest))) continue;
    needed += Math.max(0, b.size - (b.digest === null ? 0 : await partialDiskBytes(store, b.digest)));
  }
  if (needed === 0) return;
  const fs = await statfs(store.root);
  const available = Number(fs.bavail) * Number(fs.bsize);
  if (needed <= available) return;
  throw new InsufficientStorageError(
    `Not enough disk space for this pull: it needs ${formatBytes(needed)} more, but only ${formatBytes(available)} is free in ${store.root}. ` +
      "Free some space (mr df shows what models use; mr rm or mr purge remove them) and pull again.",
    { required_bytes: needed, available_bytes: available },
  );
}

/** ENOSPC or EDQUOT anywhere in `e`'s cause chain. */
export function isNoSpace(e: unknown): boolean {
  for (let x = e, depth = 0; x && depth < 5; x = (x as { cause?: unknown }).cause, depth++) {
    const code = (x as { code?: unknown }).code;
    if (code === "ENOSPC" || code === "EDQUOT") return true;
  }
  return false;
}

/** The 507 for a write that failed with ENOSPC: what is kept and how to get the space back. */
export async function noSpaceError(store: ModelStore, cause: unknown): Promise<InsufficientStorageError> {
  const { partialBytes } = await store.diskUsage().catch(() => ({ partialBytes: 0 }));
  const kept = partialBytes > 0
    ? ` ${formatBytes(partialBytes)} of partial downloads are kept so the pull can resume; \`mr rm MODEL\` or \`mr purge\` removes them.`
    : "";
  return new InsufficientStorageError(
    `No space left on device while writing to ${store.root}.${kept} Free some space and try again.`,
    { partial_bytes: partialBytes },
    { cause },
  );
}
