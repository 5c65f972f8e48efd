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
  const speculative = mode === "completion" ? config?.speculative : undefined;
  if (speculative) {
    // As Docker Model Runner passes it, plus --spec-type: in this llama.cpp release a draft model alone is loaded and never used.
    args.push("--spec-type", "draft-simple", "-md", speculative.draftPath);
    if (speculative.numTokens !== undefined) args.push("--spec-draft-n-max", String(speculative.numTokens));
    if (speculative.minAcceptanceRate !== undefined) args.push("--spec-draft-p-min", String(speculative.minAcceptanceRate));
  }
  args.push(...(config?.runtimeFlags ?? []));
  return args;
}
