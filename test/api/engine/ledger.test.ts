import assert from "node:assert/strict";
import { test } from "node:test";
import type { InferenceObservation } from "../../../src/api/engine/call.ts";
import { CallLedger, USAGE_WINDOW_BYTES } from "../../../src/api/engine/ledger.ts";
import type { DaemonMetrics } from "../../../src/api/metrics.ts";

/** The usage and timings a ledger reports for a stream's tail text. */
function observed(text: string): Pick<InferenceObservation, "promptTokens" | "completionTokens" | "generationMs"> {
  let seen: InferenceObservation | null = null;
  const metrics = { inference: (o: InferenceObservation) => (seen = o) } as unknown as DaemonMetrics;
  const ledger = new CallLedger(metrics, { api: "openai", endpoint: "/v1/chat/completions", model: "m" }, performance.now(), null);
  ledger.observeTail(text);
  ledger.close(200);
  const { promptTokens, completionTokens, generationMs } = seen!;
  return { promptTokens, completionTokens, generationMs };
}

const event = (data: unknown) => `data: ${JSON.stringify(data)}\n\n`;
const delta = (i: number) => event({ choices: [{ index: 0, delta: { content: `token ${i} `.repeat(8) } }] });
const timings = (n: number) => ({ prompt_n: 5, prompt_ms: 1, predicted_n: n, predicted_ms: 40, cache_n: 2 });

test("a stream's usage and timings come from its last events, however long the stream", () => {
  for (const count of [0, 3, 40, 400]) {
    let text = Array.from({ length: count }, (_, i) => delta(i)).join("");
    text += event({ choices: [{ index: 0, delta: {}, finish_reason: "length" }], timings: timings(count) });
    text += event({ choices: [], usage: { prompt_tokens: 7, completion_tokens: count } });
    text += "data: [DONE]\n\n";
    // The window a relayed stream keeps: its last bytes, the first line cut.
    const tail = text.slice(-USAGE_WINDOW_BYTES);
    assert.deepEqual(observed(tail), { promptTokens: 7, completionTokens: count, generationMs: 40 }, `${count} deltas`);
  }
});

test("usage and timings far apart in a stream: read from the whole window", () => {
  // `timings_per_token`-style: the timings on an early event only, then many events without either, then the usage.
  let text = event({ choices: [{ index: 0, delta: { content: "a" } }], timings: timings(1) });
  for (let i = 0; i < 60; i++) text += delta(i);
  text += event({ choices: [], usage: { prompt_tokens: 9, completion_tokens: 61 } });
  assert.deepEqual(observed(text), { promptTokens: 9, completionTokens: 61, generationMs: 40 });
  // Timings alone, far back: the completion count comes from them.
  let only = event({ choices: [{ index: 0, delta: { content: "a" } }], timings: timings(3) });
  for (let i = 0; i < 60; i++) only += delta(i);
  assert.deepEqual(observed(only), { promptTokens: 7, completionTokens: 3, generationMs: 40 });
});

test("a whole JSON answer, and a tail with neither", () => {
  assert.deepEqual(observed(JSON.stringify({ usage: { prompt_tokens: 3, completion_tokens: 1 }, timings: timings(1) })), { promptTokens: 3, completionTokens: 1, generationMs: 40 });
  assert.deepEqual(observed(Array.from({ length: 50 }, (_, i) => delta(i)).join("")), { promptTokens: null, completionTokens: null, generationMs: null });
  assert.deepEqual(observed("not json"), { promptTokens: null, completionTokens: null, generationMs: null });
});

test("the events before a stream's end are not read: a stream without usage stops at its finish", () => {
  // An event with usage before the end would count if it were read; no engine sends one there, and it is not read.
  let text = event({ choices: [], usage: { prompt_tokens: 1, completion_tokens: 1 } });
  for (let i = 0; i < 60; i++) text += delta(i);
  text += event({ choices: [{ index: 0, delta: {}, finish_reason: "stop" }], timings: timings(60) });
  text += "data: [DONE]\n\n";
  assert.deepEqual(observed(text), { promptTokens: 7, completionTokens: 60, generationMs: 40 });
  // llama-server's own /completion stream ends on `stop: true`.
  let native = "";
  for (let i = 0; i < 60; i++) native += event({ content: `piece ${i} `.repeat(8), stop: false });
  native += event({ content: "", stop: true, timings: timings(61) });
  assert.deepEqual(observed(native), { promptTokens: 7, completionTokens: 61, generationMs: 40 });
});
