import { STATUS_CODES } from "node:http";
import type { Socket } from "node:net";
import type { BackendRegistry } from "../inference/index.ts";
import type { Scheduler } from "../scheduling/index.ts";
import { readRequestHead, type RequestHead } from "../http/request-head.ts";
import { JSON_BODY_TYPES, parseJsonBody } from "../http/json-body.ts";
import { ClientClosedError } from "../http/streaming.ts";
import type { ResponseHead } from "../http/response-framer.ts";
import { ENGINE_ENDPOINTS, isRecorded, midAnswerFailure, prepareInference, requireModel, startRecording, unanswered, type OpenAIEndpoint, type PreparedInference } from "./engine/call.ts";
import { answerAsEvent, CallLedger, USAGE_WINDOW_BYTES, UsageTail } from "./engine/ledger.ts";
import { hasApiKey } from "./api-key.ts";
import { isOriginAllowed } from "./origin-check.ts";
import type { EngineRelay, RelayExchange } from "./engine/relay.ts";
import { BODY_LIMIT_BYTES, errorResponse, type ErrorLogger } from "./errors.ts";
import type { DaemonMetrics } from "./metrics.ts";
import { LoadingComments } from "./load-wait.ts";
import { checkOpenAIBody } from "./openai-checks.ts";
import type { RequestRecorder } from "./recorder/request-recorder.ts";
import { sseEvent } from "./sse.ts";

export interface FastLaneDeps {
  scheduler: Scheduler;
  backends: BackendRegistry;
  relay: EngineRelay;
  metrics: DaemonMetrics;
  recorder: RequestRecorder | null;
  logError: ErrorLogger;
  apiKey: string | null;
  /** Extra allowed CORS origins (origin-check.ts). */
  origins: readonly string[];
  /** The Host check against DNS rebinding; null: any Host. */
  hostAllowed: ((host: string) => boolean) | null;
  /** Idle time after which a kept-alive connection is closed (the HTTP server's keepAliveTimeout). */
  keepAliveTimeoutMs: number;
}

/** A fast-lane route: the engine endpoint, the backend the path names, the route's pattern (for metrics, as fastify names it). */
interface LaneRoute {
  endpoint: OpenAIEndpoint;
  backend: string | undefined;
  pattern: string;
}

/** Up to this size, a JSON answer of known length is read whole and sent with its head in one write. */
const WHOLE_ANSWER_BYTES = 1024 * 1024;
/** Between a connection's requests, how long a request head may take to arrive (Node's headersTimeout). */
const HEAD_TIMEOUT_MS = 60_000;

/**
 * The daemon's fast lane: the OpenAI inference requests (the routes of
 * openai-routes.ts) served straight off the connection, without Node's HTTP
 * server and without an HTTP client to the engine. It reads the request head
 * and body from the socket, checks and schedules the request through the
 * same code as the routes (prepareInference), writes it to the engine over
 * an EngineRelay connection, and sends the engine's answer on byte for
 * byte (chunk framing included), reading only its framing and the usage in
 * its tail. That is what makes a proxied request cost little more than the
 * bytes it copies (bench/daemon: `--proxy-only`).
 *
 * Only plain requests take the lane: POST, HTTP/1.1, a Content-Length body
 * of a JSON content type, no query, no `x-preload-only`, no Expect/Upgrade,
 * the API key right, the Host allowed and an Origin, if any, allowed (its
 * answer then carries the same CORS headers as Node's server adds). A connection
 * whose next request is anything else is handed, with its unread bytes, to
 * Node's HTTP server (fastify) for good, which answers it as it answers
 * every request. Errors here are the same errors, in OpenAI's shape.
 */
export class FastLane {
  private readonly routes = new Map<string, LaneRoute>();
  private readonly connections = new Set<LaneConnection>();
  private closing = false;

