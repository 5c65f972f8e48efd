import assert from "node:assert/strict";
import { test } from "node:test";
import { gguf } from "@huggingface/gguf";
import { getLlama, LlamaLogLevel } from "node-llama-cpp";
import { quantizeQ4_0, quantizeQ8_0, toFloat16Bits } from "../../src/distribution/gguf-writer.ts";
import { tinyModel } from "../helpers/models.ts";

test("float16 conversion rounds to nearest even, with subnormals and overflow", () => {
  const cases: Array<[number, number]> = [
    [0, 0x0000],
    [1, 0x3c00],
    [-2, 0xc000],
    [0.1, 0x2e66],
    [65504, 0x7bff],
    [70000, 0x7c00],
    [2 ** -24, 0x0001],
    [2 ** -26, 0x0000],
    [1 + 2 ** -11, 0x3c00], // a tie rounds to the even mantissa
    [1 + 3 * 2 ** -11, 0x3c02],
  ];
  for (const [x, bits] of cases) assert.equal(toFloat16Bits(x), bits, `f16(${x})`);
});

/** Decodes blocks back to floats (ggml's `dequantize_row_*`) to check the encoding. */
function f16(bits: number): number {
  const e = (bits >> 10) & 0x1f;
  const m = bits & 0x3ff;
  const v = e === 0 ? m * 2 ** -24 : (1 + m / 1024) * 2 ** (e - 15);
  return bits & 0x8000 ? -v : v;
}

test("Q8_0 and Q4_0 blocks decode back to the values within their step", () => {
  const values = Float32Array.from({ length: 64 }, (_, i) => Math.sin(i * 1.7) * (i < 32 ? 0.5 : 3));
  const q8 = quantizeQ8_0(values);
  assert.equal(q8.length, 2 * 34);
  const q4 = quantizeQ4_0(values);
  assert.equal(q4.length, 2 * 18);
  for (let b = 0; b < 2; b++) {
    const d8 = f16(q8.readUInt16LE(b * 34));
    const d4 = f16(q4.readUInt16LE(b * 18));
    for (let i = 0; i < 32; i++) {
      const x = values[b * 32 + i]!;
      // Half a step, plus what rounding the scale to f16 costs over 127 steps.
      assert.ok(Math.abs(q8.readInt8(b * 34 + 2 + i) * d8 - x) <= Math.abs(d8) * 0.6, `q8 ${b}/${i}`);
      const byte = q4[b * 18 + 2 + (i % 16)]!;
      const q = (i < 16 ? byte & 0x0f : byte >> 4) - 8;
      // Values opposite the largest one may clip at +7 steps: up to one step off, as in ggml.
      assert.ok(Math.abs(q * d4 - x) <= Math.abs(d4) * 1.001, `q4 ${b}/${i}: ${q * d4} vs ${x}`);
    }
  }
});

test("quantized tiny models carry their file type and run in llama.cpp", async () => {
  const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error, maxThreads: 1 });
  for (const [weights, fileType, ggmlType] of [["Q8_0", 7, 8], ["Q4_0", 2, 2]] as const) {
    const path = await tinyModel({ weights, seed: 4 });
    const { metadata, tensorInfos } = await gguf(path, { allowLocalFile: true });
    assert.equal((metadata as Record<string, unknown>)["general.file_type"], fileType);
    assert.equal(tensorInfos.find((t) => t.name === "blk.0.attn_q.weight")!.dtype, ggmlType);
    assert.equal(tensorInfos.find((t) => t.name === "blk.0.attn_norm.weight")!.dtype, 0, "norms stay F32");
    const model = await llama.loadModel({ modelPath: path });
    const context = await model.createContext({ contextSize: 256, threads: 1 });
    const sequence = context.getSequence();
    let n = 0;
    for await (const _ of sequence.evaluate(model.tokenize("hello"), { temperature: 0 })) if (++n >= 8) break;
    assert.equal(n, 8, `${weights} model generates`);
    await context.dispose();
    await model.dispose();
  }
});
