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
 * be told apart from what any proxy here must pay.
 *
 * One request at a time per connection, as the bench's clients send them (no pipelining).
 *
 * Usage (bench/daemon/run.ts starts it): node --import tsx bench/daemon/parsing-relay.ts ENGINE_SOCKET
 * It prints `port N` once it listens on 127.0.0.1.
 */
import { connect, createServer, type Socket } from "node:net";

const enginePath = process.argv[2];
if (enginePath === undefined) throw new Error("give the engine's socket path");
const HEAD_END = Buffer.from("\r\n\r\n", "latin1");
// A Buffer needle: a string one is converted to bytes on every indexOf (the cost docs/api.md's stream cut removed from the lane).
const CRLF = Buffer.from("\r\n", "latin1");

/** The value of header `name` (lowercase) in a head's text, or undefined. */
function header(head: string, name: string): string | undefined {
  const m = new RegExp(`\r\n${name}:[ \t]*([^\r]*)`, "i").exec(head);
  return m?.[1];
}

/** One engine answer on its way to the client: its framing read, its usage parsed at the end. */
class Answer {
  private headRead = false;
  private chunked = false;
  /** Body bytes still expected (Content-Length), or in the current chunk. */
  private left = 0;
  private body: Buffer[] = [];
  /** For chunked framing: bytes of a size line or CRLF split across reads. */
  private partial: Buffer = Buffer.alloc(0);
  private state: "size" | "data" | "crlf" = "size";
  /** The pieces of the last chunk's data (a stream's last events), decoded only once the stream ends. */
  private lastChunk: Buffer[] = [];

  constructor(private readonly client: Socket) {}

  /** Takes bytes from the engine; returns the bytes after the answer's end (none for a well-behaved engine), or null while it goes on. */
  push(data: Buffer): Buffer | null {
    if (!this.headRead) {
      const all = this.partial.length > 0 ? Buffer.concat([this.partial, data]) : data;
      const end = all.indexOf(HEAD_END);
      if (end < 0) {
        this.partial = all;
        return null;
      }
      this.partial = Buffer.alloc(0);
      const head = all.toString("latin1", 0, end);
      this.headRead = true;
      this.chunked = /chunked/i.test(header(head, "transfer-encoding") ?? "");
      if (this.chunked) {
        this.client.write(all.subarray(0, end + 4));
        return this.chunks(all.subarray(end + 4));
      }
      this.left = Number(header(head, "content-length"));
      this.body.push(all.subarray(0, end + 4));
      data = all.subarray(end + 4);
      return this.whole(data);
    }
    return this.chunked ? this.chunks(data) : this.whole(data);
  }

  /** A Content-Length answer: collected, its JSON parsed, sent in one write. */
  private whole(data: Buffer): Buffer | null {
    const take = Math.min(this.left, data.length);
    this.body.push(data.subarray(0, take));
    this.left -= take;
    if (this.left > 0) return null;
    const all = Buffer.concat(this.body);
    const headEnd = all.indexOf(HEAD_END) + 4;
    void (JSON.parse(all.toString("utf8", headEnd)) as { usage?: unknown }).usage;
    this.client.write(all);
    return data.subarray(take);
  }

  /** A chunked answer: sent on as it comes, its framing followed to the last chunk, whose events' last one is parsed. */
  private chunks(data: Buffer): Buffer | null {
    this.client.write(data);
    let buf = this.partial.length > 0 ? Buffer.concat([this.partial, data]) : data;
    this.partial = Buffer.alloc(0);
    for (;;) {
      if (this.state === "data") {
        const take = Math.min(this.left, buf.length);
        if (take > 0) this.lastChunk.push(buf.subarray(0, take));
        this.left -= take;
        buf = buf.subarray(take);
        if (this.left > 0) return null;
        this.state = "crlf";
      }
      if (buf.length < 2) {
        this.partial = buf;
        return null;
      }
      if (this.state === "crlf") {
        buf = buf.subarray(2);
        this.state = "size";
        continue;
      }
      const eol = buf.indexOf(CRLF);
      if (eol < 0) {
        this.partial = buf;
        return null;
      }
      const size = parseInt(buf.toString("latin1", 0, eol), 16);
      buf = buf.subarray(eol + 2);
      if (size === 0) {
        // The last chunk (no trailers from these engines): read the stream's last JSON event.
        const events = Buffer.concat(this.lastChunk).toString("utf8").split("\n\n").filter((e) => e.startsWith("data: {"));
        const last = events.at(-1);
        if (last !== undefined) void (JSON.parse(last.slice(6)) as { usage?: unknown }).usage;
        return buf.length >= 2 ? buf.subarray(2) : Buffer.alloc(0);
      }
      this.left = size;
      this.lastChunk = [];
      this.state = "data";
    }
  }
}

const server = createServer((client) => {
  client.setNoDelay(true);
  let engine: Socket | null = null;
  let answer: Answer | null = null;
  let pending: Buffer = Buffer.alloc(0);
  client.on("data", (data: Buffer) => {
    pending = pending.length > 0 ? Buffer.concat([pending, data]) : data;
    const end = pending.indexOf(HEAD_END);
    if (end < 0) return;
    const head = pending.toString("latin1", 0, end);
    const length = Number(header(head, "content-length") ?? 0);
    if (pending.length < end + 4 + length) return;
    const body = JSON.parse(pending.toString("utf8", end + 4, end + 4 + length)) as { model?: unknown };
    if (typeof body.model !== "string") throw new Error("a request without a model");
    const target = head.slice(head.indexOf(" ") + 1, head.indexOf(" HTTP/"));
    pending = pending.subarray(end + 4 + length);
    if (engine === null) {
      engine = connect(enginePath);
      engine.on("data", (d: Buffer) => {
        if (answer !== null && answer.push(d) !== null) answer = null;
      });
      engine.on("error", () => client.destroy());
      client.on("close", () => engine?.destroy());
    }
    answer = new Answer(client);
    const text = JSON.stringify(body);
    engine.write(`POST ${target} HTTP/1.1\r\nHost: engine\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`);
  });
  client.on("error", () => client.destroy());
});
server.listen(0, "127.0.0.1", () => {
  const address = server.address();
  console.log(`port ${typeof address === "object" && address !== null ? address.port : ""}`);
});
