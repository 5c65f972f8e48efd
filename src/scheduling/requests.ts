import type { z } from "zod";
import { InvalidRequestError } from "../errors.ts";
import type { ConfigureRequest, UnloadRequest } from "./scheduler.ts";

async function buildSchemas() {
  const { z } = await import("zod");
  return {
    /** Docker Model Runner's `ConfigureRequest` JSON (`pkg/inference/scheduling/api.go`). */
    configureBody: z.object({
      model: z.string().min(1),
      mode: z.string().optional(),
      "context-size": z.number().int().nullable().optional(),
      "runtime-flags": z.array(z.string()).nullable().optional(),
      "raw-runtime-flags": z.string().nullable().optional(),
      keep_alive: z.union([z.string(), z.number()]).nullable().optional(),
      /** Ours: which engine of the backend runs the model (`llama.cpp`: built-in, llama-server). */
      engine: z.string().min(1).optional(),
    }),
    unloadBody: z.object({
      all: z.boolean().optional(),
      backend: z.string().optional(),
      models: z.array(z.string()).nullable().optional(),
    }),
  };
}
// zod is loaded with the first _configure or unload request, both rare: an
// idle daemon does without it (~6 MiB of RSS).
let schemas: ReturnType<typeof buildSchemas> | null = null;

function invalid(error: z.ZodError): InvalidRequestError {
  const issue = error.issues[0];
  const param = issue?.path.join(".") || null;
  return new InvalidRequestError(`Invalid request${param ? ` field "${param}"` : ""}: ${issue?.message ?? "malformed"}.`, param);
}

/**
 * Maps a `POST /engines[/{backend}]/_configure` body onto ConfigureRequest;
 * `backend` comes from the path. Throws InvalidRequestError naming the field.
 * DMR sends `context-size: -1` for "unset", so negative values mean absent.
 */
export async function parseConfigureBody(body: unknown, backend?: string): Promise<ConfigureRequest> {
  const parsed = (await (schemas ??= buildSchemas())).configureBody.safeParse(body);
  if (!parsed.success) throw invalid(parsed.error);
  const b = parsed.data;
  const contextSize = b["context-size"];
  return {
    model: b.model,
    backend,
    mode: b.mode,
    contextSize: contextSize === null || contextSize === undefined || contextSize < 0 ? undefined : contextSize,
    runtimeFlags: b["runtime-flags"] ?? undefined,
    rawRuntimeFlags: b["raw-runtime-flags"] || undefined,
    keepAlive: b.keep_alive ?? undefined,
    engine: b.engine,
  };
}

/** Maps a `POST /engines/unload` body (`{"all":true}` or `{"models":[...]}`). */
export async function parseUnloadBody(body: unknown): Promise<UnloadRequest> {
  const parsed = (await (schemas ??= buildSchemas())).unloadBody.safeParse(body);
  if (!parsed.success) throw invalid(parsed.error);
  const b = parsed.data;
  if (!b.all && (!b.models || b.models.length === 0)) {
    throw new InvalidRequestError('Give "all": true or a non-empty "models" list.', "models");
  }
  return { all: b.all, backend: b.backend || undefined, models: b.models ?? undefined };
}
