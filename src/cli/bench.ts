import { intFlag } from "./args.ts";
import { sseData, type DaemonClient } from "./client.ts";
import type { Command } from "./context.ts";
import { CliError, UsageError } from "./errors.ts";
import { resolveModel } from "./models.ts";
import { json } from "./output.ts";

/** `mr bench --json`. Times in milliseconds; rates over the measured wall time. */
export interface BenchResult {
  model: string;
  concurrency: number;
  /** Wall time from the first request to the last answer, in seconds. */
  duration_seconds: number;
  requests: number;
  failed: number;
  completion_tokens: number;
  /** All answers' tokens over the wall time. */
  tokens_per_second: number;
  /** Each answer's own rate (tokens after the first one, over the time after it), averaged. */
  request_tokens_per_second_mean: number | null;
  time_to_first_token_ms: { p50: number | null; p99: number | null };
  /** The first failure's message, when any failed. */
  first_error: string | null;
}

interface OneRequest {
  ttftMs: number | null;
  tokens: number;
  /** Tokens per second after the first token; null for answers of one token. */
  rate: number | null;
}

const DEFAULT_PROMPT = "Write a short story about a robot learning to paint.";

/** "10s", "1m", "500ms", "30" (seconds) → milliseconds. */
export function parseBenchDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m || Number(m[1]) <= 0) throw new UsageError(`--duration must be a positive duration such as 30s or 2m, got "${text}"`, "bench");
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? "s") as "ms" | "s" | "m" | "h"];
}

