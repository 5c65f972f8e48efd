/**
 * A second floor for bench/daemon/run.ts: the least a proxy that meters
 * requests must do, and nothing more. Per request it reads the head, parses
 * the JSON body and writes it again (as any proxy that reads `model` and
 * checks fields does), sends it to the engine over one kept-alive Unix-socket
 * connection per client connection, reads the answer's framing, parses a
 * JSON answer (for its usage) or a stream's last event, and sends the answer
 * on. No scheduling, no checks, no metrics, no recorder, no error answers:
 * the byte relay shows what the two hops cost, this shows what reading the
 * request and the answer adds to them, so that the fast lane's own cost can
 * be told apart from what any proxy here must pay. It reads the request head
 * and the answer's framing with the lane's own readers (src/http/), so what
 * the lane spends beyond this relay is the rest of its work.
 *
 * One request at a time per connection, as the bench's clients send them (no pipelining).
 *
 * Usage (bench/daemon/run.ts starts it): node --import tsx bench/daemon/parsing-relay.ts ENGINE_SOCKET
 * It prints `port N` once it listens on 127.0.0.1.
 */
import { connect, createServer, type Socket } from "node:net";
import { readRequestHead } from "../../src/http/request-head.ts";
import { ResponseFramer } from "../../src/http/response-framer.ts";
import { UsageTail } from "../../src/api/engine/ledger.ts";

const enginePath = process.argv[2];
if (enginePath === undefined) throw new Error("give the engine's socket path");

/** One engine answer on its way to the client: framed as the lane frames it, its usage parsed at the end. */
class Answer {
  private readonly framer = new ResponseFramer();
  private chunked = false;
  /** A Content-Length answer's head and body, sent in one write once complete. */
  private whole: Buffer[] = [];
  /** A chunked answer's last bytes, where its usage is. */
  private readonly tail = new UsageTail();

  constructor(private readonly client: Socket) {}

  /** Takes bytes from the engine; returns whether the answer is complete. */
  push(data: Buffer): boolean {
    const piece = this.framer.push(data);
    if (piece.head !== undefined) {
      const { status, contentType, contentLength } = piece.head;
      this.chunked = piece.head.chunked;
      const framing = this.chunked ? "Transfer-Encoding: chunked" : `Content-Length: ${contentLength}`;
      const head = Buffer.from(`HTTP/1.1 ${status} OK\r\nContent-Type: ${contentType}\r\n${framing}\r\nConnection: keep-alive\r\n\r\n`, "latin1");
      if (this.chunked) this.client.write(head);
      else this.whole.push(head);
    }
    if (this.chunked) {
      for (const r of piece.raw) this.client.write(r);
      for (const c of piece.content) this.tail.push(c);
    } else this.whole.push(...piece.content);
    if (!piece.done) return false;
    if (this.chunked) {
      // A stream's usage is in its last JSON event.
      const last = (this.tail.text() ?? "").split("\n\n").filter((e) => e.startsWith("data: {")).at(-1);
      if (last !== undefined) void (JSON.parse(last.slice(6)) as { usage?: unknown }).usage;
    } else {
      void (JSON.parse(Buffer.concat(this.whole.slice(1)).toString("utf8")) as { usage?: unknown }).usage;
      this.client.write(Buffer.concat(this.whole));
    }
    return true;
  }
}

const server = createServer((client) => {
  client.setNoDelay(true);
  let engine: Socket | null = null;
  let answer: Answer | null = null;
  let pending: Buffer = Buffer.alloc(0);
  client.on("data", (data: Buffer) => {
    pending = pending.length > 0 ? Buffer.concat([pending, data]) : data;
    const head = readRequestHead(pending);
    if (head === null) return;
    if (head === "unusual") throw new Error("a request head the relay does not read");
    const end = head.length + Number(head.headers.get("content-length") ?? 0);
    if (pending.length < end) return;
    const body = JSON.parse(pending.toString("utf8", head.length, end)) as { model?: unknown };
    if (typeof body.model !== "string") throw new Error("a request without a model");
    pending = pending.subarray(end);
    if (engine === null) {
      engine = connect(enginePath);
      engine.on("data", (d: Buffer) => {
        if (answer !== null && answer.push(d)) answer = null;
      });
      engine.on("error", () => client.destroy());
      client.on("close", () => engine?.destroy());
    }
    answer = new Answer(client);
    const text = JSON.stringify(body);
    engine.write(`POST ${head.target} HTTP/1.1\r\nHost: engine\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`);
  });
  client.on("error", () => client.destroy());
});
server.listen(0, "127.0.0.1", () => {
  const address = server.address();
  console.log(`port ${typeof address === "object" && address !== null ? address.port : ""}`);
});
