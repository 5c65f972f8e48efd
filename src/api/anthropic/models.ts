import type { ModelDistribution, StoredModel } from "../../distribution/index.ts";
import { InvalidRequestError } from "../../errors.ts";

/** Anthropic's page sizes for `GET /v1/models` (docs: "List Models"). */
const DEFAULT_LIMIT = 20;
const MAX_LIMIT = 1000;

/** One model as Anthropic's Models API shows it: its first tag is its id and display name. */
function modelInfo(m: StoredModel) {
  const id = m.tags[0] ?? m.id;
  return { type: "model", id, display_name: id, created_at: new Date(m.created * 1000).toISOString() };
}

type ModelInfo = ReturnType<typeof modelInfo>;

/** The stored models, newest first (as Anthropic lists them), ties by id. */
async function allModels(distribution: ModelDistribution): Promise<ModelInfo[]> {
  const models = (await distribution.list()).map(modelInfo);
  return models.sort((a, b) => b.created_at.localeCompare(a.created_at) || a.id.localeCompare(b.id));
}

/** A query parameter given once, as a string; a repeated one is a 400 naming it. */
function single(query: Record<string, unknown>, name: string): string | undefined {
  const value = query[name];
  if (value === undefined) return undefined;
  if (typeof value !== "string") throw new InvalidRequestError(`${name}: give it once.`, name);
  return value;
}

/**
 * `GET /anthropic/v1/models`: the stored models as Anthropic's paged list
 * (`limit` 1-1000, default 20; `after_id` / `before_id` cursors; `has_more`,
 * `first_id`, `last_id`). Unknown parameters and bad values are 400s naming
 * them; a cursor that names no model is a 400 too, not an empty page.
 */
export async function listModels(distribution: ModelDistribution, query: Record<string, unknown>) {
  for (const key of Object.keys(query)) {
    if (!["limit", "after_id", "before_id"].includes(key)) throw new InvalidRequestError(`${key}: Extra inputs are not permitted`, key);
  }
  const limitText = single(query, "limit");
  const limit = limitText === undefined ? DEFAULT_LIMIT : Number(limitText);
  if (!/^\d+$/.test(limitText ?? "20") || limit < 1 || limit > MAX_LIMIT) {
    throw new InvalidRequestError(`limit: must be a whole number from 1 to ${MAX_LIMIT}, got "${limitText}"`, "limit");
  }
  const after = single(query, "after_id");
  const before = single(query, "before_id");
  if (after !== undefined && before !== undefined) throw new InvalidRequestError("before_id and after_id: give one of them, not both", "before_id");
  const models = await allModels(distribution);
  const indexOf = (id: string, name: string) => {
    const i = models.findIndex((m) => m.id === id);
    if (i === -1) throw new InvalidRequestError(`${name}: no model "${id}"`, name);
    return i;
  };
  let page: ModelInfo[];
  let hasMore: boolean;
  if (before !== undefined) {
    const end = indexOf(before, "before_id");
    page = models.slice(Math.max(0, end - limit), end);
    hasMore = end - limit > 0;
  } else {
    const start = after === undefined ? 0 : indexOf(after, "after_id") + 1;
    page = models.slice(start, start + limit);
    hasMore = start + limit < models.length;
  }
  return { data: page, has_more: hasMore, first_id: page[0]?.id ?? null, last_id: page.at(-1)?.id ?? null };
}

/** `GET /anthropic/v1/models/{model_id}`: one model by any name the store knows (partial names too); 404 in Anthropic's shape otherwise. */
export async function getModel(distribution: ModelDistribution, id: string) {
  return modelInfo(await distribution.resolve(id));
}
