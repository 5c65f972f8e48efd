import type { FastifyInstance } from "fastify";
import { handleChatOrGenerate } from "./chat.ts";
import type { OllamaDeps } from "./deps.ts";
import { handleEmbed } from "./embed.ts";
import { sendError } from "../error-reply.ts";
import { copyModel, deleteModel, listRunning, listTags, showModel } from "./models.ts";
import { createModel } from "./create.ts";
import { hasBlob, pullModel, pushModel, putBlob } from "./transfer.ts";

export type { OllamaDeps } from "./deps.ts";

/**
 * The Ollama API version we report. Clients gate features on it (Open WebUI,
 * Continue); the routes below follow Ollama's API as of this version.
 */
export const OLLAMA_API_VERSION = "0.9.0";

/**
 * Ollama's API under `/api` (peers.md §1), in its own fastify scope so that
 * errors take Ollama's shape `{"error":"..."}`. Inference goes through the
 * same path as the OpenAI routes (engine/call.ts → runInference).
 */
export function registerOllamaRoutes(app: FastifyInstance, deps: OllamaDeps): void {
  void app.register(async (scope) => {
    scope.setErrorHandler((error, request, reply) => sendError("ollama", error, request, reply, deps.logError));
    scope.get("/api/version", async () => ({ version: OLLAMA_API_VERSION }));
    scope.get("/api/tags", async () => listTags(deps));
    scope.post("/api/show", async (request) => showModel(deps, request.body));
    scope.get("/api/ps", async () => listRunning(deps));
    scope.post("/api/chat", (request, reply) => handleChatOrGenerate(deps, "chat", request, reply));
    scope.post("/api/generate", (request, reply) => handleChatOrGenerate(deps, "generate", request, reply));
    scope.post("/api/embed", (request, reply) => handleEmbed(deps, false, request, reply));
    scope.post("/api/embeddings", (request, reply) => handleEmbed(deps, true, request, reply));
    scope.post("/api/pull", (request, reply) => pullModel(deps, request, reply));
    scope.post("/api/push", (request, reply) => pushModel(deps, request, reply));
    scope.post("/api/create", (request, reply) => createModel(deps, request, reply));
    scope.delete("/api/delete", async (request) => {
      await deleteModel(deps, request.body);
      return {};
    });
    scope.post("/api/copy", async (request) => {
      await copyModel(deps, request.body);
      return {};
    });
    scope.head("/api/blobs/:digest", (request, reply) => hasBlob(deps, (request.params as { digest: string }).digest, reply));
    scope.post("/api/blobs/:digest", (request, reply) => putBlob(deps, (request.params as { digest: string }).digest, request, reply));
    // Unknown /api routes answer in Ollama's shape too.
    scope.all("/api/*", async (request, reply) => reply.code(404).send({ error: `404 page not found: ${request.method} ${request.url.split("?")[0]}` }));
  });
}
