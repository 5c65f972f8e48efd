import type { FastifyInstance, FastifyReply } from "fastify";
import type { Token } from "node-llama-cpp";
import { InvalidRequestError, RunnerError } from "../errors.ts";
import { NotSupportedError } from "./errors.ts";
import type { SamplingParams } from "./generate.ts";
import { grammarForRequest } from "./grammar/for-request.ts";
import { infillPrompt } from "./infill.ts";
import { generationSettings, nativeFinal, nativePartial } from "./llama-shapes.ts";
import { infillRequest, nativeCompletionRequest, nativeEmbeddingRequest } from "./llama-requests.ts";
import type { CompletionExtras, ModelHost } from "./model-host.ts";
import { collect, streamSse, withAbort } from "./reply-stream.ts";
import { chatCompletionRequest, chatMessagesFrom, samplingFrom } from "./requests.ts";
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

  /** Runs each prompt and answers as llama-server: one object, an array for several prompts, or a stream. */
  const generateNative = async (
    host: ModelHost,
    reply: FastifyReply,
    prompts: readonly Token[][],
    params: SamplingParams,
    extras: CompletionExtras,
    stream: boolean,
  ) => {
    const promptText = (p: readonly Token[]) => host.detokenize(p);
    if (stream) {
      return streamSse(
        reply,
        async (send, signal) => {
          for (const [index, prompt] of prompts.entries()) {
            let slot = -1;
            let predicted = 0;
            let generated = "";
            const result = await host.complete(
              prompt,
              params,
              (text) => {
                generated += text;
                return send(nativePartial(index, text, slot, predicted, prompt.length));
              },
              signal,
              { ...extras, onSlot: (s) => void (slot = s), onToken: (n) => void (predicted = n) },
            );
            const model = state.modelId;
            await send(nativeFinal({ index, content: "", generated, slot: result.slot, prompt: promptText(prompt), model, params, stream: true, result }));
          }
        },
        { done: false },
      );
    }
    const outputs = await Promise.all(prompts.map((prompt) => collect(reply, (onText, signal) => host.complete(prompt, params, onText, signal, extras))));
    const results = outputs.map(({ text, result }, index) =>
      nativeFinal({ index, content: text, generated: text, slot: result.slot, prompt: promptText(prompts[index]!), model: state.modelId, params, stream: false, result }),
    );
    return results.length === 1 ? results[0] : results;
  };

  // llama-server's precedence: n_predict, then max_tokens; -1 (its default) = until a stop or the context's end.
  const maxTokensOf = (body: { n_predict?: number | null | undefined; max_tokens?: number | null | undefined }) => {
    const n = body.n_predict ?? body.max_tokens ?? -1;
    return n < 0 ? null : n;
  };

  app.post(
    "/completion",
    route("completion", nativeCompletionRequest, async (body, host, _request, reply) => {
      const params = samplingFrom(body, maxTokensOf(body));
      const grammar = await grammarForRequest(host.grammars, body);
      const prompts = (typeof body.prompt === "string" ? [body.prompt] : body.prompt).map((p) => host.tokenize(p, true));
      return generateNative(host, reply, prompts, params, { grammar }, body.stream === true);
    }),
  );

  app.post(
    "/infill",
    route("completion", infillRequest, async (body, host, _request, reply) => {
      const params = samplingFrom(body, maxTokensOf(body));
      const grammar = await grammarForRequest(host.grammars, body);
      const input = { input_prefix: body.input_prefix, input_suffix: body.input_suffix, input_extra: body.input_extra ?? [], prompt: body.prompt ?? "" };
      const prompt = infillPrompt(host, input, params.maxTokens ?? -1);
      return generateNative(host, reply, [prompt], params, { grammar }, body.stream === true);
    }),
  );

  // The chat template applied, without generating (llama-server's /apply-template).
  app.post(
    "/apply-template",
    route("completion", chatCompletionRequest, async (body, host) => {
      const tools = planTools(checkTools(body.tools ?? []), body.tool_choice, body.parallel_tool_calls);
      return { prompt: host.chatPromptText(chatMessagesFrom(body.messages), tools.functions) };
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
    const defaults = samplingFrom({}, null);
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
