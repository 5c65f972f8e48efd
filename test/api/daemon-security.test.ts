import assert from "node:assert/strict";
import { request as httpRequest } from "node:http";
import { describe, test } from "node:test";
import OpenAI from "openai";
import { startBareDaemon } from "../helpers/daemon.ts";
import { tempDir, tinyModel } from "../helpers/models.ts";

/** A GET with a chosen `Host` header (fetch does not let one be set). */
function getWithHost(url: string, path: string, host: string | null): Promise<{ status: number; body: unknown }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ hostname, port, path, method: "GET", setHost: host !== null, headers: host !== null ? { host } : {} }, (res) => {
      let text = "";
      res.setEncoding("utf8").on("data", (c: string) => (text += c));
      res.on("end", () => {
        let body: unknown = text;
        try {
          body = JSON.parse(text);
        } catch {
          // Not JSON (a 200 listing or metrics).
        }
        resolve({ status: res.statusCode!, body });
      });
    });
    req.on("error", reject);
    req.end();
  });
}

describe("daemon security defaults", () => {
  test("an API key guards every route but / and /health", async (t) => {
    const d = await startBareDaemon({ MODEL_RUNNER_API_KEY: "s3cret" });
    t.after(() => d.close());
    await d.addModel(await tinyModel({ seed: 61 }), "ai/k:latest");
    assert.equal((await fetch(`${d.url}/`)).status, 200);
    assert.equal((await fetch(`${d.url}/health`)).status, 200);
    for (const path of ["/models", "/v1/models", "/engines/ps", "/metrics", "/version"]) {
      const res = await fetch(`${d.url}${path}`);
      assert.equal(res.status, 401, path);
      assert.equal(((await res.json()) as { error: { type: string } }).error.type, "authentication_error");
    }
    assert.equal((await fetch(`${d.url}/models`, { headers: { authorization: "Bearer wrong" } })).status, 401);
    assert.equal((await fetch(`${d.url}/models`, { headers: { authorization: "Bearer s3cret" } })).status, 200);
    assert.equal((await fetch(`${d.url}/models`, { headers: { "x-api-key": "s3cret" } })).status, 200);
    const client = new OpenAI({ baseURL: `${d.url}/v1`, apiKey: "s3cret", maxRetries: 0 });
    const r = await client.chat.completions.create({ model: "ai/k", messages: [{ role: "user", content: "x" }], max_tokens: 1 });
    assert.equal(r.usage!.completion_tokens, 1);
  });

  test("CORS allows localhost and configured origins, refuses others with 403", async (t) => {
    const d = await startBareDaemon({ MODEL_RUNNER_ORIGINS: "https://app.example" });
    t.after(() => d.close());
    const local = await fetch(`${d.url}/models`, { headers: { origin: "http://localhost:3000" } });
    assert.equal(local.status, 200);
    assert.equal(local.headers.get("access-control-allow-origin"), "http://localhost:3000");
    const configured = await fetch(`${d.url}/models`, { headers: { origin: "https://app.example" } });
    assert.equal(configured.status, 200);
    const other = await fetch(`${d.url}/models`, { headers: { origin: "https://evil.example" } });
    assert.equal(other.status, 403);
    assert.equal(((await other.json()) as { error: { code: string } }).error.code, "origin_not_allowed");
    const preflight = await fetch(`${d.url}/v1/chat/completions`, {
      method: "OPTIONS",
      headers: { origin: "http://127.0.0.1:8080", "access-control-request-method": "POST", "access-control-request-headers": "content-type" },
    });
    assert.equal(preflight.status, 204);
    assert.match(preflight.headers.get("access-control-allow-methods")!, /POST/);
  });

  test("listens on loopback by default, and engine sockets live in a private directory", async (t) => {
    const d = await startBareDaemon();
    t.after(() => d.close());
    assert.match(d.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    const { stat } = await import("node:fs/promises");
    const { join } = await import("node:path");
    await d.addModel(await tinyModel({ seed: 62 }), "ai/s:latest");
    await fetch(`${d.url}/v1/chat/completions`, { method: "POST", body: JSON.stringify({ model: "ai/s", messages: [{ role: "user", content: "x" }], max_tokens: 1 }) });
    const mode = (await stat(join(d.home, "run"))).mode & 0o777;
    assert.equal(mode, 0o700);
  });

  test("bound to loopback, a foreign Host is refused with 403 in the route's shape (DNS rebinding)", async (t) => {
    const d = await startBareDaemon({ MODEL_RUNNER_ALLOWED_HOSTS: "models.internal, Box.Example:8080" });
    t.after(() => d.close());
    for (const path of ["/models", "/logs", "/api/tags", "/v1/models", "/metrics", "/engines/ps", "/"]) {
      const evil = await getWithHost(d.url, path, "evil.example");
      assert.equal(evil.status, 403, path);
      const body = evil.body as { error: string | { code: string; message: string } };
      const message = typeof body.error === "string" ? body.error : body.error.message;
      if (path.startsWith("/api/")) assert.equal(typeof body.error, "string", "Ollama shape");
      else assert.equal((body.error as { code: string }).code, "host_not_allowed", path);
      assert.match(message, /MODEL_RUNNER_ALLOWED_HOSTS/);
      assert.equal((await getWithHost(d.url, path, "evil.example:12434")).status, 403, `${path} with a port`);
    }
    for (const host of ["localhost", "localhost:12434", "127.0.0.1", "127.0.0.1:80", "[::1]", "[::1]:12434", "models.internal", "models.internal:9", "box.example"]) {
      assert.equal((await getWithHost(d.url, "/models", host)).status, 200, host);
    }
    // A lookalike of an allowed name is not allowed.
    assert.equal((await getWithHost(d.url, "/models", "localhost.evil.example")).status, 403);
    // HTTP/1.1 without Host is refused by Node itself (400), before any route.
    assert.equal((await getWithHost(d.url, "/models", null)).status, 400);
  });

  test("the home is created 0700 and the log file 0600", async (t) => {
    const { stat } = await import("node:fs/promises");
    const { join } = await import("node:path");
    const home = join(await tempDir("mr-modes-"), "home");
    const d = await startBareDaemon({ MODEL_RUNNER_HOME: home });
    t.after(() => d.close());
    assert.equal((await stat(home)).mode & 0o777, 0o700);
    assert.equal((await stat(join(home, "logs"))).mode & 0o777, 0o700);
    assert.equal((await stat(join(home, "logs", "model-runner.log"))).mode & 0o777, 0o600);
  });
});
