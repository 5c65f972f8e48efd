import { randomBytes } from "node:crypto";
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import type { LlamaGrammar, Token } from "node-llama-cpp";
import { InvalidRequestError, RunnerError } from "../errors.ts";
import { acceptJsonBodies } from "../http/json-body.ts";
import { clientSignal, LazyStream } from "../http/streaming.ts";
import { engineErrorBody, ModelLoadingError, UnauthorizedError, WrongModelError, WrongModeError } from "./errors.ts";
import type { GenerationResult, ReasoningControl, ToolCallControl } from "./generate.ts";
import { ReasoningSplitter } from "./reasoning.ts";
import { grammarForJsonSchema } from "./structured.ts";
import { callGrammar, checkTools, planTools, ToolCallParser, type ToolCallOut } from "./tools.ts";
import type { ModelHost } from "./model-host.ts";
import {
  chatCompletionRequest,
  chatMessagesFrom,
  completionRequest,
  detokenizeRequest,
  embeddingRequest,
  parseRequest,
  rankRequest,
  samplingFrom,
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
}

const BODY_LIMIT_BYTES = 32 * 1024 * 1024;
/** Routes that stay open when an API key is set, as in llama-server. */
const PUBLIC_ROUTES = new Set(["/health", "/v1/health", "/v1/models", "/models"]);

