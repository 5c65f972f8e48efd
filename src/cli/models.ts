import type { DaemonClient } from "./client.ts";
import { DaemonError } from "./errors.ts";

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

/** The tag of `model` that the user's `ref` meant, for requests that need an exact name. */
export function pickTag(model: ApiModel, ref: string): string {
  const tags = model.tags ?? [];
  const withTag = /:[^/]+$/.test(ref) ? ref : `${ref}:latest`;
  return (
    tags.find((t) => t === ref || t === withTag) ??
    tags.find((t) => t.endsWith(`/${withTag}`)) ??
    tags[0] ??
    model.id
  );
}
