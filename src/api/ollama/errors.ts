import { errorResponse, type ErrorLogger, type RequestFacts } from "../errors.ts";

/**
 * Ollama's error shape, `{"error":"message"}`, with the status the daemon's
 * error classes carry (404 unknown model, 400 bad request, 503 queue full...).
 * The one place the Ollama routes turn errors into bodies.
 */
export function ollamaErrorResponse(error: unknown, log: ErrorLogger, facts?: RequestFacts): { status: number; body: { error: string }; headers: Record<string, string> } {
  const { status, body, headers } = errorResponse(error, log, facts);
  return { status, body: { error: body.error.message }, headers };
}

/** An error as an Ollama client gets it, for the request recorder. */
export const ollamaErrorBody = (error: unknown): unknown => ollamaErrorResponse(error, () => undefined).body;
