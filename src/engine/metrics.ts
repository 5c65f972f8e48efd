import type { GenerationResult } from "./generate.ts";

/**
 * llama-server's `/metrics` counters and gauges (tools/server/server-task.cpp
 * `to_metrics`), kept by the engine and rendered in Prometheus' text format
 * with the same `llamacpp:` names, help texts and types.
 */
export class EngineMetrics {
  /** When the engine started, as llama-server's `Process-Start-Time-Unix` header says. */
  readonly startedAtUnix = Math.floor(Date.now() / 1000);
  private promptTokens = 0;
  private promptTokensCached = 0;
  private promptMs = 0;
  private predictedTokens = 0;
  private predictedMs = 0;
  private decodes = 0;
  private busySlotsAtDecodes = 0;
  private maxSequenceTokens = 0;
  private draftTokens = 0;
  private draftAccepted = 0;
  private draftSteps = 0;
  /** Since the last scrape: the throughput gauges average over this window, as llama-server's buckets. */
  private bucket = { promptTokens: 0, promptMs: 0, predictedTokens: 0, predictedMs: 0 };

  /** Counts one finished generation. */
  recordGeneration(r: GenerationResult): void {
    this.promptTokens += r.promptTokensEvaluated;
    this.promptTokensCached += r.promptTokens - r.promptTokensEvaluated;
    this.promptMs += r.promptMs;
    this.predictedTokens += r.completionTokens;
    this.predictedMs += r.generationMs;
    this.maxSequenceTokens = Math.max(this.maxSequenceTokens, r.promptTokens + r.completionTokens);
    this.draftTokens += r.draftTokens;
    this.draftAccepted += r.draftAccepted;
    this.draftSteps += r.draftSteps;
    this.bucket.promptTokens += r.promptTokensEvaluated;
    this.bucket.promptMs += r.promptMs;
    this.bucket.predictedTokens += r.completionTokens;
    this.bucket.predictedMs += r.generationMs;
  }

  /** Counts prompt tokens evaluated without generation (embeddings, ranking). */
  recordPrompt(tokens: number, ms: number): void {
    this.promptTokens += tokens;
    this.promptMs += ms;
    this.maxSequenceTokens = Math.max(this.maxSequenceTokens, tokens);
    this.bucket.promptTokens += tokens;
    this.bucket.promptMs += ms;
  }

  /** Counts one `llama_decode` batch, with the slots busy at that moment. */
  recordDecode(busySlots: number): void {
    this.decodes++;
    this.busySlotsAtDecodes += busySlots;
  }

  /**
   * The Prometheus text of all metrics, then a new averaging window for the
   * gauges (llama-server resets its buckets on every scrape).
   */
  scrape(load: { processing: number; deferred: number }): string {
    const perSecond = (tokens: number, ms: number) => (ms > 0 ? (1000 * tokens) / ms : 0);
    const counters: Array<[string, string, number]> = [
      ["prompt_tokens_total", "Number of prompt tokens processed, excluding cached tokens", this.promptTokens],
      ["prompt_tokens_cached_total", "Number of prompt tokens reused from the cache", this.promptTokensCached],
      ["prompt_seconds_total", "Total time spent processing prompts", this.promptMs / 1000],
      ["tokens_predicted_total", "Number of generation tokens processed", this.predictedTokens],
      ["tokens_predicted_seconds_total", "Total time spent generating tokens", this.predictedMs / 1000],
      ["n_decode_total", "Total number of llama_decode() calls, excluding speculative decoding and multimodal decoding", this.decodes],
      ["n_tokens_max", "Largest observed sequence length (prompt + generation)", this.maxSequenceTokens],
      // 0 without a draft model, as in llama-server.
      ["spec_decode_num_draft_tokens_total", "Speculative: Total draft tokens generated", this.draftTokens],
      ["spec_decode_num_accepted_tokens_total", "Speculative: Total draft tokens accepted by the target model", this.draftAccepted],
      ["spec_decode_num_drafts_total", "Speculative: Total speculative decoding verification steps", this.draftSteps],
    ];
    const gauges: Array<[string, string, number]> = [
      ["prompt_tokens_seconds", "Average prompt throughput in tokens/s", perSecond(this.bucket.promptTokens, this.bucket.promptMs)],
      ["predicted_tokens_seconds", "Average generation throughput in tokens/s", perSecond(this.bucket.predictedTokens, this.bucket.predictedMs)],
      ["requests_processing", "Number of requests processing", load.processing],
      ["requests_deferred", "Number of requests deferred", load.deferred],
      ["n_busy_slots_per_decode", "Average number of busy slots per llama_decode() call", this.busySlotsAtDecodes / Math.max(this.decodes, 1)],
    ];
    this.bucket = { promptTokens: 0, promptMs: 0, predictedTokens: 0, predictedMs: 0 };
    let text = "";
    for (const [type, items] of [["counter", counters], ["gauge", gauges]] as const) {
      for (const [name, help, value] of items) {
        text += `# HELP llamacpp:${name} ${help}\n# TYPE llamacpp:${name} ${type}\nllamacpp:${name} ${formatValue(value)}\n`;
      }
    }
    return text;
  }
}

/** As C++ streams print a double (six significant digits, no trailing zeros). */
function formatValue(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  return String(Number(v.toPrecision(6)));
}