  constructor(
    readonly deps: FastLaneDeps,
    /** Gives a connection to Node's HTTP server (its `connection` listener). */
    readonly handOver: (socket: Socket) => void,
  ) {
    const prefixes: Array<[string, string | undefined, string]> = [
      ["", undefined, ""],
      ["/engines", undefined, "/engines"],
      ...deps.backends.all().map((b): [string, string, string] => [`/engines/${b.name}`, b.name, "/engines/:backend"]),
    ];
    for (const [prefix, backend, pattern] of prefixes) {
      for (const endpoint of Object.keys(ENGINE_ENDPOINTS) as OpenAIEndpoint[]) {
        this.routes.set(`${prefix}${endpoint}`, { endpoint, backend, pattern: `${pattern}${endpoint}` });
      }
    }
  }

  /** Takes a new connection: its requests go through the lane until one does not fit. */
  accept(socket: Socket): void {
    if (this.closing) return this.handOver(socket);
    const connection = new LaneConnection(this, socket);
    this.connections.add(connection);
    socket.once("close", () => this.connections.delete(connection));
  }

  /** The route a plain request head may take, or null: Node's HTTP server answers it. */
  routeOf(head: RequestHead): LaneRoute | null {
    if (this.closing || head.method !== "POST") return null;
    const route = this.routes.get(head.target);
    if (route === undefined) return null;
    const h = head.headers;
    if (h.has("transfer-encoding") || h.has("expect") || h.has("upgrade") || h.has("x-preload-only")) return null;
    const origin = h.get("origin");
    if (origin !== undefined && !isOriginAllowed(origin, this.deps.origins)) return null;
    const connection = h.get("connection");
    if (connection !== undefined && !/^(keep-alive|close)$/i.test(connection)) return null;
    const length = h.get("content-length");
    if (length === undefined || !/^\d{1,9}$/.test(length) || Number(length) > BODY_LIMIT_BYTES) return null;
    const type = h.get("content-type");
    if (type === undefined || !JSON_BODY_TYPES.includes(type.split(";")[0]!.trim().toLowerCase())) return null;
    const host = h.get("host");
    if (this.deps.hostAllowed !== null && host !== undefined && !this.deps.hostAllowed(host)) return null;
    if (this.deps.apiKey !== null && !hasApiKey(h.get("authorization"), h.get("x-api-key"), this.deps.apiKey)) return null;
    return route;
  }

  /**
   * Closing: requests that arrive from now on are handed to Node's server
   * (which answers 503 while closing); idle connections are closed now,
   * busy ones after their answer.
   */
  close(): void {
    this.closing = true;
    for (const c of this.connections) c.closeIfIdle();
  }

  get isClosing(): boolean {
    return this.closing;
  }

  /** Cuts every connection still open (the end of a shutdown). */
  destroyAll(): void {
    for (const c of this.connections) c.destroy();
  }
}

/** One client connection while the fast lane serves it. */
class LaneConnection {
  /** Bytes read and not used yet, in arrival order (joined only when needed: a large body arrives in many pieces). */
  private pieces: Buffer[] = [];
  private pending = 0;
  /** The request whose body is still arriving: its head and route. */
  private waiting: { head: RequestHead; route: LaneRoute } | null = null;
  private busy = false;
  private handedOver = false;
  /**
   * Aborts when the client goes away: one per connection, not per request
   * (its requests come one after another, and a connection that closed has
   * none left), which spares each request an AbortController.
   */
  private readonly gone = new AbortController();

  constructor(
    private readonly lane: FastLane,
    private readonly socket: Socket,
  ) {
    socket.setNoDelay(true);
    socket.setTimeout(lane.deps.keepAliveTimeoutMs, this.onTimeout);
    socket.on("data", this.onData).on("end", this.onEnd).on("error", this.onError).on("close", this.onClose);
  }

  closeIfIdle(): void {
    if (!this.busy && !this.handedOver) this.socket.end();
  }

  destroy(): void {
    if (!this.handedOver) this.socket.destroy();
  }

  private readonly onData = (data: Buffer): void => {
    this.pieces.push(data);
    this.pending += data.length;
    if (!this.busy) this.next();
  };

  private readonly onEnd = (): void => {
    // The client sent all it will; an answer under way still goes out (half-close).
    if (!this.busy) this.socket.end();
  };

  private readonly onError = (): void => {
    this.socket.destroy();
  };

  private readonly onClose = (): void => {
    this.gone.abort(new ClientClosedError());
  };

