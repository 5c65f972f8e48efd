import type { FastifyReply, FastifyRequest } from "fastify";
import { InvalidRequestError } from "../../errors.ts";
import { firstUnknownField, optionalBoolean, optionalField } from "../../http/fields.ts";
import { clientRecordAs, openEngineCall, type EngineCall } from "../engine/call.ts";
import { ollamaErrorBody } from "./errors.ts";
import { parsedArguments, ToolCallAccumulator } from "../engine/tool-deltas.ts";
import type { OllamaDeps } from "./deps.ts";
import { NdjsonStream } from "./ndjson.ts";
import { applyRunnerOptions } from "./runner-options.ts";
import { checkOllamaFields, keepAliveOf, mapFormat, mapOptions, mapThink, mapToolChoice, modelOf, ns } from "./options.ts";

type Kind = "chat" | "generate";
type Body = Record<string, unknown>;

/** Ollama's raw base64 images become data URIs; the type is sniffed from the first bytes. */
function dataUri(image: unknown, param: string): string {
  if (typeof image !== "string" || image === "") throw new InvalidRequestError(`'${param}' must be a base64 string.`, param);
  if (image.startsWith("data:")) return image;
  const type = image.startsWith("/9j/") ? "image/jpeg" : image.startsWith("iVBOR") ? "image/png" : image.startsWith("R0lG") ? "image/gif" : image.startsWith("UklGR") ? "image/webp" : "application/octet-stream";
  return `data:${type};base64,${image}`;
}

function withImages(text: string, images: unknown, param: string): unknown {
  if (images === undefined || images === null || (Array.isArray(images) && images.length === 0)) return text;
  if (!Array.isArray(images)) throw new InvalidRequestError(`'${param}' must be an array.`, param);
  return [{ type: "text", text }, ...images.map((img, i) => ({ type: "image_url", image_url: { url: dataUri(img, `${param}.${i}`) } }))];
}

/**
 * An Ollama message's fields. `thinking` (an earlier answer's thought, which
 * Ollama's clients keep in the history) is accepted and left out of the
 * prompt, as thinking models' chat templates leave earlier thoughts out.
 */
const MESSAGE_FIELDS: ReadonlySet<string> = new Set(["role", "content", "thinking", "images", "tool_calls", "tool_name"]);

/**
 * Ollama chat messages → OpenAI messages (images as data URIs, tool calls with
 * JSON-string arguments). Ollama's calls and results carry no ids: each `tool`
 * message answers the earliest unanswered call (of its `tool_name`, if given).
 */
export function openAIMessages(messages: unknown): Array<Record<string, unknown>> {
  if (!Array.isArray(messages)) throw new InvalidRequestError("'messages' must be an array.", "messages");
  const unanswered: Array<{ id: string; name: string }> = [];
  return messages.map((m: Record<string, unknown>, i) => {
    if (m === null || typeof m !== "object") throw new InvalidRequestError(`messages[${i}] must be an object.`, `messages.${i}`);
    const unknown = firstUnknownField(m, MESSAGE_FIELDS);
    if (unknown !== undefined) throw new InvalidRequestError(`Unknown field '${unknown}' in messages[${i}].`, `messages.${i}.${unknown}`);
    const role = m.role;
    if (!["system", "user", "assistant", "tool"].includes(role as string)) {
      throw new InvalidRequestError(`messages[${i}].role must be system, user, assistant or tool.`, `messages.${i}.role`);
    }
    const content = optionalField<string>(m.content, "string", `messages.${i}.content`) ?? "";
    const out: Record<string, unknown> = { role, content: withImages(content, m.images, `messages.${i}.images`) };
    if (Array.isArray(m.tool_calls) && m.tool_calls.length > 0) {
      out.tool_calls = m.tool_calls.map((c: { function?: { name?: string; arguments?: unknown } }, j) => {
        const call = { id: `call_${i}_${j}`, name: c.function?.name ?? "" };
        unanswered.push(call);
        return {
          id: call.id,
          type: "function",
          function: { name: call.name, arguments: typeof c.function?.arguments === "string" ? c.function.arguments : JSON.stringify(c.function?.arguments ?? {}) },
        };
      });
    }
    if (role === "tool") {
      const name = typeof m.tool_name === "string" ? m.tool_name : null;
      if (name !== null) out.name = name;
      let at = unanswered.findIndex((c) => c.name === name);
      if (at < 0) at = 0;
      const call = unanswered.splice(at, 1)[0];
      if (!call) throw new InvalidRequestError(`messages[${i}] is a tool result, but no earlier assistant message has an unanswered tool call.`, `messages.${i}`);
      out.tool_call_id = call.id;
    }
    return out;
  });
}

