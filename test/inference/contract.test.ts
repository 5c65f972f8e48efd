import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  BACKEND_MODES,
  BackendRegistry,
  formatBackendMode,
  LlamaCppBackend,
  parseBackendMode,
  UnknownBackendError,
  UnknownBackendModeError,
  type Backend,
} from "../../src/inference/index.ts";
import { buildLlamaCppArgs } from "../../src/inference/backends/llamacpp/args.ts";

describe("backend modes", () => {
  test("parse and format round-trip every mode", () => {
    for (const mode of BACKEND_MODES) assert.equal(parseBackendMode(formatBackendMode(mode)), mode);
    assert.equal(parseBackendMode(" Embedding "), "embedding");
  });

  test("an unknown mode is a 400 naming the choices", () => {
    assert.throws(
      () => parseBackendMode("rerank"),
      (e: unknown) => e instanceof UnknownBackendModeError && e.status === 400 && /"rerank".*completion, embedding/.test(e.message),
    );
  });
});

describe("backend registry", () => {
  const fake = (name: string): Backend => ({
    name,
    usesExternalModelManagement: false,
    install: async () => {},
    run: async () => {},
    status: () => "Running",
  });

  test("the first backend is the default; unknown names are 404s", () => {
    const registry = new BackendRegistry([new LlamaCppBackend(), fake("vllm")]);
    assert.equal(registry.get().name, "llama.cpp");
    assert.equal(registry.get("vllm").name, "vllm");
    assert.deepEqual(registry.names, ["llama.cpp", "vllm"]);
    assert.throws(() => registry.get("nope"), (e: unknown) => e instanceof UnknownBackendError && e.status === 404);
  });

  test("names must be lowercase path components and unique", () => {
    assert.throws(() => new BackendRegistry([fake("Llama")]), /lowercase/);
    assert.throws(() => new BackendRegistry([fake("a/b")]), /path component/);
    assert.throws(() => new BackendRegistry([fake("x"), fake("x")]), /twice/);
  });
});

describe("llama.cpp arguments", () => {
  test("per mode, with config and runtime flags last", () => {
    const model = { name: "ai/m:latest", ggufPath: "/s/m.gguf", chatTemplatePath: "/s/t.jinja" };
    assert.deepEqual(
      buildLlamaCppArgs({ socket: "/r/a.sock", model, mode: "completion", config: { contextSize: 8192, parallel: 2, runtimeFlags: ["-t", "2"] } }),
      ["-m", "/s/m.gguf", "--host", "/r/a.sock", "--alias", "ai/m:latest", "--metrics", "-c", "8192", "-np", "2", "--chat-template-file", "/s/t.jinja", "-t", "2"],
    );
    assert.deepEqual(buildLlamaCppArgs({ socket: "/r/b.sock", model, mode: "embedding" }), [
      "-m", "/s/m.gguf", "--host", "/r/b.sock", "--alias", "ai/m:latest", "--metrics", "--embeddings",
    ]);
    assert.deepEqual(buildLlamaCppArgs({ socket: "/r/c.sock", model, mode: "reranking" }), [
      "-m", "/s/m.gguf", "--host", "/r/c.sock", "--alias", "ai/m:latest", "--metrics", "--reranking",
    ]);
  });
});
