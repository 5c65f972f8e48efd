import { Agent, fetch as undiciFetch } from "undici";
import type { CliConfig, DaemonTls } from "../config.ts";
import { SseReader, type SseMessage } from "../http/sse-reader.ts";
import { CliError, DaemonError, DaemonUnreachableError } from "./errors.ts";

/** One NDJSON progress line of pull/push/load (dmr.md §3). */
export interface ProgressLine {
  type: "progress" | "success" | "warning" | "error";
  message: string;
  total?: number;
  layer?: { id: string; size: number; current: number };
  mode?: string;
}

export interface RequestOptions {
  query?: Record<string, string | undefined>;
  json?: unknown;
  body?: RequestInit["body"] | AsyncIterable<Uint8Array> | NodeJS.ReadableStream;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

/**
 * The daemon's HTTP API as the CLI uses it. Every method throws a
 * DaemonError carrying the daemon's own one-line message for an error status,
 * DaemonUnreachableError when nothing answers, and `signal.reason` on abort.
 */
export class DaemonClient {
  /** undici's fetch with an agent that checks certificates as `tls` says; null: the global fetch. */
  private readonly tlsFetch: typeof fetch | null;

  constructor(
    readonly baseUrl: string,
    private readonly apiKey: string | null = null,
    /** Where the address came from (error messages say so); null: the default address. */
    private readonly hostSource: string | null = "MODEL_RUNNER_HOST",
    tls: DaemonTls | null = null,
  ) {
    if (tls === null) this.tlsFetch = null;
    else {
      const dispatcher = new Agent({ connect: { rejectUnauthorized: !tls.skipVerify, ...(tls.ca !== null ? { ca: tls.ca } : {}) } });
      this.tlsFetch = ((input: string | URL, init?: RequestInit) => undiciFetch(input, { ...(init as object), dispatcher })) as unknown as typeof fetch;
    }
  }

  private get fetch(): typeof fetch {
    return this.tlsFetch ?? fetch;
  }

  async request(method: string, path: string, opts: RequestOptions = {}): Promise<Response> {
    const url = new URL(path, `${this.baseUrl}/`);
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) url.searchParams.set(k, v);
    const headers: Record<string, string> = { "user-agent": "model-runner-cli", ...opts.headers };
    if (this.apiKey) headers.authorization = `Bearer ${this.apiKey}`;
    let body: RequestInit["body"] | undefined;
    if (opts.json !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(opts.json);
    } else if (opts.body !== undefined) {
      body = opts.body as RequestInit["body"];
    }
    let res: Response;
    try {
      res = await this.fetch(url, {
        method,
        headers,
        body,
        signal: opts.signal,
        // A streamed upload (mr package) needs half duplex in Node's fetch.
        ...(body && typeof body === "object" && Symbol.asyncIterator in body ? { duplex: "half" } : {}),
      } as RequestInit);
    } catch (error) {
      if (opts.signal?.aborted) throw opts.signal.reason;
      throw new DaemonUnreachableError(this.baseUrl, this.hostSource, { cause: error });
    }
    if (!res.ok) throw await errorFrom(res);
    return res;
  }

  async json<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    const res = await this.request(method, path, { ...opts, headers: { accept: "application/json", ...opts.headers } });
    const text = await res.text();
    if (text.trim() === "") return undefined as T;
    try {
      return JSON.parse(text) as T;
    } catch (error) {
      throw new CliError(`the daemon sent a response that is not JSON (${method} ${path})`, { cause: error });
    }
  }

  /** Is something answering GET / ? Never throws. */
  async ping(timeoutMs = 1500): Promise<boolean> {
    return (await this.probe(timeoutMs)) === null;
  }

  /** Null when the daemon answers GET /, else why not (for --debug). Never throws. */
  async probe(timeoutMs = 1500): Promise<Error | null> {
    try {
      const res = await this.fetch(`${this.baseUrl}/`, { signal: AbortSignal.timeout(timeoutMs) });
      await res.arrayBuffer();
      return res.status < 500 ? null : new Error(`GET / answered ${res.status}`);
    } catch (error) {
      return error as Error;
    }
  }
}

/** The client for the daemon `config` names: its address, key and TLS settings. */
export const daemonClient = (config: CliConfig) => new DaemonClient(config.baseUrl, config.apiKey, config.hostSource, config.tls);

/** Builds a DaemonError from an error response: JSON `{"error":{"message"}}`, Ollama's `{"error":"..."}` or plain text. */
export async function errorFrom(res: Response): Promise<DaemonError> {
  const text = await res.text().catch(() => "");
  let message = text.trim();
  let code: string | null = null;
  try {
    const body = JSON.parse(text) as { error?: { message?: string; code?: string } | string; message?: string };
    if (typeof body.error === "string") message = body.error;
    else if (body.error?.message) {
      message = body.error.message;
      code = body.error.code ?? null;
    } else if (body.message) message = body.message;
  } catch {
    /* plain text body */
  }
  if (!message) message = `${res.status} ${res.statusText}`;
  return new DaemonError(message.split("\n")[0]!, res.status, code);
}

/** Splits a response body into lines as they arrive. */
export async function* lines(res: Response): AsyncGenerator<string> {
  if (!res.body) return;
  const decoder = new TextDecoder();
  let buffer = "";
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buffer.indexOf("\n")) !== -1) {
      yield buffer.slice(0, nl).replace(/\r$/, "");
      buffer = buffer.slice(nl + 1);
    }
  }
  buffer += decoder.decode();
  if (buffer) yield buffer;
}

/** NDJSON objects of a streamed response; blank lines skipped. */
export async function* ndjson<T>(res: Response): AsyncGenerator<T> {
  for await (const line of lines(res)) {
    if (line.trim() === "") continue;
    try {
      yield JSON.parse(line) as T;
    } catch (error) {
      throw new CliError(`the daemon sent a progress line that is not JSON: ${line.slice(0, 120)}`, { cause: error });
    }
  }
}

/** The events of an SSE response as they arrive (the one SSE reader's framing). */
export async function* sseEvents(res: Response): AsyncGenerator<SseMessage> {
  if (!res.body) return;
  const reader = new SseReader();
  const decoder = new TextDecoder();
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) yield* reader.push(decoder.decode(chunk, { stream: true }));
  yield* reader.push(`${decoder.decode()}\n\n`);
}

/**
 * Data payloads of an SSE stream (`data: ...`), ending at `[DONE]`. An
 * `{"error":...}` payload (sent once headers are out) becomes a DaemonError.
 */
export async function* sseData(res: Response): AsyncGenerator<unknown> {
  for await (const { data: payload } of sseEvents(res)) {
    if (payload === "[DONE]") return;
    const value = JSON.parse(payload) as { error?: { message?: string } | string };
    if (value && typeof value === "object" && "error" in value && value.error) {
      const e = value.error;
      throw new DaemonError(typeof e === "string" ? e : (e.message ?? "the model failed"), 500);
    }
    yield value;
  }
}
