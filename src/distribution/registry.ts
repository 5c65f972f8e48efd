import { createReadStream } from "node:fs";
import { Readable } from "node:stream";
import type { Dispatcher } from "undici";
import { parseChallenge, resolveCredentials, type CredentialSources } from "./auth.ts";
import { isDigest, sha256Digest, type Digest } from "./digest.ts";
import { backoffMs } from "./backoff.ts";
import { RegistryError, RegistryUnreachableError, RemoteNotFoundError, RegistryAuthError } from "./errors.ts";
import { header, httpRequest, isDialError, isTransientNetworkError, readSmallBody, type HttpResponse } from "./http.ts";
import { sleep } from "./lock.ts";
import { MANIFEST_ACCEPT, MediaTypes, type ImageIndex } from "./media-types.ts";
import { isLoopbackHost } from "./reference.ts";

/** How the registry client reaches a registry; shared by pull and push. */
export interface RegistryClientOptions extends CredentialSources {
  dispatcher?: Dispatcher;
  /** Hosts (`host[:port]`) spoken to over plain HTTP; loopback hosts always are. */
  insecureRegistries?: readonly string[];
  /** A token sent as `Authorization: Bearer` on every request (DMR's `bearer-token`). */
  bearerToken?: string;
  /** Retries for 5xx/429/connection failures. Default 5. */
  maxRetries?: number;
  /** First backoff delay; doubles each retry. Default 200 ms. */
  retryBaseMs?: number;
}

/**
 * A client of one repository on one OCI distribution registry (the
 * `/v2/<name>/…` API). It answers auth challenges itself: on a 401 it reads
 * `WWW-Authenticate`, and either sends Basic credentials or fetches a Bearer
 * token from the realm (the Docker Hub flow) with the scopes it needs, caches
 * it, and retries once. Idempotent requests are retried with exponential
 * backoff on 5xx, 429 and connection resets.
 */
export class RegistryClient {
  private authorization: string | null = null;
  readonly baseUrl: string;

  constructor(
    readonly host: string,
    readonly repository: string,
    private readonly opts: RegistryClientOptions,
    /** `pull` or `pull,push`, plus extra scopes for cross-repository mounts. */
    private readonly actions: "pull" | "pull,push" = "pull",
    private readonly extraScopes: string[] = [],
  ) {
    const insecure = isLoopbackHost(host) || (opts.insecureRegistries ?? []).includes(host);
    this.baseUrl = `${insecure ? "http" : "https"}://${host}/v2/${repository}`;
    if (opts.bearerToken) this.authorization = `Bearer ${opts.bearerToken}`;
  }

  /**
   * Sends one request with auth and retries. `body` is a factory so a retry
   * gets a fresh stream. Throws RegistryAuthError, RegistryError; the caller
   * handles other statuses (404, 416…) from the returned response.
   */
  async send(
    method: "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE",
    url: string,
    init: { headers?: Record<string, string>; body?: () => Buffer | NodeJS.ReadableStream | null; signal?: AbortSignal; retry?: boolean } = {},
  ): Promise<HttpResponse> {
    const retries = init.retry === false ? 0 : (this.opts.maxRetries ?? 5);
    let challenged = false;
    for (let attempt = 0; ; attempt++) {
      const headers: Record<string, string> = { "user-agent": "model-runner/0.1", ...(init.headers ?? {}) };
      if (this.authorization) headers.authorization = this.authorization;
      let res: HttpResponse;
      try {
        res = await httpRequest(url, {
          method,
          headers,
          body: (init.body?.() ?? null) as Buffer | null,
          signal: init.signal,
          ...(this.opts.dispatcher ? { dispatcher: this.opts.dispatcher } : {}),
        });
      } catch (e) {
        if (init.signal?.aborted) throw init.signal.reason;
        if (isDialError(e)) throw new RegistryUnreachableError(this.host, e);
        if (attempt < retries && isTransientNetworkError(e)) {
          await sleep(this.backoff(attempt), init.signal);
          continue;
        }
        throw new RegistryError(`Cannot reach ${this.host}: ${(e as Error).message}`, { cause: e, retryable: isTransientNetworkError(e) });
      }
      if (res.statusCode === 401) {
        const challenge = header(res.headers, "www-authenticate");
        await res.body.dump();
        if (!challenged && challenge && !this.opts.bearerToken) {
          challenged = true;
          this.authorization = await this.answerChallenge(challenge, init.signal);
          attempt--;
          continue;
        }
        throw new RegistryAuthError(this.host, `${method} ${new URL(url).pathname} answered 401`);
      }
      if ((res.statusCode >= 500 || res.statusCode === 429) && attempt < retries) {
        await res.body.dump();
        await sleep(this.backoff(attempt, header(res.headers, "retry-after")), init.signal);
        continue;
      }
      return res;
    }
  }

