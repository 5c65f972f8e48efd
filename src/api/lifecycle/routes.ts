import type { FastifyInstance } from "fastify";
import { sseEvent } from "../sse.ts";
import { followSse } from "../sse-follow.ts";
import type { LifecycleEvents } from "./events.ts";

/**
 * `GET /engines/events`: the lifecycle event stream (SSE) for dashboards
 * and scripts: `event: connected` first, then every runner and pull event
 * as it happens (`event:` its type, `data:` the LifecycleEvent), until the
 * client leaves.
 */
export function registerLifecycleRoutes(app: FastifyInstance, deps: { events: LifecycleEvents }): void {
  app.get("/engines/events", async (_request, reply) => {
    await followSse(reply, (send) => {
      send(sseEvent("connected", { status: "connected" }));
      return deps.events.subscribe((event) => send(sseEvent(event.type, event)));
    });
    return reply;
  });
}
