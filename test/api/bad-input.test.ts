import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { startTestDaemon, type TestDaemon } from "./daemon-helper.ts";

/**
 * Bad input on every route of docs/api.md and docs/compat.md, every dialect:
 * each answer is a 4xx (never a 5xx, never a reset) with a body in the
 * route's own error shape, and the daemon keeps serving. Requests use a model
 * that does not exist or fail validation, so no engine is needed (and no
 * registry is contacted: no request names a valid reference to pull).
 */

type Dialect = "openai" | "ollama" | "anthropic";

interface Case {
  method: string;
  path: string;
  body?: string | undefined;
  contentType?: string | undefined;
  what: string;
}

function dialectOf(path: string): Dialect {
  if (path.startsWith("/api/")) return "ollama";
  if (path.startsWith("/anthropic/") || path.startsWith("/v1/messages")) return "anthropic";
  return "openai";
}

/** Asserts that `body` is `dialect`'s error shape and returns its message. */
function errorMessage(dialect: Dialect, body: unknown, what: string): string {
  const b = body as Record<string, unknown>;
  if (dialect === "ollama") {
    assert.equal(typeof b.error, "string", `${what}: Ollama shape {"error":"..."}, got ${JSON.stringify(body)}`);
    return b.error as string;
  }
  if (dialect === "anthropic") {
    assert.equal(b.type, "error", `${what}: Anthropic shape, got ${JSON.stringify(body)}`);
    const e = b.error as { type?: unknown; message?: unknown };
    assert.equal(typeof e?.type, "string", what);
    assert.equal(typeof e?.message, "string", what);
    return e.message as string;
  }
  const e = b.error as { message?: unknown; type?: unknown; code?: unknown } | undefined;
  assert.ok(e && typeof e === "object", `${what}: OpenAI shape {"error":{...}}, got ${JSON.stringify(body)}`);
  assert.equal(typeof e.message, "string", what);
  assert.equal(typeof e.type, "string", what);
  // Engine errors pass through as llama-server writes them: its `code` is the HTTP status.
  assert.ok(typeof e.code === "string" || typeof e.code === "number", `${what}: code`);
  return e.message as string;
}

async function send(d: TestDaemon, c: Case): Promise<{ status: number; body: unknown; message: string }> {
  let res: Response;
  try {
    res = await fetch(`${d.url}${c.path}`, {
      method: c.method,
      headers: c.body !== undefined ? { "content-type": c.contentType ?? "application/json" } : {},
      ...(c.body !== undefined ? { body: c.body } : {}),
    });
  } catch (error) {
    throw new Error(`${c.what}: ${c.method} ${c.path.slice(0, 80)} failed: ${(error as Error).message} (${String((error as Error).cause)})`);
  }
  const text = await res.text();
  assert.ok(res.status >= 400 && res.status < 500, `${c.what}: ${c.method} ${c.path.slice(0, 80)} answered ${res.status}: ${text.slice(0, 300)}`);
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    assert.fail(`${c.what}: ${c.method} ${c.path.slice(0, 80)} answered ${res.status} with a non-JSON body: ${text.slice(0, 200)}`);
  }
  return { status: res.status, body, message: errorMessage(dialectOf(c.path), body, `${c.what} ${c.method} ${c.path.slice(0, 60)}`) };
}

/**
 * Posts 11 MiB bodies with Node's fetch (what the openai, anthropic and
 * ollama SDKs use) to the daemon at argv[1], argv[2] times over three APIs,
 * then 5 times chunked (no Content-Length); prints the results as JSON.
 */
