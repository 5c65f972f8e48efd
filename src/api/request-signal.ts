import type { FastifyInstance } from "fastify";
import { ClientClosedError } from "../http/streaming.ts";

declare module "fastify" {
  interface FastifyRequest {
    /**
     * Aborts (with ClientClosedError) when the client goes away before its
     * response is complete: what stops token generation, a pull, a follow.
     * Set up once per request, for every handler. (Not fastify's own
     * `request.signal`: that one follows the IncomingMessage's `close`,
     * which fires once the body is read, not when the client leaves.)
     */
    clientSignal: AbortSignal;
  }
}

/** Gives every request of `app` its `request.clientSignal`. */
export function installRequestSignal(app: FastifyInstance): void {
  app.decorateRequest("clientSignal", null as unknown as AbortSignal);
  app.addHook("onRequest", (request, reply, done) => {
    const controller = new AbortController();
    const raw = reply.raw;
    raw.once("close", () => {
      if (!raw.writableFinished) controller.abort(new ClientClosedError());
    });
    request.clientSignal = controller.signal;
    done();
  });
}
