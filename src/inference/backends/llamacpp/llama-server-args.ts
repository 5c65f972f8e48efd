import type { RunRequest } from "../../backend.ts";
import { buildLlamaCppArgs } from "./args.ts";

export interface LlamaServerArgOptions {
  /** The private socket llama-server listens on (the name-checking wrapper listens on `request.socket`). */
  innerSocket: string;
  /** CPU threads unless the model's runtime flags set `--threads`. */
  threads: number;
  /** True when the GGUF declares `<arch>.pooling_type`; otherwise embedding mode gets `--pooling mean`. */
  modelDeclaresPooling: boolean;
}

/**
 * The llama-server command line that makes it behave like our built-in
 * engine: the same base flags as `buildLlamaCppArgs` (model, alias, context
 * total with `-np`, mode), then what llama-server needs spelled out:
 * - `--jinja`: the model's own chat template (tools, reasoning), as our engine does;
 * - `--mmproj` when the model ships a projector (completion mode);
 * - `--metrics` (the daemon's `/metrics` reads it) and `--no-webui` (only the API is served);
 * - `--pooling mean` in embedding mode unless the model declares a pooling type (other than none):
 *   llama-server refuses pooling `none` on `/v1/embeddings`, our engine pools by mean;
 * - `-t`: the same thread count our engine picks (llama-server's default
 *   oversubscribes small machines, ggml spin-waits).
 * The model's runtime flags come last, so a user's `--threads` wins.
 */
export function buildLlamaServerArgs(
  request: Pick<RunRequest, "socket" | "model" | "mode" | "config">,
  options: LlamaServerArgOptions,
): string[] {
  const base = buildLlamaCppArgs({ ...request, socket: options.innerSocket, config: { ...request.config, runtimeFlags: [] } });
  const args = [...base, "--metrics", "--no-webui", "-t", String(options.threads)];
  switch (request.mode) {
    case "completion":
      args.push("--jinja");
      if (request.model.mmprojPath) args.push("--mmproj", request.model.mmprojPath);
      break;
    case "embedding":
      if (!options.modelDeclaresPooling) args.push("--pooling", "mean");
      break;
    case "reranking":
      break;
  }
  args.push(...(request.config?.runtimeFlags ?? []));
  return args;
}

/**
 * True when the GGUF header declares a pooling type llama-server can embed
 * with (`<arch>.pooling_type` other than 0, llama.cpp's NONE). Reads the header only.
 */
export async function ggufDeclaresPooling(path: string): Promise<boolean> {
  const { metadata } = await (await import("@huggingface/gguf")).gguf(path, { allowLocalFile: true });
  const meta = metadata as Record<string, unknown>;
  const arch = String(meta["general.architecture"] ?? "");
  const value = arch === "" ? undefined : meta[`${arch}.pooling_type`];
  return (typeof value === "number" || typeof value === "bigint") && Number(value) !== 0;
}