const HUGE_BODY_CLIENT = `
const [url, n] = [process.argv[1], Number(process.argv[2])];
const huge = JSON.stringify({ model: "ai/tiny", max_tokens: 1, messages: [{ role: "user", content: "x".repeat(11 * 1024 * 1024) }] });
const paths = ["/v1/chat/completions", "/api/chat", "/v1/messages"];
const results = [];
const attempt = async (path, body, extra) => {
  try {
    const res = await fetch(url + path, { method: "POST", body, headers: { "content-type": "application/json" }, ...extra });
    results.push({ path, status: res.status, body: await res.json() });
  } catch (e) {
    results.push({ path, error: String(e.cause?.code ?? e.cause ?? e) });
  }
};
for (let i = 0; i < n; i++) await attempt(paths[i % 3], huge, {});
const mib = new TextEncoder().encode("x".repeat(1024 * 1024));
for (let i = 0; i < 5; i++) {
  let k = 0;
  const body = new ReadableStream({ pull(c) { if (k++ < 12) c.enqueue(mib); else c.close(); } });
  await attempt("/v1/chat/completions", body, { duplex: "half" });
}
console.log(JSON.stringify(results));
`;

const deep = (levels: number) => `${"[".repeat(levels)}${"]".repeat(levels)}`;
const LONG = "a".repeat(300);

/** POST routes taking JSON, with a body that would otherwise be close to valid. */
const JSON_ROUTES: Array<{ path: string; base: Record<string, unknown> }> = [
  ...["", "/engines", "/engines/llama.cpp"].flatMap((p) => [
    { path: `${p}/v1/chat/completions`, base: { model: "absent/model", messages: [{ role: "user", content: "x" }] } },
    { path: `${p}/v1/completions`, base: { model: "absent/model", prompt: "x" } },
    { path: `${p}/v1/embeddings`, base: { model: "absent/model", input: "x" } },
    { path: `${p}/v1/rerank`, base: { model: "absent/model", query: "q", documents: ["d"] } },
    { path: `${p}/rerank`, base: { model: "absent/model", query: "q", documents: ["d"] } },
    { path: `${p}/score`, base: { model: "absent/model", text_1: "a", text_2: "b" } },
    { path: `${p}/v1/responses`, base: { model: "absent/model", input: "x" } },
  ]),
  { path: "/models/create", base: { from: "" } },
  { path: "/models/ai/absent/tag", base: {} },
  { path: "/models/ai/absent/repackage", base: { target: "" } },
  { path: "/engines/unload", base: {} },
  { path: "/engines/_configure", base: { model: "" } },
  { path: "/engines/llama.cpp/_configure", base: { model: "" } },
  { path: "/api/chat", base: { model: "absent/model", messages: [{ role: "user", content: "x" }] } },
  { path: "/api/generate", base: { model: "absent/model", prompt: "x" } },
  { path: "/api/embed", base: { model: "absent/model", input: "x" } },
  { path: "/api/embeddings", base: { model: "absent/model", prompt: "x" } },
  { path: "/api/show", base: { model: "absent/model" } },
  { path: "/api/pull", base: { model: "" } },
  { path: "/api/push", base: { model: "absent/model" } },
  { path: "/api/create", base: { model: "absent/model" } },
  { path: "/api/copy", base: { source: "absent/model" } },
  { path: "/anthropic/v1/messages", base: { model: "absent/model", max_tokens: 5, messages: [{ role: "user", content: "x" }] } },
  { path: "/v1/messages", base: { model: "absent/model", max_tokens: 5, messages: [{ role: "user", content: "x" }] } },
  { path: "/anthropic/v1/messages/count_tokens", base: { model: "absent/model", messages: [{ role: "user", content: "x" }] } },
  { path: "/v1/messages/count_tokens", base: { model: "absent/model", messages: [{ role: "user", content: "x" }] } },
];

