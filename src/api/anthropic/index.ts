import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { ModelDistribution } from "../../distribution/index.ts";
import { clientRecordAs, openEngineCall, type EngineCall, type EngineCallDeps } from "../engine/call.ts";
import { parsedArguments, ToolCallAccumulator } from "../engine/tool-deltas.ts";
import type { ErrorLogger } from "../errors.ts";
import { sseEvent } from "../sse.ts";
import { LazyStream } from "../streaming.ts";
import { LoadingComments } from "../load-wait.ts";
import { optionalBoolean } from "../../http/fields.ts";
import { sendError } from "../error-reply.ts";
import { getModel, listModels } from "./models.ts";
import { anthropicErrorResponse } from "./errors.ts";
import { StopMatcher } from "../../engine/stop-matcher.ts";
import { chatRequestFrom, countRequestFrom, newMessageId, stopReasonOf, thinkingOf } from "./translate.ts";

export interface AnthropicDeps extends EngineCallDeps {
  distribution: ModelDistribution;
  logError: ErrorLogger;
}

type Body = Record<string, unknown>;

/**
 * Anthropic's Messages API at `/anthropic/v1/messages` and `/v1/messages`
 * (plus `count_tokens`, and the Models API at `/anthropic/v1/models`), translated to the engine's chat completions on the
 * shared inference path. Errors take Anthropic's shape in this scope.
 */
export function registerAnthropicRoutes(app: FastifyInstance, deps: AnthropicDeps): void {
  void app.register(async (scope) => {
    scope.setErrorHandler((error, request, reply) => sendError("anthropic", error, request, reply, deps.logError));
    for (const prefix of ["/anthropic", ""]) {
      scope.post(`${prefix}/v1/messages`, (request, reply) => createMessage(deps, request, reply));
      scope.post(`${prefix}/v1/messages/count_tokens`, (request, reply) => countTokens(deps, request, reply));
    }
    // Anthropic's Models API under its prefix only: the bare /v1/models is OpenAI's.
    scope.get("/anthropic/v1/models", async (request) => listModels(deps.distribution, request.query as Record<string, unknown>));
    // fastify has already decoded the path once (as on the OpenAI route).
    scope.get("/anthropic/v1/models/*", async (request) => getModel(deps.distribution, (request.params as { "*": string })["*"]));
  });
}

type Event = { type: string } & Body;

/**
 * The engine's streamed answer as Anthropic's events, in order: message_start
 * (once the engine said how long the prompt is), content blocks (thinking,
 * text, tool_use), ping after the first block opens, message_delta with the
 * stop reason and usage, message_stop. One translation for both replies: a
 * stream sends these events, a whole message is what they add up to
 * (messageOf). A matched stop sequence ends the answer: reading stops there,
 * which stops the generation; so does a second call when parallel calls are off.
 */
