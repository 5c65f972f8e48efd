import { setTimeout as delay } from "node:timers/promises";
import { ndjson, type DaemonClient, type ProgressLine } from "./client.ts";
import type { Cli } from "./context.ts";
import { CliError, DaemonUnreachableError, isAbort } from "./errors.ts";
import { findModel, type ApiModel } from "./models.ts";
import { ProgressRenderer, type ProgressMode } from "./progress.ts";

/**
 * The stored model `ref` names, pulled first (saying so, as `docker model
 * run` does) when the store lacks it: `mr run` and `mr launch --model`.
 */
export async function findOrPullModel(cli: Cli, client: DaemonClient, ref: string, opts: PullOptions): Promise<ApiModel> {
  const stored = await findModel(client, ref, cli.signal);
  if (stored) return stored;
  cli.note(`Unable to find model '${ref}' locally. Pulling from the server.`);
  await pullModel(cli, client, ref, opts);
  const pulled = await findModel(client, ref, cli.signal);
  if (!pulled) throw new CliError(`the model runner pulled ${ref} but cannot find it now`);
  return pulled;
}

/** A failure reported inside a progress stream (after the 200 went out). */
export class TransferError extends CliError {}

/** The connection to the daemon broke mid-transfer (not a failure the daemon reported): worth resuming. */
export class TransferInterruptedError extends TransferError {}

export function progressMode(cli: Cli, isQuiet: boolean): ProgressMode {
  if (isQuiet) return "quiet";
  return cli.io.stderr.isTTY ? "tty" : "plain";
}

/**
 * Reads a progress stream to its end, rendering it on stderr, and returns the
 * success message. Throws TransferError for an `error` line or a stream that
 * ends without `success`.
 */
export async function followProgress(cli: Cli, res: Response, opts: { mode: ProgressMode; verb: string }): Promise<string> {
  const renderer = new ProgressRenderer({ mode: opts.mode, out: cli.io.stderr, verb: opts.verb });
  try {
    for await (const line of ndjson<ProgressLine>(res)) {
      if (line.type === "error") throw new TransferError(line.message || "the transfer failed");
      if (line.type === "success") {
        renderer.finish();
        return line.message;
      }
      renderer.update(line);
    }
  } catch (error) {
    renderer.stop();
    if (cli.signal.aborted) throw cli.signal.reason;
    if (error instanceof CliError) throw error;
    throw new TransferInterruptedError(`the connection to the model runner broke: ${(error as Error).message}`, { cause: error });
  }
  renderer.stop();
  throw new TransferInterruptedError("the model runner ended the transfer without reporting success");
}

/**
 * Only a broken connection to the daemon is worth another try. A failure the
 * daemon reports (an HTTP error or an `error` line) is final: the daemon has
 * already retried what is transient (timeouts, resets, 429, 5xx) and fails
 * at once on what is not (no network, a refused connection), so retrying on
 * top would only multiply the wait.
 */
function isTransient(error: unknown): boolean {
  if (isAbort(error)) return false;
  return error instanceof TransferInterruptedError || error instanceof DaemonUnreachableError;
}

export interface PullOptions {
  isQuiet: boolean;
  /** DMR's `ignore-runtime-memory-check`: pull even a model that could never be loaded with the daemon's memory budget. */
  isMemoryCheckIgnored?: boolean;
  /** Plain HTTP to the model's registry (Ollama's `--insecure`). */
  isInsecure?: boolean;
  attempts?: number;
  retryBaseMs?: number;
}

/**
 * Pulls `model` through the daemon, retrying when the connection to the
 * daemon broke (isTransient); the daemon keeps partial blobs, so each retry
 * (and the next `mr pull` after Ctrl-C) resumes where the last stopped.
 */
export async function pullModel(cli: Cli, client: DaemonClient, model: string, opts: PullOptions): Promise<string> {
  const attempts = opts.attempts ?? 4;
  for (let attempt = 1; ; attempt++) {
    try {
      const res = await client.request("POST", "/models/create", {
        json: { from: model, ...(opts.isMemoryCheckIgnored ? { "ignore-runtime-memory-check": true } : {}), ...(opts.isInsecure ? { insecure: true } : {}) },
        headers: { accept: "application/json" },
        signal: cli.signal,
      });
      return await followProgress(cli, res, { mode: progressMode(cli, opts.isQuiet), verb: "Downloading" });
    } catch (error) {
      if (attempt >= attempts || !isTransient(error) || cli.signal.aborted) throw error;
      const waitMs = (opts.retryBaseMs ?? 1000) * 2 ** (attempt - 1);
      cli.note(`Pull failed (${(error as Error).message}); retrying in ${Math.round(waitMs / 100) / 10}s (attempt ${attempt + 1} of ${attempts}).`);
      await delay(waitMs, undefined, { signal: cli.signal }).catch(() => {
        throw cli.signal.reason;
      });
    }
  }
}
