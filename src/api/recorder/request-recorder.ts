import { assembleStream, isEventStream } from "./assemble.ts";

/**
 * The request recorder behind `GET /engines/requests` (Docker Model
 * Runner's OpenAI recorder, `docker model requests`): the last request and
 * response pairs per model, in a ring bounded by count and by bytes, and
 * live subscribers that get each pair once it is complete. Fed by the one
 * engine call every dialect goes through (src/api/engine/call.ts).
 *
 * Recording costs the request path one JSON.stringify of the body (media
 * data cut short first) and a reference to each answer chunk; a streamed
 * answer is assembled into its final JSON only when someone reads it.
 */

/** One recorded exchange, in DMR's `RequestResponsePair` JSON shape. */
export interface RecordedPair {
  id: string;
  /** The model as the request named it. */
  model: string;
  method: string;
  url: string;
  /** The request body as JSON text (base64 media data cut short). */
  request: string;
  /** The answer (a streamed one assembled into its final JSON); absent for errors and while in flight. */
  response?: string;
  /** The error body (JSON text) of a failed exchange. */
  error?: string;
  /** Unix seconds when the request arrived. */
  timestamp: number;
  /** 0 while the answer is still coming. */
  status_code: number;
  user_agent?: string;
  /** Which API the request came through (`openai`, `ollama`, `anthropic`, `responses`). */
  origin?: string;
}

/** One model's records, in DMR's `ModelRecordsResponse` JSON shape. */
export interface ModelRecords {
  count: number;
  model: string;
  /** The runner's settings, in DMR's `BackendConfiguration` names. */
  config: { "context-size"?: number };
  records: RecordedPair[];
}

/** What the engine call knows about a request when it starts. */
export interface RecordingStart {
  /** The store's id of the model: records are kept per model. */
  modelId: string;
  /** The model's canonical name (its first tag): the `model` of its group. */
  modelName: string;
  /** The body as the client sent it (for the OpenAI routes, before `model` is rewritten for the engine). */
  body: unknown;
  /**
   * The body's JSON text as it arrived, when the caller has it (the fast
   * lane): recorded as it is, unless it may hold media to cut, which saves
   * serializing the body again on every request.
   */
  text?: string | undefined;
  /** The model as the request named it; default the body's `model` (else `modelName`). */
  model?: string | undefined;
  /** The client's method and path (`/v1/chat/completions`, `/api/chat`, `/v1/messages`, ...). */
  method: string;
  url: string;
  userAgent?: string | undefined;
  origin: string;
  contextSize?: number | undefined;
}

/** The engine call's side of one recording: the answer as it passes, then its end. */
export interface RecordingTap {
  /** A piece of the answer as it arrived (kept by reference up to the record's size limit). */
  chunk(data: Buffer | string): void;
  /** The exchange is over: the status it ended with and, for a failure, the error body. */
  end(status: number, errorBody?: unknown): void;
  /** The exchange is not one to show (a failed attempt the daemon retries): it leaves the ring unseen. Only before `end`. */
  cancel(): void;
}

export interface RecorderOptions {
  /** Records kept per model. Default 10 (DMR's). */
  maxRecordsPerModel?: number | undefined;
  /** Bytes (request and answer text) kept per model; a single record is cut to fit. Default 8 MiB. */
  maxBytesPerModel?: number | undefined;
  /** Media data (`image_url.url`, `input_audio.data`) longer than this is cut. Default 100 characters (DMR's). */
  maxMediaChars?: number | undefined;
  now?: (() => number) | undefined;
}

/** Told of every completed exchange (the model's id, and its group with that one record); must not throw. */
export type RecordListener = (modelId: string, records: ModelRecords) => void;

class Entry {
  pair: RecordedPair;
  chunks: Array<Buffer | string> | null = [];
  captured = 0;
  dropped = 0;
  bytes: number;
  /** Pushed out of its ring (possibly while still in flight). */
  evicted = false;
  /** The exchange is over: its answer may be assembled. */
  done = false;

