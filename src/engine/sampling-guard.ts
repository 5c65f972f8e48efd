import type { LlamaContext } from "node-llama-cpp";
import { SamplingFailedError } from "./errors.ts";

/**
 * node-llama-cpp 3.21.1 loses a failed sample. When the binding's
 * `sampleToken` rejects (llama.cpp's grammar throws "Unexpected empty grammar
 * stack after accepting piece" when the grammar allows no token that the
 * request's biases leave), the rejection escapes the context's batch
 * dispatcher unhandled: the engine process ends, and the sequence's
 * evaluation would wait forever. The guard turns such a failure into the
 * answer the library already handles, no token (-1), which its evaluations
 * throw to the sequence that asked ("Failed to sample next token"); the
 * cause is kept for the request's error (samplingError).
 */
export function guardSampling(context: LlamaContext): void {
  // Internal: the binding's context (`_ctx`), pinned with the exact version.
  const binding = (context as unknown as { _ctx: { sampleToken: (...args: unknown[]) => Promise<unknown> } })._ctx;
  const sample = binding.sampleToken.bind(binding);
  Object.defineProperty(binding, "sampleToken", {
    configurable: true,
    writable: true,
    value: async (...args: unknown[]) => {
      try {
        return await sample(...args);
      } catch (error) {
        failures.set(context, error instanceof Error ? error.message : String(error));
        // Both callers read an array: `[token, probabilities, confidence]`.
        return [-1];
      }
    },
  });
}

const failures = new WeakMap<LlamaContext, string>();

/**
 * The error to report for `error`, thrown by an evaluation on `context`: a
 * failed sample becomes a SamplingFailedError with the binding's reason (the
 * last one on that context: failures are rare enough not to interleave).
 */
export function samplingError(error: unknown, context: LlamaContext): unknown {
  if (!(error instanceof Error) || error.message !== "Failed to sample next token") return error;
  const cause = failures.get(context);
  failures.delete(context);
  const hint = cause?.includes("grammar") ? " (the grammar allows no token that the request's logit_bias leaves)" : "";
  return new SamplingFailedError(`Failed to sample the next token${cause ? `: ${cause}` : ""}${hint}`, { cause: error });
}
