import { InvalidRequestError } from "../errors.ts";
import { InvalidFieldTypeError, MissingFieldError, optionalBoolean, optionalField } from "../http/fields.ts";
import type { OpenAIEndpoint } from "./inference.ts";

/**
 * What the daemon itself checks of an OpenAI request before a runner is
 * scheduled for it: the fields OpenAI requires and the types of the common
 * ones, so that a malformed request is a 400 in OpenAI's shape whichever
 * engine would have served it (llama-server quietly treats a message
 * without `content` as empty). The engine still validates everything else.
 */
export function checkOpenAIBody(endpoint: OpenAIEndpoint, body: Record<string, unknown>): void {
  optionalBoolean(body.stream, "stream");
  for (const key of ["max_tokens", "max_completion_tokens", "n", "seed", "top_k", "top_n"]) optionalField(body[key], "integer", key);
  for (const key of ["temperature", "top_p", "min_p", "presence_penalty", "frequency_penalty"]) optionalField(body[key], "number", key);
  optionalField(body.stream_options, "object", "stream_options");
  if (endpoint === "/v1/chat/completions") checkMessages(body.messages);
}

const ROLES = new Set(["system", "developer", "user", "assistant", "tool"]);

function checkMessages(messages: unknown): void {
  if (messages === undefined || messages === null) throw new MissingFieldError("messages");
  if (!Array.isArray(messages)) throw new InvalidFieldTypeError("messages", "an array", messages);
  if (messages.length === 0) throw new InvalidRequestError("'messages' must contain at least one message.", "messages");
  for (const [i, m] of (messages as unknown[]).entries()) {
    const at = `messages.${i}`;
    if (m === null || typeof m !== "object" || Array.isArray(m)) throw new InvalidFieldTypeError(at, "an object", m);
    const msg = m as Record<string, unknown>;
    if (msg.role === undefined || msg.role === null) throw new MissingFieldError(`${at}.role`);
    if (typeof msg.role !== "string") throw new InvalidFieldTypeError(`${at}.role`, "a string", msg.role);
    if (!ROLES.has(msg.role)) throw new InvalidRequestError(`'${at}.role' must be one of system, developer, user, assistant, tool; got "${msg.role}".`, `${at}.role`);
    const hasCalls = Array.isArray(msg.tool_calls) && msg.tool_calls.length > 0;
    // OpenAI: content is required, except on an assistant message that carries tool calls.
    if (msg.content === undefined || (msg.content === null && msg.role !== "assistant")) {
      if (!(msg.role === "assistant" && hasCalls)) throw new MissingFieldError(`${at}.content`);
      continue;
    }
    if (msg.content !== null && typeof msg.content !== "string" && !Array.isArray(msg.content)) {
      throw new InvalidFieldTypeError(`${at}.content`, "a string or an array of content parts", msg.content);
    }
  }
}
