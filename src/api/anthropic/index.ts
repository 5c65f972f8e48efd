import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { ModelDistribution } from "../../distribution/index.ts";
import { openEngineCall, type EngineCall, type EngineCallDeps } from "../engine/call.ts";
import { parsedArguments, ToolCallAccumulator, type ToolCallDraft } from "../engine/tool-deltas.ts";
import type { ErrorLogger } from "../errors.ts";
import { sseEvent } from "../sse.ts";
import { LazyStream } from "../streaming.ts";
import { optionalBoolean } from "../../http/fields.ts";
import { sendError } from "../error-reply.ts";
import { anthropicErrorResponse } from "./errors.ts";
import { chatRequestFrom, countRequestFrom, newMessageId, stopReasonOf, thinkingOf } from "./translate.ts";

export interface AnthropicDeps extends EngineCallDeps {
  distribution: ModelDistribution;
  logError: ErrorLogger;
}

type Body = Record<string, unknown>;

/**
 * Anthropic's Messages API at `/anthropic/v1/messages` and `/v1/messages`
 * (plus `count_tokens`), translated to the engine's chat completions on the
 * shared inference path. Errors take Anthropic's shape in this scope.
 */
export function registerAnthropicRoutes(app: FastifyInstance, deps: AnthropicDeps): void {
  void app.register(async (scope) => {
    scope.setErrorHandler((error, request, reply) => sendError("anthropic", error, request, reply, deps.logError));
    for (const prefix of ["/anthropic", ""]) {
      scope.post(`${prefix}/v1/messages`, (request, reply) => createMessage(deps, request, reply));
      scope.post(`${prefix}/v1/messages/count_tokens`, (request, reply) => countTokens(deps, request, reply));
    }
  });
}

/** Anthropic's `tool_use` block of a call; `input` is an object, so text that is not JSON goes in `_raw`. */
function toolUseBlock(call: ToolCallDraft, id: string): Body {
  return { type: "tool_use", id, name: call.name, input: parsedArguments(call.arguments, (text) => ({ _raw: text })) };
}

