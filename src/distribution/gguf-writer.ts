import { createWriteStream } from "node:fs";
import { once } from "node:events";
import { withAtomicFile } from "../atomic-write.ts";

/**
 * A minimal GGUF v3 writer: metadata key/values and F32 or Q8_0 tensors.
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

/** Tensor encodings the writer can produce. */
export type GgufTensorType = "F32" | "Q8_0" | "Q4_0";

/** One tensor: dims in ggml order (innermost first), data written by `fill`. */
export interface GgufTensorSpec {
  name: string;
  dims: readonly number[];
  /** Default F32. Q8_0 needs `dims[0]` to be a multiple of 32. */
  type?: GgufTensorType;
  /** Fills `out` (a chunk of the tensor starting at element `offset`) with the values to encode. */
  fill: (out: Float32Array, offset: number) => void;
}

/** ggml type ids (ggml.h `ggml_type`). */
const GGML_TYPE = { F32: 0, Q4_0: 2, Q8_0: 8 } as const;
/** Q8_0: blocks of 32 values, one f16 scale then 32 signed bytes (ggml-common.h `block_q8_0`). */
const Q8_0_BLOCK = 32;
const Q8_0_BYTES = 2 + Q8_0_BLOCK;
/** Q4_0: blocks of 32 values, one f16 scale then 16 bytes of 4-bit values (ggml-common.h `block_q4_0`). */
const Q4_0_BYTES = 2 + Q8_0_BLOCK / 2;
const CHUNK_ELEMENTS = 1 << 16; // a multiple of Q8_0_BLOCK

function tensorBytes(type: GgufTensorType, count: number): number {
  if (type === "F32") return 4 * count;
  return (count / Q8_0_BLOCK) * (type === "Q8_0" ? Q8_0_BYTES : Q4_0_BYTES);
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** IEEE half-precision bits of `x`, rounded to nearest even (finite inputs of a sane range). */
export function toFloat16Bits(x: number): number {
  f32Scratch[0] = x;
  const bits = u32Scratch[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exp = ((bits >>> 23) & 0xff) - 127 + 15;
  const mant = bits & 0x7fffff;
  if (exp >= 31) return sign | 0x7c00; // overflow: infinity
  if (exp <= 0) {
    if (exp < -10) return sign; // underflow: zero
    // Subnormal: shift the implicit bit in, round to nearest even.
    const m = mant | 0x800000;
    const shift = 14 - exp;
    const half = 1 << (shift - 1);
    let h = m >>> shift;
    const rest = m & ((1 << shift) - 1);
    if (rest > half || (rest === half && (h & 1) === 1)) h++;
    return sign | h;
  }
  let h = (exp << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h++; // may carry into the exponent, which is right
  return sign | h;
}

/** Encodes values as Q4_0 blocks the way ggml's reference quantizer does (`quantize_row_q4_0_ref`). */
export function quantizeQ4_0(values: Float32Array): Buffer {
  const blocks = values.length / Q8_0_BLOCK;
  const out = Buffer.alloc(blocks * Q4_0_BYTES);
  for (let b = 0; b < blocks; b++) {
    const x = values.subarray(b * Q8_0_BLOCK, (b + 1) * Q8_0_BLOCK);
    let amax = 0;
    let max = 0;
    for (const v of x) {
      if (Math.abs(v) > amax) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = max / -8;
    const id = d !== 0 ? 1 / d : 0;
    const at = b * Q4_0_BYTES;
    out.writeUInt16LE(toFloat16Bits(d), at);
    const q = (v: number) => Math.min(15, Math.trunc(v * id + 8.5));
    for (let j = 0; j < Q8_0_BLOCK / 2; j++) out[at + 2 + j] = q(x[j]!) | (q(x[j + Q8_0_BLOCK / 2]!) << 4);
  }
  return out;
}

/** Encodes values as Q8_0 blocks the way ggml's reference quantizer does (`quantize_row_q8_0_ref`). */
export function quantizeQ8_0(values: Float32Array): Buffer {
  const blocks = values.length / Q8_0_BLOCK;
  const out = Buffer.alloc(blocks * Q8_0_BYTES);
  for (let b = 0; b < blocks; b++) {
    let amax = 0;
    for (let i = 0; i < Q8_0_BLOCK; i++) amax = Math.max(amax, Math.abs(values[b * Q8_0_BLOCK + i]!));
    const d = amax / 127;
    const id = d !== 0 ? 1 / d : 0;
    const at = b * Q8_0_BYTES;
    out.writeUInt16LE(toFloat16Bits(d), at);
    for (let i = 0; i < Q8_0_BLOCK; i++) out.writeInt8(Math.round(values[b * Q8_0_BLOCK + i]! * id), at + 2 + i);
  }
  return out;
}

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

function encode(type: GgufTensorType, chunk: Float32Array): Buffer {
  if (type === "Q8_0") return quantizeQ8_0(chunk);
  if (type === "Q4_0") return quantizeQ4_0(chunk);
  return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
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
    const type = t.type ?? "F32";
    if (type !== "F32" && (t.dims[0] ?? 0) % Q8_0_BLOCK !== 0) {
      throw new RangeError(`tensor ${t.name}: ${type} needs rows of a multiple of ${Q8_0_BLOCK} values, not ${t.dims[0]}`);
    }
    header.u32(GGML_TYPE[type]);
    header.u64(BigInt(offset));
    offsets.push(offset);
    offset = alignUp(offset + tensorBytes(type, t.dims.reduce((a, b) => a * b, 1)), alignment);
  }
  const headerBytes = header.concat();
  const dataStart = alignUp(headerBytes.length, alignment);

  // Generated test and bench models: regenerable, so no fsync (it would cost seconds per suite on slow disks).
  return withAtomicFile(
    path,
    async (tmp) => {
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
            await write(encode(t.type ?? "F32", chunk));
          }
          written += tensorBytes(t.type ?? "F32", count);
        }
        out.end();
        await once(out, "finish");
        return dataStart + written;
      } catch (error) {
        out.destroy();
        throw error;
      }
    },
    { sync: false },
  );
}
