import type { FastifyReply, FastifyRequest } from "fastify";
import { InvalidRequestError } from "../../errors.ts";
import { optionalBoolean } from "../../http/fields.ts";
import { clientRecordAs, EngineAnswerError, openEngineCall, type RecordAs } from "../engine/call.ts";
import type { OllamaDeps } from "./deps.ts";
import { ollamaErrorBody } from "./errors.ts";
import { checkOllamaFields, keepAliveOf, mapOptions, modelOf, ns } from "./options.ts";
import { applyRunnerOptions } from "./runner-options.ts";

type EmbeddingAnswer = { data: Array<{ embedding: number[] }>; usage?: { prompt_tokens?: number } };

/** The engine's embeddings for `input`, and the time spent getting its runner; `toClient` is the client's answer (recorded). */
async function embedOnce(
  deps: OllamaDeps,
  model: string,
  input: Array<string | number[]>,
  dimensions: number | null,
  signal: AbortSignal,
  keepAliveMs: number | undefined,
  recordAs: RecordAs,
  toClient: (answer: EmbeddingAnswer, acquireMs: number) => unknown,
) {
  const call = await openEngineCall(deps, {
    endpoint: "/v1/embeddings",
    body: { model, input, ...(dimensions !== null ? { dimensions } : {}) },
    api: "ollama",
    signal,
    keepAliveMs,
    recordAs,
  });
  try {
    const answer = await call.json<EmbeddingAnswer>();
    const reply = toClient(answer, call.acquireMs);
    call.recordAnswer(reply);
    call.finish();
    return reply;
  } catch (error) {
    call.finish(error);
    throw error;
  }
}

/**
 * Ollama's `dimensions`: vectors cut to that many values and scaled back to
 * unit length (the engine does it, as for OpenAI's `dimensions`); 0 is
 * Ollama's "not set". A negative or fractional size is refused, and one above
 * the model's size is refused by the engine (Ollama returns full vectors).
 */
function dimensionsOf(value: unknown): number | null {
  if (value === undefined || value === null || value === 0) return null;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0) {
    throw new InvalidRequestError("'dimensions' must be a positive integer.", "dimensions");
  }
  return value;
}

/** Each input as tokens cut to the runner's context (Ollama's `truncate: true`), tokenized by the model's own engine. */
async function truncated(deps: OllamaDeps, model: string, inputs: string[], signal: AbortSignal): Promise<number[][]> {
  const out: number[][] = [];
  for (const content of inputs) {
    const call = await openEngineCall(deps, { endpoint: "/tokenize", mode: "embedding", body: { model, content, add_special: true }, api: "ollama", signal });
    try {
      const { tokens } = await call.json<{ tokens: number[] }>();
      call.finish();
      // One place is left for the end token a model's vocabulary appends to each input (BERT's [SEP]).
      out.push(tokens.length > call.lease.contextSize ? tokens.slice(0, call.lease.contextSize - 1) : tokens);
    } catch (error) {
      call.finish(error);
      throw error;
    }
  }
  return out;
}

/**
 * `POST /api/embed` (`input`: string or strings; `truncate` default true)
 * and the legacy `POST /api/embeddings` (`prompt` → one `embedding`).
 */
export async function handleEmbed(deps: OllamaDeps, legacy: boolean, request: FastifyRequest, reply: FastifyReply) {
  const started = performance.now();
  const body = request.body as Record<string, unknown>;
  const model = modelOf(body);
  checkOllamaFields(legacy ? "/api/embeddings" : "/api/embed", body);
  const keepAliveMs = keepAliveOf(body.keep_alive);
  const truncate = optionalBoolean(body.truncate, "truncate") ?? true;
  // Sampling options do not apply to embeddings (Ollama ignores them there too); the runner's do.
  const runnerOptions = mapOptions(body.options);
  const dimensions = dimensionsOf(body.dimensions);
  const raw = legacy ? body.prompt : body.input;
  if (raw === undefined || raw === "" || (Array.isArray(raw) && raw.length === 0)) {
    // Ollama's load idiom, as for /api/generate: nothing to embed loads the model (for keep_alive) and answers no vectors.
    await applyRunnerOptions(deps, model, "embedding", runnerOptions);
    const loading = performance.now();
    await deps.scheduler.preload(model, "embedding", { keepAliveMs });
    if (legacy) return { embedding: [] };
    return { model, embeddings: [], total_duration: ns(performance.now() - started), load_duration: ns(performance.now() - loading), prompt_eval_count: 0 };
  }
  const inputs = typeof raw === "string" ? [raw] : raw;
  if (!Array.isArray(inputs) || inputs.length === 0 || !inputs.every((s) => typeof s === "string")) {
    throw new InvalidRequestError(legacy ? "'prompt' must be a string." : "'input' must be a string or an array of strings.", legacy ? "prompt" : "input");
  }
  await applyRunnerOptions(deps, model, "embedding", runnerOptions);
  const client = { signal: reply.request.clientSignal };
  const toClient = (answer: EmbeddingAnswer, acquireMs: number) => {
    const embeddings = answer.data.map((d) => d.embedding);
    if (legacy) return { embedding: embeddings[0] ?? [] };
    return {
      model,
      embeddings,
      total_duration: ns(performance.now() - started),
      load_duration: ns(acquireMs),
      prompt_eval_count: answer.usage?.prompt_tokens ?? 0,
    };
  };
  const retries = (error: unknown) => error instanceof EngineAnswerError && error.type === "exceed_context_size_error" && truncate && !legacy;
  try {
    // A too-long input that is then truncated and sent again is one exchange for the client: only the retry is recorded.
    return await embedOnce(deps, model, inputs, dimensions, client.signal, keepAliveMs, { ...clientRecordAs(request, ollamaErrorBody), skipFailure: retries }, toClient);
  } catch (error) {
    if (!retries(error)) throw error;
    const cut = await truncated(deps, model, inputs as string[], client.signal);
    return await embedOnce(deps, model, cut, dimensions, client.signal, keepAliveMs, clientRecordAs(request, ollamaErrorBody), toClient);
  }
}
