/**
 * Our engine next to llama-server, over HTTP, on the same generated model
 * with the same flags, rounds alternating between the engines so a slow
 * spell of the machine hits all of them alike. Columns:
 *   - llama-server built from the llama.cpp release node-llama-cpp bundles
 *     (MR_TEST_LLAMA_SERVER, MODEL_RUNNER_LLAMA_SERVER, or the one `.ci/run`
 *     keeps under ~/.cache/model-runner; it is never built here);
 *   - `mr engine` on node-llama-cpp's prebuilt binding;
 *   - `mr engine` on a native build, when node_modules/node-llama-cpp/llama/localBuilds
 *     has one (node-llama-cpp then prefers it; the prebuilt column is left out).
 * Rows: decode tok/s (1 stream), aggregate tok/s (4 streams), prefill of
 * ~850 tokens, time to first token of a chat's second turn sharing a long
 * prefix with the first (the prompt cache), json_schema-constrained decode,
 * and speculative decoding with a draft model, without and under that
 * json_schema (speed-up over the same engine without the draft, acceptance
 * rate, and whether greedy text is unchanged).
 * Ratios are against llama-server, oriented so that > 1 means ours is faster.
 *
 * Usage: node --import tsx bench/engine/vs-llama-server.ts [--rounds N] [--threads N] [--tokens N] [--draft-tokens N] [--only ROWS]
 * `--only` takes a comma-separated list of decode, aggregate, prefill, turn2, json, draft, jsondraft (default: all); draft
 * includes decode and jsondraft json, which their speed-ups are measured against.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { Agent, setGlobalDispatcher } from "undici";
import { writeTinyModel, tinyModelParameterCount, type TinyModelOptions } from "../../src/distribution/tiny-model.ts";
import { BUNDLE_PATH, findInstalledLlamaServer, llamaServerRoot } from "../../src/inference/backends/llamacpp/llama-server-install.ts";
import { MR_BIN } from "../../test/helpers/engine.ts";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    threads: { type: "string", default: "1" },
    tokens: { type: "string", default: "128" },
    "draft-tokens": { type: "string", default: "4" },
    only: { type: "string", default: "decode,aggregate,prefill,turn2,json,draft,jsondraft" },
  },
});
const ROWS = ["decode", "aggregate", "prefill", "turn2", "json", "draft", "jsondraft"] as const;
const only = new Set(values.only.split(",").map((r) => r.trim()));
for (const r of only) if (!(ROWS as readonly string[]).includes(r)) throw new Error(`--only: unknown row ${r} (rows: ${ROWS.join(", ")})`);
if (only.has("draft")) only.add("decode");
// The draft under a grammar is compared with the same grammar without it.
if (only.has("jsondraft")) only.add("json");
const runs = (row: (typeof ROWS)[number]) => only.has(row);
const ROUNDS = Number(values.rounds);
const THREADS = Number(values.threads);
const TOKENS = Number(values.tokens);
const DRAFT_TOKENS = Number(values["draft-tokens"]);
const PARALLEL = 4;
const CONTEXT = 4096;

/**
 * The 85M-parameter F32 llama of the earlier measurements (issue 11). Its
 * blocks' output projections are scaled down so that its first block alone,
 * the draft, predicts it well: that changes the text, not the cost.
 */
const MODEL: TinyModelOptions = { seed: 9, embeddingLength: 768, blockCount: 12, feedForwardLength: 2048, heads: 12, blockScale: 0.2 };
const DRAFT: TinyModelOptions = { ...MODEL, draftBlocks: 1 };

async function findLlamaServer(): Promise<string> {
  const given = process.env.MR_TEST_LLAMA_SERVER || process.env.MODEL_RUNNER_LLAMA_SERVER;
  if (given) return given;
  const cached = await findInstalledLlamaServer(llamaServerRoot(join(homedir(), ".cache", "model-runner")), BUNDLE_PATH);
  if (cached) return cached;
  throw new Error("no llama-server: set MR_TEST_LLAMA_SERVER, or build one from the bundle with `node --import tsx scripts/llama-server-for-ci.ts` (~12 min on 2 cores)");
}

