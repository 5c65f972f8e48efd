import type { Dispatcher } from "undici";
import type { Readable } from "node:stream";

/** One HTTP response, body not yet read. The caller must consume or dump `body`. */
export interface HttpResponse {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  body: Dispatcher.ResponseData["body"];
  /** The URL that answered, after redirects. */
  url: string;
}

export interface HttpRequestOptions {
  method?: "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE";
  headers?: Record<string, string>;
  body?: Buffer | string | Readable | null;
  signal?: AbortSignal;
  dispatcher?: Dispatcher;
  maxRedirects?: number;
}

/**
 * undici's `request` with redirects followed by hand, because blob GETs are
 * redirected to storage/CDN hosts and the rules matter: `Range` is kept on
 * every hop, `Authorization` is dropped as soon as the origin changes (the
 * CDN must not see registry credentials), and a stream body is never resent.
 */
export async function httpRequest(url: string, opts: HttpRequestOptions = {}): Promise<HttpResponse> {
  let current = new URL(url);
  const origin = current.origin;
  let method = opts.method ?? "GET";
  let headers = { ...(opts.headers ?? {}) };
  let body = opts.body ?? null;
  // Loaded on the first registry request: a daemon that never pulls does without it (~9 MiB).
  const { request } = await import("undici");
  for (let hop = 0; ; hop++) {
    const res = await request(current, {
      method,
      headers,
      body,
      signal: opts.signal,
      ...(opts.dispatcher ? { dispatcher: opts.dispatcher } : {}),
    });
    const location = header(res.headers, "location");
    if ([301, 302, 303, 307, 308].includes(res.statusCode) && location && hop < (opts.maxRedirects ?? 5)) {
      if (body && typeof body === "object" && !Buffer.isBuffer(body)) {
        return { statusCode: res.statusCode, headers: res.headers, body: res.body, url: current.href }; // cannot replay a stream
      }
      await res.body.dump();
      current = new URL(location, current);
      if (current.origin !== origin) {
        headers = Object.fromEntries(Object.entries(headers).filter(([k]) => k.toLowerCase() !== "authorization"));
      }
      if (res.statusCode === 303) {
        method = "GET";
        body = null;
      }
      continue;
    }
    return { statusCode: res.statusCode, headers: res.headers, body: res.body, url: current.href };
  }
}

export function header(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

/** Reads a small body (JSON, error text) with a size cap, so a hostile server cannot make us buffer a blob. */
export async function readSmallBody(body: HttpResponse["body"], maxBytes = 8 << 20): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const chunk of body) {
    n += (chunk as Buffer).length;
    if (n > maxBytes) {
      body.destroy();
      throw new Error(`response larger than ${maxBytes} bytes`);
    }
    parts.push(chunk as Buffer);
  }
  return Buffer.concat(parts);
}

/**
 * Dial failures: the host's name does not resolve, or the host refuses the
 * connection. Offline, these repeat forever, so they are never retried.
 */
export function isDialError(e: unknown): boolean {
  const code = (e as { code?: string } | null)?.code ?? "";
  return ["ENOTFOUND", "EAI_AGAIN", "EAI_NONAME", "EAI_FAIL", "ECONNREFUSED", "ENETUNREACH", "EHOSTUNREACH"].includes(code);
}

/** Network failures worth retrying: resets, sockets closed mid-way, timeouts. Never a dial error (isDialError). */
export function isTransientNetworkError(e: unknown): boolean {
  if (isDialError(e)) return false;
  const code = (e as { code?: string } | null)?.code ?? "";
  return (
    [
      "ECONNRESET", "EPIPE", "ETIMEDOUT", "ECONNABORTED",
      "UND_ERR_SOCKET", "UND_ERR_CLOSED", "UND_ERR_CONNECT_TIMEOUT", "UND_ERR_HEADERS_TIMEOUT",
      "UND_ERR_BODY_TIMEOUT", "UND_ERR_REQ_CONTENT_LENGTH_MISMATCH", "UND_ERR_RES_CONTENT_LENGTH_MISMATCH",
    ].includes(code) || (e instanceof Error && /other side closed|socket hang up|terminated/i.test(e.message))
  );
}
