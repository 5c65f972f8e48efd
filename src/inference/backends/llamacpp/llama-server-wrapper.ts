import { spawn } from "node:child_process";
import { rmSync } from "node:fs";
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from "node:http";
import { dimensionsError, shortenBase64Embedding, shortenEmbedding } from "../../../engine/embedding-vectors.ts";
import { checkOpenAIFields } from "./llama-server-fields.ts";

/**
 * The process the daemon starts for a llama-server runner:
 * `mr llama-server-wrapper <socket> <alias> <llama-server> <args...>`.
 *
 * It keeps the Backend contract's promises that llama-server alone does not:
 * - 421 for a request naming another model (llama-server serves any `model`
 *   name): it listens on `<socket>` and forwards to llama-server's own socket
 *   (the `--host` in `<args>`) only requests whose `model` is empty or `<alias>`;
 * - no orphan: llama-server runs in this process's group (the daemon signals
 *   the group), and this process watches its parent: if the daemon dies
 *   without stopping it (SIGKILL, crash), the parent pid changes and both
 *   exit. llama-server cannot watch a pipe, and Node cannot set
 *   PR_SET_PDEATHSIG for a child, so this watch is what ties it to the daemon.
 * - no silent drop: an OpenAI body is checked as the built-in engine checks it
 *   (`checkOpenAIFields`: an unknown field or a wrong type is a 400 naming it,
 *   where llama-server would drop it), and (llama-server's own gaps, in
 *   `checkForModel`) a chat
 *   request with `tools` on a template llama-server renders no tools for is a
 *   400 naming `tools` (llama-server would answer without them), and
 *   `response_format` `json_object` without a schema gets `{"type":"object"}`
 *   (llama-server treats a missing schema as no constraint at all), and
 *   embedding `dimensions` shorten its vectors as the built-in engine does
 *   (above the model's size: a 400).
 * llama-server's output goes straight to the daemon (inherited stdout/stderr),
 * so a failure carries its log; its exit status (or signal) becomes ours.
 */
export async function runLlamaServerWrapper(argv: readonly string[]): Promise<number> {
  const [socket, alias, binary, ...args] = argv;
  if (!socket || !alias || !binary) {
    process.stderr.write("usage: mr llama-server-wrapper SOCKET ALIAS LLAMA_SERVER [ARGS...]\n");
    return 2;
  }
  const hostAt = args.indexOf("--host");
  const inner = hostAt >= 0 ? args[hostAt + 1] : undefined;
  if (!inner?.endsWith(".sock")) {
    process.stderr.write("llama-server-wrapper: ARGS must give --host PATH.sock (llama-server listens on a Unix socket only for a .sock host)\n");
    return 2;
  }
  rmSync(inner, { force: true });
  const parent = process.ppid;
  const child = spawn(binary, args, { stdio: ["ignore", "inherit", "inherit"] });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once("exit", (code, signal) => resolve({ code, signal }));
    child.once("error", (error) => {
      process.stderr.write(`llama-server-wrapper: cannot start ${binary}: ${error.message}\n`);
      resolve({ code: 127, signal: null });
    });
  });

  const facts = serverFacts(inner);
  const server = createServer((req, res) => void forward(req, res, inner, alias, facts));
  server.listen(socket);
  const watch = setInterval(() => {
    if (process.ppid !== parent) child.kill("SIGKILL");
  }, 250);
  // The daemon stops a runner by signalling its process group, so llama-server gets that SIGTERM itself.
  // Forwarding it too would be llama-server's "second interrupt": exit(1) from its signal handler in the
  // middle of its own shutdown, which can crash in the exit handlers (and print a backtrace through gdb,
  // seconds long) while the runner shows as stopping. So the signal is passed on only when llama-server
  // is still running a while later: it was sent to this process alone.
  let passOn: NodeJS.Timeout | null = null;
  const stop = (signal: NodeJS.Signals) => {
    passOn ??= setTimeout(() => child.kill(signal), SIGNAL_FORWARD_DELAY_MS);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);

  const exit = await exited;
  clearInterval(watch);
  if (passOn) clearTimeout(passOn);
  server.close();
  server.closeAllConnections();
  rmSync(inner, { force: true });
  if (exit.signal) {
    // Die of the same signal, so the daemon reports "killed by SIGKILL" as for any engine.
    process.removeListener("SIGTERM", stop);
    process.removeListener("SIGINT", stop);
    process.kill(process.pid, exit.signal);
  }
  return exit.code ?? 1;
}

/** How long after a SIGTERM or SIGINT of its own the wrapper passes it on to a llama-server still running. */
export const SIGNAL_FORWARD_DELAY_MS = 3000;

