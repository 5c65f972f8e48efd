import type { z } from "zod";
import { InvalidRequestError } from "../errors.ts";
import { parsePresetPatch } from "./preset.ts";
import type { ConfigureRequest, SpeculativeRequest, UnloadRequest } from "./types.ts";

async function buildSchemas() {
  const { z } = await import("zod");
  return {
    /** Docker Model Runner's `ConfigureRequest` JSON (`pkg/inference/scheduling/api.go`). */
    configureBody: z.strictObject({
      model: z.string().min(1),
      mode: z.string().optional(),
      // DMR reads an int32: -1 means unset; 0 is ours, the model's trained length (the range is checked in plan.ts).
      "context-size": z
        .number()
        .int()
        .max(2147483647)
        .refine((n) => n >= -1, "must be an integer of at least 0 (0: the model's trained length; -1: unset)")
        .nullable()
        .optional(),
      "runtime-flags": z.array(z.string()).nullable().optional(),
      "raw-runtime-flags": z.string().nullable().optional(),
      keep_alive: z.union([z.string(), z.number()]).nullable().optional(),
      // DMR's LlamaCppConfig; its one field maps onto the engine's --reasoning-budget.
      llamacpp: z.strictObject({ "reasoning-budget": z.number().int().min(-1).nullable().optional() }).nullable().optional(),
      // DMR's SpeculativeDecodingConfig; "draft_model": "" turns speculative decoding off.
      speculative: z
        .strictObject({
          draft_model: z.string(),
          // 0: the engine's default (llama-server's --spec-draft-n-max default, 3).
          num_tokens: z.number().int().min(0).max(1024).nullable().optional(),
          // 0: no threshold.
          min_acceptance_rate: z.number().min(0).max(1).nullable().optional(),
        })
        .nullable()
        .optional(),
      // Checked by name below: accepted by DMR, not implemented here.
      vllm: z.unknown().optional(),
      /** Ours: which engine of the backend runs the model (`llama.cpp`: built-in, llama-server). */
      engine: z.string().min(1).optional(),
      /** Ours: the model's request defaults (checked strictly by parsePresetPatch). */
      preset: z.unknown().optional(),
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
  if (issue?.code === "unrecognized_keys") {
    // A strict body names the keys it does not know rather than dropping them.
    const at = issue.path.join(".");
    const keys = issue.keys.map((k) => (at ? `${at}.${k}` : k));
    return new InvalidRequestError(`Unknown field${keys.length > 1 ? "s" : ""} ${keys.map((k) => `"${k}"`).join(", ")} in the request.`, keys[0] ?? null);
  }
  const param = issue?.path.join(".") || null;
  return new InvalidRequestError(`Invalid request${param ? ` field "${param}"` : ""}: ${issue?.message ?? "malformed"}.`, param);
}

/** DMR `_configure` settings for what this runner does not have yet: a 400 naming them, never a silent 202. */
const NOT_SUPPORTED_YET: Record<string, string> = {
  vllm: "the vLLM backend is not supported",
};

/**
 * Maps a `POST /engines[/{backend}]/_configure` body onto ConfigureRequest;
 * `backend` comes from the path. Throws InvalidRequestError naming the field.
 * DMR sends `context-size: -1` for "unset", so -1 means absent.
 */
export async function parseConfigureBody(body: unknown, backend?: string): Promise<ConfigureRequest> {
  const parsed = (await (schemas ??= buildSchemas())).configureBody.safeParse(body);
  if (!parsed.success) throw invalid(parsed.error);
  const b = parsed.data;
  for (const [key, why] of Object.entries(NOT_SUPPORTED_YET)) {
    if (b[key as keyof typeof b] !== undefined && b[key as keyof typeof b] !== null) {
      throw new InvalidRequestError(`"${key}" is not supported yet: ${why}.`, key);
    }
  }
  const contextSize = b["context-size"];
  const reasoningBudget = b.llamacpp?.["reasoning-budget"];
  return {
    model: b.model,
    backend,
    mode: b.mode,
    // -1 is DMR's "unset"; any other value is checked by configure (checkConfigure).
    contextSize: contextSize === null || contextSize === undefined || contextSize === -1 ? undefined : contextSize,
    runtimeFlags: b["runtime-flags"] ?? undefined,
    rawRuntimeFlags: b["raw-runtime-flags"] || undefined,
    keepAlive: b.keep_alive ?? undefined,
    ...(reasoningBudget !== undefined && reasoningBudget !== null ? { reasoningBudget } : {}),
    ...(b.engine !== undefined ? { engine: b.engine } : {}),
    ...(b.preset !== undefined ? { preset: parsePresetPatch(b.preset) } : {}),
    ...(b.speculative ? { speculative: speculativeOf(b.speculative) } : {}),
  };
}

/** DMR's `speculative` object as ConfigureRequest has it; 0 and null mean "not set". */
function speculativeOf(s: { draft_model: string; num_tokens?: number | null | undefined; min_acceptance_rate?: number | null | undefined }): SpeculativeRequest {
  return {
    draftModel: s.draft_model.trim(),
    ...(s.num_tokens ? { numTokens: s.num_tokens } : {}),
    ...(s.min_acceptance_rate ? { minAcceptanceRate: s.min_acceptance_rate } : {}),
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