/** The engine request for an Ollama chat/generate body, or null for a load/unload request. */
function engineRequest(kind: Kind, body: Body, model: string, stream: boolean, logprobs: Logprobs | null): { endpoint: "/v1/chat/completions" | "/v1/completions"; body: Body } | null {
  const { fields } = mapOptions(body.options);
  const format = mapFormat(body.format);
  const base: Body = { model, ...fields, stream, ...(stream ? { stream_options: { include_usage: true } } : {}) };
  // The engine's chat takes OpenAI's pair, its legacy completions a count. At least one alternative is asked
  // for (with none, llama-server returns no log-probabilities at all); ollamaLogprobs keeps only those asked for.
  const chatLogprobs = logprobs ? { logprobs: true, top_logprobs: Math.max(1, logprobs.top) } : {};
  if (format) base.response_format = format;
  Object.assign(base, mapThink(body.think));
  if (Array.isArray(body.tools) && body.tools.length > 0) {
    base.tools = body.tools;
    const toolChoice = mapToolChoice(body.tool_choice);
    if (toolChoice !== undefined) base.tool_choice = toolChoice;
  }
  if (kind === "chat") {
    if (body.messages === undefined || body.messages === null || (Array.isArray(body.messages) && body.messages.length === 0)) return null;
    return { endpoint: "/v1/chat/completions", body: { ...base, ...chatLogprobs, messages: openAIMessages(body.messages) } };
  }
  for (const unsupported of ["suffix", "template"] as const) {
    if (typeof body[unsupported] === "string" && body[unsupported] !== "") {
      throw new InvalidRequestError(`'${unsupported}' is not supported by this server.`, unsupported);
    }
  }
  if (Array.isArray(body.context) && body.context.length > 0) {
    throw new InvalidRequestError("'context' (deprecated) is not supported: send the conversation with /api/chat.", "context");
  }
  const prompt = body.prompt ?? "";
  if (typeof prompt !== "string") throw new InvalidRequestError("'prompt' must be a string.", "prompt");
  if (prompt === "" && (body.images === undefined || (Array.isArray(body.images) && body.images.length === 0))) return null;
  if (body.raw === true) {
    if (Array.isArray(body.images) && body.images.length > 0) throw new InvalidRequestError("'images' cannot be used with raw prompts.", "images");
    return { endpoint: "/v1/completions", body: { ...base, prompt, ...(logprobs ? { logprobs: Math.max(1, logprobs.top) } : {}) } };
  }
  const messages: Body[] = [];
  if (typeof body.system === "string" && body.system !== "") messages.push({ role: "system", content: body.system });
  messages.push({ role: "user", content: withImages(prompt, body.images, "images") });
  return { endpoint: "/v1/chat/completions", body: { ...base, ...chatLogprobs, messages } };
}

const doneReasonOf = (finish: unknown): string => (finish === "length" ? "length" : "stop");

/** Ollama's `logprobs` request: alternatives per token (0-20). */
interface Logprobs {
  top: number;
}

/** Ollama's `logprobs` and `top_logprobs`, checked (`top_logprobs` 0-20, and only with `logprobs: true`); null when not asked for. */
function logprobsOf(body: Body): Logprobs | null {
  const wanted = optionalBoolean(body.logprobs, "logprobs") === true;
  const top = body.top_logprobs ?? 0;
  if (typeof top !== "number" || !Number.isInteger(top) || top < 0 || top > 20) {
    throw new InvalidRequestError("'top_logprobs' must be an integer from 0 to 20.", "top_logprobs");
  }
  if (!wanted && top > 0) throw new InvalidRequestError("'top_logprobs' needs 'logprobs': true.", "top_logprobs");
  return wanted ? { top } : null;
}