/** llama-server's error shape, so clients see the same body from either side of the wrapper. */
function sendError(res: ServerResponse, status: number, type: string, message: string, param: string | null = null): void {
  const body = JSON.stringify({ error: { code: status, message, type, ...(param !== null ? { param } : {}) } });
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

type Json = Record<string, unknown>;

/** A JSON object body, or null (empty, not JSON, not an object: llama-server answers those itself). */
function jsonBody(body: Buffer, contentType: string | undefined): Json | null {
  if (body.length === 0 || (contentType !== undefined && !/json/i.test(contentType))) return null;
  try {
    const parsed = JSON.parse(body.toString("utf8")) as unknown;
    return parsed !== null && typeof parsed === "object" && !Array.isArray(parsed) ? (parsed as Json) : null;
  } catch {
    return null;
  }
}

/** The `model` a JSON body names, or null when it names none. */
function requestedModel(parsed: Json | null): string | null {
  const model = parsed?.model;
  return typeof model === "string" && model !== "" ? model : null;
}

/**
 * What llama-server says of the model it serves, read once from `path` and
 * picked by `pick`: its chat template's caps (`GET /props`
 * `chat_template_caps`), its embedding size (`GET /v1/models` `meta.n_embd`).
 * A failed read (still loading) is retried by the next request that needs it.
 */
export class ServerFact<T> {
  private value: Promise<T> | null = null;
  constructor(
    private readonly inner: string,
    private readonly path: string,
    private readonly pick: (answer: Json) => T,
  ) {}

  get(): Promise<T> {
    this.value ??= new Promise<T>((resolve, reject) => {
      const request = httpRequest({ socketPath: this.inner, path: this.path, method: "GET", agent: false }, (answer) => {
        const parts: Buffer[] = [];
        answer.on("data", (c: Buffer) => parts.push(c));
        answer.on("error", reject);
        answer.on("end", () => {
          try {
            if (answer.statusCode !== 200) throw new Error(`GET ${this.path} answered ${answer.statusCode}`);
            resolve(this.pick(JSON.parse(Buffer.concat(parts).toString("utf8")) as Json));
          } catch (error) {
            reject(error);
          }
        });
      });
      request.on("error", reject);
      request.end();
    });
    this.value.catch(() => (this.value = null));
    return this.value;
  }
}

/** llama-server's facts the wrapper's checks read. */
export interface ServerFacts {
  templateCaps: ServerFact<Record<string, boolean>>;
  embeddingLength: ServerFact<number | null>;
}

export function serverFacts(inner: string): ServerFacts {
  return {
    templateCaps: new ServerFact(inner, "/props", (props) => (props.chat_template_caps ?? {}) as Record<string, boolean>),
    embeddingLength: new ServerFact(inner, "/v1/models", (models) => {
      const n = ((models.data as Json[] | undefined)?.[0]?.meta as Json | undefined)?.n_embd;
      return typeof n === "number" ? n : null;
    }),
  };
}

/** The OpenAI embedding routes (where `dimensions` is read). */
const EMBEDDING_PATHS = new Set(["/v1/embeddings", "/embeddings"]);

/** The routes on which llama-server renders the chat template (and so reads `tools` and `response_format`). */
const CHAT_PATHS = new Set(["/v1/chat/completions", "/chat/completions", "/apply-template"]);

/** The body to send llama-server (changed or not), and the size its embeddings are to be shortened to, if any. */
export interface ForwardPlan {
  body: Json;
  changed: boolean;
  shortenTo?: number;
}

/**
 * What llama-server would get wrong about a request for this model, made
 * right before it sees it: a 400 for `tools` its template cannot render
 * (llama-server leaves them out of the prompt and answers as if none were
 * given), an explicit `{"type":"object"}` schema for `json_object` (without
 * one llama-server does not constrain the output), and embedding `dimensions`
 * (llama-server returns full vectors): a 400 above the model's size, else the
 * answer is to be shortened as the built-in engine shortens it.
 * Returns the error message and its field, or how to forward the request.
 */
export async function checkForModel(path: string, body: Json, facts: ServerFacts): Promise<{ error: string; param: string } | ForwardPlan> {
  const route = path.split("?")[0]!;
  if (EMBEDDING_PATHS.has(route) && typeof body.dimensions === "number") {
    const length = await facts.embeddingLength.get().catch(() => null);
    const tooMany = length === null ? null : dimensionsError(body.dimensions, length);
    if (tooMany) return { error: tooMany, param: "dimensions" };
    // llama-server returns its full vectors whatever `dimensions` asks: the wrapper shortens its answer.
    const { dimensions, ...rest } = body;
    return { body: rest, changed: true, shortenTo: dimensions as number };
  }
  if (!CHAT_PATHS.has(route)) return { body, changed: false };
  const tools = body.tools;
  if (Array.isArray(tools) && tools.length > 0 && body.tool_choice !== "none") {
    const c = await facts.templateCaps.get().catch(() => null);
    // Unknown caps (llama-server not ready): let llama-server answer (it says it is loading).
    if (c !== null && c.supports_tool_calls === false) {
      return {
        error:
          "'tools': llama-server cannot call tools with this model's chat template: the template renders no tools and no tool calls, " +
          "so llama-server would answer as if none were given. Use a model whose template supports tools, or the built-in engine.",
        param: "tools",
      };
    }
  }
  const format = body.response_format as Json | null | undefined;
  if (format && typeof format === "object" && format.type === "json_object" && format.schema === undefined) {
    return { body: { ...body, response_format: { ...format, schema: { type: "object" } } }, changed: true };
  }
  return { body, changed: false };
}

async function forward(req: IncomingMessage, res: ServerResponse, inner: string, alias: string, facts: ServerFacts): Promise<void> {
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of req) chunks.push(chunk as Buffer);
  } catch {
    return; // the client went away
  }
  let body = Buffer.concat(chunks);
  let shortenTo: number | undefined;
  const parsed = jsonBody(body, req.headers["content-type"]);
  const model = requestedModel(parsed);
  if (model !== null && model !== alias) {
    sendError(res, 421, "invalid_request_error", `This engine serves only "${alias}", not "${model}". Send the request for "${model}" to its own engine.`);
    return;
  }
  if (parsed !== null && req.method === "POST") {
    const fields = checkOpenAIFields(req.url ?? "/", parsed);
    if ("error" in fields) {
      sendError(res, 400, "invalid_request_error", fields.error, fields.param);
      return;
    }
    const checked = await checkForModel(req.url ?? "/", fields.body, facts);
    if ("error" in checked) {
      sendError(res, 400, "invalid_request_error", checked.error, checked.param);
      return;
    }
    if (checked.changed || fields.changed) body = Buffer.from(JSON.stringify(checked.body));
    shortenTo = checked.shortenTo;
  }
  const headers = { ...req.headers, "content-length": String(body.length) };
  delete headers["transfer-encoding"];
  delete headers.connection;
  // One connection per request (agent: false): llama-server closes kept-alive connections on its own schedule, and a
  // request written on one it is closing fails with "socket hang up". A Unix-socket connect costs microseconds.
  const upstream = httpRequest({ socketPath: inner, path: req.url, method: req.method, headers, agent: false }, (answer) => {
    if (shortenTo !== undefined && answer.statusCode === 200) {
      void sendShortened(answer, res, shortenTo);
      return;
    }
    res.writeHead(answer.statusCode ?? 502, answer.headers);
    answer.pipe(res);
  });
  // A client that disconnects stops the generation (llama-server notices its socket closing).
  res.on("close", () => {
    if (!res.writableFinished) upstream.destroy();
  });
  upstream.on("error", (error: NodeJS.ErrnoException) => {
    if (res.headersSent) {
      res.destroy(error);
      return;
    }
    if (error.code === "ENOENT" || error.code === "ECONNREFUSED") sendError(res, 503, "unavailable_error", "Loading model");
    else sendError(res, 502, "server_error", `llama-server did not answer: ${error.message}`);
  });
  upstream.end(body);
}

