import type { RunRequest } from "../../backend.ts";

/**
 * The engine command line for a run request. Both the built-in engine and a
 * real llama-server accept exactly these flags.
 */
export function buildLlamaCppArgs(request: Pick<RunRequest, "socket" | "model" | "mode" | "config">): string[] {
  const { model, mode, config } = request;
  const args = ["-m", model.ggufPath, "--host", request.socket, "--alias", model.name];
  // As Docker Model Runner starts llama-server: the daemon's /metrics merges each engine's.
  if (!config?.runtimeFlags?.includes("--metrics")) args.push("--metrics");
  if (config?.contextSize !== undefined) args.push("-c", String(config.contextSize));
  if (config?.parallel !== undefined) args.push("-np", String(config.parallel));
  switch (mode) {
    case "completion":
      if (model.chatTemplatePath) args.push("--chat-template-file", model.chatTemplatePath);
      break;
    case "embedding":
      args.push("--embeddings");
      break;
    case "reranking":
      // llama-server's spelling; it implies --embeddings --pooling rank.
      args.push("--reranking");
      break;
  }
  args.push(...(config?.runtimeFlags ?? []));
  return args;
}