async function* anthropicEvents(call: EngineCall, id: string, model: string, thinkingOn: boolean, stopSequences: string[], oneCall: boolean): AsyncGenerator<Event> {
  // The engine's own matcher: llama-server's chat completions stop on `stop` strings but do not say which one
  // matched, so the daemon matches them on either engine and stops reading there (which stops the generation).
  const stops = stopSequences.length > 0 ? new StopMatcher(stopSequences) : null;
  let stopSequence: string | null = null;
  const tools = new ToolCallAccumulator();
  let finish: unknown = null;
  let open: string | null = null;
  let index = -1;
  let started = false;
  const usage = () => ({ input_tokens: call.promptTokens ?? 0, output_tokens: call.completionTokens ?? 0 });
  function* openBlock(block: Body): Generator<Event> {
    if (open !== null) yield { type: "content_block_stop", index };
    index++;
    open = block.type as string;
    yield { type: "content_block_start", index, content_block: block };
  }
  function* text(piece: string): Generator<Event> {
    if (piece === "") return;
    if (open !== "text") yield* openBlock({ type: "text", text: "" });
    yield { type: "content_block_delta", index, delta: { type: "text_delta", text: piece } };
  }
  function* start(): Generator<Event> {
    if (started) return;
    started = true;
    yield { type: "message_start", message: { id, type: "message", role: "assistant", content: [], model, stop_reason: null, stop_sequence: null, usage: { ...usage(), output_tokens: 0 } } };
    yield* openBlock(thinkingOn ? { type: "thinking", thinking: "", signature: "" } : { type: "text", text: "" });
    yield { type: "ping" };
  }
  for await (const event of call.events()) {
    const choice = (event.choices as Array<{ delta?: Body; finish_reason?: string | null }> | undefined)?.[0];
    const delta = choice?.delta ?? {};
    // llama-server's first chunk (the role) comes before the prompt's size (the next chunk's timings).
    if (!started && call.promptTokens === null && !choice?.finish_reason && !delta.content && !delta.reasoning_content && !delta.tool_calls) continue;
    yield* start();
    if (!choice) continue;
    if (open === "thinking" && typeof delta.reasoning_content === "string" && delta.reasoning_content !== "") {
      yield { type: "content_block_delta", index, delta: { type: "thinking_delta", thinking: delta.reasoning_content } };
    }
    if (typeof delta.content === "string") {
      if (!stops) yield* text(delta.content);
      else {
        const { emit, stopped } = stops.push(delta.content);
        yield* text(emit);
        if (stopped !== null) {
          stopSequence = stopped;
          break;
        }
      }
    }
    let secondCall = false;
    for (const { call: c, started: isNew, argumentsDelta } of tools.add(delta.tool_calls)) {
      // disable_parallel_tool_use: the answer ends where a second call would begin. llama-server's
      // grammar for per-call formats (Hermes' <tool_call>) repeats calls even with parallel_tool_calls false.
      if (oneCall && c.index > 0) {
        secondCall = true;
        break;
      }
      if (isNew) yield* openBlock({ type: "tool_use", id: c.id ?? `toolu_${newMessageId().slice(4)}`, name: c.name, input: {} });
      if (argumentsDelta !== "") yield { type: "content_block_delta", index, delta: { type: "input_json_delta", partial_json: argumentsDelta } };
    }
    if (secondCall) {
      finish = "tool_calls";
      break;
    }
    if (choice.finish_reason) finish = choice.finish_reason;
  }
  yield* start();
  if (stops && stopSequence === null) yield* text(stops.flush());
  if (open !== null) yield { type: "content_block_stop", index };
  yield { type: "message_delta", delta: { stop_reason: stopReasonOf(finish, stopSequence), stop_sequence: stopSequence }, usage: usage() };
  yield { type: "message_stop" };
}

/**
 * The whole message the events add up to. Empty thinking and text blocks
 * (the stream opens one before knowing) are left out; a reply with nothing
 * in it has one empty text block, as Anthropic's has.
 */
function messageOf(events: Event[]): Body {
  let message: Body = {};
  const blocks: Body[] = [];
  const json = new Map<number, string>();
  for (const e of events) {
    if (e.type === "message_start") message = { ...(e.message as Body) };
    else if (e.type === "content_block_start") blocks[e.index as number] = { ...(e.content_block as Body) };
    else if (e.type === "content_block_delta") {
      const block = blocks[e.index as number]!;
      const d = e.delta as { type: string; text?: string; thinking?: string; partial_json?: string };
      if (d.type === "text_delta") block.text = (block.text as string) + d.text;
      else if (d.type === "thinking_delta") block.thinking = (block.thinking as string) + d.thinking;
      else if (d.type === "input_json_delta") json.set(e.index as number, (json.get(e.index as number) ?? "") + d.partial_json);
    } else if (e.type === "message_delta") Object.assign(message, e.delta as Body, { usage: e.usage });
  }
  for (const [i, text] of json) blocks[i]!.input = parsedArguments(text, (raw) => ({ _raw: raw }));
  // A whole answer's thought is trimmed, as both engines trim a non-streamed `reasoning_content`.
  for (const b of blocks) if (b.type === "thinking") b.thinking = (b.thinking as string).trim();
  const content = blocks.filter((b) => (b.type === "text" ? b.text !== "" : b.type === "thinking" ? b.thinking !== "" : true));
  return { ...message, content: content.length > 0 ? content : [{ type: "text", text: "" }] };
}