/** The nearest-rank percentile of `values` (sorted here), or null when empty. */
export function percentile(values: readonly number[], p: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

async function oneRequest(client: DaemonClient, model: string, prompt: string, maxTokens: number, signal: AbortSignal): Promise<OneRequest> {
  const started = performance.now();
  const res = await client.request("POST", "/engines/v1/chat/completions", {
    json: { model, messages: [{ role: "user", content: prompt }], stream: true, max_tokens: maxTokens, stream_options: { include_usage: true } },
    headers: { accept: "text/event-stream" },
    signal,
  });
  let first: number | null = null;
  let chunks = 0;
  let usageTokens: number | null = null;
  for await (const event of sseData(res) as AsyncGenerator<{
    choices?: Array<{ delta?: { content?: string | null; reasoning_content?: string | null }; finish_reason?: string | null }>;
    usage?: { completion_tokens?: number } | null;
  }>) {
    const choice = event.choices?.[0];
    const delta = choice?.delta;
    if (delta?.content || delta?.reasoning_content) {
      first ??= performance.now();
      chunks++;
    } else if (choice?.finish_reason) {
      // Tokens that made no text yet (a UTF-8 sequence cut by max_tokens, special tokens): the answer's end is its first sign.
      first ??= performance.now();
    }
    if (typeof event.usage?.completion_tokens === "number") usageTokens = event.usage.completion_tokens;
  }
  const ended = performance.now();
  const tokens = usageTokens ?? chunks;
  const rate = first !== null && tokens > 1 && ended > first ? (tokens - 1) / ((ended - first) / 1000) : null;
  return { ttftMs: first === null ? null : first - started, tokens, rate };
}

export const benchCommand: Command = {
  name: "bench",
  summary: "Measure a model's speed through the daemon: tokens/s, time to first token",
  usage: "mr bench [OPTIONS] MODEL",
  description:
    "Loads MODEL, then keeps CONCURRENCY streamed chat requests going for DURATION (answers in flight at the end\n" +
    "are waited for) and reports requests, tokens per second and time to first token (p50, p99).",
  examples: ["mr bench ai/smollm2", "mr bench --concurrency 4 --duration 1m ai/smollm2", "mr bench --json --prompt \"Count to 50\" ai/smollm2"],
  flags: {
    prompt: { type: "string", valueName: "TEXT", description: "the prompt every request sends" },
    duration: { type: "string", valueName: "DURATION", description: "how long to keep starting requests (default 10s)" },
    concurrency: { type: "string", short: "c", valueName: "N", description: "requests at a time (default 1)" },
    "max-tokens": { type: "string", valueName: "N", description: "tokens per answer at most (default 128)" },
    json: { type: "boolean", description: "print the result as JSON" },
  },
  async run(cli, { values, positionals }) {
    if (positionals.length !== 1) throw new UsageError("bench takes exactly one MODEL", "bench");
    const durationMs = parseBenchDuration(typeof values.duration === "string" ? values.duration : "10s");
    const concurrency = intFlag("bench", "concurrency", values.concurrency) ?? 1;
    const maxTokens = intFlag("bench", "max-tokens", values["max-tokens"]) ?? 128;
    if (concurrency < 1) throw new UsageError("--concurrency must be at least 1", "bench");
    if (maxTokens < 1) throw new UsageError("--max-tokens must be at least 1", "bench");
    const prompt = typeof values.prompt === "string" ? values.prompt : DEFAULT_PROMPT;
    const client = await cli.daemon();
    const { name } = await resolveModel(client, positionals[0]!, cli.signal);
    // Load first, so that the load is not measured as the first request's latency (Ollama's load idiom:
    // a generate request without a prompt).
    await client.json("POST", "/api/generate", { json: { model: name }, signal: cli.signal });
    if (!values.json) cli.note(`Benchmarking ${name}: ${concurrency} at a time for ${durationMs / 1000}s...`);
    const done: OneRequest[] = [];
    let failed = 0;
    let firstError: string | null = null;
    const started = performance.now();
    const worker = async () => {
      while (performance.now() - started < durationMs) {
        try {
          done.push(await oneRequest(client, name, prompt, maxTokens, cli.signal));
        } catch (error) {
          if (cli.signal.aborted) throw cli.signal.reason;
          failed++;
          firstError ??= (error as Error).message;
        }
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    const wallSeconds = (performance.now() - started) / 1000;
    if (done.length === 0) throw new CliError(`every request failed (${failed}): ${firstError ?? "no answer"}`);
    const tokens = done.reduce((n, r) => n + r.tokens, 0);
    const rates = done.flatMap((r) => (r.rate === null ? [] : [r.rate]));
    const ttfts = done.flatMap((r) => (r.ttftMs === null ? [] : [r.ttftMs]));
    const round = (n: number | null, digits = 1) => (n === null ? null : Number(n.toFixed(digits)));
    const result: BenchResult = {
      model: name,
      concurrency,
      duration_seconds: round(wallSeconds, 3)!,
      requests: done.length,
      failed,
      completion_tokens: tokens,
      tokens_per_second: round(tokens / wallSeconds, 2)!,
      request_tokens_per_second_mean: rates.length ? round(rates.reduce((a, b) => a + b, 0) / rates.length, 2) : null,
      time_to_first_token_ms: { p50: round(percentile(ttfts, 50)), p99: round(percentile(ttfts, 99)) },
      first_error: firstError,
    };
    if (values.json) {
      cli.io.stdout.write(json(result));
    } else {
      const ms = (v: number | null) => (v === null ? "-" : `${v} ms`);
      const rows: [string, string][] = [
        ["Requests", `${result.requests} completed, ${result.failed} failed (${concurrency} at a time, ${result.duration_seconds}s)`],
        ["Tokens generated", String(tokens)],
        ["Throughput", `${result.tokens_per_second} tokens/s`],
        ["Per request", result.request_tokens_per_second_mean === null ? "-" : `${result.request_tokens_per_second_mean} tokens/s (mean)`],
        ["Time to first token", `p50 ${ms(result.time_to_first_token_ms.p50)}, p99 ${ms(result.time_to_first_token_ms.p99)}`],
      ];
      cli.io.stdout.write(rows.map(([k, v]) => `${`${k}:`.padEnd(21)}${v}\n`).join(""));
      if (firstError) cli.note(`Error: ${failed} request${failed === 1 ? "" : "s"} failed; the first: ${firstError}`);
    }
    return failed > 0 ? 1 : 0;
  },
};
