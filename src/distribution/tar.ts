import { Readable } from "node:stream";

/**
 * A minimal ustar reader/writer for model archives (docker-save-like:
 * `manifest.json` + `blobs/<alg>/<hex>`). Entry bodies are streamed; only
 * headers are buffered. Sizes ≥ 8 GiB use the GNU base-256 size field.
 */
const BLOCK = 512;

export function tarHeader(name: string, size: number, mtime = 0): Buffer {
  if (Buffer.byteLength(name) > 100) throw new RangeError(`tar entry name too long: ${name}`);
  const h = Buffer.alloc(BLOCK);
  h.write(name, 0, 100, "utf8");
  h.write("0000644\0", 100);
  h.write("0000000\0", 108);
  h.write("0000000\0", 116);
  if (size < 8 ** 11) h.write(`${size.toString(8).padStart(11, "0")}\0`, 124);
  else {
    h[124] = 0x80;
    let v = BigInt(size);
    for (let i = 135; i > 124; i--) {
      h[i] = Number(v & 0xffn);
      v >>= 8n;
    }
  }
  h.write(`${Math.floor(mtime).toString(8).padStart(11, "0")}\0`, 136);
  h.write("        ", 148);
  h.write("0", 156);
  h.write("ustar\0", 257);
  h.write("00", 263);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148);
  return h;
}

export function tarPadding(size: number): Buffer {
  return Buffer.alloc((BLOCK - (size % BLOCK)) % BLOCK);
}

/** Two zero blocks end an archive. */
export const TAR_END = Buffer.alloc(BLOCK * 2);

function parseSize(h: Buffer): number {
  if ((h[124]! & 0x80) !== 0) {
    let v = 0n;
    for (let i = 125; i < 136; i++) v = (v << 8n) | BigInt(h[i]!);
    return Number(v);
  }
  return Number.parseInt(h.subarray(124, 136).toString("latin1").replace(/\0.*$/, "").trim() || "0", 8);
}

export interface TarEntry {
  name: string;
  size: number;
  type: string;
  /** The body; must be consumed (or `skip`ped) before the next entry is read. */
  body: Readable;
}

/** Reads entries of a tar stream in order, one body at a time, with backpressure. */
export async function* readTar(source: AsyncIterable<Buffer | Uint8Array>): AsyncGenerator<TarEntry> {
  const it = source[Symbol.asyncIterator]();
  let buf: Buffer = Buffer.alloc(0);
  const fill = async (n: number): Promise<boolean> => {
    while (buf.length < n) {
      const r = await it.next();
      if (r.done) return false;
      buf = buf.length ? Buffer.concat([buf, Buffer.from(r.value)]) : Buffer.from(r.value);
    }
    return true;
  };
  let longName: string | null = null;
  for (;;) {
    if (!(await fill(BLOCK))) return;
    const h = buf.subarray(0, BLOCK);
    buf = buf.subarray(BLOCK);
    if (h.every((b) => b === 0)) return;
    const size = parseSize(h);
    const type = String.fromCharCode(h[156] || 0x30);
    const prefix = h.subarray(345, 500).toString("utf8").replace(/\0.*$/s, "");
    let name = h.subarray(0, 100).toString("utf8").replace(/\0.*$/s, "");
    if (prefix) name = `${prefix}/${name}`;
    if (longName) {
      name = longName;
      longName = null;
    }
    let remaining = size;
    async function* body(): AsyncGenerator<Buffer> {
      while (remaining > 0) {
        if (buf.length === 0 && !(await fill(1))) throw new Error("tar archive is truncated");
        const take = buf.subarray(0, Math.min(remaining, buf.length));
        buf = buf.subarray(take.length);
        remaining -= take.length;
        yield take;
      }
    }
    const stream = Readable.from(body(), { objectMode: false });
    if (type === "L") {
      const parts: Buffer[] = [];
      for await (const c of stream) parts.push(c as Buffer);
      longName = Buffer.concat(parts).toString("utf8").replace(/\0.*$/s, "");
    } else {
      yield { name: name.replace(/^\.\//, ""), size, type, body: stream };
      for await (const _ of stream) {
        /* drain what the consumer left */
      }
    }
    const pad = (BLOCK - (size % BLOCK)) % BLOCK;
    if (pad && !(await fill(pad))) return;
    buf = buf.subarray(pad);
  }
}
