import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { NotFoundError } from "../../errors.ts";
import { clientRecordAs, openEngineCall, type EngineCall, type EngineCallDeps } from "../engine/call.ts";
import { ToolCallAccumulator } from "../engine/tool-deltas.ts";
import { errorResponse, type ErrorLogger } from "../errors.ts";
import { sseEvent } from "../sse.ts";
import { LazyStream } from "../streaming.ts";
import { LoadingComments } from "../load-wait.ts";
import { ResponseStore, type ResponseStoreOptions } from "./store.ts";
import { newId, parseResponsesRequest, type ParsedResponsesRequest } from "./translate.ts";

export { ResponseStore, type ResponseStoreOptions, DEFAULT_RESPONSE_TTL_MS } from "./store.ts";

export interface ResponsesDeps extends EngineCallDeps {
  logError: ErrorLogger;
  /** TTL and size bounds of the in-memory store; defaults 1 h, 1000 responses, 64 MiB. */
  store?: ResponseStoreOptions | undefined;
}

type Body = Record<string, unknown>;

class ResponseNotFoundError extends NotFoundError {
  override readonly code = "response_not_found";
  constructor(id: string, what = "Response") {
    super(`${what} with id '${id}' not found.`);
  }
}

/**
 * OpenAI's Responses API at `/v1/responses`, `/engines/v1/responses` and
 * `/engines/{backend}/v1/responses`, translated to chat completions on the
 * shared inference path. Errors keep the OpenAI shape of the daemon's
 * default handler. Stored responses live in memory, per app.
 */
export function registerResponsesRoutes(app: FastifyInstance, deps: ResponsesDeps): void {
  const store = new ResponseStore(deps.store);
  for (const prefix of ["", "/engines", "/engines/:backend"]) {
    const base = `${prefix}/v1/responses`;
    app.post(base, (request, reply) => createResponse(deps, store, request, reply));
    app.get(`${base}/:id`, async (request) => {
      const id = (request.params as { id: string }).id;
      const stored = store.get(id);
      if (!stored) throw new ResponseNotFoundError(id);
      return stored.response;
    });
    app.get(`${base}/:id/input_items`, async (request) => {
      const id = (request.params as { id: string }).id;
      const stored = store.get(id);
      if (!stored) throw new ResponseNotFoundError(id);
      const q = request.query as { order?: string; limit?: string; after?: string };
      let items = q.order === "asc" ? [...stored.inputItems] : [...stored.inputItems].reverse();
      if (q.after) {
        const at = items.findIndex((i) => i.id === q.after);
        items = at >= 0 ? items.slice(at + 1) : items;
      }
      const limit = Math.min(100, Math.max(1, Number(q.limit ?? 20) || 20));
      const page = items.slice(0, limit);
      return { object: "list", data: page, first_id: page[0]?.id ?? null, last_id: page.at(-1)?.id ?? null, has_more: items.length > limit };
    });
    app.delete(`${base}/:id`, async (request) => {
      const id = (request.params as { id: string }).id;
      if (!store.delete(id)) throw new ResponseNotFoundError(id);
      return { id, object: "response", deleted: true };
    });
  }
}

function responseObject(id: string, createdAt: number, req: ParsedResponsesRequest, status: string, output: Body[], call: EngineCall | null, finish: unknown): Body {
  const input = call?.promptTokens ?? 0;
  const outputTokens = call?.completionTokens ?? 0;
  const cached = call?.timings?.cache_n ?? 0;
  return {
    id,
    object: "response",
    created_at: createdAt,
    status,
    error: null,
    incomplete_details: status === "incomplete" && finish === "length" ? { reason: "max_output_tokens" } : null,
    model: req.model,
    output,
    previous_response_id: req.previousResponseId,
    store: req.store,
    ...req.echo,
    usage:
      status === "in_progress"
        ? null
        : {
            input_tokens: input,
            input_tokens_details: { cached_tokens: cached },
            output_tokens: outputTokens,
            output_tokens_details: { reasoning_tokens: 0 },
            total_tokens: input + outputTokens,
          },
  };
}

