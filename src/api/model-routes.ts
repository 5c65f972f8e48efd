import type { Readable } from "node:stream";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { InvalidRequestError, NotFoundError } from "../errors.ts";
import { firstUnknownField, optionalBoolean } from "../http/fields.ts";
import type { Scheduler } from "../scheduling/index.ts";
import { insecureFieldOf } from "./insecure-field.ts";
import { checkPullFits } from "./pull-fits.ts";
import { parseReference, toDmrProgressLine, type ModelDistribution, type ProgressEvent, type StoredModel, type TransferMode } from "../distribution/index.ts";
import type { ErrorLogger } from "./errors.ts";
import { streamProgressLines } from "./progress-stream.ts";

export interface ModelRouteDeps {
  distribution: ModelDistribution;
  /** For the memory check before a pull. */
  scheduler: Pick<Scheduler, "checkPullFits">;
  logError: ErrorLogger;
  /**
   * Called after models were deleted (by id; "all" after a purge), so their
   * runners stop rather than keep serving deleted files. Not called when a
   * removal only untagged a model that other tags still name.
   */
  onRemoved?: ((modelIds: readonly string[] | "all") => Promise<void>) | undefined;
}

/** A stored model in Docker Model Runner's `Model` JSON shape. */
export function modelJson(m: StoredModel) {
  return { id: m.id, tags: m.tags, created: m.created, config: m.config };
}

class UnknownActionError extends NotFoundError {
  override readonly code = "unknown_action";
  constructor(action: string) {
    super(`unknown action "${action}"`);
  }
}

const bearerOf = (body: unknown): string | undefined => {
  const token = (body as { "bearer-token"?: unknown } | undefined)?.["bearer-token"];
  return typeof token === "string" && token !== "" ? token : undefined;
};

/** DMR's request bodies, strict: a field we would not read is a 400 naming it, never dropped. */
function checkBody(body: unknown, known: readonly string[], route: string): void {
  if (body === undefined || body === null) return;
  if (typeof body !== "object" || Array.isArray(body)) throw new InvalidRequestError(`The body of ${route} must be a JSON object.`);
  const key = firstUnknownField(body as Record<string, unknown>, new Set(known));
  if (key !== undefined) throw new InvalidRequestError(`Unknown field "${key}" in ${route}: it takes ${known.map((k) => `"${k}"`).join(", ")}.`, key);
}

/** Splits `/models/<ref>/<action>` where the reference itself may contain slashes. */
function splitAction(path: string, actions: readonly string[]): { ref: string; action: string | null } {
  for (const action of actions) {
    if (path.endsWith(`/${action}`)) return { ref: path.slice(0, -action.length - 1), action };
  }
  return { ref: path, action: null };
}

/**
 * Docker Model Runner's model management routes (`/models/...`). Pull and
 * push stream NDJSON progress lines when the client accepts JSON, else plain
 * text lines; errors before the first line keep their HTTP status, later ones
 * become a last `{"type":"error"}` line.
 */
