import type { FastifyReply, FastifyRequest } from "fastify";
import { InvalidRequestError } from "../../errors.ts";
import { optionalBoolean } from "../../http/fields.ts";
import { EngineAnswerError, openEngineCall } from "../engine-call.ts";
import { clientSignal } from "../streaming.ts";
import type { OllamaDeps } from "./deps.ts";
import { keepAliveOf, mapOptions, modelOf, ns } from "./options.ts";

type EmbeddingAnswer = { data: Array<{ embedding: number[] }>; usage?: { prompt_tokens?: number } };

async function embedOnce(deps: OllamaDeps, model: string, input: Array<string | number[]>, signal: AbortSignal, keepAliveMs: number | undefined) {
  const call = await openEngineCall(deps, { endpoint: "/v1/embeddings", body: { model, input }, api: "ollama", signal, keepAliveMs });
  try {
    const answer = await call.json<EmbeddingAnswer>();
    call.finish();
    return { answer, acquireMs: call.acquireMs };
  } catch (error) {
    call.finish(error);
    throw error;
  }
}

/** Each input as tokens cut to the runner's context (Ollama's `truncate: true`), tokenized by the model's own engine. */
async function truncated(deps: OllamaDeps, model: string, inputs: string[], signal: AbortSignal): Promise<number[][]> {
  const out: number[][] = [];
  for (const content of inputs) {
    const call = await openEngineCall(deps, { endpoint: "/tokenize", mode: "embedding", body: { model, content, add_special: true }, api: "ollama", signal });
    try {
      const { tokens } = await call.json<{ tokens: number[] }>();
      call.finish();
      out.push(tokens.slice(0, call.lease.contextSize));
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
  const keepAliveMs = keepAliveOf(body.keep_alive);
  const truncate = optionalBoolean(body.truncate, "truncate") ?? true;
  mapOptions(body.options); // validated; sampling options do not apply to embeddings
  if (body.dimensions !== undefined && body.dimensions !== null) throw new InvalidRequestError("'dimensions' is not supported.", "dimensions");
  const raw = legacy ? body.prompt : body.input;
  const inputs = typeof raw === "string" ? [raw] : raw;
  if (!Array.isArray(inputs) || inputs.length === 0 || !inputs.every((s) => typeof s === "string")) {
    throw new InvalidRequestError(legacy ? "'prompt' must be a string." : "'input' must be a string or an array of strings.", legacy ? "prompt" : "input");
  }
  const client = clientSignal(reply);
  try {
    let result;
    try {
      result = await embedOnce(deps, model, inputs, client.signal, keepAliveMs);
    } catch (error) {
      const tooLong = error instanceof EngineAnswerError && error.type === "exceed_context_size_error";
      if (!tooLong || !truncate || legacy) throw error;
      result = await embedOnce(deps, model, await truncated(deps, model, inputs as string[], client.signal), client.signal, keepAliveMs);
    }
    const embeddings = result.answer.data.map((d) => d.embedding);
    if (legacy) return { embedding: embeddings[0] ?? [] };
    return {
      model,
      embeddings,
      total_duration: ns(performance.now() - started),
      load_duration: ns(result.acquireMs),
      prompt_eval_count: result.answer.usage?.prompt_tokens ?? 0,
    };
  } finally {
    client.dispose();
  }
}
