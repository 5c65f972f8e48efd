/**
 * Engine benchmark: the same model, in one run, driven
 *   (a) in-process through node-llama-cpp directly, and
 *   (b) through our engine process over HTTP (1, 2 and 4 concurrent streams),
 * plus the time from spawning the engine to `/health` 200.
 *
 * The engine is started through `bin/mr.js` as the daemon does: the compiled
 * build when dist/ matches src/ (`npm run build`); the output says which.
 *
 * Usage: node --import tsx bench/engine/run.ts [model.gguf] [--tokens N] [--threads N] [--weights F32|Q8_0|Q4_0] [--rounds N]
 * Without a model it generates one (n_embd 512, 8 layers: ~25M parameters)
 * with `--weights` matrices (default F32).
 */
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { getLlama, LlamaLogLevel, type Token } from "node-llama-cpp";
import { distStaleness } from "../../bin/dist.js";
import { BENCH_MODEL_SHAPE, parseWeights } from "../bench-model.ts";
import { writeTinyModel } from "../../src/distribution/tiny-model.ts";
import { defaultThreads } from "../../src/engine/options.ts";
import { MR_BIN } from "../../test/helpers/engine.ts";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { rounds: { type: "string", default: "5" }, weights: { type: "string", default: "F32" }, tokens: { type: "string", default: "256" }, threads: { type: "string" }, "prompt-words": { type: "string", default: "400" } },
});
const TOKENS = Number(values.tokens);
const THREADS = values.threads ? Number(values.threads) : defaultThreads();
const PROMPT_WORDS = Number(values["prompt-words"]);
const ROUNDS = Number(values.rounds);
const PARALLEL = 4;
const SLOT_CONTEXT = 2048;

