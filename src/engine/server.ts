import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import type { Token } from "node-llama-cpp";
import type { z } from "zod";
import { InvalidRequestError, RunnerError } from "../errors.ts";
import { BodyTooLargeError } from "../http/body-limit.ts";
import { acceptJsonBodies } from "../http/json-body.ts";
import { planChat, type ChoiceState } from "./chat-plan.ts";
import { EngineApiKeyError, engineErrorBody, ModelLoadingError, WrongModelError, WrongModeError } from "./errors.ts";
import type { GenerationResult, LiveStats, ToolCallControl } from "./generate.ts";
import { chatLogprobs, completionLogprobs, type TokenProbabilities } from "./logprobs.ts";
import { completionPlan, promptsOf } from "./request-fields.ts";
import { grammarForRequest } from "./grammar/for-request.ts";
import type { CompletionExtras, EngineMode, ModelHost } from "./model-host.ts";
import { registerLlamaRoutes } from "./llama-routes.ts";
import { dimensionsError, float32Base64, shortenEmbedding } from "./embedding-vectors.ts";
import { allChoices, collectAll, streamSse, withAbort } from "./reply-stream.ts";
import {
  chatChunk,
  chatFinishReason,
  chatMessage,
  completionChunk,
  liveTimings,
  newId,
  newLiveStats,
  responseMeta,
  stopSequenceOf,
  timingsOf,
  usageChunk,
  usageOfChoices,
} from "./openai-shapes.ts";
import {
  chatCompletionRequest,
  completionRequest,
  detokenizeRequest,
  embeddingRequest,
  parseRequest,
  rankRequest,
  scoreRequest,
  tokenizeRequest,
  withSamplingDefaults,
} from "./requests.ts";
import type { SamplingDefaults } from "./options.ts";

/** What the HTTP layer needs to know about the engine's state. */
export interface EngineState {
  /** The loaded model, or null while it is still loading. */
  host: ModelHost | null;
  /** Keys accepted as Bearer token or X-Api-Key; empty = no authentication. */
  apiKeys: readonly string[];
  /** Default generation settings from the sampling flags; a request's own fields override them. */
  samplingDefaults: SamplingDefaults;
  /** The model id requests must name (alias or file name), known before loading ends. */
  modelId: string;
  /** Optional endpoints, as llama-server's `--metrics` and `--slots`/`--no-slots` set them. Default: slots only. */
  endpoints?: { metrics: boolean; slots: boolean };
}

/**
 * Builds a model route's handler: the body parsed with `schema`, the model it
 * names checked, the engine loaded and in `mode`, then `handler`.
 */
export type Route = <S extends z.ZodType<{ model?: string | undefined | null }>>(
  mode: EngineMode,
  schema: S,
  handler: (body: z.infer<S>, host: ModelHost, request: FastifyRequest, reply: FastifyReply) => Promise<unknown>,
) => (request: FastifyRequest, reply: FastifyReply) => Promise<unknown>;

const BODY_LIMIT_BYTES = 32 * 1024 * 1024;
/** Routes that stay open when an API key is set, as in llama-server. */
const PUBLIC_ROUTES = new Set(["/health", "/v1/health", "/v1/models", "/models"]);

/**
 * Builds the engine's HTTP app: llama-server's OpenAI-compatible routes for
 * the one model in `state`. The caller listens and closes it.
 */
