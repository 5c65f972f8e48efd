import { writeFile, rm } from "node:fs/promises";
import type { Readable } from "node:stream";
import type { FastifyReply, FastifyRequest } from "fastify";
import { DigestMismatchError, parseReference, type ProgressEvent } from "../../distribution/index.ts";
import { parseDigest, type Digest } from "../../distribution/digest.ts";
import { InvalidRequestError } from "../../errors.ts";
import { optionalBoolean } from "../../http/fields.ts";
import { clientSignal } from "../streaming.ts";
import type { OllamaDeps } from "./deps.ts";
import { NdjsonStream } from "./ndjson.ts";
import { modelOf } from "./options.ts";

type Line = { status: string; digest?: string; total?: number; completed?: number };

/**
 * Runs a pull/push/create and reports it as Ollama's progress lines: NDJSON
 * by default, one `{"status":"success"}` object with `stream:false`.
 */
async function progress(
  deps: OllamaDeps,
  request: FastifyRequest,
  reply: FastifyReply,
  run: (emit: (line: Line) => void, signal: AbortSignal) => Promise<void>,
): Promise<unknown> {
  const stream = optionalBoolean((request.body as { stream?: unknown }).stream, "stream") !== false;
  const client = clientSignal(reply);
  if (!stream) {
    try {
      await run(() => undefined, client.signal);
      return { status: "success" };
    } finally {
      client.dispose();
    }
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
  } finally {
    client.dispose();
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
  parseReference(ref); // a bad name is a 400 before the first progress line
  return progress(deps, request, reply, async (emit, signal) => {
    emit({ status: "pulling manifest" });
    const seen = new Set<string>();
    const model = await deps.distribution.pull(ref, {
      signal,
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
  // An unknown or malformed name keeps its status (404, 400): resolved before the first progress line.
  const model = await deps.distribution.resolve(ref);
  return progress(deps, request, reply, async (emit, signal) => {
    emit({ status: "retrieving manifest" });
    const tag = model.tags.find((t) => t.endsWith(ref)) ?? ref;
    await deps.distribution.push(tag, {
      signal,
      onProgress: (e) => {
        const line = layerLine("pushing", e);
        if (line) emit(line);
      },
    });
    emit({ status: "pushing manifest" });
  });
}

/** `sha256:<hex>` or Ollama's file-name form `sha256-<hex>`. */
function blobDigest(text: string): Digest {
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

const CREATE_UNSUPPORTED = ["quantize", "adapters", "system", "messages"] as const;

/**
 * `POST /api/create`: a new name for a stored model (`from`), or a model
 * from an uploaded GGUF blob (`files: {"x.gguf": "sha256:..."}`) with an
 * optional `template`, `license` and `parameters.num_ctx`. What cannot be
 * honoured (quantize, adapters, system, messages, other parameters) is a 400.
 */
export function createModel(deps: OllamaDeps, request: FastifyRequest, reply: FastifyReply) {
  const body = request.body as Record<string, unknown>;
  const target = modelOf(body);
  parseReference(target); // a bad name is a 400 before the first progress line
  for (const field of CREATE_UNSUPPORTED) {
    const v = body[field];
    if (v !== undefined && v !== null && v !== "" && !(Array.isArray(v) && v.length === 0) && !(typeof v === "object" && Object.keys(v).length === 0)) {
      throw new InvalidRequestError(`'${field}' is not supported by /api/create on this server.`, field);
    }
  }
  let contextSize: number | undefined;
  if (body.parameters !== undefined && body.parameters !== null) {
    for (const [key, value] of Object.entries(body.parameters as Record<string, unknown>)) {
      if (key !== "num_ctx") throw new InvalidRequestError(`Parameter '${key}' cannot be stored with a model on this server; pass it per request in 'options'.`, `parameters.${key}`);
      if (typeof value !== "number" || !Number.isInteger(value) || value < 1) throw new InvalidRequestError("'parameters.num_ctx' must be a positive integer.", "parameters.num_ctx");
      contextSize = value;
    }
  }
  const files = body.files as Record<string, unknown> | undefined;
  const hasFiles = files !== undefined && files !== null && Object.keys(files).length > 0;
  const from = typeof body.from === "string" && body.from !== "" ? body.from : null;
  if (!hasFiles && from === null) throw new InvalidRequestError("Either 'from' or 'files' is required.", "from");
  if (hasFiles && from !== null) throw new InvalidRequestError("Give either 'from' or 'files', not both.", "from");
  const template = typeof body.template === "string" && body.template !== "" ? body.template : null;
  const license = typeof body.license === "string" ? [body.license] : Array.isArray(body.license) ? (body.license as string[]) : [];
  if (from !== null && (template !== null || license.length > 0 || contextSize !== undefined)) {
    throw new InvalidRequestError("Creating from a stored model only adds a name here; 'template', 'license' and 'parameters' need 'files'.", "from");
  }
  return progress(deps, request, reply, async (emit, signal) => {
    if (from !== null) {
      const source = await deps.distribution.resolve(from);
      emit({ status: `using existing layer ${source.manifest.layers[0]?.digest ?? source.id}` });
      await deps.distribution.tag(source.tags[0] ?? source.id, target);
      emit({ status: "writing manifest" });
      return;
    }
    const ggufs = Object.entries(files!).filter(([name]) => name.endsWith(".gguf"));
    if (ggufs.length !== 1) throw new InvalidRequestError("'files' must name exactly one .gguf file (sharded uploads are not supported).", "files");
    const [name, digestText] = ggufs[0]!;
    if (typeof digestText !== "string") throw new InvalidRequestError(`files["${name}"] must be a digest.`, `files.${name}`);
    const digest = blobDigest(digestText);
    if (!(await deps.distribution.store.hasBlob(digest))) {
      throw new InvalidRequestError(`Blob ${digest} was not uploaded: POST it to /api/blobs/${digest} first.`, `files.${name}`);
    }
    emit({ status: "parsing GGUF" });
    const temps: string[] = [];
    const tempFile = async (text: string) => {
      const path = deps.distribution.store.tmpPath();
      temps.push(path);
      await writeFile(path, text);
      return path;
    };
    try {
      const chatTemplate = template !== null ? await tempFile(template) : undefined;
      const licenses = await Promise.all(license.map(tempFile));
      emit({ status: `using existing layer ${digest}` });
      await deps.distribution.packageModel({
        gguf: deps.distribution.store.blobPath(digest),
        tags: [target],
        licenses,
        ...(chatTemplate ? { chatTemplate } : {}),
        ...(contextSize !== undefined ? { contextSize } : {}),
        signal,
      });
      emit({ status: "writing manifest" });
    } finally {
      await Promise.all(temps.map((p) => rm(p, { force: true })));
    }
  });
}
