import type { TinyModelOptions } from "../src/distribution/tiny-model.ts";

/** The benchmarks' generated model: n_embd 512, 8 layers, ~25M parameters. */
export const BENCH_MODEL_SHAPE = { embeddingLength: 512, blockCount: 8, feedForwardLength: 1376, heads: 8 } as const satisfies TinyModelOptions;

/** Checks a `--weights` option value. */
export function parseWeights(value: string | undefined): NonNullable<TinyModelOptions["weights"]> {
  if (value === "F32" || value === "Q8_0" || value === "Q4_0") return value;
  throw new Error(`--weights must be F32, Q8_0 or Q4_0, not ${value}`);
}