  private readonly onTimeout = (): void => {
    if (!this.busy) this.socket.destroy();
  };

  /** Serves the next complete request in the buffer, hands the connection over, or waits for more bytes. */
  private next(): void {
    if (this.pending === 0 || this.gone.signal.aborted) return;
    if (this.waiting === null) {
      const read = readRequestHead(this.joined());
      if (read === null) {
        this.socket.setTimeout(HEAD_TIMEOUT_MS);
        return;
      }
      const route = read === "unusual" ? null : this.lane.routeOf(read);
      if (route === null) return this.handOver();
      this.waiting = { head: read as RequestHead, route };
    }
    const { head, route } = this.waiting;
    const end = head.length + Number(head.headers.get("content-length"));
    if (this.pending < end) return;
    const data = this.joined();
    const body = data.toString("utf8", head.length, end);
    this.pieces = data.length > end ? [data.subarray(end)] : [];
    this.pending = data.length - end;
    this.waiting = null;
    this.busy = true;
    this.socket.setTimeout(0);
    const close = head.headers.get("connection")?.toLowerCase() === "close";
    // An allowed Origin (routeOf) comes back in the CORS headers of every answer, as Node's server sends them.
    const origin = head.headers.get("origin");
    const cors = origin === undefined ? "" : `Access-Control-Allow-Origin: ${origin}\r\nVary: Origin\r\n`;
    void new LaneRequest(this.lane, this.socket, this.gone.signal, route, head, body, close, cors).serve().then(() => {
      this.busy = false;
      if (this.gone.signal.aborted) return;
      if (close || this.socket.readableEnded || this.lane.isClosing) {
        this.socket.end();
        return;
      }
      this.socket.setTimeout(this.lane.deps.keepAliveTimeoutMs);
      this.next();
    });
  }

  /** The unused bytes as one buffer. */
  private joined(): Buffer {
    if (this.pieces.length > 1) this.pieces = [Buffer.concat(this.pieces, this.pending)];
    return this.pieces[0]!;
  }

  /** Gives the connection, with the bytes it has not used, to Node's HTTP server for good. */
  private handOver(): void {
    this.handedOver = true;
    this.socket.pause();
    this.socket.off("data", this.onData).off("end", this.onEnd).off("error", this.onError).off("close", this.onClose);
    this.socket.setTimeout(0);
    if (this.pending > 0) this.socket.unshift(this.joined());
    this.pieces = [];
    this.pending = 0;
    this.lane.handOver(this.socket);
    this.socket.resume();
  }
}

/** One request on the fast lane, from its parsed head and body to the last byte of its answer. */
class LaneRequest {
  private readonly startedMs = performance.now();
  /** Whether the answer's head has gone out (after it, errors travel inside the stream). */
  private headSent = false;
  private status = 200;

  constructor(
    private readonly lane: FastLane,
    private readonly socket: Socket,
    /** Aborts when the client goes away (the connection's). */
    private readonly signal: AbortSignal,
    private readonly route: LaneRoute,
    private readonly head: RequestHead,
    private readonly text: string,
    private readonly closeAfter: boolean,
    /** CORS header lines for every answer ("" without an Origin). */
    private readonly cors: string,
  ) {}

  async serve(): Promise<void> {
    try {
      await this.run();
    } catch (error) {
      this.fail(error);
    } finally {
      this.lane.deps.metrics.request(this.route.pattern, "POST", this.status, performance.now() - this.startedMs);
    }
  }

