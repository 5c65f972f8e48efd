/**
 * Diagnostic for the 4-stream goal: what one llama.cpp decode costs for one
 * token, for one token of each of 4 sequences (fixed tokens), and for 4
 * sequences generating in step (as the engine's StepGate drives them), with
 * batches in the order sequences were sampled or in slot order (the engine's
 * `slotOrderStrategy`).
 * Decodes are timed by wrapping node-llama-cpp's internal context binding
 * (`_ctx.decodeBatch`, node-llama-cpp 3.21.1), so the figures exclude sampling
 * and JavaScript work.
 *
 * Usage: node --import tsx bench/engine/batch-cost.ts [model.gguf] [--weights F32|Q8_0|Q4_0] [--tokens N]
 * Without a model it generates the engine bench's (~25M parameters).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { getLlama, LlamaLogLevel, type LlamaContext, type Token } from "node-llama-cpp";
import { BENCH_MODEL_SHAPE, parseWeights } from "../bench-model.ts";
import { writeTinyModel } from "../../src/distribution/tiny-model.ts";
import { slotOrderStrategy, slotPriority } from "../../src/engine/batch-order.ts";
import { StepGate } from "../../src/engine/step-gate.ts";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { weights: { type: "string", default: "F32" }, tokens: { type: "string", default: "128" } },
});
const TOKENS = Number(values.tokens);
const weights = parseWeights(values.weights);

const dir = await mkdtemp(join(tmpdir(), "mr-bench-batch-"));
try {
  const modelPath = positionals[0] ?? join(dir, "bench.gguf");
  if (!positionals[0]) await writeTinyModel(modelPath, { seed: 9, ...BENCH_MODEL_SHAPE, weights });
  const llama = await getLlama({ gpu: false, build: "never", maxThreads: 1, logLevel: LlamaLogLevel.error });
  const model = await llama.loadModel({ modelPath });

  /** A fresh 4-sequence context whose decodes are timed. */
  const timedContext = async (slotOrder = false) => {
    const context = await model.createContext({
      contextSize: 2048 * 4,
      sequences: 4,
      threads: 1,
      ...(slotOrder ? { batching: { itemPrioritizationStrategy: slotOrderStrategy } } : {}),
    });
    const stats = { ms: 0, decodes: 0 };
    const binding = (context as unknown as { _ctx: Record<string | symbol, unknown> })._ctx;
    const decode = (binding.decodeBatch as () => Promise<void>).bind(binding);
    const timed = async () => {
      const t = performance.now();
      try {
        await decode();
      } finally {
        stats.ms += performance.now() - t;
        stats.decodes++;
      }
    };
    (context as unknown as { _ctx: unknown })._ctx = new Proxy(binding, {
      get: (target, key) => (key === "decodeBatch" ? timed : typeof target[key] === "function" ? (target[key] as Function).bind(target) : target[key]),
    });
    return { context, stats };
  };
  const perDecode = (s: { ms: number; decodes: number }) => s.ms / s.decodes;

  const fixed = async (k: number) => {
    const { context, stats } = await timedContext();
    const seqs = Array.from({ length: k }, () => context.getSequence());
    for (const s of seqs) await s.evaluateWithoutGeneratingNewTokens([1, 5, 6, 7] as Token[]);
    stats.ms = 0;
    stats.decodes = 0;
    for (let r = 0; r < TOKENS; r++) {
      await Promise.all(seqs.map(async (s, i) => {
        const it = s.evaluate([(10 + ((r + i) % 50)) as Token], { temperature: 0 });
        await it.next();
        await it.return();
      }));
    }
    await context.dispose();
    return perDecode(stats);
  };

  const generating = async (k: number, slotOrder: boolean) => {
    const { context, stats } = await timedContext(slotOrder);
    const gate = new StepGate();
    await Promise.all(Array.from({ length: k }, async (_, i) => {
      const s = (context as LlamaContext).getSequence();
      const it = s.evaluate([1, 10 + i, 20 + i] as Token[], { temperature: 0, evaluationPriority: slotPriority(i) });
      let n = 0;
      let joined = false;
      try {
        for (let step = await it.next(); !step.done && ++n < TOKENS; step = await it.next()) {
          if (!joined) gate.join();
          joined = true;
          await gate.arrive();
        }
      } finally {
        if (joined) gate.leave();
        await it.return();
      }
    }));
    await context.dispose();
    return { ms: perDecode(stats), tokensPerDecode: (k * TOKENS) / stats.decodes };
  };

  const one = await fixed(1);
  const four = await fixed(4);
  const gen1 = await generating(1, true);
  const sampledOrder = await generating(4, false);
  const gen4 = await generating(4, true);
  console.log(`model ${modelPath}${positionals[0] ? "" : ` (generated, ${weights})`}  1 thread  ${TOKENS} steps`);
  console.log("decode cost (ms)                         1 sequence   4 sequences   4 / 1");
  console.log(`fixed tokens                             ${one.toFixed(2).padStart(10)}  ${four.toFixed(2).padStart(12)}  ${(four / one).toFixed(2).padStart(6)}x`);
  const genRow = (label: string, four: { ms: number; tokensPerDecode: number }) =>
    console.log(`${label.padEnd(41)}${gen1.ms.toFixed(2).padStart(10)}  ${four.ms.toFixed(2).padStart(12)}  ${(four.ms / gen1.ms).toFixed(2).padStart(6)}x   (${four.tokensPerDecode.toFixed(2)} tokens/decode)`);
  genRow("generating in step, sampled order", sampledOrder);
  genRow("generating in step, slot order (engine)", gen4);
  await model.dispose();
} finally {
  await rm(dir, { recursive: true, force: true });
}