  private backoff(attempt: number, retryAfter?: string): number {
    return backoffMs(attempt, { baseMs: this.opts.retryBaseMs ?? 200, retryAfter });
  }

  private async answerChallenge(value: string, signal?: AbortSignal): Promise<string> {
    const ch = parseChallenge(value);
    if (!ch) throw new RegistryAuthError(this.host, `unsupported challenge "${value.slice(0, 80)}"`);
    const creds = await resolveCredentials(this.host, this.opts);
    const basic = creds ? `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString("base64")}` : null;
    if (ch.scheme === "basic") {
      if (!basic) throw new RegistryAuthError(this.host, "no credentials");
      return basic;
    }
    const realm = ch.params.realm;
    if (!realm) throw new RegistryAuthError(this.host, "Bearer challenge without realm");
    const u = new URL(realm);
    if (ch.params.service) u.searchParams.set("service", ch.params.service);
    for (const s of [`repository:${this.repository}:${this.actions}`, ...this.extraScopes]) u.searchParams.append("scope", s);
    let res: HttpResponse;
    try {
      res = await httpRequest(u.href, {
        headers: basic ? { authorization: basic } : {},
        signal,
        ...(this.opts.dispatcher ? { dispatcher: this.opts.dispatcher } : {}),
      });
    } catch (e) {
      if (signal?.aborted) throw signal.reason;
      if (isDialError(e)) throw new RegistryUnreachableError(u.host, e);
      throw new RegistryError(`Cannot reach the token service ${u.origin}: ${(e as Error).message}`, { cause: e });
    }
    const body = await readSmallBody(res.body, 1 << 20);
    if (res.statusCode === 401 || res.statusCode === 403) throw new RegistryAuthError(this.host, "the token service refused the credentials");
    if (res.statusCode !== 200) throw new RegistryError(`Token service ${u.origin} answered ${res.statusCode}.`);
    const j = JSON.parse(body.toString("utf8")) as { token?: string; access_token?: string };
    const token = j.token ?? j.access_token;
    if (!token) throw new RegistryError(`Token service ${u.origin} returned no token.`);
    return `Bearer ${token}`;
  }

  /**
   * Fetches a manifest by tag or digest. An image index is followed to its
   * first image manifest (model artifacts have no platforms). A manifest
   * fetched by digest is verified against it.
   */
  async getManifest(reference: string, signal?: AbortSignal): Promise<{ raw: Buffer; digest: Digest; mediaType: string }> {
    const res = await this.send("GET", `${this.baseUrl}/manifests/${reference}`, { headers: { accept: MANIFEST_ACCEPT }, signal });
    if (res.statusCode === 404) {
      await res.body.dump();
      throw new RemoteNotFoundError(`${this.host}/${this.repository}:${reference} was not found in the registry.`);
    }
    if (res.statusCode !== 200) throw await this.unexpected(res, "GET manifest");
    const raw = await readSmallBody(res.body, 4 << 20);
    const digest = sha256Digest(raw);
    if (isDigest(reference) && reference !== digest) {
      throw new RegistryError(`Manifest ${reference} from ${this.host} hashed to ${digest}.`);
    }
    const parsed = JSON.parse(raw.toString("utf8")) as { mediaType?: string; manifests?: unknown };
    const mediaType = parsed.mediaType ?? header(res.headers, "content-type") ?? MediaTypes.ociManifest;
    if (mediaType === MediaTypes.ociIndex || mediaType === MediaTypes.dockerManifestList || Array.isArray(parsed.manifests)) {
      const index = parsed as ImageIndex;
      const first = index.manifests.find((m) => m.mediaType === MediaTypes.ociManifest || m.mediaType === MediaTypes.dockerManifest);
      if (!first || !isDigest(first.digest)) throw new RegistryError(`The image index for ${reference} lists no image manifest.`);
      return this.getManifest(first.digest, signal);
    }
    return { raw, digest, mediaType };
  }

  blobUrl(d: Digest): string {
    return `${this.baseUrl}/blobs/${d}`;
  }

  /** GETs a blob or a byte range of it (`end` inclusive). */
  getBlob(d: Digest, range: { start: number; end: number } | null, signal?: AbortSignal): Promise<HttpResponse> {
    return this.send("GET", this.blobUrl(d), {
      headers: range ? { range: `bytes=${range.start}-${range.end}` } : {},
      signal,
      retry: false, // the downloader retries with resume instead
    });
  }

