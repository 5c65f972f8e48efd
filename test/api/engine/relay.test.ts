import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { EngineRelay } from "../../../src/api/engine/relay.ts";

// The relay is the daemon's one transport to engines. These tests put a raw
// HTTP/1.1 server on a Unix socket in its place, so that they see exactly the
// bytes the relay writes and can answer with any framing.

interface Received {
  head: string;
  socket: Socket;
}

/** A raw server: each request's head goes to `onRequest`, which answers on the socket. */
class RawEngine {
  readonly server: Server;
  readonly sockets = new Set<Socket>();
  connections = 0;
  onRequest: (request: Received) => void = () => {};

  constructor(readonly path: string) {
    this.server = createServer((socket) => {
      this.connections++;
      this.sockets.add(socket);
      socket.on("close", () => this.sockets.delete(socket));
      let buffered = "";
      socket.on("data", (data) => {
        buffered += data.toString("latin1");
        for (;;) {
          const end = buffered.indexOf("\r\n\r\n");
          if (end < 0) return;
          const head = buffered.slice(0, end);
          const length = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0);
          if (buffered.length < end + 4 + length) return;
          buffered = buffered.slice(end + 4 + length);
          this.onRequest({ head, socket });
        }
      });
    });
  }

  listen(): Promise<void> {
    return new Promise((resolve) => this.server.listen(this.path, resolve));
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

describe("EngineRelay: the transport to engines", () => {
  let dir: string;
  let engine: RawEngine;
  let relay: EngineRelay;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "relay-"));
    engine = new RawEngine(join(dir, "engine.sock"));
    await engine.listen();
    relay = new EngineRelay();
  });
  after(async () => {
    relay.close();
    await engine.close();
    await rm(dir, { recursive: true, force: true });
  });

  test("body() streams a chunked answer's content; the connection is kept for the next request", async () => {
    const before = engine.connections;
    engine.onRequest = ({ socket }) => {
      socket.write("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\nKeep-Alive: timeout=5\r\n\r\n");
      socket.write("6\r\ndata: \r\n");
      setTimeout(() => socket.write("3\r\n{}\n\r\n0\r\n\r\n"), 10);
    };
    for (let i = 0; i < 3; i++) {
      const exchange = relay.send(engine.path, "POST", "/v1/chat/completions", "{}");
      const head = await exchange.head;
      assert.equal(head.status, 200);
      assert.equal(head.contentType, "text/event-stream");
      const text = (await exchange.body().setEncoding("utf8").toArray()).join("");
      assert.equal(text, "data: {}\n");
    }
    assert.equal(engine.connections - before, 1, "one connection for three requests in turn");
  });

  test("a request without a body is sent without Content-Type and Content-Length", async () => {
    let seen = "";
    engine.onRequest = ({ head, socket }) => {
      seen = head;
      socket.write("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok");
    };
    const exchange = relay.send(engine.path, "GET", "/metrics", null);
    assert.equal((await exchange.whole()).toString(), "ok");
    assert.equal(seen, "GET /metrics HTTP/1.1\r\nHost: engine");
    const post = relay.send(engine.path, "POST", "/v1/embeddings", '{"é":1}');
    await post.whole();
    assert.match(seen, /^POST \/v1\/embeddings HTTP\/1\.1\r\nHost: engine\r\nContent-Type: application\/json\r\nContent-Length: 8$/);
  });

  test("destroying the body before the answer ends closes the connection: the engine sees the request go", async () => {
    let engineSide: Socket | null = null;
    engine.onRequest = ({ socket }) => {
      engineSide = socket;
      socket.write("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
    };
    const exchange = relay.send(engine.path, "POST", "/v1/completions", "{}");
    await exchange.head;
    const body = exchange.body();
    const first = await new Promise<Buffer>((resolve) => body.once("data", resolve));
    assert.equal(first.toString(), "hello");
    const closed = new Promise<void>((resolve) => engineSide!.once("close", () => resolve()));
    body.destroy();
    await closed;
    await assert.rejects(exchange.finished);
  });

  test("a reader that stops reading holds the engine's answer back; reading again gets all of it", async () => {
    const total = 16 * 1024 * 1024;
    let engineSide: Socket | null = null;
    let drained = false;
    engine.onRequest = ({ socket }) => {
      engineSide = socket;
      socket.write(`HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${total}\r\n\r\n`);
      drained = socket.write(Buffer.alloc(total, 97));
    };
    const exchange = relay.send(engine.path, "POST", "/v1/embeddings", "{}");
    await exchange.head;
    const body = exchange.body();
    // Nothing reads for a while: the engine's write stays in its own buffers.
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(drained, false);
    assert.ok(engineSide!.writableLength > 0, "the engine still holds part of its answer");
    let received = 0;
    for await (const piece of body) received += (piece as Buffer).length;
    assert.equal(received, total);
    await exchange.finished;
  });

  test("an engine that closes mid-answer fails the body with the cause", async () => {
    engine.onRequest = ({ socket }) => {
      socket.write("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"partial\":");
      setTimeout(() => socket.destroy(), 10);
    };
    const exchange = relay.send(engine.path, "POST", "/v1/chat/completions", "{}");
    await exchange.head;
    await assert.rejects(exchange.body().toArray(), /closed|ended|before/);
  });

  test("no engine on the socket: the head fails", async () => {
    const exchange = relay.send(join(dir, "nobody.sock"), "POST", "/v1/chat/completions", "{}");
    await assert.rejects(exchange.head, /ENOENT|ECONNREFUSED/);
  });
});
