import { ClientClosedError } from "../../http/streaming.ts";
import { SseReader } from "../../http/sse-reader.ts";
import { errorResponse, statusOf } from "../errors.ts";
import { sseEvent } from "../sse.ts";
import type { DaemonMetrics } from "../metrics.ts";
import type { RecordingTap } from "../recorder/request-recorder.ts";

/** llama-server's measured `timings` (milliseconds). */
export interface EngineTimings {
  prompt_n: number;
  prompt_ms: number;
  predicted_n: number;
  predicted_ms: number;
  cache_n: number;
}

/** How an exchange is recorded: its tap, and whose answer it keeps. */
export interface LedgerRecording {
  tap: RecordingTap;
  /** `engine`: the engine's answer as it passes; `client`: what a translating dialect hands to `clientAnswer`. */
  view: "engine" | "client";
  /** The error body as the client got it (the dialect's shape); default OpenAI's. */
  errorBody?: ((error: unknown) => unknown) | undefined;
  /** A failure that is not the exchange's end (Ollama's embed sent again truncated): the record is dropped. */
  skipFailure?: ((error: unknown) => boolean) | undefined;
}

/** How much of a relayed answer is kept to read its usage: the tail of a stream, or a whole small JSON body. */
export const USAGE_WINDOW_BYTES = 16 * 1024;
/** How much of a stream's tail is read first for its usage: its last events, the final one's timings included. */
const FIRST_LOOK_CHARS = 2048;

/** Whether a stream event ends its answer: a choice's finish reason (OpenAI's shapes), llama-server's `stop: true`. */
function endsAnswer(event: Record<string, unknown>): boolean {
  if (event.stop === true) return true;
  const choices = event.choices;
  return Array.isArray(choices) && choices.some((c: { finish_reason?: unknown } | null) => c !== null && typeof c === "object" && c.finish_reason != null);
}

/** The JSON `data` of a stream text's events. */
function eventData(text: string): string[] {
  return SseReader.readAll(text)
    .map((e) => e.data)
    .filter((d) => d.startsWith("{"));
}

/**
 * The account of one request to an engine, whichever way its answer is
 * read (parsed by a compat layer, piped, or relayed by the fast lane): the
 * token usage and timings the answer reported, the time to its first byte,
 * the recorder's copy, and, once it is over, its metrics. One usage reader
 * for every path.
 */
export class CallLedger {
  promptTokens: number | null = null;
  completionTokens: number | null = null;
  timings: EngineTimings | null = null;
  private firstByteMs: number | null = null;
  /** Whether an answer's `usage` was seen: its counts win over the running `timings` (`timings_per_token`). */
  private usageSeen = false;
  private closed = false;

  constructor(
    private readonly metrics: DaemonMetrics,
    private readonly labels: { api: string; endpoint: string; model: string },
    /** `performance.now()` when the request arrived. */
    readonly startedMs: number,
    /** The request recorder's record of this exchange, when it is recorded. */
    private readonly recording: LedgerRecording | null,
  ) {}

  /** Whether the recorder keeps the client's answer (recordAnswer), so that it is worth building. */
  get recordsClientAnswer(): boolean {
    return this.recording?.view === "client";
  }

  /** The answer the client got, as a translating dialect made it, for the recorder. */
  clientAnswer(answer: unknown): void {
    if (this.recording?.view === "client") this.recording.tap.chunk(JSON.stringify(answer));
  }

  /** The first byte of a streamed answer arrived (only the first call counts). */
  firstByte(): void {
    this.firstByteMs ??= performance.now() - this.startedMs;
  }

  /** A piece of the engine's answer, for the recorder (when it records the engine's view). */
  chunk(data: Buffer | string): void {
    if (this.recording?.view === "engine") this.recording.tap.chunk(data);
  }

  /** Usage, prompt size and timings from one parsed answer or stream event. */
  observe(parsed: Record<string, unknown>): void {
    // Our engine's first stream chunk carries the prompt's size (llama-server's does not).
    if (typeof parsed.prompt_tokens === "number") this.promptTokens = parsed.prompt_tokens;
    const usage = parsed.usage as { prompt_tokens?: number; completion_tokens?: number } | undefined;
    if (usage && typeof usage === "object") {
      this.usageSeen = true;
      if (typeof usage.prompt_tokens === "number") this.promptTokens = usage.prompt_tokens;
      if (typeof usage.completion_tokens === "number") this.completionTokens = usage.completion_tokens;
    }
    const timings = parsed.timings as EngineTimings | undefined;
    if (timings && typeof timings === "object") {
      this.timings = timings;
      // Streamed with `timings_per_token`, every chunk counts the tokens so far (an answer read only up to a stop sequence ends on one).
      if (!this.usageSeen && typeof timings.predicted_n === "number") this.completionTokens = timings.predicted_n;
      this.promptTokens ??= timings.prompt_n + (timings.cache_n ?? 0);
    }
  }

