import { connect, type Socket } from "node:net";
import { Readable } from "node:stream";
import { ResponseFramer, type ResponseHead } from "../../http/response-framer.ts";

/**
 * The daemon's one transport to engines: plain sockets to each engine's
 * Unix socket, kept alive between requests, over which a request is written
 * as bytes and the answer read by framing alone (src/http/response-framer.ts).
 * No HTTP client sits in between, so an answer costs the daemon little more
 * than copying its bytes. The fast lane (src/api/fast-lane.ts) sends the
 * bytes on as they came (`pipeTo`); every other caller reads the content
 * (`body`, `whole`).
 */
export class EngineRelay {
  private readonly idle = new Map<string, IdleSocket[]>();
  private closed = false;

  /**
   * Sends one request to the engine on `socketPath`: a JSON `body`, or none
   * (null). The exchange's `head` resolves with the answer's head; its body
   * follows.
   */
  send(socketPath: string, method: string, path: string, body: string | null): RelayExchange {
    const socket = this.take(socketPath);
    socket.write(
      body === null
        ? `${method} ${path} HTTP/1.1\r\nHost: engine\r\n\r\n`
        : `${method} ${path} HTTP/1.1\r\nHost: engine\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    return new RelayExchange(socket, (reusable, timeoutMs) => this.give(socketPath, socket, reusable, timeoutMs));
  }

  /** Closes the idle connections to a socket whose engine is gone. */
  forget(socketPath: string): void {
    for (const s of this.idle.get(socketPath) ?? []) s.socket.destroy();
    this.idle.delete(socketPath);
  }

  close(): void {
    this.closed = true;
    for (const path of [...this.idle.keys()]) this.forget(path);
  }

  private take(socketPath: string): Socket {
    const list = this.idle.get(socketPath);
    const now = performance.now();
    while (list !== undefined && list.length > 0) {
      const idle = list.pop()!;
      idle.socket.off("close", idle.onGone).off("error", idle.onGone);
      // Not one the engine is about to close as idle: a request written into that race is lost.
      if (now < idle.expiresAt && !idle.socket.destroyed) return idle.socket;
      idle.socket.destroy();
    }
    const socket = connect(socketPath);
    socket.setNoDelay(true);
    return socket;
  }

  private give(socketPath: string, socket: Socket, reusable: boolean, timeoutMs: number | null): void {
    if (!reusable || this.closed || socket.destroyed) {
      socket.destroy();
      return;
    }
    let list = this.idle.get(socketPath);
    if (list === undefined) this.idle.set(socketPath, (list = []));
    if (list.length >= MAX_IDLE) {
      socket.destroy();
      return;
    }
    const entry: IdleSocket = {
      socket,
      // A second's margin under the engine's own idle timeout (Node's default 5 s when it names none).
      expiresAt: performance.now() + Math.max(0, (timeoutMs ?? 5_000) - 1_000),
      onGone: () => {
        const at = list.indexOf(entry);
        if (at >= 0) list.splice(at, 1);
        socket.destroy();
      },
    };
    socket.once("close", entry.onGone).once("error", entry.onGone);
    list.push(entry);
  }
}

/** Idle connections kept per engine: its parallel slots plus queued requests rarely need more. */
const MAX_IDLE = 64;

interface IdleSocket {
  socket: Socket;
  expiresAt: number;
  onGone: () => void;
}

/** Where an exchange's body pieces go, as they arrive: as sent (chunk framing included) and as content. */
export type RelaySink = (raw: readonly Buffer[], content: readonly Buffer[]) => void;

/**
 * One request on a relay connection. The answer's head arrives first
 * (`head`); then body pieces go to the sink set with `pipeTo` (or are
 * gathered by `whole`). `finished` settles when the answer is complete
 * (the connection goes back to the pool) or broke off; `abort` cuts it.
 */
export class RelayExchange {
  readonly head: Promise<ResponseHead>;
  readonly finished: Promise<void>;
  private readonly framer = new ResponseFramer();
  private sink: RelaySink | null = null;
  private queued: Array<[Buffer[], Buffer[]]> = [];
  private settled = false;
  private resolveHead!: (head: ResponseHead) => void;
  private rejectHead!: (error: unknown) => void;
  private resolveFinished!: () => void;
  private rejectFinished!: (error: unknown) => void;
  private keepAliveTimeoutMs: number | null = null;
  private reusable = false;

  constructor(
    private readonly socket: Socket,
    private readonly release: (reusable: boolean, timeoutMs: number | null) => void,
  ) {
    this.head = new Promise((resolve, reject) => {
      this.resolveHead = resolve;
      this.rejectHead = reject;
    });
    this.finished = new Promise((resolve, reject) => {
      this.resolveFinished = resolve;
      this.rejectFinished = reject;
    });
    // Whoever awaits them handles failures; neither may be an unhandled rejection meanwhile.
    this.head.catch(() => undefined);
    this.finished.catch(() => undefined);
    socket.on("data", this.onData).on("end", this.onEnd).on("error", this.onError).on("close", this.onClose);
  }

  /** Body pieces from now on (and those already read) go to `sink`. */
  pipeTo(sink: RelaySink): void {
    this.sink = sink;
    for (const [raw, content] of this.queued) sink(raw, content);
    this.queued = [];
  }

  /** The whole body, once complete. */
  async whole(): Promise<Buffer> {
    const parts: Buffer[] = [];
    this.pipeTo((_raw, content) => {
      for (const c of content) parts.push(c);
    });
    await this.finished;
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }

  /**
   * The content as a stream, with backpressure: a reader that stops reading
   * stops the engine's answer in the kernel's buffers. It ends when the
   * answer is complete and fails with the exchange's failure; destroying it
   * before that aborts the exchange.
   */
  body(): Readable {
    const stream = new Readable({
      read: () => this.resume(),
      destroy: (error, callback) => {
        this.abort(error ?? new Error("the answer was not read to its end"));
        callback(error);
      },
    });
    this.pipeTo((_raw, content) => {
      for (const c of content) if (!stream.push(c)) this.pause();
    });
    this.finished.then(
      () => stream.push(null),
      (error: unknown) => stream.destroy(error as Error),
    );
    return stream;
  }

  /** Stops reading the engine's answer (a slow client); `resume` goes on. */
  pause(): void {
    if (!this.settled) this.socket.pause();
  }

  resume(): void {
    if (!this.settled) this.socket.resume();
  }

  /** Cuts the exchange: the connection is closed, so the engine sees the request go and stops generating. */
  abort(reason: unknown): void {
    this.fail(reason);
  }

  private readonly onData = (data: Buffer): void => {
    if (this.settled) return;
    let piece;
    try {
      piece = this.framer.push(data);
    } catch (error) {
      this.fail(error);
      return;
    }
    if (piece.head) {
      this.keepAliveTimeoutMs = piece.head.keepAliveTimeoutMs;
      this.reusable = piece.head.keepAlive;
      this.resolveHead(piece.head);
    }
    if (piece.raw.length > 0 || piece.content.length > 0) {
      if (this.sink !== null) this.sink(piece.raw, piece.content);
      else this.queued.push([piece.raw, piece.content]);
    }
    if (piece.done) this.succeed();
  };

  private readonly onEnd = (): void => {
    if (this.settled) return;
    try {
      this.framer.end();
      this.reusable = false;
      this.succeed();
    } catch (error) {
      this.fail(error);
    }
  };

  private readonly onError = (error: Error): void => this.fail(error);

  private readonly onClose = (): void => this.fail(new Error("the engine closed the connection"));

  private detach(): void {
    this.socket.off("data", this.onData).off("end", this.onEnd).off("error", this.onError).off("close", this.onClose);
  }

  private succeed(): void {
    this.settled = true;
    this.detach();
    this.socket.resume();
    this.release(this.reusable, this.keepAliveTimeoutMs);
    this.resolveFinished();
  }

  private fail(error: unknown): void {
    if (this.settled) return;
    this.settled = true;
    this.detach();
    this.socket.destroy();
    this.release(false, null);
    this.rejectHead(error);
    this.rejectFinished(error);
  }
}
