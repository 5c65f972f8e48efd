import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from "node:http";
import { randomBytes } from "node:crypto";

/**
 * A loopback HTTP proxy in front of a real registry, used two ways:
 *
 * - Fault injector: `faults` decide per blob GET whether to cut the
 *   connection after N bytes, flip one byte, or answer 503. Faults apply once
 *   each (they are consumed), so retries and resumes can succeed.
 * - Bearer-token auth service double (`FakeTokenService`): every /v2/ request
 *   without a valid token gets Docker Hub's `401 WWW-Authenticate: Bearer
 *   realm=…,service=…,scope=…` challenge; `/token` checks Basic credentials and
 *   issues an opaque token. The registry behind runs without auth.
 */
export interface ProxyFaults {
  /** Cut the socket after this many body bytes of the next N blob GETs. */
  dropAfterBytes?: { bytes: number; times: number };
  /** Flip the byte at this offset of the next blob GET body (full-body GETs only). */
  corruptAt?: { offset: number; times: number };
  /** Answer 503 to the next N blob GETs. */
  serviceUnavailable?: { times: number };
  /** Hold the body after N bytes (never finish) for the next N blob GETs: a stall. */
  stallAfterBytes?: { bytes: number; times: number };
  /** Wait this long before forwarding every blob GET (not consumed): keeps downloads in flight long enough to overlap. */
  blobGetDelayMs?: number;
}

export interface RegistryProxy {
  host: string;
  faults: ProxyFaults;
  /** Blob GETs seen (with their Range header), for asserting shared downloads and resume. */
  blobGets: Array<{ path: string; range: string | undefined }>;
  /** Every request (`METHOD /path`), to assert a host was or was not contacted. */
  requests: string[];
  tokensIssued: number;
  close(): Promise<void>;
}

export async function startRegistryProxy(
  upstream: string,
  opts: { bearer?: { user: string; password: string } } = {},
): Promise<RegistryProxy> {
  const target = new URL(upstream);
  const tokens = new Set<string>();
  const state: RegistryProxy = {
    host: "",
    faults: {},
    blobGets: [],
    requests: [],
    tokensIssued: 0,
    close: async () => {},
  };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://x");
    state.requests.push(`${req.method} ${url.pathname}`);
    if (opts.bearer && url.pathname === "/token") {
      const expected = `Basic ${Buffer.from(`${opts.bearer.user}:${opts.bearer.password}`).toString("base64")}`;
      if (req.headers.authorization !== expected) {
        res.writeHead(401, { "content-type": "application/json" }).end('{"details":"bad credentials"}');
        return;
      }
      const token = randomBytes(16).toString("hex");
      tokens.add(token);
      state.tokensIssued++;
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ token, expires_in: 300 }));
      return;
    }
    if (opts.bearer) {
      const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? "");
      if (!m || !tokens.has(m[1]!)) {
        const repo = /^\/v2\/(.+?)\/(?:manifests|blobs|tags)\//.exec(url.pathname)?.[1];
        res.writeHead(401, {
          "www-authenticate": `Bearer realm="http://${state.host}/token",service="test-registry"${repo ? `,scope="repository:${repo}:pull,push"` : ""}`,
          "content-type": "application/json",
        });
        res.end('{"errors":[{"code":"UNAUTHORIZED"}]}');
        return;
      }
    }
    const isBlobGet = req.method === "GET" && /\/blobs\/sha256:/.test(url.pathname);
    const f = state.faults;
    if (isBlobGet) {
      state.blobGets.push({ path: url.pathname, range: req.headers.range });
      if (f.serviceUnavailable && f.serviceUnavailable.times > 0) {
        f.serviceUnavailable.times--;
        res.writeHead(503).end("try later");
        return;
      }
    }
    if (isBlobGet && f.blobGetDelayMs) {
      req.pause();
      setTimeout(() => forward(req, res, isBlobGet), f.blobGetDelayMs);
      return;
    }
    forward(req, res, isBlobGet);
  });
  const forward = (req: IncomingMessage, res: ServerResponse, isBlobGet: boolean) => {
    const f = state.faults;
    const headers = { ...req.headers, host: target.host };
    delete headers.authorization;
    const up = httpRequest(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers },
      (upRes) => {
        const h = { ...upRes.headers };
        if (h.location) h.location = h.location.replace(target.host, state.host);
        res.writeHead(upRes.statusCode ?? 502, h);
        if (!isBlobGet) return void upRes.pipe(res);
        let seen = 0;
        // A fault only hits bodies long enough to reach it (so a small config blob does not use it up).
        const length = Number(upRes.headers["content-length"] ?? 0);
        const take = (fault: { times: number } | undefined, at: number | undefined) =>
          fault && at !== undefined && fault.times > 0 && length > at ? (fault.times--, at) : null;
        const drop = take(f.dropAfterBytes, f.dropAfterBytes?.bytes);
        const stall = take(f.stallAfterBytes, f.stallAfterBytes?.bytes);
        const corrupt = take(f.corruptAt, f.corruptAt?.offset);
        upRes.on("data", (chunk: Buffer) => {
          let c = chunk;
          if (corrupt !== null && corrupt >= seen && corrupt < seen + c.length) {
            c = Buffer.from(c);
            c[corrupt - seen] = c[corrupt - seen]! ^ 0xff;
          }
          if (drop !== null && seen + c.length >= drop) {
            res.write(c.subarray(0, Math.max(0, drop - seen)));
            upRes.destroy();
            res.socket?.destroy();
            return;
          }
          if (stall !== null && seen + c.length >= stall) {
            res.write(c.subarray(0, Math.max(0, stall - seen)));
            upRes.pause();
            return; // never resumes: the client must notice the stall
          }
          seen += c.length;
          res.write(c);
        });
        upRes.on("end", () => res.end());
      },
    );
    up.on("error", () => res.destroy());
    req.pipe(up);
  };
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  state.host = `127.0.0.1:${(server.address() as { port: number }).port}`;
  state.close = () =>
    new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
  return state;
}