  private async run(): Promise<void> {
    const { deps } = this.lane;
    const { endpoint, backend } = this.route;
    const body = parseJsonBody(this.text) as Record<string, unknown>;
    // The backend a path names is a registered one: the lane's routes are made from the registry.
    const model = requireModel(body);
    checkOpenAIBody(endpoint, body);
    const stream = body.stream === true;
    const signal = this.signal;
    const ledgerLabels = { api: "openai", endpoint, model };
    // A stream that waits for a cold load says so in SSE comments, as on the routes.
    const loading = stream ? new LoadingComments(() => this.openLoadingStream(), model) : null;
    let prepared: PreparedInference;
    try {
      prepared = await prepareInference(deps, { endpoint, body, backend, signal, api: "openai", onLoading: loading?.start });
    } catch (error) {
      // The scheduler's refusals (404 model, 503 queue full, a failed load) are counted as the routes count them.
      new CallLedger(deps.metrics, ledgerLabels, this.startedMs, null).close(0, error, signal.aborted);
      throw error;
    } finally {
      loading?.stop();
    }
    const { lease } = prepared;
    const recordAs = { method: "POST", url: this.head.target, userAgent: this.head.headers.get("user-agent") };
    const tap = deps.recorder !== null && isRecorded(endpoint) ? startRecording(deps.recorder, { endpoint, body, api: "openai", recordAs }, lease, this.text) : null;
    const ledger = new CallLedger(deps.metrics, { ...ledgerLabels, model: lease.modelName }, this.startedMs, tap === null ? null : { tap, view: "engine" });
    const exchange = deps.relay.send(lease.socketPath, "POST", endpoint, prepared.body);
    const onEngineGone = () => exchange.abort(lease.signal.reason);
    const onClientGone = () => exchange.abort(signal.reason);
    lease.signal.addEventListener("abort", onEngineGone, { once: true });
    signal.addEventListener("abort", onClientGone, { once: true });
    let failure: unknown;
    try {
      let answer: ResponseHead;
      try {
        answer = await exchange.head;
      } catch (error) {
        failure = unanswered(prepared, signal, error, () => deps.relay.forget(lease.socketPath));
        throw failure;
      }
      failure = await this.relayAnswer(exchange, answer, ledger, prepared);
    } finally {
      lease.signal.removeEventListener("abort", onEngineGone);
      signal.removeEventListener("abort", onClientGone);
      const clientLeft = signal.aborted || failure instanceof ClientClosedError;
      prepared.done(failure !== undefined && !clientLeft && !lease.signal.aborted ? failure : undefined);
      ledger.close(this.status, failure, clientLeft);
    }
  }

  /**
   * Sends the engine's answer on. Returns what broke it off, if anything
   * (the client leaving, or the engine failing mid-answer, already told to
   * the client as well as it can be).
   */
  private async relayAnswer(exchange: RelayExchange, answer: ResponseHead, ledger: CallLedger, prepared: PreparedInference): Promise<unknown> {
    const isStream = answer.contentType.includes("text/event-stream");
    const keepsUsage = ENGINE_ENDPOINTS[this.route.endpoint] !== "embedding";
    if (!isStream && (this.headSent || (answer.contentLength !== null && answer.contentLength <= WHOLE_ANSWER_BYTES))) {
      let body: Buffer;
      try {
        body = await exchange.whole();
      } catch (error) {
        return this.brokenOff(error, prepared, false);
      }
      this.status = answer.status;
      if (this.headSent) {
        // An SSE answer already begun (`: loading` comments) takes a JSON answer as one event.
        this.writeChunk(answerAsEvent(answer.status, body.toString("utf8")));
        this.endChunks();
      } else {
        this.socket.write(Buffer.concat([Buffer.from(this.headText(answer.status, answer.contentType, `Content-Length: ${body.length}\r\n`), "latin1"), body]));
      }
      // The account is kept after the answer went out: its parse is not on the client's wait.
      ledger.chunk(body);
      if (keepsUsage && body.length <= USAGE_WINDOW_BYTES) ledger.observeTail(body.toString("utf8"));
      return undefined;
    }
    // Streamed: the engine's framing goes out as it came (a read-until-close body gets chunk framing here).
    this.status = answer.status;
    // A stream already open (`: loading` comments) is chunked: an answer framed otherwise is re-chunked into it.
    const framing = answer.chunked ? "chunked" : answer.contentLength !== null && !this.headSent ? "length" : "rechunk";
    if (!this.headSent) {
      this.headSent = true;
      const sse = isStream ? "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n" : "";
      const length = framing === "length" ? `Content-Length: ${answer.contentLength}\r\n` : "Transfer-Encoding: chunked\r\n";
      this.socket.write(this.headText(answer.status, answer.contentType, sse + length));
    }
    const tail = keepsUsage ? new UsageTail() : null;
    let draining = false;
    exchange.pipeTo((raw, content) => {
      if (isStream) ledger.firstByte();
      let flushed = true;
      if (framing === "rechunk") {
        for (const c of content) if (c.length > 0) flushed = this.socket.write(`${c.length.toString(16)}\r\n`) && this.socket.write(c) && this.socket.write("\r\n");
      } else for (const r of raw) flushed = this.socket.write(r);
      for (const c of content) {
        ledger.chunk(c);
        tail?.push(c);
      }
      // A slow reader slows the engine: its answer waits in the kernel's buffers.
      if (!flushed && !draining) {
        draining = true;
        exchange.pause();
        this.socket.once("drain", () => {
          draining = false;
          exchange.resume();
        });
      }
    });
    let failure: unknown;
    try {
      await exchange.finished;
      if (framing === "rechunk") this.endChunks();
    } catch (error) {
      failure = await this.brokenOff(error, prepared, isStream && framing !== "length");
    }
    const tailText = tail?.text();
    if (tailText) ledger.observeTail(tailText);
    return failure;
  }

