import type { Readable } from "node:stream";
import type { FastifyReply, FastifyRequest } from "fastify";
import { DigestMismatchError, type ProgressEvent } from "../../distribution/index.ts";
import { parseDigest, type Digest } from "../../distribution/digest.ts";
import { InvalidRequestError } from "../../errors.ts";
import { optionalBoolean } from "../../http/fields.ts";
import type { OllamaDeps } from "./deps.ts";
import { insecureFieldOf } from "../insecure-field.ts";
import { NdjsonStream } from "./ndjson.ts";
import { checkOllamaFields, modelOf } from "./options.ts";

export type Line = { status: string; digest?: string; total?: number; completed?: number };

/**
 * Runs a pull/push/create and reports it as Ollama's progress lines: NDJSON
 * by default, one `{"status":"success"}` object with `stream:false`.
 */
export async function progress(
  deps: OllamaDeps,
  request: FastifyRequest,
  reply: FastifyReply,
  run: (emit: (line: Line) => void, signal: AbortSignal) => Promise<void>,
): Promise<unknown> {
  const stream = optionalBoolean((request.body as { stream?: unknown }).stream, "stream") !== false;
  const client = { signal: reply.request.clientSignal };
  if (!stream) {
    await run(() => undefined, client.signal);
    return { status: "success" };
  }
  const out = new NdjsonStream(reply, deps.logError);
  // Lines go out in order without blocking the transfer on a slow client (they are rate-limited upstream).
  let writing: Promise<void> = Promise.resolve();
  const emit = (line: Line) => {
    writing = writing.then(() => out.write(line)).catch(() => undefined);
  };
  try {
    await run(emit, client.signal);
    emit({ status: "success" });
    await writing;
    out.end();
  } catch (error) {
    await writing;
    await out.fail(error, client.signal.aborted);
  }
  return reply;
}

const short = (digest: string) => digest.replace(/^sha256:/, "").slice(0, 12);

function layerLine(verb: "pulling" | "pushing", e: ProgressEvent): Line | null {
  if (e.type !== "progress") return null;
  return { status: `${verb} ${short(e.layer.id)}`, digest: e.layer.id, total: e.layer.size, completed: e.layer.current };
}

/** `POST /api/pull`: `pulling manifest`, `pulling <digest12>` per layer, `verifying sha256 digest`, `writing manifest`, `success`. */
export function pullModel(deps: OllamaDeps, request: FastifyRequest, reply: FastifyReply) {
  const ref = modelOf(request.body);
  checkOllamaFields("/api/pull", request.body);
  const isInsecure = insecureFieldOf(ref, request.body);
  return progress(deps, request, reply, async (emit, signal) => {
    emit({ status: "pulling manifest" });
    const seen = new Set<string>();
    const model = await deps.distribution.pull(ref, {
      signal,
      isInsecure,
      onProgress: (e) => {
        const line = layerLine("pulling", e);
        if (line) {
          seen.add(e.type === "progress" ? e.layer.id : "");
          emit(line);
        }
      },
    });
    // Layers already in the store are reported complete, as Ollama does.
    for (const layer of model.manifest.layers) {
      if (!seen.has(layer.digest)) emit({ status: `pulling ${short(layer.digest)}`, digest: layer.digest, total: layer.size, completed: layer.size });
    }
    // Blobs were verified against their digests as they were written; the store committed the manifest.
    emit({ status: "verifying sha256 digest" });
    emit({ status: "writing manifest" });
  });
}

/** `POST /api/push`: `retrieving manifest`, `pushing <digest12>` per layer, `pushing manifest`, `success`. */
export async function pushModel(deps: OllamaDeps, request: FastifyRequest, reply: FastifyReply) {
  const ref = modelOf(request.body);
  checkOllamaFields("/api/push", request.body);
  const isInsecure = insecureFieldOf(ref, request.body);
  // An unknown or malformed name keeps its status (404, 400): resolved before the first progress line.
  const model = await deps.distribution.resolve(ref);
  return progress(deps, request, reply, async (emit, signal) => {
    emit({ status: "retrieving manifest" });
    const tag = model.tags.find((t) => t.endsWith(ref)) ?? ref;
    await deps.distribution.push(tag, {
      signal,
      isInsecure,
      onProgress: (e) => {
        const line = layerLine("pushing", e);
        if (line) emit(line);
      },
    });
    emit({ status: "pushing manifest" });
  });
}

/** `sha256:<hex>` or Ollama's file-name form `sha256-<hex>`. */
export function blobDigest(text: string): Digest {
  return parseDigest(text.replace(/^sha256-/, "sha256:"));
}

/** `HEAD /api/blobs/:digest`: 200 if the store has it, else 404. */
export async function hasBlob(deps: OllamaDeps, digest: string, reply: FastifyReply) {
  const ok = await deps.distribution.store.hasBlob(blobDigest(digest));
  return reply.code(ok ? 200 : 404).send();
}

/** `POST /api/blobs/:digest`: streams the body into the store, checking the digest; 201, or 400 on mismatch. */
export async function putBlob(deps: OllamaDeps, digest: string, request: FastifyRequest, reply: FastifyReply) {
  const expected = blobDigest(digest);
  const body = request.body as Readable | undefined;
  if (!body || typeof body.pipe !== "function") {
    throw new InvalidRequestError("Send the blob as the request body with Content-Type: application/octet-stream.");
  }
  try {
    await deps.distribution.store.ingest(body, { expected });
  } catch (error) {
    if (error instanceof DigestMismatchError) throw new InvalidRequestError(`digest mismatch, expected "${expected}", got "${error.actual}"`, "digest", { cause: error });
    throw error;
  }
  return reply.code(201).send();
}
