import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { after, before, describe, test } from "node:test";
import { startTestDaemon, type TestDaemon } from "./daemon-helper.ts";
import { killEngineMidStream, SLOW_MODEL } from "./mid-stream.ts";
import { tinyModel } from "../helpers/models.ts";

// The fast lane (src/api/fast-lane.ts) serves plain OpenAI inference requests
// off the connection; everything else goes to Node's HTTP server. These tests
// speak raw HTTP/1.1 so that they see which one answered: the lane writes
// capitalised header names (`Content-Type`), Node's server writes them as
// fastify set them (`content-type`).

interface RawAnswer {
  status: number;
  /** The head's lines as sent. */
  head: string;
  body: string;
  /** Answered by the fast lane. */
  lane: boolean;
}

/** Reads HTTP/1.1 answers from a socket, one at a time (Content-Length or chunked). */
class RawClient {
  private data = Buffer.alloc(0);
  private waiting: (() => void) | null = null;
  ended = false;
  readonly socket: Socket;

  constructor(url: string) {
    const { hostname, port } = new URL(url);
    this.socket = connect(Number(port), hostname);
    this.socket.on("data", (d: Buffer) => {
      this.data = Buffer.concat([this.data, d]);
      this.waiting?.();
    });
    this.socket.on("end", () => {
      this.ended = true;
      this.waiting?.();
    });
    this.socket.on("error", () => undefined);
  }

  write(text: string): void {
    this.socket.write(text);
  }

  private async more(): Promise<void> {
    if (this.ended) throw new Error(`the connection ended; unread: ${this.data.toString("latin1")}`);
    await new Promise<void>((resolve) => (this.waiting = resolve));
    this.waiting = null;
  }

  async answer(): Promise<RawAnswer> {
    let end: number;
    while ((end = this.data.indexOf("\r\n\r\n")) < 0) await this.more();
    const head = this.data.toString("latin1", 0, end);
    this.data = this.data.subarray(end + 4);
    const status = Number(head.slice(9, 12));
    const length = /\r\ncontent-length: (\d+)/i.exec(head);
    let body = "";
    if (length) {
      const n = Number(length[1]);
      while (this.data.length < n) await this.more();
      body = this.data.toString("utf8", 0, n);
      this.data = this.data.subarray(n);
    } else if (/\r\ntransfer-encoding: chunked/i.test(head)) {
      for (;;) {
        let eol: number;
        while ((eol = this.data.indexOf("\r\n")) < 0) await this.more();
        const size = Number.parseInt(this.data.toString("latin1", 0, eol), 16);
        while (this.data.length < eol + 2 + size + 2) await this.more();
        body += this.data.toString("utf8", eol + 2, eol + 2 + size);
        this.data = this.data.subarray(eol + 2 + size + 2);
        if (size === 0) break;
      }
    }
    return { status, head, body, lane: /\r\nContent-Type: /.test(head) };
  }

  close(): void {
    this.socket.destroy();
  }
}

function post(path: string, body: string, extra = ""): string {
  return `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`;
}

/**
 * A header that sends a request to Node's server (the lane leaves every
 * `X-Preload-Only` to it) without changing its answer: `false` is a normal request.
 */
const VIA_NODE = "X-Preload-Only: false\r\n";

/** A header's value in an answer's head, whatever its case. */
const headerOf = (a: RawAnswer, name: string) => new RegExp(`\\r\\n${name}: ([^\\r]*)`, "i").exec(a.head)?.[1];

const chat = (extra: object = {}) => JSON.stringify({ model: "ai/tiny", messages: [{ role: "user", content: "hi" }], max_tokens: 4, temperature: 0, seed: 1, ...extra });

