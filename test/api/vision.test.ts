import assert from "node:assert/strict";
import { mkdir, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { writeTinyModel } from "../../src/distribution/tiny-model.ts";
import { tinyProjectorImageTokens, writeTinyProjector } from "../../src/distribution/tiny-projector.ts";
import { BUNDLE_PATH, builtDir, llamaServerRoot } from "../../src/inference/backends/llamacpp/llama-server-install.ts";
import { runMr } from "../helpers/cli.ts";
import { startBareDaemon, type TestDaemon } from "../helpers/daemon.ts";
import { LLAMA_SERVER_PATH } from "../helpers/engines.ts";
import { tempDir, tinyModel } from "../helpers/models.ts";
import { CHECKERBOARD_PNG, GRADIENT_PNG } from "../helpers/png.ts";

/**
 * Vision end to end through the daemon: a generated ChatML text model with a
 * generated `mlp` projector (`ai/vision`), served by a real llama-server
 * with `--mmproj`, on every dialect; and, without llama-server, the 400 that
 * says how to get it and the capability rule.
 */

const IMAGE_TOKENS = tinyProjectorImageTokens();
const A = CHECKERBOARD_PNG.toString("base64");
const B = GRADIENT_PNG.toString("base64");
const dataUri = (b64: string) => `data:image/png;base64,${b64}`;
/** A PNG cut short: the right magic, no image. */
const TRUNCATED = CHECKERBOARD_PNG.subarray(0, 40).toString("base64");

type Json = Record<string, any>;
const post = async (d: TestDaemon, path: string, body: unknown): Promise<{ status: number; json: Json }> => {
  const res = await fetch(`${d.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  return { status: res.status, json: (await res.json()) as Json };
};
const getJson = async (d: TestDaemon, path: string): Promise<Json> => (await (await fetch(`${d.url}${path}`)).json()) as Json;

const chat = (content: unknown, extra: Json = {}) => ({ model: "ai/vision", messages: [{ role: "user", content }], max_tokens: 2, temperature: 0, ...extra });
const withImages = (...images: string[]) => [{ type: "text", text: "describe" }, ...images.map((b64) => ({ type: "image_url", image_url: { url: dataUri(b64) } }))];

/** A PNG file on disk, for `mr run MODEL "describe /path/a.png"`. */
async function pngFile(): Promise<string> {
  const path = join(await tempDir(), "cat.png");
  await writeFile(path, CHECKERBOARD_PNG);
  return path;
}

const promptEvalCount = (stderr: string) => Number(/prompt eval count:\s+(\d+)/.exec(stderr)?.[1] ?? Number.NaN);

/** A daemon with `ai/vision` (text model + projector) and the text-only `ai/tiny`. */
async function visionDaemon(env: Record<string, string>): Promise<TestDaemon> {
  const d = await startBareDaemon({ MODEL_RUNNER_LOG_LEVEL: "warn", ...env });
  try {
    const dir = await tempDir();
    const text = join(dir, "text.gguf");
    const mmproj = join(dir, "mmproj.gguf");
    await writeTinyModel(text, { seed: 3 });
    await writeTinyProjector(mmproj, { textEmbeddingLength: 64 });
    await d.daemon.distribution.packageModel({ gguf: text, mmproj, tags: ["ai/vision:latest"] });
    await d.addModel(await tinyModel({ seed: 3 }), "ai/tiny:latest");
  } catch (error) {
    await d.close();
    throw error;
  }
  return d;
}

describe("vision on llama-server (--mmproj)", { skip: LLAMA_SERVER_PATH ? false : "no llama-server binary: set MR_TEST_LLAMA_SERVER (.ci/run builds one from the bundle)" }, () => {
  let d: TestDaemon;
  before(async () => {
    // The daemon's default engine stays built-in: the projector alone sends ai/vision to llama-server.
    d = await visionDaemon({ MODEL_RUNNER_LLAMA_CPP_ENGINE: "built-in", MODEL_RUNNER_LLAMA_SERVER: LLAMA_SERVER_PATH! });
  });
  after(() => d?.close());

  test("capabilities: ai/vision says vision on /api/show and /v1/models, ai/tiny does not", async () => {
    assert.ok((await post(d, "/api/show", { model: "ai/vision" })).json.capabilities.includes("vision"));
    assert.ok(!(await post(d, "/api/show", { model: "ai/tiny" })).json.capabilities.includes("vision"));
    const models = (await getJson(d, "/v1/models")).data as Json[];
    assert.equal(models.find((m) => m.id === "ai/vision:latest")?.dmr.vision, true);
    assert.equal(models.find((m) => m.id === "ai/tiny:latest")?.dmr.vision, false);
  });

  test("OpenAI chat: an image adds exactly its tokens to prompt_tokens, on llama-server", async () => {
    const text = await post(d, "/v1/chat/completions", chat([{ type: "text", text: "describe" }]));
    assert.equal(text.status, 200, JSON.stringify(text.json));
    const image = await post(d, "/v1/chat/completions", chat(withImages(A)));
    assert.equal(image.status, 200, JSON.stringify(image.json));
    assert.equal(image.json.usage.prompt_tokens, text.json.usage.prompt_tokens + IMAGE_TOKENS);
    const two = await post(d, "/v1/chat/completions", chat(withImages(A, B)));
    assert.equal(two.status, 200, JSON.stringify(two.json));
    assert.equal(two.json.usage.prompt_tokens, text.json.usage.prompt_tokens + 2 * IMAGE_TOKENS);
    const ps = (await getJson(d, "/engines/ps")) as unknown as Json[];
    assert.equal(ps.find((r) => String(r.model_name).startsWith("ai/vision"))?.engine, "llama-server");
  });

  test("two different images give different first-token logprobs at temperature 0", async () => {
    const first = async (b64: string) => {
      const r = await post(d, "/v1/chat/completions", chat(withImages(b64), { logprobs: true, top_logprobs: 3, max_tokens: 1 }));
      assert.equal(r.status, 200, JSON.stringify(r.json));
      return JSON.stringify(r.json.choices[0].logprobs.content[0].top_logprobs);
    };
    const a1 = await first(A);
    assert.equal(await first(A), a1, "the same image gives the same logprobs");
    assert.notEqual(await first(B), a1);
  });

  test("adjacent images then a prefix of them: no 'Chunk not found' (prompt reuse is off for image requests)", async () => {
    assert.equal((await post(d, "/v1/chat/completions", chat(withImages(A, B)))).status, 200);
    const prefix = await post(d, "/v1/chat/completions", chat(withImages(A)));
    assert.equal(prefix.status, 200, JSON.stringify(prefix.json));
    assert.equal((await post(d, "/v1/chat/completions", chat(withImages(A)))).status, 200);
  });

  test("bad images are 400s that name the part, never 500s", async () => {
    const truncated = await post(d, "/v1/chat/completions", chat(withImages(TRUNCATED)));
    assert.equal(truncated.status, 400, JSON.stringify(truncated.json));
    const notImage = await post(d, "/v1/chat/completions", chat(withImages(Buffer.from("hello, not an image").toString("base64"))));
    assert.equal(notImage.status, 400);
    assert.match(notImage.json.error.message, /messages\.0\.content\.1.*not a PNG, JPEG, GIF or BMP/);
    const url = await post(d, "/v1/chat/completions", chat([{ type: "image_url", image_url: { url: "http://127.0.0.1:1/cat.png" } }]));
    assert.equal(url.status, 400);
    assert.match(url.json.error.message, /image URLs are not fetched; send the image inline as a data: URI/);
    const detail = await post(d, "/v1/chat/completions", chat([{ type: "image_url", image_url: { url: dataUri(A), detail: "low" } }]));
    assert.equal(detail.status, 400);
    assert.match(detail.json.error.message, /detail.*"low" is not supported/);
    // The text model has no projector: its own 400, before anything loads.
    const tiny = await post(d, "/v1/chat/completions", { ...chat(withImages(A)), model: "ai/tiny" });
    assert.equal(tiny.status, 400);
    assert.match(tiny.json.error.message, /Model ai\/tiny has no multimodal projector/);
    // The engine still serves.
    assert.equal((await post(d, "/v1/chat/completions", chat(withImages(A)))).status, 200);
  });

  test("Ollama /api/chat and /api/generate: raw base64 images, prompt_eval_count grows by the image tokens", async () => {
    const base = { model: "ai/vision", stream: false, options: { temperature: 0, num_predict: 2 } };
    const text = await post(d, "/api/chat", { ...base, messages: [{ role: "user", content: "describe" }] });
    assert.equal(text.status, 200, JSON.stringify(text.json));
    const image = await post(d, "/api/chat", { ...base, messages: [{ role: "user", content: "describe", images: [A] }] });
    assert.equal(image.status, 200, JSON.stringify(image.json));
    assert.equal(image.json.prompt_eval_count, text.json.prompt_eval_count + IMAGE_TOKENS);
    const genText = await post(d, "/api/generate", { ...base, prompt: "describe" });
    const genImage = await post(d, "/api/generate", { ...base, prompt: "describe", images: [B] });
    assert.equal(genImage.status, 200, JSON.stringify(genImage.json));
    assert.equal(genImage.json.prompt_eval_count, genText.json.prompt_eval_count + IMAGE_TOKENS);
    const corrupt = await post(d, "/api/chat", { ...base, messages: [{ role: "user", content: "describe", images: [TRUNCATED] }] });
    assert.equal(corrupt.status, 400, JSON.stringify(corrupt.json));
    assert.equal(typeof corrupt.json.error, "string");
  });

  test("Anthropic image blocks (base64 source): input_tokens grows by the image tokens", async () => {
    const base = { model: "ai/vision", max_tokens: 2, temperature: 0 };
    const text = await post(d, "/anthropic/v1/messages", { ...base, messages: [{ role: "user", content: [{ type: "text", text: "describe" }] }] });
    assert.equal(text.status, 200, JSON.stringify(text.json));
    const image = await post(d, "/anthropic/v1/messages", {
      ...base,
      messages: [{ role: "user", content: [{ type: "text", text: "describe" }, { type: "image", source: { type: "base64", media_type: "image/png", data: A } }] }],
    });
    assert.equal(image.status, 200, JSON.stringify(image.json));
    assert.equal(image.json.usage.input_tokens, text.json.usage.input_tokens + IMAGE_TOKENS);
    const corrupt = await post(d, "/anthropic/v1/messages", {
      ...base,
      messages: [{ role: "user", content: [{ type: "text", text: "describe" }, { type: "image", source: { type: "base64", media_type: "image/png", data: TRUNCATED } }] }],
    });
    assert.equal(corrupt.status, 400, JSON.stringify(corrupt.json));
    assert.equal(corrupt.json.type, "error");
  });

  test("Responses input_image: input_tokens grows by the image tokens", async () => {
    const base = { model: "ai/vision", max_output_tokens: 2, temperature: 0, store: false };
    const text = await post(d, "/v1/responses", { ...base, input: [{ role: "user", content: [{ type: "input_text", text: "describe" }] }] });
    assert.equal(text.status, 200, JSON.stringify(text.json));
    const image = await post(d, "/v1/responses", {
      ...base,
      input: [{ role: "user", content: [{ type: "input_text", text: "describe" }, { type: "input_image", image_url: dataUri(A), detail: "auto" }] }],
    });
    assert.equal(image.status, 200, JSON.stringify(image.json));
    assert.equal(image.json.usage.input_tokens, text.json.usage.input_tokens + IMAGE_TOKENS);
    const corrupt = await post(d, "/v1/responses", { ...base, input: [{ role: "user", content: [{ type: "input_image", image_url: dataUri(TRUNCATED) }] }] });
    assert.equal(corrupt.status, 400, JSON.stringify(corrupt.json));
  });

  test("mr run sends the image file its prompt names: the prompt grows by the image tokens", async () => {
    const env = { MODEL_RUNNER_HOST: d.url, MODEL_RUNNER_HOME: d.home };
    const png = await pngFile();
    const text = await runMr(["run", "--verbose", "ai/vision", "describe"], { env });
    assert.equal(text.code, 0, text.stderr);
    const image = await runMr(["run", "--verbose", "ai/vision", `describe ${png}`], { env });
    assert.equal(image.code, 0, image.stderr);
    assert.equal(promptEvalCount(image.stderr), promptEvalCount(text.stderr) + IMAGE_TOKENS, image.stderr);
    const json = await runMr(["run", "--json", "ai/vision", `describe ${png}`], { env });
    assert.equal(json.code, 0, json.stderr);
    assert.equal((JSON.parse(json.stdout) as Json).usage.prompt_tokens, promptEvalCount(image.stderr));
  });

  test("a model configured to the built-in engine takes no images, and says how to change that", async () => {
    const set = await post(d, "/engines/_configure", { model: "ai/vision", engine: "built-in" });
    assert.equal(set.status, 202, JSON.stringify(set.json));
    const refused = await post(d, "/v1/chat/completions", chat(withImages(A)));
    assert.equal(refused.status, 400);
    assert.match(refused.json.error.message, /configured to run on the built-in engine.*engine "llama-server"/);
    assert.ok(!(await post(d, "/api/show", { model: "ai/vision" })).json.capabilities.includes("vision"));
    // Text is served by the built-in engine (this also waits for the reload _configure started).
    assert.equal((await post(d, "/v1/chat/completions", chat("hi"))).status, 200);
    const back = await post(d, "/engines/_configure", { model: "ai/vision", engine: "llama-server" });
    assert.equal(back.status, 202, JSON.stringify(back.json));
    assert.equal((await post(d, "/v1/chat/completions", chat(withImages(A)))).status, 200);
  });
});

describe("vision without llama-server installed", () => {
  let d: TestDaemon;
  before(async () => {
    d = await visionDaemon({ MODEL_RUNNER_LLAMA_CPP_ENGINE: "built-in" });
  });
  after(() => d?.close());

  test("capabilities leave vision out while it cannot be served", async () => {
    const show = await post(d, "/api/show", { model: "ai/vision" });
    assert.deepEqual(show.json.capabilities, ["completion"]);
    const models = (await getJson(d, "/v1/models")).data as Json[];
    assert.equal(models.find((m) => m.id === "ai/vision:latest")?.dmr.vision, false);
  });

  test("an image request is a 400 telling the user to install llama-server, on every dialect; text still works", async () => {
    const openai = await post(d, "/v1/chat/completions", chat(withImages(A)));
    assert.equal(openai.status, 400);
    assert.match(openai.json.error.message, /run: mr install-runner --engine llama-server/);
    const ollama = await post(d, "/api/chat", { model: "ai/vision", stream: false, messages: [{ role: "user", content: "hi", images: [A] }] });
    assert.equal(ollama.status, 400);
    assert.match(ollama.json.error, /mr install-runner --engine llama-server/);
    const anthropic = await post(d, "/anthropic/v1/messages", {
      model: "ai/vision",
      max_tokens: 2,
      messages: [{ role: "user", content: [{ type: "image", source: { type: "base64", media_type: "image/png", data: A } }] }],
    });
    assert.equal(anthropic.status, 400);
    assert.match(anthropic.json.error.message, /mr install-runner --engine llama-server/);
    const responses = await post(d, "/v1/responses", { model: "ai/vision", store: false, input: [{ role: "user", content: [{ type: "input_image", image_url: dataUri(A) }] }] });
    assert.equal(responses.status, 400);
    assert.match(responses.json.error.message, /mr install-runner --engine llama-server/);
    const run = await runMr(["run", "ai/vision", `describe ${await pngFile()}`], { env: { MODEL_RUNNER_HOST: d.url, MODEL_RUNNER_HOME: d.home } });
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /mr install-runner --engine llama-server/);
    // Nothing was loaded for those; a text request is served by the built-in engine.
    const text = await post(d, "/v1/chat/completions", chat("hi"));
    assert.equal(text.status, 200, JSON.stringify(text.json));
  });

  test("once llama-server is installed, the model's idle built-in runner gives way for an image request", { skip: LLAMA_SERVER_PATH ? false : "no llama-server binary: set MR_TEST_LLAMA_SERVER" }, async () => {
    assert.equal(((await getJson(d, "/engines/ps")) as Json[]).find((r) => r.model_name === "ai/vision")?.engine, "built-in", "the text request loaded it on the built-in engine");
    // Installed where `mr install-runner --engine llama-server` puts its build, so the install finds it and builds nothing.
    const dir = await builtDir(llamaServerRoot(d.home), BUNDLE_PATH);
    await mkdir(dir, { recursive: true });
    await symlink(LLAMA_SERVER_PATH!, join(dir, "llama-server"));
    const installed = await post(d, "/engines/install-backend", { engine: "llama-server" });
    assert.equal(installed.status, 200, JSON.stringify(installed.json));
    const show = await post(d, "/api/show", { model: "ai/vision" });
    assert.deepEqual(show.json.capabilities, ["completion", "vision"]);
    const image = await post(d, "/v1/chat/completions", chat(withImages(A)));
    assert.equal(image.status, 200, JSON.stringify(image.json));
    assert.equal(((await getJson(d, "/engines/ps")) as Json[]).find((r) => r.model_name === "ai/vision")?.engine, "llama-server");
  });
});