  constructor(pair: RecordedPair) {
    this.pair = pair;
    this.bytes = Buffer.byteLength(pair.request);
  }

  /** The pair with its answer text, assembled once it is complete (until then: status 0, no answer). */
  materialize(): RecordedPair {
    if (!this.done) return { ...this.pair };
    if (this.chunks === null) return this.pair;
    const text = this.chunks.map((c) => (typeof c === "string" ? c : c.toString("utf8"))).join("");
    this.chunks = null;
    const cut = this.dropped > 0 ? `...[truncated ${this.dropped} bytes]` : "";
    if (this.pair.status_code >= 400) {
      this.pair.error = asJsonText(text) + cut;
    } else if (isEventStream(text)) {
      const assembled = assembleStream(text);
      if ("error" in assembled) this.pair.error = assembled.error;
      else this.pair.response = assembled.response + cut;
    } else {
      this.pair.response = text + cut;
    }
    return this.pair;
  }
}

interface ModelRing {
  name: string;
  config: ModelRecords["config"];
  entries: Entry[];
  bytes: number;
}

/**
 * Whether JSON text may hold a field the media cut shortens (mediaCutter's
 * keys; an escape could spell one of them in disguise).
 */
function mayHoldMedia(text: string): boolean {
  return text.includes('"url"') || text.includes('"image_url"') || text.includes('"data"') || text.includes('"images"') || text.includes("\\u");
}

/** An error text that is not JSON, wrapped as `{"error": text}` (DMR's normalizeErrorToJSON). */
function asJsonText(text: string): string {
  if (text === "") return '{"error":"unknown error"}';
  try {
    JSON.parse(text);
    return text;
  } catch {
    return JSON.stringify({ error: text });
  }
}

export class RequestRecorder {
  private readonly rings = new Map<string, ModelRing>();
  private readonly listeners = new Set<RecordListener>();
  private readonly maxRecords: number;
  private readonly maxBytes: number;
  private readonly maxMediaChars: number;
  private readonly now: () => number;
  private seq = 0;

  constructor(options: RecorderOptions = {}) {
    this.maxRecords = options.maxRecordsPerModel ?? 10;
    this.maxBytes = options.maxBytesPerModel ?? 8 * 1024 * 1024;
    this.maxMediaChars = options.maxMediaChars ?? 100;
    this.now = options.now ?? Date.now;
  }

  /** Starts recording one exchange; it shows (status 0) until its tap's `end`. */
  begin(start: RecordingStart): RecordingTap {
    let request = start.text !== undefined && !mayHoldMedia(start.text) ? start.text : JSON.stringify(start.body, this.mediaCutter);
    const requestCap = Math.floor(this.maxBytes / 2);
    if (request.length > requestCap) request = `${request.slice(0, requestCap)}...[truncated ${request.length - requestCap} chars]`;
    const named = (start.body as { model?: unknown } | null)?.model;
    const pair: RecordedPair = {
      id: `${start.modelId}_${this.now()}_${++this.seq}`,
      model: start.model ?? (typeof named === "string" ? named : start.modelName),
      method: start.method,
      url: start.url,
      request,
      timestamp: Math.floor(this.now() / 1000),
      status_code: 0,
      ...(start.userAgent ? { user_agent: start.userAgent } : {}),
      origin: start.origin,
    };
    const entry = new Entry(pair);
    let ring = this.rings.get(start.modelId);
    if (!ring) {
      ring = { name: start.modelName, config: {}, entries: [], bytes: 0 };
      this.rings.set(start.modelId, ring);
    }
    ring.name = start.modelName;
    if (start.contextSize !== undefined) ring.config = { "context-size": start.contextSize };
    ring.entries.push(entry);
    ring.bytes += entry.bytes;
    this.trim(ring);
    const room = this.maxBytes - entry.bytes;
    const owner = ring;
    let ended = false;
    return {
      chunk: (data) => {
        if (ended || entry.chunks === null) return;
        const size = typeof data === "string" ? Buffer.byteLength(data) : data.length;
        if (entry.captured + size <= room) {
          entry.chunks.push(data);
          entry.captured += size;
        } else {
          entry.dropped += size;
        }
      },
      end: (status, errorBody) => {
        if (ended) return;
        ended = true;
        entry.done = true;
        pair.status_code = status;
        if (errorBody !== undefined) {
          entry.chunks = null;
          pair.error = JSON.stringify(errorBody);
        }
        entry.bytes += entry.captured;
        if (!entry.evicted) {
          owner.bytes += entry.captured;
          this.trim(owner);
        }
        if (this.listeners.size === 0) return;
        const update: ModelRecords = { count: 1, model: owner.name, config: owner.config, records: [entry.materialize()] };
        for (const listener of this.listeners) listener(start.modelId, update);
      },
      cancel: () => {
        if (ended) return;
        ended = true;
        entry.chunks = null;
        const at = owner.entries.indexOf(entry);
        if (at >= 0) {
          owner.entries.splice(at, 1);
          owner.bytes -= entry.bytes;
        }
      },
    };
  }