/** What two answers to the same request must share: status and body, ids and times left out. */
function comparable(a: RawAnswer): unknown {
  return { status: a.status, body: a.body.replace(/"(id|created|system_fingerprint)":("[^"]*"|\d+),?/g, "").replace(/"timings":\{[^}]*\}/g, "") };
}

describe("the fast lane", () => {
  let d: TestDaemon;
  before(async () => {
    d = await startTestDaemon();
    await d.addModel(await tinyModel(SLOW_MODEL), "ai/slow:latest");
  });
  after(async () => {
    await d?.close();
  });

  test("serves plain requests and answers exactly as Node's server does: successes, streams and errors", async () => {
    const cases: Array<[string, string]> = [
      ["/v1/chat/completions", chat()],
      ["/engines/v1/chat/completions", chat({ stream: true })],
      ["/engines/llama.cpp/v1/completions", JSON.stringify({ model: "ai/tiny", prompt: "a", max_tokens: 3, temperature: 0 })],
      ["/v1/embeddings", JSON.stringify({ model: "ai/tiny-embed", input: "hello" })],
      ["/v1/chat/completions", chat({ model: "ai/nope" })],
      ["/v1/chat/completions", '{"model":"ai/tiny","messages":['],
      ["/v1/chat/completions", JSON.stringify({ model: "ai/tiny" })],
      ["/v1/chat/completions", chat({ max_tokens: "four" })],
      ["/v1/chat/completions", ""],
      ["/v1/chat/completions", chat({ stream: true, n_probs: "x" })],
    ];
    const client = new RawClient(d.url);
    // With X-Preload-Only, the same request goes to Node's server, and so does its connection from then on.
    const other = new RawClient(d.url);
    try {
      for (const [path, body] of cases) {
        client.write(post(path, body));
        const lane = await client.answer();
        other.write(post(path, body, VIA_NODE));
        const node = await other.answer();
        assert.equal(lane.lane, true, `${path} ${body}: ${lane.head}`);
        assert.equal(node.lane, false, `${path} ${body}: ${node.head}`);
        assert.deepEqual(comparable(lane), comparable(node), `${path} ${body}`);
      }
    } finally {
      client.close();
      other.close();
    }
  });

  test("an allowed Origin is served by the lane with Node's CORS headers; another Origin gets Node's 403", async () => {
    const lane = new RawClient(d.url);
    const node = new RawClient(d.url);
    try {
      for (const body of [chat(), chat({ model: "ai/nope" }), chat({ stream: true })]) {
        lane.write(post("/v1/chat/completions", body, "Origin: http://localhost:3000\r\n"));
        node.write(post("/v1/chat/completions", body, `Origin: http://localhost:3000\r\n${VIA_NODE}`));
        const [a, b] = [await lane.answer(), await node.answer()];
        assert.deepEqual([a.lane, b.lane], [true, false], body);
        assert.deepEqual(comparable(a), comparable(b), body);
        for (const answer of [a, b]) {
          assert.equal(headerOf(answer, "access-control-allow-origin"), "http://localhost:3000", answer.head);
          assert.equal(headerOf(answer, "vary"), "Origin", answer.head);
        }
      }
    } finally {
      lane.close();
      node.close();
    }
    const foreign = new RawClient(d.url);
    try {
      foreign.write(post("/v1/chat/completions", chat(), "Origin: https://evil.example\r\n"));
      const answer = await foreign.answer();
      assert.deepEqual([answer.status, answer.lane], [403, false]);
      assert.equal((JSON.parse(answer.body) as { error: { code: string } }).error.code, "origin_not_allowed");
      assert.equal(headerOf(answer, "access-control-allow-origin"), undefined);
    } finally {
      foreign.close();
    }
  });

  test("one connection: pipelined requests answered in order, then handed to Node's server for good at the first it does not serve", async () => {
    const client = new RawClient(d.url);
    try {
      const get = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
      client.write(post("/v1/chat/completions", chat()) + post("/v1/chat/completions", chat({ max_tokens: 1 })) + get + post("/v1/chat/completions", chat()));
      const answers = [await client.answer(), await client.answer(), await client.answer(), await client.answer()];
      assert.deepEqual(
        answers.map((a) => [a.status, a.lane]),
        [
          [200, true],
          [200, true],
          [200, false],
          [200, false],
        ],
      );
      assert.equal((JSON.parse(answers[1]!.body) as { usage: { completion_tokens: number } }).usage.completion_tokens, 1);
      assert.equal(answers[2]!.body, '{"status":"ok"}');
      assert.equal(comparable(answers[0]!) !== null && JSON.stringify(comparable(answers[0]!)), JSON.stringify(comparable(answers[3]!)));
    } finally {
      client.close();
    }
  });

  test("a request that arrives a byte at a time is served", async () => {
    const client = new RawClient(d.url);
    try {
      const text = post("/v1/chat/completions", chat());
      for (const byte of Buffer.from(text)) {
        client.socket.write(Buffer.of(byte));
        await new Promise((r) => setImmediate(r));
      }
      const answer = await client.answer();
      assert.equal(answer.status, 200);
      assert.equal(answer.lane, true);
    } finally {
      client.close();
    }
  });

  test("a large body arriving in small pieces is served, with the answer Node's server gives", async () => {
    const body = chat({ messages: [{ role: "user", content: "word ".repeat(200_000) }] });
    const text = Buffer.from(post("/v1/chat/completions", body));
    const lane = new RawClient(d.url);
    const node = new RawClient(d.url);
    try {
      for (let at = 0; at < text.length; at += 1024) lane.socket.write(text.subarray(at, at + 1024));
      node.write(post("/v1/chat/completions", body, VIA_NODE));
      const [a, b] = [await lane.answer(), await node.answer()];
      assert.deepEqual([a.lane, b.lane], [true, false]);
      assert.deepEqual(comparable(a), comparable(b));
      assert.equal(a.status, 400, a.body); // a million words do not fit the tiny model's context
    } finally {
      lane.close();
      node.close();
    }
  });

  test("Connection: close is honoured; a chunked request body goes to Node's server", async () => {
    const closing = new RawClient(d.url);
    try {
      closing.write(post("/v1/chat/completions", chat(), "Connection: close\r\n"));
      const answer = await closing.answer();
      assert.equal(answer.lane, true);
      assert.match(answer.head, /\r\nConnection: close/);
      await new Promise<void>((resolve) => (closing.ended ? resolve() : closing.socket.once("end", () => resolve())));
    } finally {
      closing.close();
    }
    const chunked = new RawClient(d.url);
    try {
      const body = chat();
      chunked.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`);
      const answer = await chunked.answer();
      assert.equal(answer.status, 200);
      assert.equal(answer.lane, false);
    } finally {
      chunked.close();
    }
  });

  test("a client that leaves mid-stream frees the runner (recorded as 499); an engine killed mid-stream ends the stream with its error event", async () => {
    const client = new RawClient(d.url);
    client.write(post("/v1/chat/completions", JSON.stringify({ model: "ai/slow", messages: [{ role: "user", content: "hi" }], max_tokens: 2000, ignore_eos: true, stream: true })));
    // Wait for the head and a first event, then hang up.
    await new Promise<void>((resolve) => client.socket.on("data", (d: Buffer) => d.includes("data: ") && resolve()));
    client.close();
    // The runner's slots are free again: a request that needs all of them completes.
    const started = performance.now();
    for (;;) {
      const ps = (await (await fetch(`${d.url}/engines/ps`)).json()) as Array<{ model_name: string; in_flight?: number }>;
      const slow = ps.find((r) => r.model_name.includes("slow"));
      if (slow && (slow.in_flight ?? 0) === 0) break;
      assert.ok(performance.now() - started < 10_000, `the runner still serves the abandoned stream: ${JSON.stringify(ps)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const metrics = await (await fetch(`${d.url}/metrics`)).text();
    assert.match(metrics, /model_runner_inference_requests_total\{api="openai",endpoint="\/v1\/chat\/completions",model="ai\/slow:latest",status="499"\} 1/);

    const res = await fetch(`${d.url}/v1/chat/completions`, {
      method: "POST",
      body: JSON.stringify({ model: "ai/slow", messages: [{ role: "user", content: "hi" }], max_tokens: 2000, ignore_eos: true, stream: true }),
    });
    const text = await killEngineMidStream(d, res, '"content":"');
    const events = text.split("\n\n").filter((e) => e.startsWith("data: "));
    const last = JSON.parse(events.at(-1)!.slice(6)) as { error?: { code: string; message: string } };
    assert.ok(last.error, `no error event at the end: ${events.at(-1)}`);
    assert.match(last.error.message, /engine|exit|signal/i);
  });

  test("the daemon's own metrics count lane requests by route as Node's server does", async () => {
    const client = new RawClient(d.url);
    try {
      const before = await (await fetch(`${d.url}/metrics`)).text();
      const count = (text: string) => Number(/model_runner_http_requests_total\{route="\/engines\/:backend\/v1\/chat\/completions",method="POST",status="200"\} (\d+)/.exec(text)?.[1] ?? 0);
      client.write(post("/engines/llama.cpp/v1/chat/completions", chat()));
      assert.equal((await client.answer()).lane, true);
      const after = await (await fetch(`${d.url}/metrics`)).text();
      assert.equal(count(after), count(before) + 1);
    } finally {
      client.close();
    }
  });
});

describe("the fast lane with an API key", () => {
  let d: TestDaemon;
  before(async () => {
    d = await startTestDaemon({ MODEL_RUNNER_API_KEY: "sesame" });
  });
  after(async () => {
    await d?.close();
  });

  test("the right key (Bearer or x-api-key) takes the lane; a wrong or missing one gets Node's server's 401", async () => {
    const client = new RawClient(d.url);
    try {
      client.write(post("/v1/chat/completions", chat(), "Authorization: Bearer sesame\r\n"));
      const bearer = await client.answer();
      assert.deepEqual([bearer.status, bearer.lane], [200, true]);
      client.write(post("/v1/chat/completions", chat(), "x-api-key: sesame\r\n"));
      const header = await client.answer();
      assert.deepEqual([header.status, header.lane], [200, true]);
    } finally {
      client.close();
    }
    for (const auth of ["Authorization: Bearer wrong\r\n", ""]) {
      const other = new RawClient(d.url);
      try {
        other.write(post("/v1/chat/completions", chat(), auth));
        const answer = await other.answer();
        assert.deepEqual([answer.status, answer.lane], [401, false], answer.head);
      } finally {
        other.close();
      }
    }
  });
});