  /**
   * The answer broke off: the client left (nothing more to send), or the
   * engine failed, which a stream tells in a last `data: {"error":...}`
   * event; an answer of announced length cannot be repaired, so its
   * connection is cut.
   */
  private async brokenOff(error: unknown, prepared: PreparedInference, asEvent: boolean): Promise<unknown> {
    if (this.signal.aborted || this.socket.destroyed) return new ClientClosedError();
    const cause = await midAnswerFailure({ engineSignal: prepared.lease.signal }, error);
    if (!this.headSent) {
      this.fail(cause);
      return cause;
    }
    if (asEvent) {
      this.writeChunk(sseEvent(null, errorResponse(cause, this.lane.deps.logError).body));
      this.endChunks();
    } else this.socket.destroy();
    return cause;
  }

  /** Opens the SSE stream for `: loading` comments (LoadingComments): the head goes out, chunks follow. */
  private openLoadingStream(): (text: string) => void {
    this.socket.write(this.headText(200, "text/event-stream", "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\nTransfer-Encoding: chunked\r\n"));
    return (text) => this.writeChunk(text);
  }

  /** Answers `error` in OpenAI's shape: a JSON answer, or the last event of a stream already open. */
  private fail(error: unknown): void {
    if (this.socket.destroyed || this.signal.aborted) {
      this.status = 499;
      return;
    }
    const { status, body, headers } = errorResponse(error, this.lane.deps.logError, { url: this.head.target, contentType: this.head.headers.get("content-type") });
    if (this.headSent) {
      this.writeChunk(sseEvent(null, body));
      this.endChunks();
      return;
    }
    this.status = status;
    this.headSent = true;
    const text = JSON.stringify(body);
    let extra = `Content-Length: ${Buffer.byteLength(text)}\r\n`;
    for (const [name, value] of Object.entries(headers)) extra += `${name}: ${value}\r\n`;
    this.socket.write(this.headText(status, "application/json; charset=utf-8", extra) + text);
  }

  private writeChunk(text: string): void {
    if (!this.socket.destroyed) this.socket.write(`${Buffer.byteLength(text).toString(16)}\r\n${text}\r\n`);
  }

  private endChunks(): void {
    if (!this.socket.destroyed) this.socket.write("0\r\n\r\n");
  }

  private headText(status: number, contentType: string, extra: string): string {
    this.headSent = true;
    const connection = this.closeAfter || this.lane.isClosing ? "Connection: close\r\n" : `Connection: keep-alive\r\nKeep-Alive: timeout=${Math.floor(this.lane.deps.keepAliveTimeoutMs / 1000)}\r\n`;
    return `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? "Unknown"}\r\nContent-Type: ${contentType}\r\n${extra}${this.cors}Date: ${httpDate()}\r\n${connection}\r\n`;
  }
}

let dateSecond = -1;
let dateText = "";

/** The Date header's value, made once a second (as Node's HTTP server caches it). */
function httpDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(now).toUTCString();
  }
  return dateText;
}