export function createEngineApp(state: EngineState): FastifyInstance {
  // When the engine is told to stop, open keep-alive connections must not hold it up.
  const app = Fastify({ bodyLimit: BODY_LIMIT_BYTES, logger: false, return503OnClosing: true, forceCloseConnections: true });

  // Any body is read as JSON whatever its Content-Type (curl's default is form
  // encoding); malformed JSON becomes an OpenAI-shaped 400 below.
  app.removeAllContentTypeParsers();
  acceptJsonBodies(app);

  app.setErrorHandler((error, _request, reply) => {
    let mapped: unknown = error;
    if (!(error instanceof RunnerError)) {
      const e = error as { statusCode?: number; message?: string; code?: string };
      if (e.code === "FST_ERR_CTP_BODY_TOO_LARGE") mapped = new BodyTooLargeError(BODY_LIMIT_BYTES);
      else if (typeof e.statusCode === "number" && e.statusCode < 500) mapped = new InvalidRequestError(e.message ?? "Bad request");
    }
    const { status, body } = engineErrorBody(mapped);
    void reply.code(status).send(body);
  });
  app.setNotFoundHandler((request, reply) => {
    void reply.code(404).send({ error: { code: 404, message: `File Not Found: ${request.method} ${request.url}`, type: "not_found_error" } });
  });

  app.addHook("onRequest", async (request) => {
    if (state.apiKeys.length === 0 || PUBLIC_ROUTES.has(request.url.split("?")[0]!)) return;
    const auth = request.headers.authorization;
    const given = auth?.startsWith("Bearer ") ? auth.slice(7) : request.headers["x-api-key"];
    if (typeof given !== "string" || !state.apiKeys.includes(given)) throw new EngineApiKeyError();
  });

  const ready = (): ModelHost => {
    if (!state.host) throw new ModelLoadingError();
    return state.host;
  };
  const checkModel = (requested: string | undefined | null) => {
    if (requested !== undefined && requested !== null && requested !== "" && requested !== state.modelId) {
      throw new WrongModelError(requested, state.modelId);
    }
  };

  const health = async (_req: FastifyRequest, reply: FastifyReply) => {
    if (!state.host) {
      const { status, body } = engineErrorBody(new ModelLoadingError());
      return reply.code(status).send(body);
    }
    return { status: "ok" };
  };
  app.get("/health", health);
  app.get("/v1/health", health);

  const listModels = async () => {
    const host = state.host;
    const info = host?.info;
    return {
      object: "list",
      data: [
        {
          id: state.modelId,
          object: "model",
          created: info?.created ?? Math.floor(Date.now() / 1000),
          owned_by: "model-runner",
          meta: info
            ? {
                n_ctx: info.contextSize,
                n_ctx_slot: info.slotContextSize,
                n_parallel: info.parallel,
                n_ctx_train: info.trainContextSize,
                n_params: info.parameters,
                n_embd: info.embeddingLength,
                n_vocab: info.vocabSize,
                size: info.sizeBytes,
                mode: info.mode,
              }
            : null,
        },
      ],
    };
  };
  app.get("/v1/models", listModels);
  app.get("/models", listModels);

  /**
   * A model route's prologue: parse the body with `schema`, check the model
   * it names, wait for nothing (503 while loading) and check the engine's mode.
   */
  const route: Route =
    (mode, schema, handler) =>
    async (request, reply) => {
      // The sampling flags' defaults stand in for fields a generation request leaves out.
      const body = parseRequest(schema, mode === "completion" ? withSamplingDefaults(request.body, state.samplingDefaults) : request.body);
      checkModel(body.model);
      const host = ready();
      if (host.mode !== mode) throw new WrongModeError(request.url.split("?")[0]!, mode);
      return handler(body, host, request, reply);
    };

  const chat = route("completion", chatCompletionRequest, async (body, host, _request, reply) => {
    const plan = await planChat(host, body);
    const { prompt, params, grammar, reasoning, generation } = plan;
    const meta = responseMeta("chatcmpl", state.modelId);
    const post = params.logprobs?.postSampling ?? false;
    const finishOf = (choice: ChoiceState, result: GenerationResult) => chatFinishReason(result, choice.calls?.calls.length ?? 0);
    const extrasFor = (toolCalls: ToolCallControl | null, probabilities: TokenProbabilities[] | null, stats: LiveStats | null): CompletionExtras => ({
      grammar,
      reasoning,
      toolCalls,
      slot: generation.slot,
      onProbabilities: probabilities ? (p) => void probabilities.push(p) : null,
      stats,
    });
    if (body.stream) {
      const includeUsage = body.stream_options?.include_usage === true;
      return streamSse(reply, async (send, signal) => {
        const results = await allChoices(plan.choices.length, signal, async (index, signal) => {
          const choice = plan.choices[index]!;
          const splitter = choice.splitter;
          const pending: TokenProbabilities[] | null = params.logprobs ? [] : null;
          const stats = generation.timingsPerToken ? newLiveStats() : null;
          /** The choice's index, the probabilities of the tokens since its last chunk, the timings so far. */
          const chunk = (delta: object, finish: string | null = null, extra: object = {}) => ({
            ...chatChunk(meta, delta, finish, {
              index,
              ...(pending && pending.length > 0 ? { logprobs: chatLogprobs(host.model, pending.splice(0), post) } : {}),
              ...extra,
            }),
            ...(stats ? { timings: liveTimings(stats) } : {}),
          });
          // `prompt_tokens` (an extension; llama-server sends no usage before the end) lets a
          // client report the prompt's size before generation, e.g. Anthropic's message_start.
          await send({ ...chatChunk(meta, { role: "assistant", content: plan.forced ? null : "" }, null, { index }), prompt_tokens: prompt.length });
          const sendSplit = async (parts: { reasoning: string; content: string }) => {
            if (parts.reasoning !== "") await send(chunk({ reasoning_content: parts.reasoning }));
            if (parts.content !== "") await send(chunk({ content: parts.content }));
          };
          const split = (text: string) => (splitter ? splitter.push(text) : { reasoning: "", content: text });
          const toolCalls = choice.toolControl(async (deltas) => {
            if (splitter) await sendSplit(splitter.flush());
            for (const d of deltas) await send(chunk({ tool_calls: [d] }));
          });
          const result = await host.complete(prompt, params, (text) => sendSplit(split(text)), signal, extrasFor(toolCalls, pending, stats));
          if (splitter) await sendSplit(splitter.flush());
          const tokens = generation.returnTokens ? { tokens: result.tokens } : {};
          await send({ ...chunk({}, finishOf(choice, result), { ...stopSequenceOf(result), ...tokens }), timings: timingsOf(result) });
          return result;
        });
        if (includeUsage) await send(usageChunk(meta, "chat.completion.chunk", usageOfChoices([results])));
      });
    }
    const outputs = await collectAll(reply, plan.choices.length, async (index, onText, signal) => {
      const choice = plan.choices[index]!;
      const probabilities: TokenProbabilities[] | null = params.logprobs ? [] : null;
      const result = await host.complete(prompt, params, onText, signal, extrasFor(choice.toolControl(() => undefined), probabilities, null));
      return { result, probabilities };
    });
    return {
      id: meta.id,
      object: "chat.completion",
      created: meta.created,
      model: meta.model,
      choices: outputs.map(({ text, result, probabilities }, index) => {
        const choice = plan.choices[index]!;
        return {
          index,
          message: chatMessage(text, choice.splitter, choice.calls?.calls ?? []),
          logprobs: probabilities ? chatLogprobs(host.model, probabilities, post) : null,
          finish_reason: finishOf(choice, result),
          ...stopSequenceOf(result),
          ...(generation.returnTokens ? { tokens: result.tokens } : {}),
        };
      }),
      usage: usageOfChoices([outputs.map((o) => o.result)]),
      timings: timingsOf(outputs[0]!.result),
    };
  });
  app.post("/v1/chat/completions", chat);
  app.post("/chat/completions", chat);

  const completions = route("completion", completionRequest, async (body, host, _request, reply) => {
    const generation = completionPlan(body, host.vocabulary, host.slotCount);
    const params = generation.params;
    const grammar = await grammarForRequest(host.grammars, body);
    const prompts = promptsOf(body.prompt, (text, addSpecial) => host.tokenize(text, addSpecial), host.info.vocabSize);
    const n = generation.choices;
    const meta = responseMeta("cmpl", state.modelId);
    const post = params.logprobs?.postSampling ?? false;
    const extrasFor = (probabilities: TokenProbabilities[] | null, stats: LiveStats | null): CompletionExtras => ({
      grammar,
      slot: generation.slot,
      onProbabilities: probabilities ? (p) => void probabilities.push(p) : null,
      stats,
    });
    if (body.stream) {
      const includeUsage = body.stream_options?.include_usage === true;
      return streamSse(reply, async (send, signal) => {
        const groups: GenerationResult[][] = [];
        // Prompts one after another, each prompt's `n` choices side by side; choice index = prompt * n + j.
        for (const [p, prompt] of prompts.entries()) {
          groups.push(
            await allChoices(n, signal, async (j, signal) => {
              const index = p * n + j;
              const pending: TokenProbabilities[] | null = params.logprobs ? [] : null;
              const stats = generation.timingsPerToken ? newLiveStats() : null;
              let offset = 0;
              const chunk = (text: string, finish: string | null = null, extra: object = {}) => {
                const probabilities = pending && pending.length > 0 ? pending.splice(0) : null;
                const logprobs = probabilities ? { logprobs: completionLogprobs(host.model, probabilities, post, offset) } : {};
                offset += text.length;
                return { ...completionChunk(meta, index, text, finish, { ...logprobs, ...extra }), ...(stats ? { timings: liveTimings(stats) } : {}) };
              };
              const result = await host.complete(prompt, params, (text) => send(chunk(text)), signal, extrasFor(pending, stats));
              await send(chunk("", result.finishReason, { ...stopSequenceOf(result), ...(generation.returnTokens ? { tokens: result.tokens } : {}) }));
              return result;
            }),
          );
        }
        if (includeUsage) await send(usageChunk(meta, "text_completion", usageOfChoices(groups)));
      });
    }
    const outputs = await collectAll(reply, prompts.length * n, async (index, onText, signal) => {
      const probabilities: TokenProbabilities[] | null = params.logprobs ? [] : null;
      const result = await host.complete(prompts[Math.floor(index / n)]!, params, onText, signal, extrasFor(probabilities, null));
      return { result, probabilities };
    });
    const groups = prompts.map((_, p) => outputs.slice(p * n, (p + 1) * n).map((o) => o.result));
    return {
      id: meta.id,
      object: "text_completion",
      created: meta.created,
      model: meta.model,
      choices: outputs.map(({ text, result, probabilities }, index) => ({
        index,
        text,
        logprobs: probabilities ? completionLogprobs(host.model, probabilities, post) : null,
        finish_reason: result.finishReason,
        ...stopSequenceOf(result),
        ...(generation.returnTokens ? { tokens: result.tokens } : {}),
      })),
      usage: usageOfChoices(groups),
      // As llama-server's OpenAI completion (server-task.cpp `to_json_oaicompat`), and as the chat route does.
      timings: timingsOf(outputs[0]!.result),
    };
  });
  app.post("/v1/completions", completions);
  app.post("/completions", completions);

  const embeddings = route("embedding", embeddingRequest, async (body, host, _request, reply) => {
    const dimensions = body.dimensions ?? null;
    const tooMany = dimensions === null ? null : dimensionsError(dimensions, host.info.embeddingLength);
    if (tooMany) throw new InvalidRequestError(tooMany, "dimensions");
    if (host.info.pooling === "none") {
      // llama-server's answer: per-token embeddings have no OpenAI shape (use /embedding).
      throw new InvalidRequestError("Pooling type 'none' is not OAI compatible. Please use a different pooling type");
    }
    const input = body.input;
    const inputs: Array<string | Token[]> =
      typeof input === "string"
        ? [input]
        : input.every((x) => typeof x === "number")
          ? [input as Token[]]
          : (input as Array<string | Token[]>);
    const { rows, tokens } = await withAbort(reply, (signal) => host.embed(inputs, signal));
    const base64 = body.encoding_format === "base64";
    return {
      object: "list",
      model: state.modelId,
      data: rows.map(([row], index) => {
        const v = dimensions === null ? row! : shortenEmbedding(row!, dimensions);
        return { object: "embedding", index, embedding: base64 ? float32Base64(v) : v };
      }),
      usage: { prompt_tokens: tokens, total_tokens: tokens },
    };
  });
  app.post("/v1/embeddings", embeddings);
  app.post("/embeddings", embeddings);

  // llama-server's /rerank (Jina/Cohere shape): results sorted by relevance, best first.
  const rerank = route("reranking", rankRequest, async (body, host, _request, reply) => {
    const texts = body.documents.map((d) => (typeof d === "string" ? d : d.text));
    const { scores, tokens } = await withAbort(reply, (signal) => host.rank(body.query, texts, signal));
    const results = scores
      .map((relevance_score, index) => ({
        index,
        relevance_score,
        ...(body.return_documents ? { document: { text: texts[index]! } } : {}),
      }))
      .sort((a, b) => b.relevance_score - a.relevance_score)
      .slice(0, body.top_n ?? texts.length);
    return { id: newId("rerank"), model: state.modelId, object: "list", results, usage: { prompt_tokens: tokens, total_tokens: tokens } };
  });
  for (const path of ["/rerank", "/v1/rerank", "/reranking", "/v1/reranking"]) app.post(path, rerank);

  // vLLM's /score: text_1 against each text_2 (or pairwise when both are lists).
  const score = route("reranking", scoreRequest, async (body, host, _request, reply) => {
    const lefts = typeof body.text_1 === "string" ? [body.text_1] : body.text_1;
    const rights = typeof body.text_2 === "string" ? [body.text_2] : body.text_2;
    if (lefts.length !== 1 && lefts.length !== rights.length) {
      throw new InvalidRequestError("text_1 must be one text or as many texts as text_2", "text_1");
    }
    const { scores, tokens } = await withAbort(reply, async (signal) => {
      if (lefts.length === 1) return host.rank(lefts[0]!, rights, signal);
      const all = { scores: [] as number[], tokens: 0 };
      for (const [i, left] of lefts.entries()) {
        const r = await host.rank(left, [rights[i]!], signal);
        all.scores.push(r.scores[0]!);
        all.tokens += r.tokens;
      }
      return all;
    });
    return {
      id: newId("score"),
      object: "list",
      created: Math.floor(Date.now() / 1000),
      model: state.modelId,
      data: scores.map((s, index) => ({ index, object: "score", score: s })),
      usage: { prompt_tokens: tokens, total_tokens: tokens },
    };
  });
  app.post("/score", score);
  app.post("/v1/score", score);

  registerLlamaRoutes(app, { state, route, ready });

  app.post("/tokenize", async (request) => {
    const body = parseRequest(tokenizeRequest, request.body);
    const host = ready();
    const tokens = host.tokenize(body.content, body.add_special ?? false, body.parse_special ?? true);
    if (body.with_pieces) return { tokens: tokens.map((id) => ({ id, piece: host.tokenPiece(id) })) };
    return { tokens };
  });
  app.post("/detokenize", async (request) => {
    const body = parseRequest(detokenizeRequest, request.body);
    const host = ready();
    const limit = host.info.vocabSize;
    const bad = body.tokens.findIndex((t) => t >= limit);
    if (bad >= 0) throw new InvalidRequestError(`tokens[${bad}] = ${body.tokens[bad]} is not in the vocabulary (size ${limit})`, `tokens.${bad}`);
    return { content: host.detokenize(body.tokens as Token[]) };
  });

  return app;
}
