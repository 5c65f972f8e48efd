import assert from "node:assert/strict";
import { test } from "node:test";
import { sseEvent } from "../../src/api/sse.ts";

test("sseEvent writes one event; a name with CR or LF is refused", () => {
  assert.equal(sseEvent("message_start", { a: "x\ny" }), 'event: message_start\ndata: {"a":"x\\ny"}\n\n');
  assert.equal(sseEvent(null, { ok: true }), 'data: {"ok":true}\n\n');
  assert.throws(() => sseEvent("a\ndata: forged", {}), /CR or LF/);
  assert.throws(() => sseEvent("a\r", {}), /CR or LF/);
});
