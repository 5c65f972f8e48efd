import type { FastifyInstance, FastifyReply } from "fastify";
import type { Token } from "node-llama-cpp";
import { InvalidRequestError, RunnerError } from "../errors.ts";
import { NotSupportedError } from "./errors.ts";
import type { GenerationResult } from "./generate.ts";
import { grammarForRequest } from "./grammar/for-request.ts";
import { infillPrompt } from "./infill.ts";
import { generationSettings, nativeFinal, nativePartial } from "./llama-shapes.ts";
import { infillRequest, nativeCompletionRequest, nativeEmbeddingRequest } from "./llama-requests.ts";
import type { CompletionExtras, ModelHost } from "./model-host.ts";
import { allChoices, collectAll, streamSse, withAbort } from "./reply-stream.ts";
import { chatCompletionRequest, chatMessagesFrom } from "./requests.ts";
import { samplingFrom } from "./sampling.ts";
import { completionPlan, promptsOf, type GenerationPlan } from "./request-fields.ts";
import { probabilityEntries, type TokenProbabilities } from "./logprobs.ts";
import { liveTimings, newLiveStats } from "./openai-shapes.ts";
import { checkTools, planTools } from "./tools.ts";
import type { EngineState, Route } from "./server.ts";

/**
 * llama-server's own endpoints beside the OpenAI ones: `/completion`,
 * `/infill`, `/embedding`, `/apply-template`, `/props`, `/slots` and
 * `/metrics`, with llama-server's request fields and response shapes.
 */
