import assert from "node:assert/strict";
import { test } from "node:test";
import { MalformedResponseError, ResponseFramer } from "../../src/http/response-framer.ts";

/** Feeds `text` to a framer in pieces of `size` bytes; returns the head, the raw body bytes, the content and whether it completed. */
function feed(text: string, size: number) {
  const framer = new ResponseFramer();
  const bytes = Buffer.from(text, "latin1");
  let head;
  const raw: Buffer[] = [];
  const content: Buffer[] = [];
  let done = false;
  for (let at = 0; at < bytes.length; at += size) {
    const piece = framer.push(bytes.subarray(at, at + size));
    head ??= piece.head;
    raw.push(...piece.raw);
    content.push(...piece.content);
    done ||= piece.done;
  }
  return { head, raw: Buffer.concat(raw).toString("latin1"), content: Buffer.concat(content).toString("latin1"), done, framer };
}

const CHUNKED = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\nKeep-Alive: timeout=5\r\n\r\n" + "6\r\ndata: \r\n" + "a;ext=1\r\n{\"x\":1}\n\n\n\r\n" + "0\r\n\r\n";

test("a chunked answer: its framing passes through as sent, its content is unframed, in pieces of any size", () => {
  for (const size of [1, 2, 3, 7, 16, 1000]) {
    const r = feed(CHUNKED, size);
    assert.equal(r.done, true, `size ${size}`);
    assert.deepEqual(r.head, { status: 200, contentType: "text/event-stream", contentLength: null, chunked: true, keepAlive: true, keepAliveTimeoutMs: 5000 });
    assert.equal(r.raw, CHUNKED.slice(CHUNKED.indexOf("\r\n\r\n") + 4), `size ${size}`);
    assert.equal(r.content, 'data: {"x":1}\n\n\n', `size ${size}`);
  }
});

test("a Content-Length answer ends at its length; a 204 and a zero length have no body", () => {
  const json = '{"ok":true}';
  for (const size of [1, 5, 100]) {
    const r = feed(`HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: ${json.length}\r\n\r\n${json}`, size);
    assert.equal(r.done, true);
    assert.equal(r.head!.status, 404);
    assert.equal(r.head!.contentLength, json.length);
    assert.equal(r.content, json);
    assert.equal(r.raw, json);
  }
  assert.equal(feed("HTTP/1.1 204 No Content\r\n\r\n", 4).done, true);
  assert.equal(feed("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 4).done, true);
});

test("a body without length or chunking runs to the close and leaves the connection unusable", () => {
  const r = feed("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nabc", 2);
  assert.equal(r.done, false);
  assert.equal(r.head!.keepAlive, false);
  assert.equal(r.content, "abc");
  assert.equal(r.framer.end().done, true);
});

test("Connection: close and HTTP/1.0 without keep-alive are not reused", () => {
  assert.equal(feed("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", 50).head!.keepAlive, false);
  assert.equal(feed("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", 50).head!.keepAlive, false);
  assert.equal(feed("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", 50).head!.keepAlive, true);
});

test("broken answers are errors: cut short, bad chunk sizes, bytes after the end, conflicting lengths, no status line", () => {
  const cut = new ResponseFramer();
  cut.push(Buffer.from("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"));
  assert.throws(() => cut.end(), MalformedResponseError);
  const chunkCut = new ResponseFramer();
  chunkCut.push(Buffer.from("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"));
  assert.throws(() => chunkCut.end(), MalformedResponseError);
  assert.throws(() => feed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 100), MalformedResponseError);
  assert.throws(() => feed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", 100), MalformedResponseError);
  // Chunk-size lines: 1-8 hex digits, blanks, an extension without a bare CR or LF; in any piece size.
  for (const line of ["", " 1", "123456789", "1x", "1 x", "1;a\rb", "1;a\nb", "-1", "0x1"]) {
    for (const size of [1, 3, 100]) {
      assert.throws(() => feed(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n${line}\r\na\r\n0\r\n\r\n`, size), MalformedResponseError, JSON.stringify(line));
    }
  }
  for (const line of ["1", "1 \t", "1;", "1 ; name=\"v\"", "00000001", "0001 "]) {
    for (const size of [1, 3, 100]) {
      const r = feed(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n${line}\r\na\r\nA\r\n0123456789\r\n0\r\n\r\n`, size);
      assert.equal(r.done, true, JSON.stringify(line));
      assert.equal(r.content, "a0123456789");
    }
  }
  // The CRLF after a chunk's data, however it is split.
  for (const size of [1, 2, 100]) {
    assert.throws(() => feed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\n0\r\n\r\n", size), MalformedResponseError);
    assert.throws(() => feed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\rx0\r\n\r\n", size), MalformedResponseError);
  }
  assert.throws(() => feed("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nab", 100), MalformedResponseError);
  assert.throws(() => feed("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\na", 100), MalformedResponseError);
  assert.throws(() => feed("SPDY/3 200 OK\r\n\r\n", 100), MalformedResponseError);
  assert.throws(() => feed("HTTP/1.1 100 Continue\r\n\r\n", 100), MalformedResponseError);
});
