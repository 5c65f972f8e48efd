import type { FastifyInstance } from "fastify";
import { InvalidRequestError } from "../errors.ts";

/**
 * How deeply request JSON may nest. Real requests (messages, tool schemas,
 * structured-output schemas) stay far below; deeper input only exhausts the
 * stack of whatever walks it later (validation, re-serialisation, grammar
 * building), which would surface as a 5xx or an engine failure.
 */
export const MAX_JSON_DEPTH = 128;

/**
 * The content types whose bodies the daemon reads as JSON: JSON itself,
 * and what curl (form encoding) and bare clients (text) send by default.
 */
export const JSON_BODY_TYPES: readonly string[] = ["application/json", "text/plain", "application/x-www-form-urlencoded"];

/** A request body nested deeper than MAX_JSON_DEPTH. */
export class JsonTooDeepError extends InvalidRequestError {
  override readonly code = "json_too_deep";
  constructor(limit: number) {
    super(`The request body nests JSON objects and arrays more than ${limit} levels deep; the limit is ${limit}.`);
  }
}

/**
 * Makes `app` read bodies of `contentTypes` (default: any) as JSON whatever
 * they claim to be: curl sends form encoding by default, and clients of
 * local model servers rarely set a Content-Type. Malformed JSON is a 400
 * that quotes the parser's complaint; JSON nested deeper than
 * MAX_JSON_DEPTH is a 400 naming the limit, refused before it is parsed.
 */
export function acceptJsonBodies(app: FastifyInstance, contentTypes: string | string[] = "*"): void {
  app.addContentTypeParser(contentTypes, { parseAs: "string" }, (_req, body, done) => {
    try {
      done(null, parseJsonBody(body as string));
    } catch (error) {
      done(error as Error, undefined);
    }
  });
}

/**
 * A request body as JSON, the daemon's one rule for every route: empty is
 * `undefined`, malformed JSON a 400 that quotes the parser's complaint,
 * nesting deeper than MAX_JSON_DEPTH a 400 naming the limit (refused
 * before it is parsed).
 */
export function parseJsonBody(text: string): unknown {
  if (text === "") return undefined;
  if (nestingDepth(text, MAX_JSON_DEPTH) > MAX_JSON_DEPTH) throw new JsonTooDeepError(MAX_JSON_DEPTH);
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new InvalidRequestError(`Malformed JSON in request body: ${(error as Error).message}`);
  }
}

/**
 * The deepest `{`/`[` nesting in `text` outside strings, counting stops as
 * soon as it passes `stopAbove` (a linear scan, no recursion).
 */
export function nestingDepth(text: string, stopAbove = Infinity): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > max) {
        max = depth;
        if (max > stopAbove) return max;
      }
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return max;
}