async function createMessage(deps: AnthropicDeps, request: FastifyRequest, reply: FastifyReply) {
  const body = request.body as Body;
  const stream = optionalBoolean((body as Body | undefined)?.stream, "stream") === true;
  const engineBody = chatRequestFrom(body, stream);
  const thinkingOn = thinkingOf(body.thinking) !== null;
  const model = body.model as string;
  const client = { signal: reply.request.clientSignal };
  let call: EngineCall;
  try {
    call = await openEngineCall(deps, { endpoint: "/v1/chat/completions", body: engineBody, api: "anthropic", signal: client.signal });
  } catch (error) {
    throw error;
  }
  const id = newMessageId();

  if (!stream) {
    try {
      const answer = await call.json<{ choices: Array<{ message: Body; finish_reason: string; stop_sequence?: string }> }>();
      call.finish();
      const choice = answer.choices[0]!;
      const content: Body[] = [];
      const thought = choice.message.reasoning_content;
      // Our thoughts carry no signature: there is no Anthropic key to sign them with.
      if (thinkingOn && typeof thought === "string" && thought !== "") content.push({ type: "thinking", thinking: thought, signature: "" });
      if (typeof choice.message.content === "string" && choice.message.content !== "") content.push({ type: "text", text: choice.message.content });
      const tools = new ToolCallAccumulator();
      tools.addMessage(choice.message.tool_calls);
      content.push(...tools.list().map((c) => toolUseBlock(c, c.id ?? `toolu_${c.index}`)));
      if (content.length === 0) content.push({ type: "text", text: "" });
      return {
        id,
        type: "message",
        role: "assistant",
        content,
        model,
        stop_reason: stopReasonOf(choice.finish_reason, choice.stop_sequence),
        stop_sequence: choice.stop_sequence ?? null,
        usage: { input_tokens: call.promptTokens ?? 0, output_tokens: call.completionTokens ?? 0 },
      };
    } catch (error) {
      call.finish(error);
      throw error;
    }
  }

  const out = new LazyStream(reply, 200, { "content-type": "text/event-stream", "cache-control": "no-cache", "x-accel-buffering": "no" });
  const send = (type: string, data: Body) => out.write(sseEvent(type, { type, ...data }));
  let finish: unknown = null;
  let stopSequence: string | null = null;
  let open: string | null = null;
  let index = -1;
  const tools = new ToolCallAccumulator();
  const closeBlock = async () => {
    if (open === null) return;
    await send("content_block_stop", { index });
    open = null;
  };
  const openBlock = async (block: Body) => {
    await closeBlock();
    index++;
    open = block.type as string;
    await send("content_block_start", { index, content_block: block });
  };
  let started = false;
  // message_start waits for the engine's first chunk, which carries the prompt's token count.
  const start = async () => {
    if (started) return;
    started = true;
    await send("message_start", {
      message: { id, type: "message", role: "assistant", content: [], model, stop_reason: null, stop_sequence: null, usage: { input_tokens: call.promptTokens ?? 0, output_tokens: 0 } },
    });
    await openBlock(thinkingOn ? { type: "thinking", thinking: "", signature: "" } : { type: "text", text: "" });
    await send("ping", {});
  };
  try {
    for await (const event of call.events()) {
      await start();
      const choice = (event.choices as Array<{ delta?: Body; finish_reason?: string | null; stop_sequence?: string }> | undefined)?.[0];
      if (!choice) continue;
      const delta = choice.delta ?? {};
      if (open === "thinking" && typeof delta.reasoning_content === "string" && delta.reasoning_content !== "") {
        await send("content_block_delta", { index, delta: { type: "thinking_delta", thinking: delta.reasoning_content } });
      }
      if (typeof delta.content === "string" && delta.content !== "") {
        if (open !== "text") await openBlock({ type: "text", text: "" });
        await send("content_block_delta", { index, delta: { type: "text_delta", text: delta.content } });
      }
      for (const { call, started, argumentsDelta } of tools.add(delta.tool_calls)) {
        if (started) await openBlock({ type: "tool_use", id: call.id ?? `toolu_${newMessageId().slice(4)}`, name: call.name, input: {} });
        if (argumentsDelta !== "") await send("content_block_delta", { index, delta: { type: "input_json_delta", partial_json: argumentsDelta } });
      }
      if (choice.finish_reason) finish = choice.finish_reason;
      if (typeof choice.stop_sequence === "string") stopSequence = choice.stop_sequence;
    }
    await start();
    await closeBlock();
    call.finish();
    await send("message_delta", {
      delta: { stop_reason: stopReasonOf(finish, stopSequence), stop_sequence: stopSequence },
      usage: { input_tokens: call.promptTokens ?? 0, output_tokens: call.completionTokens ?? 0 },
    });
    await send("message_stop", {});
    out.end();
  } catch (error) {
    call.finish(error);
    if (!client.signal.aborted) {
      const { body: errBody } = anthropicErrorResponse(error, deps.logError);
      await out.write(sseEvent("error", errBody)).catch(() => undefined);
    }
    out.end();
  }
  return reply;
}

/**
 * `count_tokens`: the prompt as the model will see it (chat template, tools,
 * thinking prefill), counted by the engine itself on a `max_tokens: 0` chat
 * completion that generates nothing.
 */
async function countTokens(deps: AnthropicDeps, request: FastifyRequest, reply: FastifyReply) {
  const engineBody = countRequestFrom(request.body);
  const client = { signal: reply.request.clientSignal };
  const call = await openEngineCall(deps, { endpoint: "/v1/chat/completions", body: engineBody, api: "anthropic", signal: client.signal });
  try {
    const answer = await call.json<{ usage?: { prompt_tokens?: number } }>();
    call.finish();
    return { input_tokens: answer.usage?.prompt_tokens ?? 0 };
  } catch (error) {
    call.finish(error);
    throw error;
  }
}