/** Bodies that no route accepts. */
function badBodies(base: Record<string, unknown>): Array<{ body: string; contentType?: string; what: string }> {
  return [
    { body: "{not json", what: "malformed JSON" },
    { body: '{"model": "x",', what: "truncated JSON" },
    { body: "[1,2,3]", what: "an array body" },
    { body: '"text"', what: "a string body" },
    { body: "42", what: "a number body" },
    { body: "null", what: "a null body" },
    { body: JSON.stringify({ ...base, deep: JSON.parse(deep(200)) }), what: "JSON 200 levels deep" },
    { body: `{"model":"absent/model","x":${deep(10_000)}}`, what: "JSON 10000 levels deep" },
    { body: JSON.stringify({ ...base, model: 5 }), what: "a number model" },
    { body: JSON.stringify({ ...base, model: { name: "x" } }), what: "an object model" },
    { body: JSON.stringify({ ...base, stream: "yes" }), what: "a string stream" },
    { body: JSON.stringify({ ...base, max_tokens: 1e308, stream: "no" }), what: "a huge number and a bad stream" },
    { body: JSON.stringify({ ...base, model: LONG.repeat(4) }), what: "a 1200-character model" },
    { body: "\u00ff\u00fe{}", what: "garbage bytes" },
    { body: JSON.stringify(base), contentType: "multipart/form-data; boundary=x", what: "a multipart body" },
  ];
}

/** Paths with broken percent-encoding or over-long parameters, on GET/DELETE/POST routes of every API. */
const BAD_PATHS: Array<{ method: string; path: string }> = [
  ...["%25zz", "%zz", "%E0%A4%A", "%ED%A0%80", "%C0%AF", "%", `${LONG}/${LONG}`].flatMap((seg) => [
    { method: "GET", path: `/models/${seg}` },
    { method: "DELETE", path: `/models/${seg}` },
    { method: "POST", path: `/models/${seg}/tag?repo=a&tag=b` },
    { method: "GET", path: `/models/${seg}/export` },
    { method: "GET", path: `/v1/models/${seg}` },
    { method: "GET", path: `/engines/v1/models/${seg}` },
    { method: "GET", path: `/engines/llama.cpp/v1/models/${seg}` },
    { method: "GET", path: `/v1/responses/${seg}` },
    { method: "DELETE", path: `/engines/v1/responses/${seg}` },
    { method: "GET", path: `/v1/responses/${seg}/input_items` },
    { method: "POST", path: `/api/blobs/${seg}` },
    { method: "POST", path: `/api/${seg}` },
    { method: "POST", path: `/anthropic/v1/${seg}` },
  ]),
  { method: "POST", path: `/engines/${"b".repeat(400)}/v1/chat/completions` },
  { method: "POST", path: "/engines/%zz/_configure" },
  { method: "GET", path: `/v1/responses/${"r".repeat(2000)}` },
];

const HEX = "ab".repeat(32);

