import { createServer, type Server } from "node:http";

/**
 * FakeSearchApis: loopback stand-ins for Docker Hub's repository listing
 * (`GET /v2/repositories/ai/?page_size=&page=`, paginated with `next`) and the
 * Hugging Face model search (`GET /api/models?search=&filter=gguf&limit=`),
 * which tests cannot reach. Point MODEL_RUNNER_HUB_URL / HF_ENDPOINT at `url`.
 */
export interface FakeHubRepo {
  name: string;
  description: string;
  pull_count: number;
  star_count: number;
}

export interface FakeHfModel {
  id: string;
  downloads: number;
  likes: number;
  tags: string[];
}

export async function startFakeSearchApis(data: { hub: FakeHubRepo[]; hf: FakeHfModel[]; hubPageSize?: number; failHub?: boolean }) {
  const requests: string[] = [];
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    requests.push(`${req.method} ${url.pathname}${url.search}`);
    const send = (status: number, body: unknown) => res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
    if (url.pathname === "/v2/repositories/ai/") {
      if (data.failHub) return send(503, { message: "unavailable" });
      const size = data.hubPageSize ?? Number(url.searchParams.get("page_size") ?? 100);
      const page = Number(url.searchParams.get("page") ?? 1);
      const slice = data.hub.slice((page - 1) * size, page * size);
      const hasNext = page * size < data.hub.length;
      return send(200, {
        count: data.hub.length,
        next: hasNext ? `http://${req.headers.host}/v2/repositories/ai/?page_size=${size}&page=${page + 1}` : null,
        results: slice.map((r) => ({ ...r, namespace: "ai", last_updated: "2026-01-01T00:00:00Z" })),
      });
    }
    if (url.pathname === "/api/models") {
      const term = (url.searchParams.get("search") ?? "").toLowerCase();
      const limit = Number(url.searchParams.get("limit") ?? 20);
      const filter = url.searchParams.get("filter");
      const hits = data.hf
        .filter((m) => m.id.toLowerCase().includes(term) && (!filter || m.tags.includes(filter)))
        .sort((a, b) => b.downloads - a.downloads)
        .slice(0, limit);
      return send(200, hits);
    }
    send(404, { error: "not found" });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  return { url, requests, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}