/**
 * llama-server's embeddings answer with each vector shortened to `dimensions`
 * (float arrays or base64), or a 400 when a vector is shorter than that (the
 * model's size was not known before the request).
 */
async function sendShortened(answer: IncomingMessage, res: ServerResponse, dimensions: number): Promise<void> {
  const parts: Buffer[] = [];
  try {
    for await (const part of answer) parts.push(part as Buffer);
  } catch (error) {
    res.destroy(error as Error);
    return;
  }
  let shaped: Json;
  try {
    shaped = JSON.parse(Buffer.concat(parts).toString("utf8")) as Json;
  } catch {
    sendError(res, 502, "server_error", "llama-server's embeddings answer is not JSON");
    return;
  }
  for (const item of (shaped.data as Json[] | undefined) ?? []) {
    const v = item.embedding;
    const length = typeof v === "string" ? Math.floor(Buffer.byteLength(v, "base64") / 4) : Array.isArray(v) ? v.length : null;
    const tooMany = length === null ? null : dimensionsError(dimensions, length);
    if (tooMany) {
      sendError(res, 400, "invalid_request_error", tooMany, "dimensions");
      return;
    }
    if (typeof v === "string") item.embedding = shortenBase64Embedding(v, dimensions);
    else if (Array.isArray(v)) item.embedding = shortenEmbedding(v as number[], dimensions);
  }
  const body = JSON.stringify(shaped);
  res.writeHead(200, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(body) });
  res.end(body);
}