  async hasBlob(d: Digest, signal?: AbortSignal): Promise<boolean> {
    const res = await this.send("HEAD", this.blobUrl(d), { signal });
    await res.body.dump();
    if (res.statusCode === 200) return true;
    if (res.statusCode === 404) return false;
    throw await this.unexpected(res, "HEAD blob");
  }

  /** Tries a cross-repository mount; true when the registry mounted it (201). */
  async mountBlob(d: Digest, fromRepository: string, signal?: AbortSignal): Promise<boolean> {
    const res = await this.send("POST", `${this.baseUrl}/blobs/uploads/?mount=${d}&from=${encodeURIComponent(fromRepository)}`, {
      headers: { "content-length": "0" },
      signal,
    });
    const location = header(res.headers, "location");
    await res.body.dump();
    if (res.statusCode === 201) return true;
    if (res.statusCode === 202 && location) {
      // Mount refused; cancel the upload session it opened instead.
      const cancel = await this.send("DELETE", new URL(location, this.baseUrl).href, { signal }).catch(() => null);
      await cancel?.body.dump();
    }
    return false;
  }

  /**
   * Uploads a blob from a file: one PUT when it fits `chunkSizeBytes`, else
   * PATCH chunks then a closing PUT. `onBytes` reports progress deltas.
   */
  async uploadBlob(
    d: Digest,
    path: string,
    size: number,
    opts: { chunkSizeBytes: number; signal?: AbortSignal; onBytes?: (delta: number) => void },
  ): Promise<void> {
    const start = await this.send("POST", `${this.baseUrl}/blobs/uploads/`, { headers: { "content-length": "0" }, signal: opts.signal });
    let location = header(start.headers, "location");
    await start.body.dump();
    if (start.statusCode !== 202 || !location) throw new RegistryError(`${this.host} refused to start an upload (${start.statusCode}).`);
    location = new URL(location, this.baseUrl).href;
    const withDigest = (loc: string) => {
      const u = new URL(loc);
      u.searchParams.set("digest", d);
      return u.href;
    };
    // Counts bytes as the HTTP client pulls them (a 'data' listener would start the flow before it reads).
    const counted = (from: number, to: number) => () =>
      Readable.from(
        (async function* () {
          for await (const c of createReadStream(path, { start: from, end: to - 1, highWaterMark: 1 << 20 })) {
            opts.onBytes?.((c as Buffer).length);
            yield c as Buffer;
          }
        })(),
        { objectMode: false },
      );
    if (size <= opts.chunkSizeBytes) {
      const res = await this.send("PUT", withDigest(location), {
        headers: { "content-type": "application/octet-stream", "content-length": String(size) },
        body: size === 0 ? () => Buffer.alloc(0) : counted(0, size),
        signal: opts.signal,
        retry: false,
      });
      if (res.statusCode !== 201) throw await this.unexpected(res, `PUT blob ${d}`);
      await res.body.dump();
      return;
    }
    for (let off = 0; off < size; off += opts.chunkSizeBytes) {
      const end = Math.min(size, off + opts.chunkSizeBytes);
      const res = await this.send("PATCH", location, {
        headers: {
          "content-type": "application/octet-stream",
          "content-length": String(end - off),
          "content-range": `${off}-${end - 1}`,
        },
        body: counted(off, end),
        signal: opts.signal,
        retry: false,
      });
      const next = header(res.headers, "location");
      await res.body.dump();
      if (res.statusCode !== 202 || !next) throw new RegistryError(`${this.host} refused a chunk of ${d} (${res.statusCode}).`);
      location = new URL(next, this.baseUrl).href;
    }
    const done = await this.send("PUT", withDigest(location), { headers: { "content-length": "0" }, signal: opts.signal, retry: false });
    await done.body.dump();
    if (done.statusCode !== 201) throw new RegistryError(`${this.host} refused to finish blob ${d} (${done.statusCode}).`);
  }

  async putManifest(reference: string, raw: Buffer, mediaType: string, signal?: AbortSignal): Promise<void> {
    const res = await this.send("PUT", `${this.baseUrl}/manifests/${reference}`, {
      headers: { "content-type": mediaType, "content-length": String(raw.length) },
      body: () => raw,
      signal,
    });
    if (res.statusCode !== 201 && res.statusCode !== 200) throw await this.unexpected(res, "PUT manifest");
    await res.body.dump();
  }

  async unexpected(res: HttpResponse, what: string): Promise<RegistryError> {
    const text = (await readSmallBody(res.body, 64 << 10).catch(() => Buffer.alloc(0))).toString("utf8").slice(0, 300);
    return new RegistryError(`${what} on ${this.host}/${this.repository} answered ${res.statusCode}: ${text}`, {
      retryable: res.statusCode >= 500 || res.statusCode === 429,
    });
  }
}
