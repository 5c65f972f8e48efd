import assert from "node:assert/strict";
import { test } from "node:test";
import { ModelfileError, parseModelfile } from "../../src/cli/modelfile.ts";

test("parseModelfile: instructions in any case, comments, bare, quoted and triple-quoted values, stop collects", () => {
  const m = parseModelfile(
    [
      "# comment",
      "from ai/tiny",
      "",
      'SYSTEM """line one',
      '  line two"""',
      "PARAMETER temperature 0.2",
      'parameter stop "a \\"b\\"\\n"',
      "PARAMETER stop <|end|>",
      "MESSAGE User hi there",
      'MESSAGE assistant """multi',
      'line"""',
      "LICENSE MIT",
      "LICENSE Apache-2.0",
      'TEMPLATE """{{ x }}"""',
    ].join("\n"),
    "Modelfile",
  );
  assert.equal(m.from, "ai/tiny");
  assert.equal(m.fromLine, 2);
  assert.equal(m.system, "line one\n  line two");
  assert.deepEqual(m.parameters, { temperature: "0.2", stop: ['a "b"\n', "<|end|>"] });
  assert.deepEqual(m.messages, [
    { role: "user", content: "hi there" },
    { role: "assistant", content: "multi\nline" },
  ]);
  assert.deepEqual(m.licenses, ["MIT", "Apache-2.0"]);
  assert.equal(m.template, "{{ x }}");
});

test("parseModelfile: errors name the line", () => {
  const cases: Array<[string, RegExp]> = [
    ["FROM x\n\nFOO bar\n", /^M:3: unknown instruction "FOO"/],
    ["FROM x\nADAPTER ./a.gguf\n", /^M:2: ADAPTER/],
    ["FROM x\nFROM y\n", /^M:2: FROM is given twice/],
    ["FROM x\nPARAMETER\n", /^M:2: PARAMETER needs a name and a value/],
    ["FROM x\nPARAMETER temperature\n", /^M:2: PARAMETER needs a value/],
    ['FROM x\nSYSTEM "open\n', /^M:2: a quoted value is never closed on its line/],
    ['FROM x\nSYSTEM """a""" trailing\n', /^M:2: unexpected text after the value/],
    ["# only a comment\n", /^M:1: no FROM instruction/],
  ];
  for (const [text, message] of cases) {
    assert.throws(() => parseModelfile(text, "M"), (e: unknown) => e instanceof ModelfileError && message.test(e.message), text);
  }
});