export function registerLlamaRoutes(app: FastifyInstance, deps: { state: EngineState; route: Route; ready: () => ModelHost }): void {
  const { state, route, ready } = deps;
  const endpoints = state.endpoints ?? { metrics: false, slots: true };

  /**
   * Runs each prompt (`n` choices each, index = prompt × n + choice) and
   * answers as llama-server: one object, an array for several, or a stream.
   * `completion_probabilities` with `n_probs`, `tokens` with `return_tokens`.
   */
  const generateNative = async (host: ModelHost, reply: FastifyReply, prompts: readonly Token[][], plan: GenerationPlan, extras: CompletionExtras, stream: boolean) => {
    const { params } = plan;
    const n = plan.choices;
    const post = params.logprobs?.postSampling ?? false;
    const promptText = (p: readonly Token[]) => host.detokenize(p);
    const probabilitiesOf = (entries: TokenProbabilities[] | null) =>
      entries && entries.length > 0 ? { completion_probabilities: probabilityEntries(host.model, entries, post) } : {};
    const tokensOf = (result: GenerationResult) => (plan.returnTokens ? { tokens: [...result.tokens] } : {});
    const extrasFor = (entries: TokenProbabilities[] | null): CompletionExtras => ({
      ...extras,
      slot: plan.slot,
      onProbabilities: entries ? (p) => void entries.push(p) : null,
    });
    if (stream) {
      return streamSse(
        reply,
        async (send, signal) => {
          for (const [p, prompt] of prompts.entries()) {
            await allChoices(n, signal, async (j, signal) => {
              const index = p * n + j;
              let slot = -1;
              let predicted = 0;
              let generated = "";
              const entries: TokenProbabilities[] | null = params.logprobs ? [] : null;
              const stats = plan.timingsPerToken ? newLiveStats() : null;
              const result = await host.complete(
                prompt,
                params,
                (text) => {
                  generated += text;
                  const partial = nativePartial(index, text, slot, predicted, prompt.length);
                  return send({ ...partial, ...probabilitiesOf(entries?.splice(0) ?? null), ...(stats ? { timings: liveTimings(stats) } : {}) });
                },
                signal,
                { ...extrasFor(entries), stats, onSlot: (s) => void (slot = s), onToken: (t) => void (predicted = t) },
              );
              const model = state.modelId;
              const final = nativeFinal({ index, content: "", generated, slot: result.slot, prompt: promptText(prompt), model, params, stream: true, result });
              await send({ ...final, ...tokensOf(result), ...probabilitiesOf(entries) });
            });
          }
        },
        { done: false },
      );
    }
    const outputs = await collectAll(reply, prompts.length * n, async (index, onText, signal) => {
      const entries: TokenProbabilities[] | null = params.logprobs ? [] : null;
      const result = await host.complete(prompts[Math.floor(index / n)]!, params, onText, signal, extrasFor(entries));
      return { result, entries };
    });
    const results = outputs.map(({ text, result, entries }, index) => ({
      ...nativeFinal({ index, content: text, generated: text, slot: result.slot, prompt: promptText(prompts[Math.floor(index / n)]!), model: state.modelId, params, stream: false, result }),
      ...tokensOf(result),
      ...probabilitiesOf(entries),
    }));
    return results.length === 1 ? results[0] : results;
  };

  app.post(
    "/completion",
    route("completion", nativeCompletionRequest, async (body, host, _request, reply) => {
      // llama-server's /completion generates until a stop when no limit is given (n_predict -1).
      const plan = completionPlan(body, host.vocabulary, host.slotCount, null);
      const grammar = await grammarForRequest(host.grammars, body);
      const prompts = promptsOf(body.prompt, (text, addSpecial) => host.tokenize(text, addSpecial), host.info.vocabSize);
      return generateNative(host, reply, prompts, plan, { grammar }, body.stream === true);
    }),
  );

  app.post(
    "/infill",
    route("completion", infillRequest, async (body, host, _request, reply) => {
      const plan = completionPlan({ ...body, prompt: "" }, host.vocabulary, host.slotCount, null);
      const grammar = await grammarForRequest(host.grammars, body);
      const input = { input_prefix: body.input_prefix, input_suffix: body.input_suffix, input_extra: body.input_extra ?? [], prompt: body.prompt ?? "" };
      const prompt = infillPrompt(host, input, plan.params.maxTokens ?? -1);
      return generateNative(host, reply, [prompt], plan, { grammar }, body.stream === true);
    }),
  );

  // The chat template applied, without generating (llama-server's /apply-template).
  app.post(
    "/apply-template",
    route("completion", chatCompletionRequest, async (body, host) => {
      const tools = planTools(checkTools(body.tools ?? []), body.tool_choice, body.parallel_tool_calls);
      const kwargs = body.chat_template_kwargs ?? undefined;
      return { prompt: host.chatPromptText(chatMessagesFrom(body.messages), tools.functions, kwargs && Object.keys(kwargs).length > 0 ? kwargs : undefined) };
    }),
  );

  app.post(
    "/embedding",
    route("embedding", nativeEmbeddingRequest, async (body, host, _request, reply) => {
      if (body.embd_normalize !== undefined && host.info.pooling === "none") {
        throw new InvalidRequestError("'embd_normalize' has no effect with pooling 'none': per-token embeddings are not normalized.", "embd_normalize");
      }
      const input = (body.content ?? body.input)!;
      const inputs: Array<string | Token[]> =
        typeof input === "string" ? [input] : input.every((x) => typeof x === "number") ? [input as Token[]] : (input as Array<string | Token[]>);
      const { rows } = await withAbort(reply, (signal) => host.embed(inputs, signal, body.embd_normalize ?? 2));
      return rows.map((embedding, index) => ({ index, embedding }));
    }),
  );

  app.get("/props", async () => {
    const host = ready();
    const info = host.info;
    const defaults = samplingFrom({}, null, null, host.vocabulary);
    return {
      default_generation_settings: { params: generationSettings(defaults), n_ctx: info.slotContextSize },
      total_slots: info.parallel,
      model_alias: state.modelId,
      model_path: info.modelPath,
      modalities: { vision: false, video: false, audio: false },
      endpoint_slots: endpoints.slots,
      endpoint_props: false,
      endpoint_metrics: endpoints.metrics,
      chat_template: info.chatTemplateSource,
      bos_token: host.model.tokens.bosString ?? "",
      eos_token: host.model.tokens.eosString ?? "",
      build_info: info.buildInfo,
      is_sleeping: false,
    };
  });

  // llama-server changes nothing here either, and only with `--props`, a flag the engine does not take.
  app.post("/props", async () => {
    throw new NotSupportedError("This engine does not support changing global properties (llama-server's `--props`).");
  });

  app.get("/slots", async (request) => {
    if (!endpoints.slots) throw new NotSupportedError("This server does not support slots endpoint. Start it with `--slots`");
    const host = ready();
    const query = request.query as { fail_on_no_slot?: string };
    if (query.fail_on_no_slot !== undefined && query.fail_on_no_slot !== "" && host.load.busy >= host.info.parallel) {
      throw new NoSlotError();
    }
    return host.slots();
  });

  app.post("/slots/:id", async (request, reply) => {
    const host = ready();
    const { id } = request.params as { id: string };
    const { action } = request.query as { action?: string };
    if (!/^\d+$/.test(id)) throw new InvalidRequestError("Invalid slot ID", "id_slot");
    if (action === "save" || action === "restore") {
      throw new NotSupportedError(
        `Slot action "${action}" is not supported by this engine: it has no --slot-save-path (saving and restoring a slot's KV cache to a file). Only "erase" is.`,
      );
    }
    if (action !== "erase") throw new InvalidRequestError("Invalid action", "action");
    if (host.mode !== "completion") throw new InvalidRequestError("Invalid slot ID", "id_slot");
    const slot = Number(id);
    if (slot >= host.info.parallel) throw new InvalidRequestError("Invalid slot ID", "id_slot");
    const erased = await withAbort(reply, (signal) => host.eraseSlot(slot, signal));
    return { id_slot: slot, n_erased: erased };
  });

  app.get("/metrics", async (_request, reply) => {
    if (!endpoints.metrics) throw new NotSupportedError("This server does not support metrics endpoint. Start it with `--metrics`");
    const host = ready();
    const load = host.load;
    void reply
      .header("content-type", "text/plain; version=0.0.4")
      .header("process-start-time-unix", String(host.metrics.startedAtUnix));
    return host.metrics.scrape({ processing: load.busy, deferred: load.waiting });
  });
}

/** `GET /slots?fail_on_no_slot=1` while every slot is busy (llama-server's 503). */
class NoSlotError extends RunnerError {
  readonly code = "no_slot_available";
  readonly status = 503;
  override readonly type = "unavailable_error";
  constructor() {
    super("no slot available");
  }
}
