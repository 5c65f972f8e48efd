import { createWriteStream } from "node:fs";
import { once } from "node:events";
import { rename, rm } from "node:fs/promises";

/**
 * A minimal GGUF v3 writer: metadata key/values and F32 tensors.
 *
 * It exists so that tests and benchmarks can make real model files without
 * downloading anything. Tensor data is produced by a callback chunk by chunk,
 * so a large benchmark model is never held in memory whole.
 */

/** GGUF metadata value types (gguf.h `gguf_type`). */
const enum GgufType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
}

/** A typed metadata value; the tag decides how it is encoded. */
export type GgufValue =
  | { type: "u32"; value: number }
  | { type: "i32"; value: number }
  | { type: "f32"; value: number }
  | { type: "bool"; value: boolean }
  | { type: "string"; value: string }
  | { type: "u64"; value: bigint }
  | { type: "string[]"; value: readonly string[] }
  | { type: "f32[]"; value: readonly number[] }
  | { type: "i32[]"; value: readonly number[] };

/** One F32 tensor: dims in ggml order (innermost first), data written by `fill`. */
export interface GgufTensorSpec {
  name: string;
  dims: readonly number[];
  /** Fills `out` (a chunk of the tensor starting at element `offset`). */
  fill: (out: Float32Array, offset: number) => void;
}

const GGML_TYPE_F32 = 0;
const CHUNK_ELEMENTS = 1 << 16;

class ByteSink {
  private readonly parts: Buffer[] = [];
  length = 0;
  push(b: Buffer): void {
    this.parts.push(b);
    this.length += b.length;
  }
  u32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    this.push(b);
  }
  i32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    this.push(b);
  }
  u64(v: bigint): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(v);
    this.push(b);
  }
  f32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeFloatLE(v);
    this.push(b);
  }
  str(s: string): void {
    const bytes = Buffer.from(s, "utf8");
    this.u64(BigInt(bytes.length));
    this.push(bytes);
  }
  concat(): Buffer {
    return Buffer.concat(this.parts);
  }
}

function writeValue(sink: ByteSink, v: GgufValue): void {
  switch (v.type) {
    case "u32":
      sink.u32(GgufType.UINT32);
      sink.u32(v.value);
      return;
    case "i32":
      sink.u32(GgufType.INT32);
      sink.i32(v.value);
      return;
    case "f32":
      sink.u32(GgufType.FLOAT32);
      sink.f32(v.value);
      return;
    case "bool":
      sink.u32(GgufType.BOOL);
      sink.push(Buffer.from([v.value ? 1 : 0]));
      return;
    case "string":
      sink.u32(GgufType.STRING);
      sink.str(v.value);
      return;
    case "u64":
      sink.u32(GgufType.UINT64);
      sink.u64(v.value);
      return;
    case "string[]":
      sink.u32(GgufType.ARRAY);
      sink.u32(GgufType.STRING);
      sink.u64(BigInt(v.value.length));
      for (const s of v.value) sink.str(s);
      return;
    case "f32[]":
      sink.u32(GgufType.ARRAY);
      sink.u32(GgufType.FLOAT32);
      sink.u64(BigInt(v.value.length));
      for (const x of v.value) sink.f32(x);
      return;
    case "i32[]":
      sink.u32(GgufType.ARRAY);
      sink.u32(GgufType.INT32);
      sink.u64(BigInt(v.value.length));
      for (const x of v.value) sink.i32(x);
      return;
  }
}

const alignUp = (n: number, a: number) => Math.ceil(n / a) * a;

/**
 * Writes a GGUF file atomically (temp file, then rename) and resolves with
 * its size in bytes. Rejects, leaving nothing behind, if writing fails.
 */
export async function writeGguf(
  path: string,
  metadata: Readonly<Record<string, GgufValue>>,
  tensors: readonly GgufTensorSpec[],
  alignment = 32,
): Promise<number> {
  const header = new ByteSink();
  header.push(Buffer.from("GGUF", "ascii"));
  header.u32(3);
  header.u64(BigInt(tensors.length));
  const kv = { ...metadata, "general.alignment": { type: "u32", value: alignment } as GgufValue };
  header.u64(BigInt(Object.keys(kv).length));
  for (const [key, value] of Object.entries(kv)) {
    header.str(key);
    writeValue(header, value);
  }
  let offset = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    header.str(t.name);
    header.u32(t.dims.length);
    for (const d of t.dims) header.u64(BigInt(d));
    header.u32(GGML_TYPE_F32);
    header.u64(BigInt(offset));
    offsets.push(offset);
    offset = alignUp(offset + 4 * t.dims.reduce((a, b) => a * b, 1), alignment);
  }
  const headerBytes = header.concat();
  const dataStart = alignUp(headerBytes.length, alignment);

  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  const out = createWriteStream(tmp);
  const write = async (chunk: Buffer) => {
    if (!out.write(chunk)) await once(out, "drain");
  };
  try {
    await write(headerBytes);
    await write(Buffer.alloc(dataStart - headerBytes.length));
    let written = 0;
    for (const [i, t] of tensors.entries()) {
      await write(Buffer.alloc(offsets[i]! - written));
      written = offsets[i]!;
      const count = t.dims.reduce((a, b) => a * b, 1);
      for (let start = 0; start < count; start += CHUNK_ELEMENTS) {
        const chunk = new Float32Array(Math.min(CHUNK_ELEMENTS, count - start));
        t.fill(chunk, start);
        await write(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      }
      written += count * 4;
    }
    out.end();
    await once(out, "finish");
    await rename(tmp, path);
    return dataStart + written;
  } catch (error) {
    out.destroy();
    await rm(tmp, { force: true });
    throw error;
  }
}
