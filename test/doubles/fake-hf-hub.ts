import { createServer } from "node:http";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { createHash } from "node:crypto";

/**
 * FakeHfHub: a loopback stand-in for the Hugging Face Hub (unreachable from
 * tests). It answers the routes we call: `GET /api/models/<org>/<repo>/tree/main`
 * (the listing @huggingface/hub's listFiles reads) and
 * `GET /<org>/<repo>/resolve/main/<path>`, which redirects to a `/cdn/` URL
 * on the same server that serves bytes with Range support, like the real CDN.
 */
export interface FakeHfFile {
  path: string;
  local: string;
  /** Override the advertised sha256 (to test mismatch). */
  sha256?: string;
}

export async function startFakeHfHub(repos: Record<string, FakeHfFile[]>, opts: { token?: string } = {}) {
  const entries = new Map<string, Array<FakeHfFile & { size: number; oid: string }>>();
  for (const [repo, files] of Object.entries(repos)) {
    const list = [];
    for (const f of files) {
      const h = createHash("sha256");
      for await (const c of createReadStream(f.local)) h.update(c as Buffer);
      list.push({ ...f, size: (await stat(f.local)).size, oid: f.sha256 ?? h.digest("hex") });
    }
    entries.set(repo.toLowerCase(), list); // the Hub resolves repo names case-insensitively
  }
  const requests: string[] = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    requests.push(`${req.method} ${url.pathname}`);
    if (!url.pathname.startsWith("/cdn/") && opts.token && req.headers.authorization !== `Bearer ${opts.token}`) {
      res.writeHead(401, { "content-type": "application/json" }).end('{"error":"Invalid credentials"}');
      return;
    }
    const tree = /^\/api\/models\/([^/]+\/[^/]+)\/tree\/main$/.exec(url.pathname);
    if (tree) {
      const list = entries.get(tree[1]!.toLowerCase());
      if (!list) return void res.writeHead(404, { "content-type": "application/json" }).end('{"error":"Repository not found"}');
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(list.map((f) => ({ type: "file", path: f.path, size: f.size, oid: "0".repeat(40), lfs: { oid: f.oid, size: f.size, pointerSize: 134 } }))));
      return;
    }
    const resolve = /^\/([^/]+\/[^/]+)\/resolve\/main\/(.+)$/.exec(url.pathname);
    if (resolve) {
      const f = entries.get(resolve[1]!.toLowerCase())?.find((x) => x.path === decodeURIComponent(resolve[2]!));
      if (!f) return void res.writeHead(404).end();
      res.writeHead(302, { location: `/cdn/${encodeURIComponent(resolve[1]!)}/${encodeURIComponent(f.path)}` }).end();
      return;
    }
    const cdn = /^\/cdn\/([^/]+)\/(.+)$/.exec(url.pathname);
    if (cdn) {
      const f = entries.get(decodeURIComponent(cdn[1]!).toLowerCase())?.find((x) => x.path === decodeURIComponent(cdn[2]!));
      if (!f) return void res.writeHead(404).end();
      const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "");
      if (m) {
        const start = Number(m[1]);
        const end = m[2] ? Number(m[2]) : f.size - 1;
        res.writeHead(206, { "content-length": end - start + 1, "content-range": `bytes ${start}-${end}/${f.size}`, "accept-ranges": "bytes" });
        createReadStream(f.local, { start, end }).pipe(res);
      } else {
        res.writeHead(200, { "content-length": f.size, "accept-ranges": "bytes" });
        createReadStream(f.local).pipe(res);
      }
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    requests,
    close: () => new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}