type EngineEntry = { token?: unknown; logprob?: unknown; bytes?: unknown; top_logprobs?: EngineEntry[] };

/** One token's entry in Ollama's shape: `token`, `logprob`, `bytes` when known. */
const tokenLogprob = (e: EngineEntry): Body => ({ token: e.token, logprob: e.logprob, ...(Array.isArray(e.bytes) ? { bytes: e.bytes } : {}) });

/**
 * A choice's `logprobs.content` (both engines give it, on chat and on
 * completions) as Ollama's `logprobs`: each token with at most `top`
 * alternatives (`top_logprobs`, left out when there are none, as Ollama does).
 */
function ollamaLogprobs(logprobs: unknown, top: number): Body[] {
  const content = (logprobs as { content?: unknown } | null | undefined)?.content;
  if (!Array.isArray(content)) return [];
  return (content as EngineEntry[]).map((e) => {
    const alternatives = top > 0 && Array.isArray(e.top_logprobs) ? e.top_logprobs.slice(0, top).map(tokenLogprob) : [];
    return { ...tokenLogprob(e), ...(alternatives.length > 0 ? { top_logprobs: alternatives } : {}) };
  });
}

/** The measured statistics of Ollama's final chunk (nanoseconds). */
function stats(call: EngineCall): Body {
  const t = call.timings;
  return {
    total_duration: ns(performance.now() - call.startedMs),
    load_duration: ns(call.acquireMs),
    prompt_eval_count: call.promptTokens ?? t?.prompt_n ?? 0,
    prompt_eval_duration: ns(t?.prompt_ms ?? 0),
    eval_count: call.completionTokens ?? t?.predicted_n ?? 0,
    eval_duration: ns(t?.predicted_ms ?? 0),
  };
}

/** Ollama's calls carry their arguments as an object (the text itself when it is not JSON). */
function ollamaToolCalls(acc: ToolCallAccumulator): Body[] {
  return acc.list().map((c) => ({ function: { name: c.name, arguments: parsedArguments(c.arguments, (text) => text) } }));
}