async function createMessage(deps: AnthropicDeps, request: FastifyRequest, reply: FastifyReply) {
  const body = request.body as Body;
  const stream = optionalBoolean((body as Body | undefined)?.stream, "stream") === true;
  const { engine, stopSequences } = chatRequestFrom(body);
  const thinkingOn = thinkingOf(body.thinking) !== null;
  const model = body.model as string;
  const client = { signal: reply.request.clientSignal };
  // Always streamed from the engine, with per-token timings: the prompt's size comes before the
  // first token (message_start), and an answer a stop sequence ends has its token count so far.
  const engineBody = { ...engine, stream: true, stream_options: { include_usage: true }, timings_per_token: true };
  const out = stream ? new LazyStream(reply, 200, { "content-type": "text/event-stream", "cache-control": "no-cache", "x-accel-buffering": "no" }) : null;
  // A stream that waits for a cold load says so in SSE comments, which the Anthropic SDK skips.
  const loading = out ? new LoadingComments(out, model) : null;
  let call: EngineCall;
  try {
    const recordAs = clientRecordAs(request, anthropicErrorBody);
    call = await openEngineCall(deps, { endpoint: "/v1/chat/completions", body: engineBody, api: "anthropic", signal: client.signal, onLoading: loading?.start, recordAs });
  } catch (error) {
    if (!out?.hasStarted) throw error;
    // The stream is open: the failure (the load's, most likely) is its one event.
    await endWithError(out, error, client.signal, deps.logError);
    return reply;
  } finally {
    loading?.stop();
  }
  const events = anthropicEvents(call, newMessageId(), model, thinkingOn, stopSequences, engine.parallel_tool_calls === false);

  if (!out) {
    try {
      const all: Event[] = [];
      for await (const e of events) all.push(e);
      const message = messageOf(all);
      call.recordAnswer(message);
      call.finish();
      return message;
    } catch (error) {
      call.finish(error);
      throw error;
    }
  }

  // For the recorder: the stream as the message it adds up to (what a non-streamed request gets).
  const seen: Event[] | null = call.recordsAnswer ? [] : null;
  try {
    for await (const e of events) {
      seen?.push(e);
      if (e.type === "message_delta") {
        if (seen) call.recordAnswer(messageOf(seen));
        call.finish();
      }
      await out.write(sseEvent(e.type, e));
    }
    out.end();
  } catch (error) {
    call.finish(error);
    await endWithError(out, error, client.signal, deps.logError);
  }
  return reply;
}

/** An error as an Anthropic client gets it, for the request recorder. */
const anthropicErrorBody = (error: unknown): unknown => anthropicErrorResponse(error, () => undefined).body;

/** Ends an open stream with Anthropic's `error` event (`{type:"error",error:{type,message}}`), unless the client left. */
async function endWithError(out: LazyStream, error: unknown, client: AbortSignal, logError: ErrorLogger): Promise<void> {
  if (!client.aborted) {
    const { body } = anthropicErrorResponse(error, logError);
    await out.write(sseEvent("error", body)).catch(() => undefined);
  }
  out.end();
}

/**
 * `count_tokens`: the prompt as the model will see it (chat template, tools,
 * thinking prefill), counted by the engine itself on a `max_tokens: 0` chat
 * completion that generates nothing.
 */
async function countTokens(deps: AnthropicDeps, request: FastifyRequest, reply: FastifyReply) {
  const engineBody = countRequestFrom(request.body);
  const client = { signal: reply.request.clientSignal };
  const recordAs = clientRecordAs(request, anthropicErrorBody);
  const call = await openEngineCall(deps, { endpoint: "/v1/chat/completions", body: engineBody, api: "anthropic", signal: client.signal, recordAs });
  try {
    const answer = await call.json<{ usage?: { prompt_tokens?: number } }>();
    const counted = { input_tokens: answer.usage?.prompt_tokens ?? 0 };
    call.recordAnswer(counted);
    call.finish();
    return counted;
  } catch (error) {
    call.finish(error);
    throw error;
  }
}
