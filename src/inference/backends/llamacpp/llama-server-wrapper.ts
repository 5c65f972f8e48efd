import { spawn } from "node:child_process";
import { rmSync } from "node:fs";
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from "node:http";

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

  const server = createServer((req, res) => void forward(req, res, inner, alias));
  server.listen(socket);
  const watch = setInterval(() => {
    if (process.ppid !== parent) child.kill("SIGKILL");
  }, 250);
  const stop = () => child.kill("SIGTERM");
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);

  const exit = await exited;
  clearInterval(watch);
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

/** llama-server's error shape, so clients see the same body from either side of the wrapper. */
function sendError(res: ServerResponse, status: number, type: string, message: string): void {
  const body = JSON.stringify({ error: { code: status, message, type } });
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

/** The `model` a JSON body names, or null when it names none (or is not JSON). */
function requestedModel(body: Buffer, contentType: string | undefined): string | null {
  if (body.length === 0 || (contentType !== undefined && !/json/i.test(contentType))) return null;
  try {
    const parsed = JSON.parse(body.toString("utf8")) as unknown;
    const model = parsed !== null && typeof parsed === "object" ? (parsed as { model?: unknown }).model : undefined;
    return typeof model === "string" && model !== "" ? model : null;
  } catch {
    return null; // llama-server answers malformed JSON itself
  }
}

async function forward(req: IncomingMessage, res: ServerResponse, inner: string, alias: string): Promise<void> {
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of req) chunks.push(chunk as Buffer);
  } catch {
    return; // the client went away
  }
  const body = Buffer.concat(chunks);
  const model = requestedModel(body, req.headers["content-type"]);
  if (model !== null && model !== alias) {
    sendError(res, 421, "invalid_request_error", `This engine serves only "${alias}", not "${model}". Send the request for "${model}" to its own engine.`);
    return;
  }
  const headers = { ...req.headers, "content-length": String(body.length) };
  delete headers["transfer-encoding"];
  delete headers.connection;
  // One connection per request (agent: false): llama-server closes kept-alive connections on its own schedule, and a
  // request written on one it is closing fails with "socket hang up". A Unix-socket connect costs microseconds.
  const upstream = httpRequest({ socketPath: inner, path: req.url, method: req.method, headers, agent: false }, (answer) => {
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
