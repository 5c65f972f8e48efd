import { readFile, stat } from "node:fs/promises";
import { digestHex, type Digest } from "./digest.ts";
import { ModelConflictError, ModelNotFoundError, StoreError } from "./errors.ts";
import { parseAnyReference } from "./reference.ts";

/** One model in `models.json`. */
export interface IndexEntry {
  /** The manifest digest, `sha256:<hex>`. */
  id: Digest;
  tags: string[];
  /** Config and layer blob digests. */
  files: Digest[];
  /** Unix seconds the model was stored. */
  created: number;
}

interface IndexFile {
  models: IndexEntry[];
}

/**
 * `models.json`, the store's single commit point: a model exists once the
 * index names it. Rewritten only by an atomic rename (under the store lock),
 * so a reader sees the old or the new version, never a mix.
 */
export class ModelIndex {
  private cache: { version: string; models: IndexEntry[] } | null = null;
  /** Writes by this process so far: part of the store's indexVersion, so that they show at once. */
  writes = 0;

  constructor(
    readonly path: string,
    private readonly atomicWrite: (path: string, data: string) => Promise<void>,
  ) {}

  /**
   * The index, as of now. Other processes may change it at any time, but
   * only by renaming a new file into place, so (inode, mtime, size) identify
   * a version: re-parsing is skipped while they are unchanged. This keeps
   * the per-request model lookup to one stat.
   */
  async read(): Promise<IndexEntry[]> {
    const path = this.path;
    const info = await stat(path).catch((e: NodeJS.ErrnoException) => {
      if (e.code === "ENOENT") return null;
      throw e;
    });
    if (info === null) return [];
    const version = `${info.ino}:${info.mtimeMs}:${info.size}`;
    if (this.cache?.version !== version) {
      const raw = await readFile(path, "utf8").catch((e: NodeJS.ErrnoException) => {
        if (e.code === "ENOENT") return null;
        throw e;
      });
      if (raw === null) return [];
      try {
        this.cache = { version, models: (JSON.parse(raw) as IndexFile).models ?? [] };
      } catch (e) {
        throw new StoreError(`The store index ${path} is damaged.`, { cause: e });
      }
    }
    // Callers edit what they get (under the lock) before writing it back.
    return this.cache.models.map((m) => ({ ...m, tags: [...m.tags], files: [...m.files] }));
  }

  /** Replaces the index; call under the store lock. */
  async write(models: IndexEntry[]): Promise<void> {
    try {
      await this.atomicWrite(this.path, JSON.stringify({ models }, null, 2));
    } finally {
      // Also after a failure: the rename may have happened before it.
      this.writes++;
    }
  }
}

/** The entry an exact tag or an ID (12/64 hex, `sha256:…`) names; ModelNotFoundError (404) or ModelConflictError (409). */
export function findEntry(models: IndexEntry[], reference: string): IndexEntry {
  const parsed = parseAnyReference(reference);
  if (parsed.kind === "id") {
    const hits = models.filter((m) => digestHex(m.id).startsWith(parsed.idPrefix));
    if (hits.length === 1) return hits[0]!;
    if (hits.length > 1) throw new ModelConflictError(`ID ${parsed.idPrefix} matches several models; give more digits.`);
    throw new ModelNotFoundError(reference);
  }
  const exact = models.find((m) => m.tags.includes(parsed.ref.normalized));
  if (exact) return exact;
  throw new ModelNotFoundError(reference);
}

/**
 * DMR's partial-name fallback for `GET /models/{ref}`: `smollm2` finds
 * `ai/smollm2:latest` or, failing that, the one tag whose repository's last
 * path component is `smollm2` (any registry). Several matches are a 409.
 */
export function findByPartialName(models: IndexEntry[], reference: string): IndexEntry {
  try {
    return findEntry(models, reference);
  } catch (e) {
    if (!(e instanceof ModelNotFoundError)) throw e;
  }
  const want = reference.trim().toLowerCase();
  const [wantName, wantTag] = want.includes(":") ? [want.slice(0, want.lastIndexOf(":")), reference.trim().slice(want.lastIndexOf(":") + 1)] : [want, null];
  const hits = models.filter((m) =>
    m.tags.some((t) => {
      const colon = t.lastIndexOf(":");
      const name = t.slice(0, colon);
      const tag = t.slice(colon + 1);
      return (name === wantName || name.endsWith(`/${wantName}`)) && (wantTag === null || tag === wantTag);
    }),
  );
  if (hits.length === 1) return hits[0]!;
  if (hits.length > 1) throw new ModelConflictError(`"${reference}" matches several models: ${hits.flatMap((h) => h.tags).join(", ")}.`);
  throw new ModelNotFoundError(reference);
}