const dir = await mkdtemp(join(tmpdir(), "mr-bench-engine-"));
try {
  const modelPath = positionals[0] ?? join(dir, "bench.gguf");
  if (!positionals[0]) await writeTinyModel(modelPath, { seed: 9, ...BENCH_MODEL_SHAPE, weights: parseWeights(values.weights) });

  const words = ["the", "model", "runner", "is", "a", "world", "of", "water", "people", "time"];
  // Each prompt starts differently, so no run reuses another's KV cache.
  const prompt = (i: number, length = PROMPT_WORDS) => `${i} ${Array.from({ length }, (_, j) => words[(i * 7 + j * 3) % words.length]).join(" ")}`;

  // ---- (a) in-process -----------------------------------------------------
  const llama = await getLlama({ gpu: "auto", build: "never", maxThreads: THREADS, logLevel: LlamaLogLevel.error, skipDownload: true });
  const model = await llama.loadModel({ modelPath });
  // The same context shape as the engine's (PARALLEL sequences share one KV
  // cache, which makes attention over it dearer), so the two differ only by
  // the HTTP path.
  const context = await model.createContext({ contextSize: SLOT_CONTEXT, sequences: PARALLEL, threads: THREADS });
  const sequence = context.getSequence();
  const measureDirect = async (i: number) => {
    await sequence.clearHistory();
    const tokens = model.tokenize(prompt(i), false);
    const bos = model.tokens.bos;
    const input = bos !== null ? [bos, ...tokens] : tokens;
    let t = performance.now();
    await sequence.evaluateWithoutGeneratingNewTokens(input.slice(0, -1) as Token[]);
    const ppMs = performance.now() - t;
    t = performance.now();
    let n = 0;
    for await (const _ of sequence.evaluate(input.slice(-1) as Token[], { temperature: 0 })) if (++n >= TOKENS) break;
    return { promptTokens: input.length - 1, ppMs, genTokens: n, genMs: performance.now() - t };
  };

  // ---- (b) our engine over HTTP -------------------------------------------
  const socket = join(dir, "engine.sock");
  const spawnedAt = performance.now();
  const child = spawn(process.execPath, [MR_BIN, "engine", "-m", modelPath, "--host", socket, "-c", String(SLOT_CONTEXT * PARALLEL), "-np", String(PARALLEL), "-t", String(THREADS), "--alias", "bench"], {
    stdio: ["ignore", "ignore", "inherit"],
  });
  const call = (path: string, body?: object) =>
    new Promise<{ status: number; text: string; firstByteMs: number; endMs: number }>((resolve, reject) => {
      const started = performance.now();
      let firstByteMs = -1;
      const req = request({ socketPath: socket, path, method: body ? "POST" : "GET", headers: { "content-type": "application/json" } }, (res) => {
        let text = "";
        res.on("data", (d: Buffer) => {
          // The first SSE event is the empty role delta; time to the first text is what counts.
          if (firstByteMs < 0 && d.toString().includes('"content":"') && !d.toString().includes('"content":""')) firstByteMs = performance.now() - started;
          text += d;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, text, firstByteMs, endMs: performance.now() - started }));
      });
      req.on("error", reject);
      req.end(body ? JSON.stringify(body) : undefined);
    });
  for (;;) {
    const ok = await call("/health").then((r) => r.status === 200, () => false);
    if (ok) break;
    await new Promise((r) => setTimeout(r, 5));
  }
  const readyMs = performance.now() - spawnedAt;

  const stream = async (i: number, promptWords = PROMPT_WORDS) => {
    const r = await call("/v1/chat/completions", {
      messages: [{ role: "user", content: prompt(i, promptWords) }],
      max_tokens: TOKENS,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    const usage = JSON.parse(r.text.split("\n").filter((l) => l.startsWith("data: {")).at(-1)!.slice(6)).usage as { prompt_tokens: number; completion_tokens: number };
    return { ...usage, firstByteMs: r.firstByteMs, endMs: r.endMs };
  };
  // Single stream: in-process and HTTP runs alternate, so a slow spell of the
  // machine hits both sides alike; medians of ROUNDS each.
  await measureDirect(0); // warm-ups
  await stream(100);
  const direct: Array<Awaited<ReturnType<typeof measureDirect>>> = [];
  const single: Array<Awaited<ReturnType<typeof stream>>> = [];
  for (let r = 1; r <= ROUNDS; r++) {
    direct.push(await measureDirect(r));
    single.push(await stream(100 + r));
  }
  await llama.dispose();
  // Generation throughput: short prompts, so prompt processing hardly counts.
  const aggregate = async (n: number) => {
    const t = performance.now();
    const results = await Promise.all(Array.from({ length: n }, (_, k) => stream(200 + n * 10 + k, 8)));
    const tokens = results.reduce((s, r) => s + r.completion_tokens, 0);
    return tokens / ((performance.now() - t) / 1000);
  };
  const agg = { 1: await aggregate(1), 2: await aggregate(2), 4: await aggregate(4) };
  child.kill("SIGTERM");
  await new Promise((r) => child.once("exit", r));

  // ---- report -------------------------------------------------------------
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const directGen = median(direct.map((d) => d.genTokens / (d.genMs / 1000)));
  const directPp = median(direct.map((d) => d.promptTokens / (d.ppMs / 1000)));
  // Over HTTP: prompt speed from time to first token; generation speed from the rest.
  const httpPp = median(single.map((s) => s.prompt_tokens / (s.firstByteMs / 1000)));
  const httpGen = median(single.map((s) => (s.completion_tokens - 1) / ((s.endMs - s.firstByteMs) / 1000)));
  const pct = (a: number, b: number) => `${((a / b) * 100).toFixed(1)}%`;
  const row = (name: string, a: string, b: string, c: string) => console.log(`${name.padEnd(34)}${a.padStart(14)}${b.padStart(14)}${c.padStart(10)}`);
  console.log(`model ${modelPath}${positionals[0] ? "" : ` (generated, ${values.weights})`}  threads ${THREADS}  ${TOKENS} tokens/request  prompt ~${single[0]!.prompt_tokens} tokens`);
  row("", "in-process", "engine HTTP", "ratio");
  row("generation, 1 stream (tok/s)", directGen.toFixed(1), httpGen.toFixed(1), pct(httpGen, directGen));
  row("prompt processing (tok/s)", directPp.toFixed(1), httpPp.toFixed(1), pct(httpPp, directPp));
  console.log();
  row("aggregate generation (HTTP)", "streams", "tok/s", "vs 1");
  for (const n of [1, 2, 4] as const) row("", String(n), agg[n].toFixed(1), `${(agg[n] / agg[1]).toFixed(2)}x`);
  console.log();
  const stale = distStaleness();
  console.log(`engine spawn to /health 200: ${readyMs.toFixed(0)} ms (${stale === null ? "compiled build, dist/" : `src/ through tsx: ${stale}`})`);
} finally {
  await rm(dir, { recursive: true, force: true });
}
