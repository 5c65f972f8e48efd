import type { DaemonClient } from "./client.ts";
import { CliError, DaemonError } from "./errors.ts";

/** A model as GET /models and GET /models/{ref} return it (DMR's `Model`). */
export interface ApiModel {
  id: string;
  tags: string[] | null;
  created: number;
  config: {
    format?: string;
    quantization?: string;
    parameters?: string;
    architecture?: string;
    size?: string;
    context_size?: number;
    gguf?: Record<string, string>;
    [key: string]: unknown;
  };
}

/** The model `ref` names, or null when the daemon answers 404. */
export async function findModel(client: DaemonClient, ref: string, signal?: AbortSignal): Promise<ApiModel | null> {
  try {
    return await client.json<ApiModel>("GET", `/models/${encodeRef(ref)}`, { signal });
  } catch (error) {
    if (error instanceof DaemonError && error.status === 404) return null;
    throw error;
  }
}

/** A reference goes into the path as-is except for characters a URL path cannot carry (`/` and `:` stay). */
export const encodeRef = (ref: string) => ref.split("/").map(encodeURIComponent).join("/").replaceAll("%3A", ":").replaceAll("%40", "@");

/** True for a model ID as users type it: `sha256:…`, or 12 to 64 hex digits. */
export const isModelId = (ref: string) => /^(sha256:)?[0-9a-f]{12,64}$/i.test(ref);

/**
 * The tag of `model` that the user's `ref` meant, for requests that need an
 * exact name. Mirrors the daemon's partial-name rule (GET /models/{ref}):
 * the exact name, then `ref:latest`, then a tag whose repository ends in
 * `/ref` (with ref's tag when it has one).
 */
export function pickTag(model: ApiModel, ref: string): string {
  const tags = model.tags ?? [];
  const hasTag = /:[^/]+$/.test(ref);
  const withTag = hasTag ? ref : `${ref}:latest`;
  const [wantName, wantTag] = hasTag ? [ref.slice(0, ref.lastIndexOf(":")), ref.slice(ref.lastIndexOf(":") + 1)] : [ref, null];
  const split = (t: string) => [t.slice(0, t.lastIndexOf(":")), t.slice(t.lastIndexOf(":") + 1)] as const;
  return (
    tags.find((t) => t === ref || t === withTag) ??
    shortest(tags.filter((t) => t.endsWith(`/${withTag}`))) ??
    shortest(
      tags.filter((t) => {
        const [name, tag] = split(t);
        return (name === wantName || name.endsWith(`/${wantName}`)) && (wantTag === null || tag === wantTag);
      }),
    ) ??
    tags[0] ??
    model.id
  );
}

/** Of several tags a partial name fits, the plainest (`cli/tiny:v1` before `registry:5000/cli/tiny:v1`). */
const shortest = (tags: string[]) => tags.sort((a, b) => a.length - b.length)[0];

/** A model the user named, and the exact name to send the daemon for it. */
export interface ResolvedModel {
  model: ApiModel;
  /** The full tag the user meant; the model's ID when `ref` was an ID (or it has no tag). */
  name: string;
}

/**
 * The one name resolver of every command that takes a local MODEL: what
 * GET /models/{ref} finds (full names, partial names such as `smollm2`, IDs),
 * with the exact tag the user meant. Throws a CliError naming `ref` when the
 * store has no such model.
 */
export async function resolveModel(client: DaemonClient, ref: string, signal?: AbortSignal): Promise<ResolvedModel> {
  const model = await findModel(client, ref, signal);
  if (!model) throw new CliError(`no model "${ref}" in the store (see 'mr ls')`);
  return { model, name: isModelId(ref) ? ref : pickTag(model, ref) };
}