  /** Every model's records, oldest first; one model's when `modelId` is given ([] if it has none). */
  list(modelId?: string): ModelRecords[] {
    const ids = modelId === undefined ? [...this.rings.keys()] : this.rings.has(modelId) ? [modelId] : [];
    return ids.map((id) => {
      const ring = this.rings.get(id)!;
      const records = ring.entries.map((e) => e.materialize());
      return { count: records.length, model: ring.name, config: ring.config, records };
    });
  }

  /** The model id a record group is kept under, found by its name (for a model no longer in the store). */
  idByName(name: string): string | undefined {
    for (const [id, ring] of this.rings) if (ring.name === name) return id;
    return undefined;
  }

  /** Calls `listener` with each exchange as it completes, until the returned function is called. */
  subscribe(listener: RecordListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Forgets a model's records (it was removed from the store). */
  forget(modelId: string): void {
    this.rings.delete(modelId);
  }

  /** Forgets every model's records (the store was purged). */
  clear(): void {
    this.rings.clear();
  }

  /** Oldest first out, until both bounds hold; the newest record always stays. */
  private trim(ring: ModelRing): void {
    while (ring.entries.length > 1 && (ring.entries.length > this.maxRecords || ring.bytes > this.maxBytes)) {
      const oldest = ring.entries.shift()!;
      oldest.evicted = true;
      ring.bytes -= oldest.bytes;
    }
  }

  /**
   * JSON.stringify replacer: base64 media cut to maxMediaChars, as DMR's
   * truncateMediaFields does: a `data:` URL's payload (OpenAI's
   * `image_url.url`, the Responses API's `input_image.image_url`),
   * `input_audio.data` (an object with `data` and `format`); and, in the
   * other dialects' bodies, Anthropic's base64 image `source.data` (beside
   * `media_type`) and Ollama's `images` (raw base64 strings).
   */
  private readonly mediaCutter = (() => {
    const max = () => this.maxMediaChars;
    const cut = (value: string, limit: number) => `${value.slice(0, limit)}...[truncated ${value.length - limit} chars]`;
    return function (this: Record<string, unknown>, key: string, value: unknown): unknown {
      const limit = max();
      if (key === "images" && Array.isArray(value)) return value.map((v: unknown) => (typeof v === "string" && v.length > limit ? cut(v, limit) : v));
      if (typeof value !== "string" || value.length <= limit) return value;
      if ((key === "url" || key === "image_url") && value.startsWith("data:")) {
        const comma = value.indexOf(",");
        if (comma < 0 || value.length - comma - 1 <= limit) return value;
        return `${value.slice(0, comma + 1 + limit)}...[truncated ${value.length - comma - 1 - limit} chars]`;
      }
      if (key === "data" && (typeof this.format === "string" || typeof this.media_type === "string")) return cut(value, limit);
      return value;
    };
  })();
}