const newId = (prefix: string) => `${prefix}-${randomBytes(12).toString("base64url")}`;

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
      if (e.code === "FST_ERR_CTP_BODY_TOO_LARGE") mapped = new BodyTooLargeError();
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
    if (typeof given !== "string" || !state.apiKeys.includes(given)) throw new UnauthorizedError();
  });

  const ready = (): ModelHost => {
    if (!state.host) throw new ModelLoadingError();
    return state.host;
  };
  const checkModel = (requested: string | undefined) => {
    if (requested !== undefined && requested !== "" && requested !== state.modelId) {
      throw new WrongModelError(requested, state.modelId);
    }
  };

  app.get("/health", async (_req, reply) => {
    if (!state.host) {
      const { status, body } = engineErrorBody(new ModelLoadingError());
      return reply.code(status).send(body);
    }
    return { status: "ok" };
  });

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

  const chat = async (request: FastifyRequest, reply: FastifyReply) => {
    const body = parseRequest(chatCompletionRequest, withSamplingDefaults(request.body, state.samplingDefaults));
    checkModel(body.model);
    const host = ready();
    if (host.mode !== "completion") throw new WrongModeError("/v1/chat/completions", "completion");
    const params = samplingFrom(body, body.max_completion_tokens ?? body.max_tokens);
    const plan = planTools(checkTools(body.tools ?? []), body.tool_choice, body.parallel_tool_calls);
    const format = body.response_format;
    let grammar: LlamaGrammar | null = null;
    if (plan.mode !== "forced") {
      if (format?.type === "json_schema") {
        grammar = await grammarForJsonSchema(host.grammars, format.json_schema.schema, "response_format.json_schema.schema");
      } else if (format?.type === "json_object") {
        grammar = await grammarForJsonSchema(host.grammars, format.schema ?? {}, "response_format.schema");
      }
    }
    // Calls are grammar-constrained in the template's syntax: forced from the
    // first token, or after the model writes the call trigger ("auto"; not
    // under a response_format grammar, whose document is the whole reply).
    const forced = plan.mode === "forced";
    let parser: ToolCallParser | null = null;
    let toolGrammar: LlamaGrammar | null = null;
    if (forced || (plan.mode === "auto" && grammar === null)) {
      const syntax = host.callSyntax;
      const shape = { afterTrigger: !forced, parallel: plan.parallel };
      const key = JSON.stringify({ tools: plan.callable, ...shape });
      toolGrammar = await host.grammars.forToolCalls(key, () => callGrammar(host.llama, plan.callable, syntax, shape));
      parser = new ToolCallParser(syntax, plan.callable.map((t) => t.name), () => newId("call"), shape);
    }
    let prompt = host.chatPrompt(chatMessagesFrom(body.messages), plan.functions);

    // Thinking: bounded by the request or the engine flag; off under a grammar,
    // whose output must start at the first token.
    const thinking = host.thinking;
    let reasoning: ReasoningControl | null = null;
    let splitter: ReasoningSplitter | null = null;
    if (thinking) {
      let budget = body.reasoning_budget ?? host.reasoningBudget;
      if (body.reasoning_effort === "none" || body.chat_template_kwargs?.enable_thinking === false || grammar || forced) budget = 0;
      let startsInside = thinking.startsInside;
      if (budget === 0) {
        // An empty thought, as templates render "thinking off".
        const opened = startsInside && thinking.prefill === "";
        const closing = `${opened ? "" : `${thinking.open}\n\n`}${thinking.close}\n\n`;
        prompt = [...prompt, ...host.tokenize(closing, false)];
        startsInside = false;
      } else if (startsInside && thinking.prefill !== "") {
        prompt = [...prompt, ...host.tokenize(thinking.prefill, false)];
      }
      reasoning = {
        open: thinking.open,
        close: thinking.close,
        closeTokens: host.tokenize(`\n${thinking.close}\n\n`, false),
        startsInside,
        budgetTokens: budget < 0 ? null : budget,
      };
      if ((body.reasoning_format ?? host.reasoningFormat) !== "none") {
        splitter = new ReasoningSplitter(thinking.open, thinking.close, startsInside);
      }
    }
    const id = newId("chatcmpl");
    const created = Math.floor(Date.now() / 1000);
    const model = state.modelId;
    const split = (text: string) => (splitter ? splitter.push(text) : { reasoning: "", content: text });
    const toolControl = (onDeltas: (deltas: object[]) => Promise<void> | void): ToolCallControl | null =>
      parser && toolGrammar
        ? {
            trigger: forced ? null : host.callSyntax.trigger,
            grammar: toolGrammar,
            onCallText: async (text) => {
              const deltas = parser.push(text);
              if (deltas.length > 0) await onDeltas(deltas);
              return parser.isDone;
            },
          }
        : null;
    const finishOf = (result: GenerationResult) =>
      parser && parser.calls.length > 0 && result.finishReason === "stop" ? "tool_calls" : result.finishReason;
    if (body.stream) {
      const includeUsage = body.stream_options?.include_usage === true;
      const chunk = (delta: object, finish: string | null, extra: object = {}) => ({
        id,
        object: "chat.completion.chunk",
        created,
        model,
        choices: [{ index: 0, delta, logprobs: null, finish_reason: finish, ...extra }],
      });
      return streamSse(request, reply, async (send, signal) => {
        // `prompt_tokens` (an extension; llama-server sends no usage before the end) lets a
        // client report the prompt's size before generation, e.g. Anthropic's message_start.
        await send({ ...chunk({ role: "assistant", content: forced ? null : "" }, null), prompt_tokens: prompt.length });
        const sendSplit = async (parts: { reasoning: string; content: string }) => {
          if (parts.reasoning !== "") await send(chunk({ reasoning_content: parts.reasoning }, null));
          if (parts.content !== "") await send(chunk({ content: parts.content }, null));
        };
        const toolCalls = toolControl(async (deltas) => {
          if (splitter) await sendSplit(splitter.flush());
          for (const d of deltas) await send(chunk({ tool_calls: [d] }, null));
        });
        const result = await host.complete(prompt, params, (text) => sendSplit(split(text)), signal, { grammar, reasoning, toolCalls });
        if (splitter) await sendSplit(splitter.flush());
        await send({ ...chunk({}, finishOf(result), stopSequenceOf(result)), timings: timingsOf(result) });
        if (includeUsage) await send({ id, object: "chat.completion.chunk", created, model, choices: [], usage: usageOf(result) });
      });
    }
    const toolCalls = toolControl(() => undefined);
    const { text, result } = await collect(request, reply, (onText, signal) => host.complete(prompt, params, onText, signal, { grammar, reasoning, toolCalls }));
    let content: string | null = text;
    let reasoningContent = "";
    if (splitter) {
      const a = splitter.push(text);
      const b = splitter.flush();
      content = a.content + b.content;
      reasoningContent = (a.reasoning + b.reasoning).trim();
    }
    const calls: ToolCallOut[] = parser?.calls ?? [];
    // Before calls, whitespace alone is no content (OpenAI sends null).
    if (calls.length > 0 && content.trim() === "") content = null;
    const message = {
      role: "assistant",
      content,
      ...(reasoningContent !== "" ? { reasoning_content: reasoningContent } : {}),
      ...(calls.length > 0 ? { tool_calls: calls } : {}),
    };
    return {
      id,
      object: "chat.completion",
      created,
      model,
      choices: [{ index: 0, message, logprobs: null, finish_reason: finishOf(result), ...stopSequenceOf(result) }],
      usage: usageOf(result),
      timings: timingsOf(result),
    };
  };
  app.post("/v1/chat/completions", chat);
  app.post("/chat/completions", chat);

  const completions = async (request: FastifyRequest, reply: FastifyReply) => {
    const body = parseRequest(completionRequest, withSamplingDefaults(request.body, state.samplingDefaults));
    checkModel(body.model);
    const host = ready();
    if (host.mode !== "completion") throw new WrongModeError("/v1/completions", "completion");
    const params = samplingFrom(body, body.max_tokens ?? 16);
    let grammar: LlamaGrammar | null = null;
    if (typeof body.grammar === "string" && body.grammar.trim() !== "") grammar = await host.grammars.forGbnf(body.grammar, "grammar");
    else if (body.json_schema !== undefined && body.json_schema !== null) grammar = await grammarForJsonSchema(host.grammars, body.json_schema, "json_schema");
    else if (body.response_format?.type === "json_schema") {
      grammar = await grammarForJsonSchema(host.grammars, body.response_format.json_schema.schema, "response_format.json_schema.schema");
    } else if (body.response_format?.type === "json_object") {
      grammar = await grammarForJsonSchema(host.grammars, body.response_format.schema ?? {}, "response_format.schema");
    }
    const extras = { grammar };
    const prompts = (typeof body.prompt === "string" ? [body.prompt] : body.prompt).map((p) => host.tokenize(p, true));
    const id = newId("cmpl");
    const created = Math.floor(Date.now() / 1000);
    const model = state.modelId;
    if (body.stream) {
      const includeUsage = body.stream_options?.include_usage === true;
      const chunk = (index: number, text: string, finish: string | null, extra: object = {}) => ({
        id,
        object: "text_completion",
        created,
        model,
        choices: [{ index, text, logprobs: null, finish_reason: finish, ...extra }],
      });
      return streamSse(request, reply, async (send, signal) => {
        const results: GenerationResult[] = [];
        for (const [index, prompt] of prompts.entries()) {
          const result = await host.complete(prompt, params, (text) => send(chunk(index, text, null)), signal, extras);
          await send(chunk(index, "", result.finishReason, stopSequenceOf(result)));
          results.push(result);
        }
        if (includeUsage) await send({ id, object: "text_completion", created, model, choices: [], usage: sumUsage(results) });
      });
    }
    const outputs = await Promise.all(
      prompts.map((prompt) => collect(request, reply, (onText, signal) => host.complete(prompt, params, onText, signal, extras))),
    );
    return {
      id,
      object: "text_completion",
      created,
      model,
      choices: outputs.map(({ text, result }, index) => ({ index, text, logprobs: null, finish_reason: result.finishReason, ...stopSequenceOf(result) })),
      usage: sumUsage(outputs.map((o) => o.result)),
    };
  };
  app.post("/v1/completions", completions);
  app.post("/completions", completions);

  const embeddings = async (request: FastifyRequest, reply: FastifyReply) => {
    const body = parseRequest(embeddingRequest, request.body);
    checkModel(body.model);
    const host = ready();
    if (host.mode !== "embedding") throw new WrongModeError("/v1/embeddings", "embedding");
    const input = body.input;
    const inputs: Array<string | Token[]> =
      typeof input === "string"
        ? [input]
        : input.every((x) => typeof x === "number")
          ? [input as Token[]]
          : (input as Array<string | Token[]>);
    const { vectors, tokens } = await withAbort(request, reply, (signal) => host.embed(inputs, signal));
    const base64 = body.encoding_format === "base64";
    return {
      object: "list",
      model: state.modelId,
      data: vectors.map((v, index) => ({
        object: "embedding",
        index,
        embedding: base64 ? Buffer.from(new Float32Array(v).buffer).toString("base64") : v,
      })),
      usage: { prompt_tokens: tokens, total_tokens: tokens },
    };
  };
  app.post("/v1/embeddings", embeddings);
  app.post("/embeddings", embeddings);

  // llama-server's /rerank (Jina/Cohere shape): results sorted by relevance, best first.
  const rerank = async (request: FastifyRequest, reply: FastifyReply) => {
    const body = parseRequest(rankRequest, request.body);
    checkModel(body.model);
    const host = ready();
    if (host.mode !== "reranking") throw new WrongModeError(request.url.split("?")[0]!, "reranking");
    const texts = body.documents.map((d) => (typeof d === "string" ? d : d.text));
    const { scores, tokens } = await withAbort(request, reply, (signal) => host.rank(body.query, texts, signal));
    const results = scores
      .map((relevance_score, index) => ({
        index,
        relevance_score,
        ...(body.return_documents ? { document: { text: texts[index]! } } : {}),
      }))
      .sort((a, b) => b.relevance_score - a.relevance_score)
      .slice(0, body.top_n ?? texts.length);
    return { id: newId("rerank"), model: state.modelId, object: "list", results, usage: { prompt_tokens: tokens, total_tokens: tokens } };
  };
  for (const path of ["/rerank", "/v1/rerank", "/reranking", "/v1/reranking"]) app.post(path, rerank);

  // vLLM's /score: text_1 against each text_2 (or pairwise when both are lists).
  const score = async (request: FastifyRequest, reply: FastifyReply) => {
    const body = parseRequest(scoreRequest, request.body);
    checkModel(body.model);
    const host = ready();
    if (host.mode !== "reranking") throw new WrongModeError(request.url.split("?")[0]!, "reranking");
    const lefts = typeof body.text_1 === "string" ? [body.text_1] : body.text_1;
    const rights = typeof body.text_2 === "string" ? [body.text_2] : body.text_2;
    if (lefts.length !== 1 && lefts.length !== rights.length) {
      throw new InvalidRequestError("text_1 must be one text or as many texts as text_2", "text_1");
    }
    const { scores, tokens } = await withAbort(request, reply, async (signal) => {
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
  };
  app.post("/score", score);
  app.post("/v1/score", score);

  app.get("/slots", async () => ready().slots());

  app.post("/tokenize", async (request) => {
    const body = parseRequest(tokenizeRequest, request.body);
    const host = ready();
    const tokens = host.tokenize(body.content, body.add_special ?? false);
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

class BodyTooLargeError extends RunnerError {
  readonly code = "request_too_large";
  readonly status = 413;
  override readonly type = "invalid_request_error";
  constructor() {
    super(`The request body is larger than ${BODY_LIMIT_BYTES / 1024 / 1024} MiB.`);
  }
}

/**
 * The request's stop sequence that ended generation, on the choice (an extension, like
 * llama-server's `stopping_word`); absent otherwise, so OpenAI shapes are unchanged.
 */
function stopSequenceOf(r: GenerationResult): { stop_sequence?: string } {
  return r.stopSequence !== null ? { stop_sequence: r.stopSequence } : {};
}

function usageOf(r: GenerationResult) {
  return { prompt_tokens: r.promptTokens, completion_tokens: r.completionTokens, total_tokens: r.promptTokens + r.completionTokens };
}

function sumUsage(results: readonly GenerationResult[]) {
  const prompt = results.reduce((n, r) => n + r.promptTokens, 0);
  const completion = results.reduce((n, r) => n + r.completionTokens, 0);
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

/** llama-server's `timings` object: measured, in milliseconds. */
function timingsOf(r: GenerationResult) {
  return {
    prompt_n: r.promptTokensEvaluated,
    prompt_ms: r.promptMs,
    predicted_n: r.completionTokens,
    predicted_ms: r.generationMs,
    cache_n: r.promptTokens - r.promptTokensEvaluated,
  };
}

async function withAbort<T>(_request: FastifyRequest, reply: FastifyReply, run: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const { signal, dispose } = clientSignal(reply);
  try {
    return await run(signal);
  } finally {
    dispose();
  }
}

async function collect(
  request: FastifyRequest,
  reply: FastifyReply,
  run: (onText: (t: string) => void, signal: AbortSignal) => Promise<GenerationResult>,
): Promise<{ text: string; result: GenerationResult }> {
  let text = "";
  const result = await withAbort(request, reply, (signal) => run((t) => void (text += t), signal));
  return { text, result };
}

/**
 * Streams Server-Sent Events. Validation errors thrown before the first event
 * still become normal JSON error responses; once the stream has begun, an
 * error is sent as a last `data: {"error":...}` event. Writes wait for the
 * socket to drain, so a slow reader slows generation instead of filling memory.
 */
async function streamSse(
  _request: FastifyRequest,
  reply: FastifyReply,
  run: (send: (event: object) => Promise<void>, signal: AbortSignal) => Promise<void>,
): Promise<void> {
  const { signal, dispose } = clientSignal(reply);
  const stream = new LazyStream(reply, 200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
  const write = async (text: string) => {
    if (signal.aborted) throw signal.reason;
    await stream.write(text);
  };
  try {
    await run((event) => write(`data: ${JSON.stringify(event)}\n\n`), signal);
    await write("data: [DONE]\n\n");
    stream.end();
  } catch (error) {
    if (!stream.hasStarted) throw error;
    if (!signal.aborted) await stream.write(`data: ${JSON.stringify(engineErrorBody(error).body)}\n\n`).catch(() => undefined);
    stream.end();
  } finally {
    dispose();
  }
}