/** Routes that take no JSON body, or a stream, with bad input of their own. */
const OTHER_CASES: Case[] = [
  { method: "POST", path: "/models/load?tag=ai/loaded", body: "this is not a tar archive", contentType: "application/x-tar", what: "a garbage archive" },
  { method: "POST", path: "/models/load?tag=ai/loaded", body: "\0".repeat(4096), contentType: "application/x-tar", what: "an empty tar" },
  { method: "POST", path: "/models/load", body: "{}", what: "load without an archive" },
  { method: "POST", path: `/models/load?tag=${"t".repeat(300)}`, body: "x", contentType: "application/x-tar", what: "load with a bad tag" },
  { method: "POST", path: `/api/blobs/sha256:${HEX}`, body: "{}", what: "a JSON blob upload" },
  { method: "POST", path: "/api/blobs/sha256:zz", body: "abc", contentType: "application/octet-stream", what: "a bad digest" },
  { method: "POST", path: `/api/blobs/sha256:${HEX}`, body: "abc", contentType: "application/octet-stream", what: "a digest mismatch" },
  { method: "DELETE", path: "/api/delete", body: "{}", what: "delete without a model" },
  { method: "DELETE", path: "/api/delete", body: JSON.stringify({ model: 5 }), what: "delete with a number model" },
  { method: "DELETE", path: "/api/delete", body: JSON.stringify({ model: "absent/model" }), what: "delete of an absent model" },
  { method: "DELETE", path: "/api/delete", body: "{oops", what: "delete with bad JSON" },
  { method: "POST", path: "/api/copy", body: JSON.stringify({ source: 5, destination: "x" }), what: "copy with a number source" },
  { method: "POST", path: "/api/create", body: JSON.stringify({ model: "x", files: { "a.gguf": "sha256:zz" } }), what: "create from a bad digest" },
  { method: "POST", path: "/api/create", body: JSON.stringify({ model: "x", quantize: "q4" }), what: "create with quantize" },
  { method: "POST", path: "/models/ai/absent/push", body: "{}", what: "push of an absent model" },
  { method: "POST", path: "/models/ai/absent/unknown-action", body: "{}", what: "an unknown action" },
  { method: "POST", path: "/models/ai/tiny/tag", what: "tag without repo" },
  { method: "POST", path: "/models/ai/tiny/repackage", body: JSON.stringify({ target: "ai/x", context_size: "big" }), what: "repackage with a string context" },
  { method: "DELETE", path: "/models/absent/model", what: "delete of an absent model" },
  { method: "GET", path: "/models/absent/model/export", what: "export of an absent model" },
  { method: "POST", path: "/engines/unload", body: JSON.stringify({ all: "yes" }), what: "unload with a string all" },
  { method: "POST", path: "/engines/unload", body: JSON.stringify({ models: "ai/tiny" }), what: "unload with a string models" },
  { method: "POST", path: "/engines/_configure", body: JSON.stringify({ model: "ai/tiny", "context-size": "big" }), what: "configure with a string context" },
  { method: "POST", path: "/engines/_configure", body: JSON.stringify({ model: "ai/tiny", keep_alive: "soon" }), what: "configure with a bad keep_alive" },
  { method: "POST", path: "/engines/_configure", body: JSON.stringify({ model: "ai/tiny", "context-size": 1e12 }), what: "configure with a context over int32" },
  { method: "POST", path: "/engines/_configure", body: JSON.stringify({ model: "ai/tiny", "context-size": -5 }), what: "configure with a negative context" },
  { method: "POST", path: "/engines/nope/_configure", body: JSON.stringify({ model: "ai/tiny" }), what: "configure of an unknown backend" },
  { method: "GET", path: "/v1/responses/resp_absent", what: "an absent response" },
  { method: "GET", path: "/v1/responses/resp_absent/input_items", what: "items of an absent response" },
  { method: "DELETE", path: "/v1/responses/resp_absent", what: "delete of an absent response" },
  { method: "POST", path: "/v1/responses", body: JSON.stringify({ model: "ai/tiny", input: "x", previous_response_id: "resp_absent" }), what: "an absent previous response" },
  { method: "GET", path: "/engines/nope/v1/models", what: "models of an unknown backend" },
  { method: "GET", path: "/v1/models/absent/model", what: "an absent model" },
  { method: "POST", path: "/api/show", body: JSON.stringify({ model: "absent/model" }), what: "show of an absent model" },
  { method: "POST", path: "/api/generate", body: JSON.stringify({ model: "ai/tiny", prompt: "x", options: { num_ctx: -1 } }), what: "a negative num_ctx" },
  { method: "POST", path: "/api/generate", body: JSON.stringify({ model: "ai/tiny", prompt: "x", options: { tfs_z: 1 } }), what: "an unsupported option" },
  { method: "POST", path: "/api/chat", body: JSON.stringify({ model: "ai/tiny", messages: [{ role: "robot", content: "x" }] }), what: "a bad role" },
  { method: "POST", path: "/api/chat", body: JSON.stringify({ model: "ai/tiny", messages: "hi" }), what: "string messages" },
  { method: "POST", path: "/api/chat", body: JSON.stringify({ model: "ai/tiny", messages: [{ role: "user", content: "x" }], keep_alive: {} }), what: "an object keep_alive" },
  { method: "POST", path: "/v1/messages", body: JSON.stringify({ model: "ai/tiny", max_tokens: 1, messages: [{ role: "user", content: [{ type: "video" }] }] }), what: "an unknown block" },
  { method: "POST", path: "/v1/messages", body: JSON.stringify({ model: "ai/tiny", max_tokens: -1, messages: [{ role: "user", content: "x" }] }), what: "negative max_tokens" },
  { method: "POST", path: "/v1/messages", body: JSON.stringify({ model: "ai/tiny", max_tokens: 1e300, messages: [{ role: "user", content: "x" }], thinking: { type: "on" } }), what: "a bad thinking" },
  { method: "POST", path: "/v1/chat/completions", body: JSON.stringify({ model: "ai/tiny", messages: [{ role: "user", content: "x" }], n: 3 }), what: "n=3" },
  { method: "POST", path: "/v1/chat/completions", body: JSON.stringify({ model: "ai/tiny", messages: [{ role: "user", content: { text: "x" } }] }), what: "object content" },
  { method: "POST", path: "/v1/chat/completions", body: JSON.stringify({ model: "ai/tiny", messages: [{ role: "user", content: "x" }], temperature: "hot" }), what: "string temperature" },
  { method: "POST", path: "/v1/chat/completions", body: JSON.stringify({ model: "ai/tiny", messages: [] }), what: "no messages" },
  { method: "POST", path: "/v1/chat/completions", body: JSON.stringify({ model: "ai/tiny", messages: [5] }), what: "a number message" },
  { method: "POST", path: "/v1/embeddings", body: JSON.stringify({ model: "ai/tiny-embed", input: 5 }), what: "a number input" },
  { method: "POST", path: "/v1/embeddings", body: JSON.stringify({ model: "ai/tiny-embed", input: "x", encoding_format: "hex" }), what: "a bad encoding format" },
];