function messageItem(id: string, text: string, status: string): Body {
  return { id, type: "message", status, role: "assistant", content: [{ type: "output_text", text, annotations: [] }] };
}

async function createResponse(deps: ResponsesDeps, store: ResponseStore, request: FastifyRequest, reply: FastifyReply) {
  const req = parseResponsesRequest(request.body);
  const backend = (request.params as { backend?: string }).backend;
  let history: Body[] = [];
  if (req.previousResponseId !== null) {
    const previous = store.get(req.previousResponseId);
    if (!previous) throw new ResponseNotFoundError(req.previousResponseId, "Previous response");
    history = previous.messages;
  }
  // Instructions apply to this turn only; they are not carried into the chain.
  const conversation = [...history, ...req.inputMessages];
  const messages = req.instructions ? [{ role: "system", content: req.instructions }, ...conversation] : conversation;
  const engineBody: Body = { model: req.model, messages, ...req.engine, stream: req.stream, ...(req.stream ? { stream_options: { include_usage: true } } : {}) };
  const client = { signal: reply.request.clientSignal };
  const out = req.stream ? new LazyStream(reply, 200, { "content-type": "text/event-stream", "cache-control": "no-cache", "x-accel-buffering": "no" }) : null;
  // A stream that waits for a cold load says so in SSE comments, which the openai client skips.
  const loading = out ? new LoadingComments(out, req.model) : null;
  const id = newId("resp");
  const createdAt = Math.floor(Date.now() / 1000);
  let seq = 0;
  const send = (type: string, data: Body) => out!.write(sseEvent(type, { type, sequence_number: seq++, ...data }));
  /** Ends an open stream with the `error` event and `response.failed`, unless the client left. */
  const endWithError = async (error: unknown, call: EngineCall | null) => {
    if (!client.signal.aborted) {
      const { body } = errorResponse(error, deps.logError);
      await send("error", { code: body.error.code, message: body.error.message, param: body.error.param ?? null }).catch(() => undefined);
      await send("response.failed", {
        response: { ...responseObject(id, createdAt, req, "failed", [], call, null), error: { code: body.error.code, message: body.error.message } },
      }).catch(() => undefined);
    }
    out!.end();
  };
  let call: EngineCall;
  try {
    const recordAs = clientRecordAs(request);
    call = await openEngineCall(deps, { endpoint: "/v1/chat/completions", body: engineBody, api: "responses", signal: client.signal, backend, onLoading: loading?.start, recordAs });
  } catch (error) {
    if (!out?.hasStarted) throw error;
    // The stream is open: the failure (the load's, most likely) ends it in the Responses API's own events.
    await endWithError(error, null);
    return reply;
  } finally {
    loading?.stop();
  }
  const msgId = newId("msg");
  const keep = (response: Body, text: string, toolCalls: Body[]) => {
    if (!req.store) return;
    const assistant: Body = { role: "assistant", content: text === "" && toolCalls.length > 0 ? null : text };
    if (toolCalls.length > 0) assistant.tool_calls = toolCalls.map((c) => ({ id: c.call_id, type: "function", function: { name: c.name, arguments: c.arguments } }));
    store.put(id, { response, inputItems: req.inputItems, messages: [...conversation, assistant] });
  };
  const outputOf = (text: string, toolCalls: Body[]) => [...(text !== "" || toolCalls.length === 0 ? [messageItem(msgId, text, "completed")] : []), ...toolCalls];
  const statusOf = (finish: unknown) => (finish === "length" ? "incomplete" : "completed");

  if (!out) {
    try {
      const answer = await call.json<{ choices: Array<{ message: Body; finish_reason: string }> }>();
      const choice = answer.choices[0]!;
      const text = typeof choice.message.content === "string" ? choice.message.content : "";
      const calls = new ToolCallAccumulator();
      calls.addMessage(choice.message.tool_calls);
      const toolCalls = calls.list().map((c) => ({ id: newId("fc"), type: "function_call", status: "completed", call_id: c.id ?? newId("call"), name: c.name, arguments: c.arguments }));
      const response = responseObject(id, createdAt, req, statusOf(choice.finish_reason), outputOf(text, toolCalls), call, choice.finish_reason);
      call.recordAnswer(response);
      call.finish();
      keep(response, text, toolCalls);
      return response;
    } catch (error) {
      call.finish(error);
      throw error;
    }
  }

  let text = "";
  let finish: unknown = null;
  let messageOpen = false;
  const calls = new ToolCallAccumulator();
  /** The function_call item of each call, by the call's index. */
  const items = new Map<number, Body>();
  const openMessage = async () => {
    if (messageOpen) return;
    messageOpen = true;
    await send("response.output_item.added", { output_index: 0, item: { ...messageItem(msgId, "", "in_progress"), content: [] } });
    await send("response.content_part.added", { item_id: msgId, output_index: 0, content_index: 0, part: { type: "output_text", text: "", annotations: [] } });
  };
  try {
    await send("response.created", { response: responseObject(id, createdAt, req, "in_progress", [], null, null) });
    await send("response.in_progress", { response: responseObject(id, createdAt, req, "in_progress", [], null, null) });
    for await (const event of call.events()) {
      const choice = (event.choices as Array<{ delta?: Body; finish_reason?: string | null }> | undefined)?.[0];
      if (!choice) continue;
      const delta = choice.delta ?? {};
      if (typeof delta.content === "string" && delta.content !== "") {
        await openMessage();
        text += delta.content;
        await send("response.output_text.delta", { item_id: msgId, output_index: 0, content_index: 0, delta: delta.content, logprobs: [] });
      }
      for (const { call, started, argumentsDelta } of calls.add(delta.tool_calls)) {
        const outputIndex = (messageOpen ? 1 : 0) + call.index;
        let item = items.get(call.index);
        if (started || !item) {
          item = { id: newId("fc"), type: "function_call", status: "in_progress", call_id: call.id ?? newId("call"), name: call.name, arguments: "" };
          items.set(call.index, item);
          await send("response.output_item.added", { output_index: outputIndex, item: { ...item } });
        }
        if (argumentsDelta !== "") {
          item.arguments = call.arguments;
          await send("response.function_call_arguments.delta", { item_id: item.id, output_index: outputIndex, delta: argumentsDelta });
        }
      }
      if (choice.finish_reason) finish = choice.finish_reason;
    }
    // An answer with neither text nor calls still has its (empty) message.
    const hasMessage = messageOpen || items.size === 0;
    const toolCalls: Body[] = calls.list().map((c) => ({ ...items.get(c.index)!, arguments: c.arguments, status: "completed" }));
    const output = [...(hasMessage ? [messageItem(msgId, text, "completed")] : []), ...toolCalls];
    const response = responseObject(id, createdAt, req, statusOf(finish), output, call, finish);
    call.recordAnswer(response);
    call.finish();
    if (hasMessage) {
      await openMessage();
      const part = { type: "output_text", text, annotations: [] };
      await send("response.output_text.done", { item_id: msgId, output_index: 0, content_index: 0, text, logprobs: [] });
      await send("response.content_part.done", { item_id: msgId, output_index: 0, content_index: 0, part });
      await send("response.output_item.done", { output_index: 0, item: messageItem(msgId, text, "completed") });
    }
    for (const [i, c] of toolCalls.entries()) {
      const outputIndex = (hasMessage ? 1 : 0) + i;
      await send("response.function_call_arguments.done", { item_id: c.id, output_index: outputIndex, arguments: c.arguments });
      await send("response.output_item.done", { output_index: outputIndex, item: c });
    }
    keep(response, text, toolCalls);
    await send(statusOf(finish) === "incomplete" ? "response.incomplete" : "response.completed", { response });
    out.end();
  } catch (error) {
    call.finish(error);
    await endWithError(error, call);
  }
  return reply;
}
