import type { FastifyInstance } from "fastify";
import { InvalidRequestError } from "../errors.ts";

/**
 * How deeply request JSON may nest. Real requests (messages, tool schemas,
 * structured-output schemas) stay far below; deeper input only exhausts the
 * stack of whatever walks it later (validation, re-serialisation, grammar
 * building), which would surface as a 5xx or an engine failure.
 */
export const MAX_JSON_DEPTH = 128;

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
    if (body === "") return done(null, undefined);
    const text = body as string;
    if (nestingDepth(text, MAX_JSON_DEPTH) > MAX_JSON_DEPTH) return done(new JsonTooDeepError(MAX_JSON_DEPTH), undefined);
    try {
      done(null, JSON.parse(text));
    } catch (error) {
      done(new InvalidRequestError(`Malformed JSON in request body: ${(error as Error).message}`), undefined);
    }
  });
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
