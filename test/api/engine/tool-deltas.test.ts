import assert from "node:assert/strict";
import { test } from "node:test";
import { parsedArguments, ToolCallAccumulator } from "../../../src/api/engine/tool-deltas.ts";

test("streamed tool-call deltas assemble into calls, each change reported in order", () => {
  const acc = new ToolCallAccumulator();
  const first = acc.add([{ index: 0, id: "call_a", type: "function", function: { name: "get_weather", arguments: "" } }]);
  assert.deepEqual(first.map((c) => [c.call.index, c.started, c.argumentsDelta]), [[0, true, ""]]);
  acc.add([{ index: 0, function: { arguments: '{"city":' } }]);
  const both = acc.add([{ index: 0, function: { arguments: '"Paris"}' } }, { index: 1, id: "call_b", function: { name: "t", arguments: "{}" } }]);
  assert.deepEqual(both.map((c) => [c.call.index, c.started, c.argumentsDelta]), [[0, false, '"Paris"}'], [1, true, "{}"]]);
  assert.equal(acc.add(undefined).length, 0);
  assert.deepEqual(acc.list(), [
    { index: 0, id: "call_a", name: "get_weather", arguments: '{"city":"Paris"}' },
    { index: 1, id: "call_b", name: "t", arguments: "{}" },
  ]);
});

test("a whole message's tool_calls read by the same rule; arguments parse or fall back", () => {
  const acc = new ToolCallAccumulator();
  acc.addMessage([{ id: "x", function: { name: "a", arguments: '{"n":1}' } }, { function: { name: "b", arguments: "" } }]);
  assert.deepEqual(acc.list().map((c) => [c.index, c.id, c.name]), [[0, "x", "a"], [1, null, "b"]]);
  assert.deepEqual(parsedArguments('{"n":1}', () => null), { n: 1 });
  assert.deepEqual(parsedArguments("", () => null), {});
  assert.deepEqual(parsedArguments('{"cut', (t) => ({ _raw: t })), { _raw: '{"cut' });
});