// One connection per request: llama-server closes kept-alive connections it considers idle, and a
// request sent on one as it closes fails with "other side closed" (the daemon's wrapper does the same).
setGlobalDispatcher(new Agent({ pipelining: 0 }));

const LOCAL_BUILDS = fileURLToPath(new URL("../../node_modules/node-llama-cpp/llama/localBuilds", import.meta.url));
const hasNativeBuild = existsSync(LOCAL_BUILDS) && readdirSync(LOCAL_BUILDS).length > 0;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}

interface Server {
  name: string;
  url: string;
  child: ChildProcess;
  /** The tail of its stderr, for errors. */
  log: () => string;
}

async function startServer(name: string, command: string, args: string[]): Promise<Server> {
  const port = await freePort();
  const child = spawn(command, [...args, "--host", "127.0.0.1", "--port", String(port)], { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  child.stderr!.on("data", (d: Buffer) => void (log = (log + d.toString()).slice(-4000)));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${name} exited:\n${log}`);
    const ok = await fetch(`${url}/health`).then((r) => r.status === 200, () => false);
    if (ok) return { name, url, child, log: () => log };
    if (Date.now() > deadline) throw new Error(`${name} did not become healthy:\n${log}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function post<T>(server: Server, path: string, body: object): Promise<T> {
  const res = await fetch(`${server.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) }).catch((error: unknown) => {
    throw new Error(`${server.name} ${path} failed (${String(error)}); its log ends:\n${server.log()}`);
  });
  if (res.status !== 200) throw new Error(`${server.name} ${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

interface Completion {
  content: string;
  tokens_predicted: number;
  timings: { predicted_n: number; draft_n?: number; draft_n_accepted?: number };
}

const WORDS = ["the", "model", "runner", "is", "a", "world", "of", "water", "people", "time", "hello", "number", "first", "call"];
/** Text of about `n` words; `seed` changes it from the first word on, so no prompt reuses another's cache. */
const text = (seed: number, n: number) => `${seed} ${Array.from({ length: n }, (_, j) => WORDS[(seed * 7 + j * 3 + Math.floor(j / 5)) % WORDS.length]).join(" ")}`;

let uniq = 1000;

/** Decode tok/s for one stream: a short prompt, TOKENS generated, timed by the client. */
async function decode(s: Server, seed = uniq++): Promise<{ tps: number; result: Completion }> {
  const started = performance.now();
  const result = await post<Completion>(s, "/completion", { prompt: text(seed, 4), n_predict: TOKENS, temperature: 0, ignore_eos: true });
  return { tps: result.tokens_predicted / ((performance.now() - started) / 1000), result };
}

/** Aggregate tok/s of PARALLEL concurrent streams. */
async function aggregate(s: Server): Promise<number> {
  const started = performance.now();
  const results = await Promise.all(
    Array.from({ length: PARALLEL }, () => post<Completion>(s, "/completion", { prompt: text(uniq++, 4), n_predict: TOKENS, temperature: 0, ignore_eos: true })),
  );
  return results.reduce((n, r) => n + r.tokens_predicted, 0) / ((performance.now() - started) / 1000);
}

/** Milliseconds to evaluate a ~850-token prompt that starts unlike any before it (one token generated). */
async function prefill(s: Server): Promise<{ ms: number; tokens: number }> {
  const started = performance.now();
  const r = await post<Completion & { tokens_evaluated: number }>(s, "/completion", { prompt: text(uniq++, 840), n_predict: 1, temperature: 0 });
  return { ms: performance.now() - started, tokens: r.tokens_evaluated };
}

/** Milliseconds from sending a chat's second turn to its first text, the first turn (a ~800-token system prompt) cached. */
async function secondTurn(s: Server): Promise<number> {
  const system = text(uniq++, 800);
  const first = [{ role: "system", content: system }, { role: "user", content: "hello the world" }];
  const reply = await post<{ choices: Array<{ message: { content: string } }> }>(s, "/v1/chat/completions", { messages: first, max_tokens: 16, temperature: 0 });
  const messages = [...first, { role: "assistant", content: reply.choices[0]!.message.content }, { role: "user", content: "and the people" }];
  const started = performance.now();
  const res = await fetch(`${s.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ messages, max_tokens: 4, temperature: 0, stream: true }),
  });
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let seen = "";
  let ttft = -1;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    seen += decoder.decode(value, { stream: true });
    if (ttft < 0 && /"content":"[^"]/.test(seen)) ttft = performance.now() - started;
  }
  if (ttft < 0) throw new Error(`${s.name}: the second turn produced no text`);
  return ttft;
}

/**
 * Tok/s of a json_schema-constrained answer (an array of strings, long enough to measure), on
 * llama-server's `/completion`: its `/v1/chat/completions` of this release fails to build the
 * grammar sampler for these generated models with `--jinja` ("Failed to initialize samplers").
 */
async function jsonSchema(s: Server, seed = uniq++): Promise<{ tps: number; result: Completion }> {
  const schema = { type: "object", properties: { items: { type: "array", items: { type: "string" }, minItems: 12 } }, required: ["items"] };
  const started = performance.now();
  const result = await post<Completion>(s, "/completion", { prompt: text(seed, 4), n_predict: TOKENS, temperature: 0, json_schema: schema });
  return { tps: result.tokens_predicted / ((performance.now() - started) / 1000), result };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const dir = await mkdtemp(join(tmpdir(), "mr-bench-vs-"));
const servers: Server[] = [];
try {
  const llamaServer = await findLlamaServer();
  const modelPath = join(dir, "model.gguf");
  const draftPath = join(dir, "draft.gguf");
  await writeTinyModel(modelPath, MODEL);
  await writeTinyModel(draftPath, DRAFT);
  const common = ["-m", modelPath, "-c", String(CONTEXT), "-np", String(PARALLEL), "-t", String(THREADS)];
  const spec = ["--spec-type", "draft-simple", "-md", draftPath, "--spec-draft-n-max", String(DRAFT_TOKENS)];
  const ours = hasNativeBuild ? "mr engine (native build)" : "mr engine (prebuilt)";
  const columns: Array<{ name: string; command: string; args: string[] }> = [
    { name: "llama-server", command: llamaServer, args: ["--jinja", "--no-webui", ...common] },
    { name: ours, command: process.execPath, args: [MR_BIN, "engine", ...common] },
  ];
  for (const c of columns) {
    servers.push(await startServer(c.name, c.command, c.args));
    if (runs("draft") || runs("jsondraft")) servers.push(await startServer(`${c.name} + draft`, c.command, [...c.args, ...spec]));
  }
  type Drafting = { tps: number[]; accepted: number; drafted: number; same: boolean };
  type Row = { decode: number[]; aggregate: number[]; prefill: number[]; prefillTokens: number; turn2: number[]; json: number[]; spec: Drafting; jsonSpec: Drafting };
  const drafting = (): Drafting => ({ tps: [], accepted: 0, drafted: 0, same: true });
  const rows = new Map<string, Row>(
    columns.map((c) => [c.name, { decode: [], aggregate: [], prefill: [], prefillTokens: 0, turn2: [], json: [], spec: drafting(), jsonSpec: drafting() }]),
  );
  /** One request with the draft, its greedy text compared with the same request's without it. */
  const withDraft = async (into: Drafting, send: () => Promise<{ tps: number; result: Completion }>, base: Completion) => {
    const { tps, result } = await send();
    into.tps.push(tps);
    into.drafted += result.timings.draft_n ?? 0;
    into.accepted += result.timings.draft_n_accepted ?? 0;
    if (result.content !== base.content) into.same = false;
  };
  // Warm-up: first requests pay for lazy initialisation on both sides.
  for (const s of servers) await decode(s);
  for (let round = 1; round <= ROUNDS; round++) {
    // Every engine drafts for the same prompt in a round, so their acceptance compares like with like.
    const seed = uniq++;
    for (const c of columns) {
      const plain = servers.find((s) => s.name === c.name)!;
      const row = rows.get(c.name)!;
      if (runs("decode")) row.decode.push((await decode(plain)).tps);
      if (runs("aggregate")) row.aggregate.push(await aggregate(plain));
      if (runs("prefill")) {
        const p = await prefill(plain);
        row.prefill.push(p.ms);
        row.prefillTokens = p.tokens;
      }
      if (runs("turn2")) row.turn2.push(await secondTurn(plain));
      const json = runs("json") ? await jsonSchema(plain, seed) : null;
      if (json) row.json.push(json.tps);
      const drafted = servers.find((s) => s.name === `${c.name} + draft`);
      // The same prompt with the draft: greedy text must not change.
      if (runs("draft")) {
        const base = await post<Completion>(plain, "/completion", { prompt: text(seed, 4), n_predict: TOKENS, temperature: 0, ignore_eos: true });
        await withDraft(row.spec, () => decode(drafted!, seed), base);
      }
      if (runs("jsondraft")) await withDraft(row.jsonSpec, () => jsonSchema(drafted!, seed), json!.result);
    }
    process.stderr.write(`round ${round}/${ROUNDS} done\n`);
  }

  const ref = rows.get("llama-server")!;
  const mine = rows.get(ours)!;
  const fmt = (n: number, digits = 1) => n.toFixed(digits);
  const line = (label: string, a: string, b: string, ratio: string) => console.log(`${label.padEnd(44)}${a.padStart(14)}${b.padStart(26)}${ratio.padStart(10)}`);
  console.log(
    `model: generated llama, ${(tinyModelParameterCount(MODEL) / 1e6).toFixed(0)}M parameters F32 (draft: its first block, ${(tinyModelParameterCount(DRAFT) / 1e6).toFixed(0)}M); ` +
      `flags -c ${CONTEXT} -np ${PARALLEL} -t ${THREADS}; ${TOKENS} tokens a request; median of ${ROUNDS} alternating rounds`,
  );
  if (!hasNativeBuild) console.log("native-build column absent: node_modules/node-llama-cpp/llama/localBuilds has no build (npx node-llama-cpp source download --gpu false makes one)");
  line("", "llama-server", ours, "ratio");
  const higher = (label: string, a: number[], b: number[]) => a.length > 0 && line(label, fmt(median(a)), fmt(median(b)), `${fmt(median(b) / median(a), 2)}x`);
  const lower = (label: string, a: number[], b: number[]) => a.length > 0 && line(label, fmt(median(a), 0), fmt(median(b), 0), `${fmt(median(a) / median(b), 2)}x`);
  higher("decode, 1 stream (tok/s)", ref.decode, mine.decode);
  higher(`aggregate, ${PARALLEL} streams (tok/s)`, ref.aggregate, mine.aggregate);
  lower(`prefill, ${ref.prefillTokens} tokens (ms)`, ref.prefill, mine.prefill);
  lower("2nd chat turn, long shared prefix: TTFT (ms)", ref.turn2, mine.turn2);
  higher("json_schema-constrained decode (tok/s)", ref.json, mine.json);
  const rate = (d: Drafting) => (d.drafted > 0 ? `${fmt((100 * d.accepted) / d.drafted)}% of ${d.drafted}` : "nothing drafted");
  const draftRows = (what: string, a: Drafting, b: Drafting, baseA: number[], baseB: number[]) => {
    higher(`${what} with draft, n-max ${DRAFT_TOKENS} (tok/s)`, a.tps, b.tps);
    line(`  speed-up over the same without the draft`, `${fmt(median(a.tps) / median(baseA), 2)}x`, `${fmt(median(b.tps) / median(baseB), 2)}x`, "");
    line("  draft acceptance (accepted / drafted)", rate(a), rate(b), "");
    line("  greedy text unchanged by the draft", a.same ? "yes" : "NO", b.same ? "yes" : "NO", "");
  };
  if (runs("draft")) draftRows("decode", ref.spec, mine.spec, ref.decode, mine.decode);
  if (runs("jsondraft")) draftRows("json_schema decode", ref.jsonSpec, mine.jsonSpec, ref.json, mine.json);
} finally {
  for (const s of servers) s.child.kill("SIGTERM");
  await Promise.all(servers.map((s) => (s.child.exitCode === null ? new Promise((r) => s.child.once("exit", r)) : null)));
  await rm(dir, { recursive: true, force: true });
}