/** `POST /api/chat` and `POST /api/generate`: NDJSON by default, one object with `stream:false`. */
export async function handleChatOrGenerate(deps: OllamaDeps, kind: Kind, request: FastifyRequest, reply: FastifyReply): Promise<unknown> {
  const body = request.body as Body;
  const model = modelOf(body);
  checkOllamaFields(kind === "chat" ? "/api/chat" : "/api/generate", body);
  const stream = optionalBoolean(body.stream, "stream") !== false;
  optionalBoolean(body.raw, "raw");
  optionalField(body.system, "string", "system");
  const keepAliveMs = keepAliveOf(body.keep_alive);
  const runnerOptions = mapOptions(body.options);
  const logprobs = logprobsOf(body);
  const engine = engineRequest(kind, body, model, stream, logprobs);
  const createdAt = () => new Date().toISOString();
  const emptyAnswer = kind === "chat" ? { message: { role: "assistant", content: "" } } : { response: "" };

  if (engine === null) {
    // Ollama's load/unload idiom: no prompt (or messages) at all.
    await deps.distribution.resolve(model); // 404 for an unknown model
    if (keepAliveMs === 0) {
      await deps.scheduler.unload({ models: [model] });
      return { model, created_at: createdAt(), ...emptyAnswer, done: true, done_reason: "unload" };
    }
    await applyRunnerOptions(deps, model, "completion", runnerOptions);
    await deps.scheduler.preload(model, "completion", { keepAliveMs, generatesText: true });
    return { model, created_at: createdAt(), ...emptyAnswer, done: true, done_reason: "load" };
  }
  await applyRunnerOptions(deps, model, "completion", runnerOptions);

  const client = { signal: reply.request.clientSignal };
  let call: EngineCall;
  try {
    const recordAs = clientRecordAs(request, ollamaErrorBody);
    call = await openEngineCall(deps, { endpoint: engine.endpoint, body: engine.body, api: "ollama", signal: client.signal, keepAliveMs, recordAs });
  } catch (error) {
    throw error;
  }
  const piece = (text: string, thinking?: string): Body => {
    if (kind === "chat") return { message: { role: "assistant", content: text, ...(thinking ? { thinking } : {}) } };
    return { response: text, ...(thinking ? { thinking } : {}) };
  };

  if (!stream) {
    try {
      const answer = await call.json<{ choices: Array<{ message?: Body; text?: string; finish_reason?: string; logprobs?: unknown }> }>();
      const choice = answer.choices[0] ?? {};
      const message = choice.message ?? {};
      const text = typeof choice.text === "string" ? choice.text : typeof message.content === "string" ? message.content : "";
      const thinking = typeof message.reasoning_content === "string" ? message.reasoning_content : undefined;
      const out: Body = { model, created_at: createdAt(), ...piece(text, thinking) };
      const entries = logprobs ? ollamaLogprobs(choice.logprobs, logprobs.top) : [];
      if (entries.length > 0) out.logprobs = entries;
      const tools = new ToolCallAccumulator();
      tools.addMessage(message.tool_calls);
      if (tools.size > 0) {
        if (kind === "chat") (out.message as Body).tool_calls = ollamaToolCalls(tools);
      }
      const whole = { ...out, done: true, done_reason: doneReasonOf(choice.finish_reason), ...stats(call) };
      call.recordAnswer(whole);
      call.finish();
      return whole;
    } catch (error) {
      call.finish(error);
      throw error;
    }
  }

  const out = new NdjsonStream(reply, deps.logError);
  let finish: unknown = null;
  const tools = new ToolCallAccumulator();
  // For the recorder: the lines as the one object a `stream: false` request gets.
  let allText = "";
  let allThinking = "";
  const allLogprobs: Body[] = [];
  try {
    for await (const event of call.events()) {
      const choice = (event.choices as Array<{ delta?: Body; text?: string; finish_reason?: string | null; logprobs?: unknown }> | undefined)?.[0];
      if (!choice) continue;
      const delta = choice.delta ?? {};
      const text = typeof choice.text === "string" ? choice.text : typeof delta.content === "string" ? delta.content : "";
      const thinking = typeof delta.reasoning_content === "string" ? delta.reasoning_content : undefined;
      const entries = logprobs ? ollamaLogprobs(choice.logprobs, logprobs.top) : [];
      tools.add(delta.tool_calls);
      // Each chunk carries the entries of its own tokens, as Ollama's do (a token with no text of its own too).
      if (text !== "" || thinking || entries.length > 0) {
        await out.write({ model, created_at: createdAt(), ...piece(text, thinking), ...(entries.length > 0 ? { logprobs: entries } : {}), done: false });
      }
      if (call.recordsAnswer) {
        allText += text;
        allThinking += thinking ?? "";
        allLogprobs.push(...entries);
      }
      if (choice.finish_reason) finish = choice.finish_reason;
    }
    const toolCalls = tools.size > 0 && kind === "chat" ? ollamaToolCalls(tools) : null;
    if (toolCalls) await out.write({ model, created_at: createdAt(), message: { role: "assistant", content: "", tool_calls: toolCalls }, done: false });
    const last = { model, created_at: createdAt(), ...piece(""), done: true, done_reason: doneReasonOf(finish), ...stats(call) };
    if (call.recordsAnswer) {
      const whole: Body = { ...last, ...piece(allText, allThinking || undefined), ...(allLogprobs.length > 0 ? { logprobs: allLogprobs } : {}) };
      if (toolCalls) (whole.message as Body).tool_calls = toolCalls;
      call.recordAnswer(whole);
    }
    call.finish();
    await out.write(last);
    out.end();
  } catch (error) {
    call.finish(error);
    await out.fail(error, client.signal.aborted);
  }
  return reply;
}
