import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { open, readFile, rename, rm, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import { Transform, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { writeAtomic } from "../atomic-write.ts";
import { digestHex, sha256Digest, type Digest } from "./digest.ts";
import { DigestMismatchError } from "./errors.ts";

/**
 * The content-addressed half of the store: `blobs/sha256/<hex>` (verified
 * blobs), `<hex>.incomplete` partial downloads, and `tmp/` where every file
 * is written before it is renamed into place. Blobs are written without the
 * index lock: they are content-addressed, verified before the rename, and
 * renaming the same content twice is harmless.
 */
export class BlobStore {
  constructor(readonly root: string) {}

  blobPath(d: Digest): string {
    return join(this.root, "blobs", "sha256", digestHex(d));
  }
  /** Where an interrupted download of `d` lives until it completes (resumable). */
  partialPath(d: Digest): string {
    return `${this.blobPath(d)}.incomplete`;
  }
  /** A fresh temp path in the store's filesystem, named by our pid so cleanup knows when it is orphaned. */
  tmpPath(): string {
    return join(this.root, "tmp", `${process.pid}-${randomBytes(8).toString("hex")}`);
  }

  async hasBlob(d: Digest): Promise<boolean> {
    return (await stat(this.blobPath(d)).catch(() => null))?.isFile() ?? false;
  }

  /** Makes a verified temp file the blob `d`: fsync then rename. The temp file is consumed. */
  async commitBlobFile(tmp: string, d: Digest): Promise<void> {
    await fsyncPath(tmp);
    await rename(tmp, this.blobPath(d));
  }

  /**
   * Streams `source` into the store while hashing it; with `expected`, a
   * mismatch throws DigestMismatchError and nothing is kept. Never buffers the blob.
   */
  async ingest(source: Readable, opts: { expected?: Digest; signal?: AbortSignal } = {}): Promise<{ digest: Digest; size: number }> {
    const tmp = this.tmpPath();
    const hash = createHash("sha256");
    let size = 0;
    const tee = new Transform({
      transform(chunk: Buffer, _e, cb) {
        hash.update(chunk);
        size += chunk.length;
        cb(null, chunk);
      },
    });
    try {
      await pipeline(source, tee, createWriteStream(tmp), { signal: opts.signal });
      const digest = `sha256:${hash.digest("hex")}` as Digest;
      if (opts.expected && opts.expected !== digest) throw new DigestMismatchError(opts.expected, digest);
      if (await this.hasBlob(digest)) await unlink(tmp);
      else await this.commitBlobFile(tmp, digest);
      return { digest, size };
    } catch (e) {
      await rm(tmp, { force: true });
      throw e;
    }
  }

  /** Copies a local file into the store (streamed, hashed). */
  async ingestFile(path: string, signal?: AbortSignal): Promise<{ digest: Digest; size: number }> {
    return this.ingest(createReadStream(path, { highWaterMark: 1 << 20 }), { signal });
  }

  /** Stores a small in-memory blob (config JSON, manifests inside tars). */
  async putSmallBlob(data: Buffer, expected?: Digest): Promise<Digest> {
    const d = sha256Digest(data);
    if (expected && expected !== d) throw new DigestMismatchError(expected, d);
    if (!(await this.hasBlob(d))) await this.atomicWrite(this.blobPath(d), data);
    return d;
  }

  async readBlob(d: Digest): Promise<Buffer> {
    return readFile(this.blobPath(d));
  }

  /** An atomic write (../atomic-write.ts) through the store's tmp/, so cleanup finds what a killed writer left. */
  async atomicWrite(path: string, data: string | Buffer): Promise<void> {
    await writeAtomic(path, data, { tmpPath: this.tmpPath() });
  }}

export async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, "r+");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export async function hashFile(path: string): Promise<Digest> {
  const h = createHash("sha256");
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  return `sha256:${h.digest("hex")}` as Digest;
}
