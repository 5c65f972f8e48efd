import type { FastifyReply } from "fastify";
import type { ErrorLogger } from "../errors.ts";
import { LazyStream } from "../streaming.ts";
import { ollamaErrorResponse } from "./errors.ts";

/**
 * An Ollama NDJSON answer (`application/x-ndjson`, one object per line).
 * Nothing is sent before the first line, so an early error still gets its
 * status; after it, `fail` writes one more line `{"error":"..."}` (status
 * stays 200, as Ollama does).
 */
export class NdjsonStream {
  private readonly stream: LazyStream;

  constructor(reply: FastifyReply, private readonly logError: ErrorLogger) {
    this.stream = new LazyStream(reply, 200, { "content-type": "application/x-ndjson", "cache-control": "no-cache" });
  }

  get hasStarted(): boolean {
    return this.stream.hasStarted;
  }

  write(line: object): Promise<void> {
    return this.stream.write(`${JSON.stringify(line)}\n`);
  }

  /** Ends the stream with an error line; rethrows when nothing was sent yet (a normal error response). */
  async fail(error: unknown, clientGone: boolean): Promise<void> {
    if (!this.stream.hasStarted) throw error;
    if (!clientGone) {
      await this.write(ollamaErrorResponse(error, this.logError).body).catch(() => undefined);
    }
    this.stream.end();
  }

  end(): void {
    this.stream.end();
  }
}
