import assert from "node:assert/strict";
import { test } from "node:test";
import { MAX_HEAD_BYTES, readRequestHead } from "../../src/http/request-head.ts";

const head = (text: string) => readRequestHead(Buffer.from(text, "latin1"));

test("a plain HTTP/1.1 head: method, target, headers by lowercase name, its length", () => {
  const text = "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:1\r\nContent-Type: application/json\r\nContent-Length: 2\r\nAccept: a\r\naccept:  b \r\n\r\n{}";
  const h = head(text);
  assert.ok(h !== null && h !== "unusual");
  assert.equal(h.method, "POST");
  assert.equal(h.target, "/v1/chat/completions");
  assert.equal(h.headers.get("content-length"), "2");
  assert.equal(h.headers.get("host"), "127.0.0.1:1");
  assert.equal(h.headers.get("accept"), "a, b");
  assert.equal(h.length, text.length - 2);
});

test("an incomplete head waits; one over the limit is unusual", () => {
  assert.equal(head("POST / HTTP/1.1\r\nHost: x\r\n"), null);
  assert.equal(head(`POST / HTTP/1.1\r\nX: ${"a".repeat(MAX_HEAD_BYTES)}`), "unusual");
  assert.equal(head(`POST / HTTP/1.1\r\nX: ${"a".repeat(MAX_HEAD_BYTES)}\r\n\r\n`), "unusual");
});

test("what is not a plain request reads as unusual (Node's server takes it)", () => {
  for (const text of [
    "POST / HTTP/1.0\r\n\r\n",
    "POST http://x/ HTTP/1.1\r\n\r\n",
    "post / HTTP/1.1\r\n\r\n",
    "POST / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n",
    "POST / HTTP/1.1\r\nBad Name: a\r\n\r\n",
    "POST / HTTP/1.1\r\nNoColon\r\n\r\n",
    "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "POST / HTTP/1.1\r\nX: a\nb\r\n\r\n",
  ]) {
    assert.equal(head(text), "unusual", JSON.stringify(text));
  }
});
