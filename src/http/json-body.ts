import type { FastifyInstance } from "fastify";
import { InvalidRequestError } from "../errors.ts";

/**
 * Makes `app` read bodies of `contentTypes` (default: any) as JSON whatever
 * they claim to be: curl sends form encoding by default, and clients of
 * local model servers rarely set a Content-Type. Malformed JSON is a 400
 * that quotes the parser's complaint.
 */
export function acceptJsonBodies(app: FastifyInstance, contentTypes: string | string[] = "*"): void {
  app.addContentTypeParser(contentTypes, { parseAs: "string" }, (_req, body, done) => {
    if (body === "") return done(null, undefined);
    try {
      done(null, JSON.parse(body as string));
    } catch (error) {
      done(new InvalidRequestError(`Malformed JSON in request body: ${(error as Error).message}`), undefined);
    }
  });
}
