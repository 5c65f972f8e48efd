import type { FastifyInstance } from "fastify";
import { NotFoundError } from "../../errors.ts";
import type { ModelDistribution } from "../../distribution/index.ts";
import { isTrue } from "../model-routes.ts";
import { sseEvent } from "../sse.ts";
import { followSse } from "../sse-follow.ts";
import type { ModelRecords, RequestRecorder } from "./request-recorder.ts";

export class RecordingDisabledError extends NotFoundError {
  override readonly code = "recording_disabled";
  constructor() {
    super("Request recording is off in this daemon (MODEL_RUNNER_RECORD_REQUESTS=0): no requests are kept.");
  }
}

export interface RecorderRouteDeps {
  /** Null when recording is off: the route then answers RecordingDisabledError. */
  recorder: RequestRecorder | null;
  distribution: Pick<ModelDistribution, "resolve">;
}

/**
 * `GET /engines/requests[?model=]`, DMR's route: a JSON array of
 * `{count, model, config, records}` per model. With `Accept:
 * text/event-stream` it follows: with `include_existing=true` first one
 * `existing_request` event per kept record, then `connected`, then one
 * `new_request` event per exchange as it completes; each event's data is
 * the same array shape with one record.
 */
export function registerRecorderRoutes(app: FastifyInstance, deps: RecorderRouteDeps): void {
  app.get("/engines/requests", async (request, reply) => {
    const recorder = deps.recorder;
    if (recorder === null) throw new RecordingDisabledError();
    const query = request.query as { model?: string; include_existing?: string };
    const model = query.model?.trim() || undefined;
    // A model given by any name the store knows; one removed since is found by the name its records were kept under.
    const modelId = model === undefined ? undefined : await deps.distribution.resolve(model).then((m) => m.id, () => recorder.idByName(model) ?? `\u0000${model}`);
    if (!String(request.headers.accept ?? "").includes("text/event-stream")) return recorder.list(modelId);
    await followSse(reply, (send) => {
      if (isTrue(query.include_existing)) {
        for (const group of recorder.list(modelId)) {
          for (const record of group.records) send(sseEvent("existing_request", [{ ...group, count: 1, records: [record] } satisfies ModelRecords]));
        }
      }
      send(sseEvent("connected", { status: "connected" }));
      return recorder.subscribe((id, update) => {
        if (modelId === undefined || id === modelId) send(sseEvent("new_request", [update]));
      });
    });
    return reply;
  });
}