  /**
   * Usage and timings from the end of an answer: the whole JSON body, or a
   * stream's events back from its last to the one that ends it (a choice's
   * `finish_reason`, or llama-server's `stop: true`), which no engine follows
   * with more than its usage and timings.
   */
  observeTail(text: string): void {
    if (!text.includes("data: ")) {
      this.observeLast([text], false);
      return;
    }
    // The last 2 KiB are read first (from an event's start), the whole window only when they lack the end: reading
    // every event of a 16 KiB window cost more than the rest of a stream's relay.
    const from = text.length > FIRST_LOOK_CHARS ? text.lastIndexOf("\n\n", text.length - FIRST_LOOK_CHARS) : -1;
    if (from >= 0 && this.observeLast(eventData(text.slice(from + 2)), true)) return;
    // The window's first line may be cut: it is no `data:` field then, or not JSON.
    this.observeLast(eventData(text), false);
  }

  /**
   * Observes the last usage and timings among `candidates` (JSON texts),
   * looking back until both are seen or an answer's end event is passed.
   * `needEnd`: only when that much is there (else nothing is observed).
   * Returns whether it was.
   */
  private observeLast(candidates: readonly string[], needEnd: boolean): boolean {
    const found: Array<Record<string, unknown>> = [];
    let usage = false;
    let timings = false;
    let ended = false;
    for (let i = candidates.length - 1; i >= 0 && !(usage && timings) && !ended; i--) {
      let parsed: Record<string, unknown>;
      try {
        parsed = JSON.parse(candidates[i]!) as Record<string, unknown>;
      } catch {
        continue; // the window's first, cut line, or a body that is not JSON
      }
      if (parsed === null || typeof parsed !== "object") continue;
      if ((parsed.usage && !usage) || (parsed.timings && !timings)) found.push(parsed);
      usage ||= Boolean(parsed.usage);
      timings ||= Boolean(parsed.timings);
      ended = endsAnswer(parsed);
    }
    if (needEnd && !(usage && timings) && !ended) return false;
    for (const parsed of found.reverse()) this.observe(parsed);
    return true;
  }

  /**
   * The request is over: with `status` as answered, or failed with `error`
   * (`clientLeft`: the client went away, recorded as 499). Records the
   * metrics and ends the recording. Idempotent.
   */
  close(status: number, error?: unknown, clientLeft = false): void {
    if (this.closed) return;
    this.closed = true;
    const final = error === undefined ? status : clientLeft ? 499 : statusOf(error);
    const r = this.recording;
    if (r) {
      const failure = error === undefined ? undefined : clientLeft ? new ClientClosedError() : error;
      if (failure !== undefined && !(failure instanceof ClientClosedError) && r.skipFailure?.(failure)) r.tap.cancel();
      else {
        r.tap.end(
          final,
          failure === undefined
            ? undefined
            : failure instanceof ClientClosedError
              ? { error: { message: failure.message, code: "client_closed" } }
              : (r.errorBody ?? ((e: unknown) => errorResponse(e, () => undefined).body))(failure),
        );
      }
    }
    this.metrics.inference({
      ...this.labels,
      status: final,
      durationMs: performance.now() - this.startedMs,
      firstByteMs: this.firstByteMs,
      promptTokens: this.promptTokens,
      completionTokens: this.completionTokens,
      generationMs: this.timings?.predicted_ms ?? null,
    });
  }
}

/**
 * The last pieces of a passing answer, at least USAGE_WINDOW_BYTES of them,
 * kept by reference and decoded once at the end for `observeTail`.
 */
export class UsageTail {
  private readonly pieces: Buffer[] = [];
  private bytes = 0;

  push(piece: Buffer): void {
    this.pieces.push(piece);
    this.bytes += piece.length;
    while (this.bytes - this.pieces[0]!.length >= USAGE_WINDOW_BYTES) this.bytes -= this.pieces.shift()!.length;
  }

  /** The window's text, or null when nothing passed. */
  text(): string | null {
    return this.pieces.length === 0 ? null : Buffer.concat(this.pieces, this.bytes).toString("utf8").slice(-USAGE_WINDOW_BYTES);
  }
}

/**
 * A JSON answer (an engine's error, most likely) to a request whose SSE
 * stream is already open (`: loading` comments), as the one `data:` event
 * it becomes; text that is not JSON is named in an engine_error.
 */
export function answerAsEvent(status: number, text: string): string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = { error: { message: `The engine answered with status ${status}: ${text.slice(0, 500)}`, type: "server_error", code: "engine_error" } };
  }
  return sseEvent(null, parsed);
}