describe("bad input: a clear 4xx in each API's shape", () => {
  let d: TestDaemon;
  before(async () => {
    d = await startTestDaemon();
  });
  after(() => d?.close());

  test("malformed percent-encoding and over-long path parameters", async () => {
    for (const { method, path } of BAD_PATHS) {
      const { status } = await send(d, { method, path, what: "bad path" });
      assert.notEqual(status, 500);
    }
    const { message } = await send(d, { method: "GET", path: "/models/%zz", what: "bad path" });
    assert.match(message, /percent-encoded/);
    // Decoded once only: a literal "%" in a reference is an invalid reference, not a URIError.
    const literal = await send(d, { method: "GET", path: "/models/%25zz", what: "literal %" });
    assert.equal(literal.status, 400);
    assert.match(literal.message, /%zz/);
  });

  test("a URL over Node's 16 KiB header limit is a 431 in the API's shape", async () => {
    for (const path of [`/v1/models/${"u".repeat(20_000)}`, `/models/${"u".repeat(20_000)}`]) {
      const res = await fetch(`${d.url}${path}`);
      assert.equal(res.status, 431);
      const body = (await res.json()) as { error: { message: string; code: string } };
      assert.equal(body.error.code, "malformed_request");
      assert.match(body.error.message, /16 KiB/);
    }
    assert.equal((await fetch(`${d.url}/health`)).status, 200);
  });

  test("JSON nested too deep is a 400 naming the limit on every dialect, before any engine", async () => {
    for (const path of ["/v1/chat/completions", "/api/chat", "/v1/messages", "/anthropic/v1/messages", "/v1/responses", "/models/create", "/engines/_configure"]) {
      const body = `{"model":"ai/tiny","max_tokens":2,"input":"x","messages":[{"role":"user","content":"x"}],"unknown":${"{\"a\":".repeat(10_000)}1${"}".repeat(10_000)}}`;
      const { status, message } = await send(d, { method: "POST", path, body, what: "deep JSON" });
      assert.equal(status, 400, path);
      assert.match(message, /128 levels/, path);
    }
    assert.equal(d.daemon.scheduler.ps().length, 0, "no engine was started for a refused request");
  });

  test("a body over 10 MiB: Node's fetch in another process sees the 413 every time, in each API's shape", async () => {
    // In another process: with client and server on one event loop the race that loses the 413 (EPIPE) does not happen.
    const attempts = 30;
    const out = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, ["--input-type=module", "-e", HUGE_BODY_CLIENT, d.url, String(attempts)], { timeout: 120_000 }, (error, stdout, stderr) =>
        error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve(stdout),
      );
    });
    const results = JSON.parse(out) as Array<{ path: string; status?: number; body?: unknown; error?: string }>;
    assert.equal(results.length, attempts + 5);
    for (const r of results) {
      assert.equal(r.error, undefined, `${r.path}: fetch failed with ${r.error}`);
      assert.equal(r.status, 413, r.path);
      assert.match(errorMessage(dialectOf(r.path), r.body, r.path), /10 MiB/);
    }
  });

  test("wrong types are 400s that say what is wrong, in each dialect's shape", async () => {
    const chat = { model: "ai/tiny", messages: [{ role: "user", content: "x" }] };
    const cases: Array<{ path: string; body: Record<string, unknown>; field: RegExp }> = [
      { path: "/v1/responses", body: { model: "ai/tiny", input: "x", stream: "yes" }, field: /'stream' must be a boolean, got string/ },
      { path: "/v1/messages", body: { ...chat, max_tokens: 5, stream: "yes" }, field: /'stream' must be a boolean, got string/ },
      { path: "/anthropic/v1/messages", body: { ...chat, max_tokens: 5, stream: "yes" }, field: /'stream' must be a boolean, got string/ },
      { path: "/anthropic/v1/messages", body: { ...chat, max_tokens: "10" }, field: /max_tokens: must be an integer, got string/ },
      { path: "/api/chat", body: { ...chat, stream: "yes" }, field: /'stream' must be a boolean, got string/ },
      { path: "/api/generate", body: { model: "ai/tiny", prompt: "x", stream: "yes" }, field: /'stream' must be a boolean, got string/ },
      { path: "/api/pull", body: { model: "ai/tiny", stream: "yes" }, field: /'stream' must be a boolean, got string/ },
      { path: "/api/pull", body: { model: "ai/tiny", insecure: "yes" }, field: /'insecure' must be a boolean, got string/ },
      { path: "/api/pull", body: { model: "hf.co/org/repo-GGUF", insecure: true }, field: /'insecure' is for registries; Hugging Face is always reached over HTTPS/ },
      { path: "/api/chat", body: { model: "ai/tiny", messages: [{ role: "user", content: 5 }] }, field: /'messages\.0\.content' must be a string, got integer/ },
      { path: "/api/embed", body: { model: "ai/tiny-embed", input: "x", truncate: "yes" }, field: /'truncate' must be a boolean, got string/ },
      { path: "/api/show", body: { model: "ai/tiny", verbose: "yes" }, field: /'verbose' must be a boolean, got string/ },
      { path: "/v1/chat/completions", body: { model: "ai/tiny", messages: [{ role: "user" }] }, field: /'messages\.0\.content' is required/ },
      { path: "/v1/chat/completions", body: { ...chat, max_tokens: "10" }, field: /'max_tokens' must be an integer, got string/ },
      { path: "/v1/chat/completions", body: { ...chat, stream: "yes" }, field: /'stream' must be a boolean, got string/ },
    ];
    for (const c of cases) {
      const { status, message, body } = await send(d, { method: "POST", path: c.path, body: JSON.stringify(c.body), what: "wrong type" });
      assert.equal(status, 400, `${c.path} ${JSON.stringify(c.body)}`);
      assert.match(message, c.field, c.path);
      if (dialectOf(c.path) === "anthropic") assert.equal((body as { error: { type: string } }).error.type, "invalid_request_error");
    }
    assert.equal(d.daemon.scheduler.ps().length, 0, "no engine was started for a refused request");
  });

  test("an unknown field is a 400 naming it on every dialect (Ollama would drop it; Anthropic refuses it too), before any engine", async () => {
    const chat = { model: "ai/tiny", messages: [{ role: "user", content: "x" }] };
    const cases: Array<{ path: string; body: Record<string, unknown>; field: RegExp }> = [
      { path: "/api/chat", body: { ...chat, temperature: 0 }, field: /Unknown field 'temperature' in \/api\/chat \(Ollama takes it in 'options'\)/ },
      { path: "/api/chat", body: { ...chat, max_tokens: 3 }, field: /Unknown field 'max_tokens' in \/api\/chat\./ },
      { path: "/api/generate", body: { model: "ai/tiny", prompt: "x", stop: ["a"] }, field: /Unknown field 'stop' in \/api\/generate \(Ollama takes it in 'options'\)/ },
      { path: "/api/generate", body: { model: "ai/tiny", prompt: "x", n_probs: 2 }, field: /Unknown field 'n_probs'/ },
      { path: "/api/embed", body: { model: "ai/tiny-embed", input: "x", encoding_format: "base64" }, field: /Unknown field 'encoding_format' in \/api\/embed/ },
      { path: "/api/embeddings", body: { model: "ai/tiny-embed", prompt: "x", input: "y" }, field: /Unknown field 'input' in \/api\/embeddings/ },
      { path: "/api/show", body: { model: "ai/tiny", system: "be brief" }, field: /Unknown field 'system' in \/api\/show/ },
      { path: "/api/pull", body: { model: "ai/tiny", username: "u", password: "p" }, field: /Unknown field 'username' in \/api\/pull/ },
      { path: "/api/push", body: { model: "ai/tiny", force: true }, field: /Unknown field 'force' in \/api\/push/ },
      { path: "/api/copy", body: { source: "ai/tiny", destination: "ai/x", force: true }, field: /Unknown field 'force' in \/api\/copy/ },
      { path: "/v1/messages", body: { ...chat, max_tokens: 5, n: 2 }, field: /^n: Extra inputs are not permitted$/ },
      { path: "/anthropic/v1/messages", body: { ...chat, max_tokens: 5, frequency_penalty: 1 }, field: /^frequency_penalty: Extra inputs are not permitted$/ },
      { path: "/api/chat", body: { model: "ai/tiny", messages: [{ role: "user", content: "x", name: "bob" }] }, field: /Unknown field 'name' in messages\[0\]/ },
      { path: "/models/create", body: { from: "ai/tiny", force: true }, field: /Unknown field "force" in \/models\/create/ },
      { path: "/models/create", body: { from: "hf.co/org/repo-GGUF", insecure: true }, field: /'insecure' is for registries; Hugging Face is always reached over HTTPS/ },
      { path: "/v1/responses", body: { model: "ai/tiny", input: [{ role: "user", content: "x", name: "bob" }] }, field: /^Unknown parameter: 'input\[0\]\.name'\.$/ },
      { path: "/v1/responses", body: { model: "ai/tiny", input: [{ role: "user", content: [{ type: "input_text", text: "x", lang: "en" }] }] }, field: /^Unknown parameter: 'input\[0\]\.content\[0\]\.lang'\.$/ },
      { path: "/v1/responses", body: { model: "ai/tiny", input: "x", tools: [{ type: "function", name: "f", strict: true, cache: 1 }] }, field: /'tools\[0\]\.cache'/ },
      {
        path: "/v1/responses",
        body: {
          model: "ai/tiny",
          input: [
            { type: "function_call", call_id: "c1", name: "f", arguments: "{}" },
            { type: "function_call_output", call_id: "c1", output: [{ type: "input_image", image_url: "data:image/png;base64,AA==" }] },
          ],
        },
        field: /'input\[1\]\.output' has an image: a tool's output can only be text here/,
      },
      { path: "/v1/responses", body: { model: "ai/tiny", input: "x", text: { format: { type: "json_object", schema: {} } } }, field: /'text\.format\.schema'/ },
      { path: "/models/ai/tiny/push", body: { "bearer-token": "t", force: true }, field: /Unknown field "force" in \/models\/\{name\}\/push/ },
      { path: "/v1/messages/count_tokens", body: { ...chat, max_tokens: 5 }, field: /^max_tokens: Extra inputs are not permitted$/ },
      { path: "/v1/messages/count_tokens", body: { ...chat, temperature: 1 }, field: /^temperature: Extra inputs are not permitted$/ },
    ];
    // OpenAI's own fields are checked by the engine (docs/engine.md "Request fields"): those come last.
    const engineChecked = [
      { path: "/v1/responses", body: { model: "ai/tiny", input: "x", top_k: 5 }, field: /top_k/ },
      { path: "/v1/chat/completions", body: { ...chat, options: { temperature: 0 } }, field: /options/ },
    ];
    for (const c of [...cases, ...engineChecked]) {
      if (c === engineChecked[0]) assert.equal(d.daemon.scheduler.ps().length, 0, "no engine was started for a refused Ollama or Anthropic request");
      const { status, message, body } = await send(d, { method: "POST", path: c.path, body: JSON.stringify(c.body), what: "unknown field" });
      assert.equal(status, 400, `${c.path} ${JSON.stringify(c.body)}`);
      assert.match(message, c.field, c.path);
      if (dialectOf(c.path) === "anthropic") assert.equal((body as { error: { type: string } }).error.type, "invalid_request_error");
    }
  });

  test("_configure context sizes outside an int32 of at least 0 (-1 = unset) are 400s, and nothing is stored", async () => {
    for (const size of [1e12, -5, 2.5, 2147483648]) {
      const { status, message } = await send(d, { method: "POST", path: "/engines/_configure", body: JSON.stringify({ model: "ai/tiny", "context-size": size }), what: `context-size ${size}` });
      assert.equal(status, 400, String(size));
      assert.match(message, /context-size/);
    }
    const stored = (await (await fetch(`${d.url}/engines/_configure?model=ai/tiny`)).json()) as unknown[];
    assert.deepEqual(stored, []);
  });

  test("repository names over 255 characters are refused everywhere", async () => {
    const long = `ai/${"m".repeat(260)}`;
    const cases: Case[] = [
      { method: "POST", path: "/models/create", body: JSON.stringify({ from: long }), what: "create" },
      { method: "POST", path: `/models/ai/tiny/tag?repo=${long}&tag=v1`, what: "tag" },
      { method: "POST", path: "/models/ai/tiny/repackage", body: JSON.stringify({ target: long }), what: "repackage" },
      { method: "POST", path: "/api/pull", body: JSON.stringify({ model: long, stream: false }), what: "ollama pull" },
      { method: "POST", path: "/api/copy", body: JSON.stringify({ source: "ai/tiny", destination: long }), what: "ollama copy" },
      { method: "POST", path: "/api/create", body: JSON.stringify({ model: long, from: "ai/tiny" }), what: "ollama create" },
    ];
    for (const c of cases) {
      const { status, message } = await send(d, c);
      assert.equal(status, 400, c.what);
      assert.match(message, /255/, c.what);
    }
    const del = await send(d, { method: "DELETE", path: "/api/delete", body: JSON.stringify({ model: "ai/tiny", force: true }), what: "unknown field" });
    assert.equal(del.status, 400);
    assert.match(del.message, /Unknown field 'force' in \/api\/delete/);
    const models = (await (await fetch(`${d.url}/models`)).json()) as Array<{ tags: string[] }>;
    assert.ok(models.every((m) => m.tags.every((t) => t.length < 255)), "no long tag was stored");
  });

  test(`the corpus: ${JSON_ROUTES.length * 15 + BAD_PATHS.length + OTHER_CASES.length} bad requests, all 4xx in shape; the daemon serves on`, async () => {
    let n = 0;
    for (const route of JSON_ROUTES) {
      for (const { body, contentType, what } of badBodies(route.base)) {
        await send(d, { method: "POST", path: route.path, body, contentType, what });
        n++;
      }
    }
    for (const { method, path } of BAD_PATHS) {
      await send(d, { method, path, what: "bad path" });
      n++;
    }
    for (const c of OTHER_CASES) {
      await send(d, c);
      n++;
    }
    assert.equal((await fetch(`${d.url}/api/blobs/sha256:zz`, { method: "HEAD" })).status, 400);
    assert.ok(n >= 300, `${n} requests`);
    assert.equal((await fetch(`${d.url}/health`)).status, 200);
    const ok = await fetch(`${d.url}/v1/chat/completions`, {
      method: "POST",
      body: JSON.stringify({ model: "ai/tiny", messages: [{ role: "user", content: "x" }], max_tokens: 1 }),
    });
    assert.equal(ok.status, 200);
  });
});
