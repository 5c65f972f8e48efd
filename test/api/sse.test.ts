import assert from "node:assert/strict";
import { test } from "node:test";
import { sseEvent } from "../../src/api/sse.ts";
import { SseReader } from "../../src/http/sse-reader.ts";

test("sseEvent writes one event; a name with CR or LF is refused", () => {
  assert.equal(sseEvent("message_start", { a: "x\ny" }), 'event: message_start\ndata: {"a":"x\\ny"}\n\n');
  assert.equal(sseEvent(null, { ok: true }), 'data: {"ok":true}\n\n');
  assert.throws(() => sseEvent("a\ndata: forged", {}), /CR or LF/);
  assert.throws(() => sseEvent("a\r", {}), /CR or LF/);
});

test("SseReader reads what sseEvent writes, across any chunk boundaries", () => {
  const wire = sseEvent("one", { a: 1 }) + ": a comment\n\n" + sseEvent(null, { b: "x\ny" }) + "data: [DONE]\n\n";
  const expected = [
    { event: "one", data: '{"a":1}' },
    { event: null, data: '{"b":"x\\ny"}' },
    { event: null, data: "[DONE]" },
  ];
  for (let size = 1; size <= wire.length; size++) {
    const reader = new SseReader();
    const got = [];
    for (let i = 0; i < wire.length; i += size) got.push(...reader.push(wire.slice(i, i + size)));
    assert.deepEqual(got, expected, `chunks of ${size}`);
  }
});

test("SseReader: CRLF and CR line ends, multi-line data, one leading space dropped, events without data skipped", () => {
  const reader = new SseReader();
  assert.deepEqual(reader.push("event: x\r\ndata:  two\r\ndata:three\r\r"), [], "a CR at the end may start a CRLF");
  assert.deepEqual(reader.push("\n"), [{ event: "x", data: " two\nthree" }]);
  assert.deepEqual(reader.push("event: empty\n\nid: 3\ndata"), []);
  assert.deepEqual(reader.push("\n\n"), [{ event: null, data: "" }]);
  // A whole text whose last event lacks the blank line; a cut first line is no field.
  assert.deepEqual(SseReader.readAll('ta: {"cut":1}\ndata: {"usage":2}'), [{ event: null, data: '{"usage":2}' }]);
});
