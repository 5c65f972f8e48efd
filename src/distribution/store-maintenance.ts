import { mkdir, readdir, readFile, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { hashFile } from "./blob-store.ts";
import { exists } from "./bundle.ts";
import { digestHex, parseDigest, sha256Digest, type Digest } from "./digest.ts";
import { isAlive } from "./lock.ts";
import { parseManifest } from "./manifest.ts";
import type { IndexEntry } from "./model-index.ts";
import type { ModelStore } from "./store.ts";

/**
 * What keeps the store tidy and honest: removing what killed writers left
 * (`cleanup`), `purge`, the disk usage `mr df` shows, and the invariant
 * check tests and `mr doctor` run.
 */

/** Deletes every model and blob (DMR `DELETE /models/purge`); the store stays usable. */
export async function purgeStore(store: ModelStore): Promise<void> {
  // Partial downloads first: nothing references them, and on a full disk the
  // index rewrite below needs the room they hold (a purge must not fail with ENOSPC).
  await removePartials(store);
  await store.locked(async () => {
    await store.index.write([]);
    for (const d of ["blobs/sha256", "manifests/sha256", "bundles/sha256"]) {
      await rm(join(store.root, d), { recursive: true, force: true });
      await mkdir(join(store.root, d), { recursive: true });
    }
  });
  await cleanupStore(store, { partials: true });
}

/**
 * Removes what killed writers left: temp files of dead pids, manifests and
 * bundles the index does not name, unreferenced blobs older than
 * `orphanGraceMs` (a live pull in another process may not have committed
 * them yet), and with `partials` the resumable partial downloads nobody is
 * writing. Returns the paths removed.
 */
export async function cleanupStore(store: ModelStore, opts: { partials?: boolean; orphanGraceMs?: number } = {}): Promise<string[]> {
  const grace = opts.orphanGraceMs ?? 3_600_000;
  const root = store.root;
  const removed: string[] = [];
  const drop = async (p: string) => {
    await rm(p, { recursive: true, force: true });
    removed.push(p);
  };
  for (const name of await readdir(join(root, "tmp"))) {
    if (!isAlive(Number.parseInt(name.split("-")[0] ?? "", 10))) await drop(join(root, "tmp", name));
  }
  await store.locked(async () => {
    const models = await store.readIndex();
    const ids = new Set(models.map((m) => digestHex(m.id)));
    const referenced = new Set(models.flatMap((m) => m.files.map(digestHex)));
    for (const kind of ["manifests", "bundles"]) {
      for (const n of await readdir(join(root, kind, "sha256"))) {
        if (!ids.has(n)) await drop(join(root, kind, "sha256", n));
      }
    }
    const blobDir = join(root, "blobs", "sha256");
    for (const n of await readdir(blobDir)) {
      const p = join(blobDir, n);
      if (/^[0-9a-f]{64}$/.test(n)) {
        if (referenced.has(n)) continue;
        const st = await stat(p).catch(() => null);
        if (st && Date.now() - st.mtimeMs >= grace) await drop(p);
      } else if (opts.partials && /\.incomplete(\.json)?$/.test(n)) {
        const lockFile = join(blobDir, `${n.slice(0, 64)}.lock`);
        const holder = await readFile(lockFile, "utf8").catch(() => null);
        if (holder === null || !isAlive(Number.parseInt(holder, 10))) await drop(p);
      }
    }
  });
  return removed;
}

/**
 * Bytes used by the store's blobs, as `GET /engines/df` reports them:
 * complete blobs, and partial downloads (what they occupy on disk) apart,
 * so a pull that failed on a full disk is visible.
 */
export async function storeDiskUsage(store: ModelStore): Promise<{ modelsBytes: number; partialBytes: number }> {
  let modelsBytes = 0;
  let partialBytes = 0;
  const blobDir = join(store.root, "blobs", "sha256");
  for (const n of await readdir(blobDir)) {
    const st = await stat(join(blobDir, n)).catch(() => null);
    if (!st) continue;
    if (/^[0-9a-f]{64}$/.test(n)) modelsBytes += st.size;
    else if (/\.incomplete(\.json)?$/.test(n)) partialBytes += Math.min(st.size, st.blocks * 512);
  }
  return { modelsBytes, partialBytes };
}

/**
 * Removes partial downloads nobody is writing (no live holder of the blob's
 * lock): all of them, or only those last written by a pull of `reference`
 * (a normalized reference) — `rm` of that name, or a later pull of it
 * (which keeps, in `keep`, the blobs it still needs). Returns the digests
 * whose partials were removed.
 */
export async function removePartials(store: ModelStore, opts: { reference?: string; keep?: ReadonlySet<Digest> } = {}): Promise<Digest[]> {
  const blobDir = join(store.root, "blobs", "sha256");
  const removed: Digest[] = [];
  for (const n of await readdir(blobDir)) {
    const m = /^([0-9a-f]{64})\.incomplete$/.exec(n);
    if (!m) continue;
    const hex = m[1]!;
    if (opts.keep?.has(`sha256:${hex}` as Digest)) continue;
    if (opts.reference !== undefined) {
      const state = await readFile(join(blobDir, `${n}.json`), "utf8").then((t) => JSON.parse(t) as { reference?: unknown }, () => null);
      if (state?.reference !== opts.reference) continue;
    }
    const holder = await readFile(join(blobDir, `${hex}.lock`), "utf8").catch(() => null);
    if (holder !== null && isAlive(Number.parseInt(holder, 10))) continue;
    await rm(join(blobDir, n), { force: true });
    await rm(join(blobDir, `${n}.json`), { force: true });
    removed.push(`sha256:${hex}` as Digest);
  }
  return removed;
}

/**
 * Checks the store's invariants and returns what is wrong (empty when
 * sound): the index parses; every model's manifest exists and hashes to its
 * ID; every blob it names exists with the right size and sha256; the bundle
 * links exist. Reads every blob: for tests and `mr doctor`, not hot paths.
 */
export async function checkStore(store: ModelStore): Promise<string[]> {
  const problems: string[] = [];
  let models: IndexEntry[];
  try {
    models = await store.readIndex();
  } catch (e) {
    return [String(e)];
  }
  for (const m of models) {
    const raw = await readFile(store.manifestPath(m.id)).catch(() => null);
    if (!raw) {
      problems.push(`${m.id}: manifest missing`);
      continue;
    }
    if (sha256Digest(raw) !== m.id) problems.push(`${m.id}: manifest digest mismatch`);
    const manifest = parseManifest(raw);
    for (const d of [manifest.config, ...manifest.layers]) {
      const p = store.blobPath(parseDigest(d.digest));
      const st = await stat(p).catch(() => null);
      if (!st) {
        problems.push(`${m.id}: blob ${d.digest} missing`);
        continue;
      }
      if (st.size !== d.size) problems.push(`${m.id}: blob ${d.digest} has ${st.size} bytes, expected ${d.size}`);
      if ((await hashFile(p)) !== d.digest) problems.push(`${m.id}: blob ${d.digest} content mismatch`);
    }
    if (!(await exists(join(store.bundleDir(m.id), "config.json")))) problems.push(`${m.id}: bundle missing`);
  }
  return problems;
}