export function registerModelRoutes(app: FastifyInstance, deps: ModelRouteDeps): void {
  const { distribution } = deps;

  // Archives are read as a stream, never buffered.
  app.addContentTypeParser(["application/x-tar", "application/octet-stream"], (_req, payload, done) => done(null, payload));

  app.post("/models/create", async (request, reply) => {
    const body = request.body as { from?: unknown; "ignore-runtime-memory-check"?: unknown } | undefined;
    checkBody(body, ["from", "bearer-token", "ignore-runtime-memory-check", "insecure"], "/models/create");
    if (typeof body?.from !== "string" || body.from.trim() === "") throw new InvalidRequestError("'from' is required: the model to pull.", "from");
    const from = body.from.trim();
    const isInsecure = insecureFieldOf(from, body);
    // DMR's check before the download: a model that could never be loaded here is a 507, unless the client says pull anyway.
    if (optionalBoolean(body["ignore-runtime-memory-check"], "ignore-runtime-memory-check") !== true) {
      const bearerToken = bearerOf(body);
      await checkPullFits(deps, from, { signal: reply.request.clientSignal, isInsecure, ...(bearerToken !== undefined ? { bearerToken } : {}) });
    }
    await streamProgress(request, reply, "pull", deps.logError, async (onProgress, signal) => {
      const model = await distribution.pull(from, { signal, bearerToken: bearerOf(body), onProgress, isInsecure });
      return `Model pulled successfully: ${model.tags[0] ?? model.id}`;
    });
  });

  app.post("/models/load", async (request, reply) => {
    const query = request.query as { tag?: string | string[] };
    const tags = query.tag === undefined ? [] : Array.isArray(query.tag) ? query.tag : [query.tag];
    const source = request.body as Readable | undefined;
    if (!source || typeof (source as Readable).pipe !== "function") {
      throw new InvalidRequestError("Send the model archive as the request body with Content-Type: application/x-tar.");
    }
    await streamProgress(request, reply, "pull", deps.logError, async (_onProgress, signal) => {
      const model = await distribution.loadTar(source, { tags, signal });
      return `Model loaded successfully: ${model.tags[0] ?? model.id}`;
    });
  });

  app.get("/models", async () => (await distribution.list()).map(modelJson));

  app.delete("/models/purge", async () => {
    await distribution.purge();
    await deps.onRemoved?.("all");
    return { message: "All models were removed." };
  });

  app.get("/models/*", async (request, reply) => {
    const { ref, action } = splitAction(pathOf(request), ["export"]);
    if (isTrue((request.query as { remote?: string }).remote)) {
      if (action === "export") throw new InvalidRequestError("Export a stored model; pull it first (remote=true is for inspecting).", "remote");
      const client = { signal: reply.request.clientSignal };
      // The daemon's own credentials apply (docker config, DOCKER_USERNAME, HF_TOKEN).
      return await distribution.inspectRemote(ref, { signal: client.signal });
    }
    if (action === "export") {
      const model = await distribution.resolve(ref);
      const name = (model.tags[0] ?? model.id).replace(/[^A-Za-z0-9._-]+/g, "_");
      const tar = distribution.exportTar(model.id);
      return reply
        .header("content-type", "application/x-tar")
        .header("content-disposition", `attachment; filename="${name}.tar"`)
        .send(tar);
    }
    return modelJson(await distribution.resolve(ref));
  });

  app.delete("/models/*", async (request) => {
    const ref = pathOf(request);
    const force = isTrue((request.query as { force?: string }).force);
    const result = await distribution.remove(ref, { force });
    const deleted = result.flatMap((r) => ("Deleted" in r && typeof r.Deleted === "string" ? [r.Deleted] : []));
    if (deleted.length > 0) await deps.onRemoved?.(deleted);
    return result;
  });

  app.post("/models/*", async (request, reply) => {
    const { ref, action } = splitAction(pathOf(request), ["tag", "push", "repackage"]);
    if (action === "tag") {
      const { repo, tag } = request.query as { repo?: string; tag?: string };
      if (!repo) throw new InvalidRequestError("'repo' is required: the repository of the new tag.", "repo");
      if (!tag) throw new InvalidRequestError("'tag' is required: the new tag.", "tag");
      const target = await distribution.tag(ref, `${repo}:${tag}`);
      return reply.code(201).send({ message: `Model tagged successfully with "${target}"`, target });
    }
    if (action === "push") {
      checkBody(request.body, ["bearer-token", "insecure"], "/models/{name}/push");
      const isInsecure = insecureFieldOf(ref, request.body);
      await streamProgress(request, reply, "push", deps.logError, async (onProgress, signal) => {
        const { digest } = await distribution.push(ref, { signal, bearerToken: bearerOf(request.body), onProgress, isInsecure });
        return `Model pushed successfully: ${digest}`;
      });
      return;
    }
    if (action === "repackage") {
      checkBody(request.body, ["target", "context_size"], "/models/{name}/repackage");
      const body = (request.body ?? {}) as { target?: unknown; context_size?: unknown };
      if (typeof body.target !== "string" || body.target.trim() === "") {
        throw new InvalidRequestError("'target' is required: the tag of the repackaged model.", "target");
      }
      const contextSize = body.context_size;
      if (contextSize !== undefined && contextSize !== null && typeof contextSize !== "number") {
        throw new InvalidRequestError("'context_size' must be a number.", "context_size");
      }
      const target = parseReference(body.target.trim()).normalized;
      const source = (await distribution.resolve(ref)).id;
      await distribution.repackage(source, target, typeof contextSize === "number" ? { contextSize } : {});
      return reply.code(201).send({ message: `Model repackaged successfully as "${target}"`, source: ref, target });
    }
    const last = ref.split("/").at(-1) ?? ref;
    throw new UnknownActionError(last);
  });
}

function pathOf(request: FastifyRequest): string {
  const raw = (request.params as { "*": string })["*"];
  // fastify has already decoded the path once; decoding again would misread a literal "%" (and throw on "%25zz").
  const ref = raw.replace(/\/+$/, "");
  if (ref === "") throw new InvalidRequestError("A model reference is required in the path.");
  return ref;
}

/** Go-style boolean query values: a bare `?force` means true. */
export function isTrue(value: string | undefined): boolean {
  return value !== undefined && ["", "1", "true", "yes"].includes(value.toLowerCase());
}

async function streamProgress(
  request: FastifyRequest,
  reply: FastifyReply,
  mode: TransferMode,
  logError: ErrorLogger,
  run: (onProgress: (e: ProgressEvent) => void, signal: AbortSignal) => Promise<string>,
): Promise<void> {
  const json = String(request.headers.accept ?? "").includes("application/json");
  await streamProgressLines(
    reply,
    {
      contentType: json ? "application/x-ndjson" : "text/plain; charset=utf-8",
      encode: (line) => (json ? `${JSON.stringify(line)}\n` : `${line.message ?? ""}\n`),
      logError,
      errorExtra: { mode },
    },
    async (send, signal) => ({ type: "success", message: await run((e) => send({ ...toDmrProgressLine(e), mode }), signal), mode }),
  );
}
