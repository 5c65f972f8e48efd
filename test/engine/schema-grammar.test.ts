import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { LlamaGrammar } from "node-llama-cpp";
import { integerGbnf, numberGbnf, type NumberBounds } from "../../src/engine/grammar/numbers.ts";
import { patternGbnf } from "../../src/engine/grammar/pattern.ts";
import { UnsupportedSchemaError } from "../../src/engine/grammar/errors.ts";
import { checkJsonSchema } from "../../src/engine/grammar/normalize.ts";
import { schemaGbnf } from "../../src/engine/grammar/schema-gbnf.ts";
import { grammarMatcher, type GrammarMatcher } from "../helpers/grammar.ts";
import { validateJson } from "../helpers/json-schema.ts";

// The grammars our JSON-schema keywords compile to, checked by llama.cpp's own
// grammar engine: every accepted text must be valid (checked independently
// with RegExp and plain comparisons), and the valid texts we mean to cover
// must be accepted.

let m: GrammarMatcher;
before(async () => {
  m = await grammarMatcher();
});
after(() => m?.dispose());

const within = (b: NumberBounds, v: number) =>
  (b.minimum === undefined || v >= b.minimum) &&
  (b.maximum === undefined || v <= b.maximum) &&
  (b.exclusiveMinimum === undefined || v > b.exclusiveMinimum) &&
  (b.exclusiveMaximum === undefined || v < b.exclusiveMaximum) &&
  (b.multipleOf === undefined || v % b.multipleOf === 0);

async function compileLeaf(make: (prefix: string, rules: string[]) => string): Promise<LlamaGrammar> {
  const rules: string[] = [];
  const expr = make("t", rules);
  return m.compile([`root ::= ${expr}`, ...rules].join("\n"));
}

/** A small seeded generator (mulberry32). */
function random(seed: number): (n: number) => number {
  let a = seed >>> 0;
  return (n) => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) % 4294967296) % n;
  };
}

describe("integer ranges", () => {
  const cases: Array<[NumberBounds, number, number]> = [
    [{ minimum: 0, maximum: 100 }, -150, 1200],
    [{ minimum: -37, maximum: 1234 }, -1500, 1500],
    [{ minimum: 5 }, -100, 2500],
    [{ exclusiveMaximum: -3 }, -2500, 100],
    [{ minimum: 199, maximum: 1001 }, 0, 2500],
    [{ minimum: 10, maximum: 99 }, -5, 300],
    [{ exclusiveMinimum: 0, exclusiveMaximum: 10 }, -20, 200],
    [{ minimum: 1.5, exclusiveMaximum: 20.5 }, -20, 300],
    [{ multipleOf: 7 }, -1500, 1500],
    [{ multipleOf: 25, minimum: 0 }, -1000, 1500],
    [{ multipleOf: 7, minimum: 3 }, -500, 500],
    [{ multipleOf: 4, exclusiveMaximum: 0 }, -500, 500],
    [{ multipleOf: 3, minimum: 10, maximum: 40 }, -100, 200],
  ];
  for (const [bounds, from, to] of cases) {
    test(`${JSON.stringify(bounds)}: exactly the integers in range, no "-0" or leading zeros`, async () => {
      const g = await compileLeaf((p, rules) => integerGbnf(bounds, p, rules));
      const wrong: string[] = [];
      for (let v = from; v <= to; v++) if (m.accepts(g, String(v)) !== within(bounds, v)) wrong.push(String(v));
      for (const text of ["-0", "007", "01", "", "-", "1.0", "1e2"]) if (m.accepts(g, text)) wrong.push(text);
      assert.deepEqual(wrong, []);
    });
  }

  test("the open side stops at 15 digits, so every value is an exact double", async () => {
    const g = await compileLeaf((p, rules) => integerGbnf({ minimum: 0 }, p, rules));
    assert.ok(m.accepts(g, "999999999999999"));
    assert.ok(!m.accepts(g, "1000000000000000"));
  });

  test("bounds that leave no integer, or too many multiples for a divisor too large, are refused", () => {
    assert.throws(() => integerGbnf({ minimum: 2, maximum: 1 }), /no integer/);
    assert.throws(() => integerGbnf({ exclusiveMinimum: 1, exclusiveMaximum: 2 }), /no integer/);
    assert.throws(() => integerGbnf({ minimum: 1e20 }), /too large/);
    assert.throws(() => integerGbnf({ multipleOf: 1000 }), /multipleOf|enforced only/);
    assert.throws(() => integerGbnf({ multipleOf: 7, minimum: 100 }), /between -7 and 7/);
    assert.throws(() => integerGbnf({ multipleOf: 0.5 }), /positive integer/);
  });
});

describe("number bounds", () => {
  const texts = ["0", "0.0", "-0", "-0.0", "0.00", "1", "1.0", "1.5", "0.5", "0.999999", "1.000001", "-1", "-0.5", "2.5", "2.50", "2.500001", "2.499999", "-2.5", "-2.500001", "10", "9.99", "0.3", "0.30001", "0.29999"];
  for (let i = -300; i <= 300; i += 7) texts.push(String(i / 20), (i / 20).toFixed(2), (i / 20).toFixed(3));
  const cases: NumberBounds[] = [
    { minimum: 0 },
    { maximum: 1 },
    { exclusiveMinimum: 0 },
    { exclusiveMaximum: 0 },
    { minimum: -2.5, maximum: 2.5 },
    { exclusiveMinimum: -2.5, exclusiveMaximum: 2.5 },
    { exclusiveMinimum: 0, exclusiveMaximum: 1 },
    { minimum: 0.05, maximum: 0.15 },
    { exclusiveMinimum: 0.3 },
    { maximum: -1.25 },
    { exclusiveMinimum: 1, maximum: 1.5 },
  ];
  for (const bounds of cases) {
    test(`${JSON.stringify(bounds)}: accepts exactly the in-range decimals (up to 6 fraction digits)`, async () => {
      const g = await compileLeaf(() => numberGbnf(bounds));
      const wrong: string[] = [];
      for (const text of new Set(texts)) {
        const isWellFormed = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?$/.test(text) && !/^-0(\.0*)?$/.test(text);
        if (m.accepts(g, text) !== (isWellFormed && within(bounds, Number(text)))) wrong.push(text);
      }
      assert.deepEqual(wrong, []);
    });
  }

  test("boundary values: maximum 1 excludes 1.5 and 1.01, exclusiveMinimum 0 excludes 0, 0.0 and -0.0", async () => {
    const max1 = await compileLeaf(() => numberGbnf({ maximum: 1 }));
    assert.deepEqual(["1", "1.0", "1.5", "1.01", "0.99"].map((t) => m.accepts(max1, t)), [true, true, false, false, true]);
    const pos = await compileLeaf(() => numberGbnf({ exclusiveMinimum: 0 }));
    assert.deepEqual(["0", "0.0", "-0.0", "0.000001", "-1", "3"].map((t) => m.accepts(pos, t)), [false, false, false, true, false, true]);
  });

  test("bounds that cannot be enforced exactly are refused", () => {
    assert.throws(() => numberGbnf({ exclusiveMinimum: 0.1 + 0.2 }), /more than 15 significant digits/);
    assert.throws(() => numberGbnf({ minimum: 2, maximum: 1 }), /no number/);
    assert.throws(() => numberGbnf({ exclusiveMinimum: 0, exclusiveMaximum: 1e-20 }), /no number/);
    assert.throws(() => numberGbnf({ minimum: 1e300 }), /too large/);
    assert.throws(() => numberGbnf({ multipleOf: 0.01 }), /positive integer/);
  });
});

describe("patterns", () => {
  const alphabet = ["a", "b", "c", "z", "A", "Z", "0", "1", "5", "9", "-", "_", ".", " ", "\t", "\n", '"', "\\", "/", "é", "+", "@", "x", "(", ")", "[", "]", "?", "*", "|", "$", "^"];
  const cases: Array<[string, string[]]> = [
    ["^[a-z]+$", ["abc", "a", "", "aB"]],
    ["^\\d{3}-\\d{4}$", ["555-1234", "55-1234"]],
    ["^(ab|c)*z?$", ["ababcz", "", "z", "abz", "ac"]],
    ["[0-9]", ["5", "a5"]],
    ["^[^a-c\\s]{1,3}$", ["dd", "x", "a", " "]],
    ["^\\w+@\\w+\\.(com|org)$", ["a@b.com", "x_1@y.org", "a@b.net"]],
    ['^"[\\\\/]"$', ['"\\"', '"/"', '"x"']],
    ["^.{0,4}$", ["", "é", "\n", "abcd", "abcde"]],
    ["^[A-Z][a-z]*(?: [A-Z][a-z]*)*$", ["Ab Cd", "A", "ab"]],
    ["^\\S+\\s\\S+$", ["a b", "a\tb", "ab"]],
    ["^a|b$", ["a", "b", "c"]],
    ["^(?<year>\\d{4})-(?:0[1-9]|1[0-2])$", ["2024-01", "2024-12", "2024-13"]],
    ["^[\\-+]?\\d+(\\.\\d+)?$", ["-1.5", "+3", "1."]],
    ["^x{2,}?$", ["xx", "xxxxx", "x"]],
    ["^\\x41\\u00e9\\.$", ["Aé.", "Ae."]],
  ];
  for (const [pattern, samples] of cases) {
    test(`/${pattern}/: accepted JSON strings match, whole matches are accepted`, async () => {
      const g = await m.compile(`root ::= ${patternGbnf(pattern)}`);
      const re = new RegExp(pattern, "u");
      const whole = new RegExp(`^(?:${pattern})$`, "u");
      const rnd = random(pattern.length);
      const candidates = [...samples];
      for (let i = 0; i < 400; i++) {
        let s = "";
        for (let n = rnd(7); n > 0; n--) s += alphabet[rnd(alphabet.length)];
        candidates.push(s);
      }
      const wrong: string[] = [];
      let accepted = 0;
      for (const s of candidates) {
        const isAccepted = m.accepts(g, JSON.stringify(s));
        if (isAccepted) accepted++;
        if (isAccepted && !re.test(s)) wrong.push(`accepted ${JSON.stringify(s)}`);
        if (!isAccepted && whole.test(s)) wrong.push(`rejected ${JSON.stringify(s)}`);
      }
      assert.deepEqual(wrong, []);
      assert.ok(accepted > 0, "some sample is accepted");
    });
  }

  test("the string is JSON: quotes and backslashes are escaped, raw control characters never appear", async () => {
    const g = await m.compile(`root ::= ${patternGbnf('^["\\\\\\n]+$')}`);
    assert.ok(m.accepts(g, String.raw`"\"\\\n"`));
    assert.ok(!m.accepts(g, '"""'));
    assert.ok(!m.accepts(g, '"\n"'));
  });

  test("open repetitions stop after 16 more, so output cannot run on", async () => {
    const g = await m.compile(`root ::= ${patternGbnf("^a+$")}`);
    assert.ok(m.accepts(g, JSON.stringify("a".repeat(17))));
    assert.ok(!m.accepts(g, JSON.stringify("a".repeat(18))));
  });

  test("regex features without a grammar are refused, naming the feature", () => {
    const refused: Array<[string, RegExp]> = [
      ["(?=a)", /lookaround/],
      ["a(?<!b)", /lookaround/],
      ["(a)\\1", /backreference/],
      ["(?<x>a)\\k<x>", /named backreference/],
      ["\\bword", /word boundary/],
      ["\\p{L}", /Unicode property/],
      ["(^a)", /'\^'/],
      ["a$b", /'\$'/],
      ["[", /unclosed/],
      ["(a", /unclosed/],
      ["a{3,1}", /below its minimum/],
      ["a**", /quantifier on a quantifier/],
      ["[^\\s\\S]", /matches no string/],
      ["a{2000}", /more than 1000/],
    ];
    for (const [pattern, message] of refused) assert.throws(() => patternGbnf(pattern), message, pattern);
  });
});

describe("checkJsonSchema with the new keywords", () => {
  test("allOf merges properties, required and bounds; draft-4 exclusives become draft-6", () => {
    const out = checkJsonSchema(
      {
        allOf: [
          { $ref: "#/$defs/base" },
          { type: "object", properties: { n: { type: "integer", maximum: 9 }, tag: { type: "string" } }, required: ["tag"] },
        ],
        $defs: { base: { type: "object", properties: { n: { type: "integer", minimum: 2, exclusiveMinimum: true } }, required: ["n"] } },
      },
      "s",
    ) as unknown as Record<string, any>;
    assert.deepEqual(out.properties.n, { type: "integer", maximum: 9, exclusiveMinimum: 2 });
    assert.deepEqual(Object.keys(out.properties).sort(), ["n", "tag"]);
    assert.deepEqual(out.required.sort(), ["n", "tag"]);
  });

  test("keywords beside anyOf apply to every alternative", () => {
    const out = checkJsonSchema({ type: "integer", minimum: 0, anyOf: [{ maximum: 5 }, { minimum: 100, maximum: 200 }] }, "s") as unknown as Record<string, any>;
    assert.deepEqual(out.oneOf, [
      { type: "integer", minimum: 0, maximum: 5 },
      { type: "integer", minimum: 100, maximum: 200 },
    ]);
  });

  test("enum values the other keywords rule out are dropped", () => {
    assert.deepEqual(checkJsonSchema({ type: "integer", enum: [1, 5, 9, "x"], minimum: 3 }, "s"), { enum: [5, 9] } as never);
    assert.throws(() => checkJsonSchema({ enum: ["a"], pattern: "^b" }, "s"), /leaves no value/);
  });

  const refusals: Array<[unknown, string, RegExp]> = [
    [{ type: "string", not: { const: "x" } }, "s.not", /'not'/],
    [{ type: "string", pattern: "(?=a)" }, "s.pattern", /lookaround/],
    [{ type: "string", pattern: "^a", maxLength: 3 }, "s.maxLength", /pattern/],
    [{ type: "number", exclusiveMinimum: 0.1 + 0.2 }, "s.exclusiveMinimum", /15 significant digits/],
    [{ type: "number", multipleOf: 0.01 }, "s.multipleOf", /positive integer/],
    [{ type: "integer", minimum: 10, maximum: 5 }, "s.maximum", /no integer/],
    [{ allOf: [{ type: "string", pattern: "^a" }, { pattern: "b$" }] }, "s.allOf.1.pattern", /allOf/],
    [{ allOf: [{ type: "string" }, { type: "integer" }] }, "s.allOf.1.type", /no type in common/],
    [{ allOf: [{ properties: { a: {} }, additionalProperties: false }, { properties: { b: {} } }] }, "s.allOf.1.properties.b", /additionalProperties/],
    [{ type: "integer", minimum: true }, "s.minimum", /number/],
  ];
  for (const [schema, param, message] of refusals) {
    test(`refuses ${JSON.stringify(schema)} at ${param}`, () => {
      assert.throws(
        () => checkJsonSchema(schema, "s"),
        (e: unknown) => e instanceof UnsupportedSchemaError && e.status === 400 && e.param === param && message.test(e.message),
      );
    });
  }

  test("a whole document grammar: structure from node-llama-cpp, leaves from our generators", async () => {
    const schema = {
      type: "object",
      properties: {
        age: { type: "integer", minimum: 0, maximum: 120 },
        score: { type: ["number", "null"], exclusiveMinimum: 0, maximum: 1 },
        code: { type: "string", pattern: "^[A-Z]{3}-\\d{2}$" },
      },
      required: ["age", "score", "code"],
      additionalProperties: false,
    };
    const gbnf = await schemaGbnf(m.llama, checkJsonSchema(schema, "s"));
    assert.match(gbnf, /^root ::= /);
    for (const line of gbnf.split("\n")) assert.match(line, /^[a-zA-Z0-9-]+ ::= /);
    const g = await m.compile(gbnf);
    const doc = (age: string, score: string, code: string) => `{"age": ${age}, "score": ${score}, "code": "${code}"}\n\n\n\n`;
    const samples: Array<[string, boolean]> = [
      [doc("0", "1", "ABC-12"), true],
      [doc("120", "null", "XYZ-00"), true],
      [doc("121", "0.5", "ABC-12"), false],
      [doc("5", "0", "ABC-12"), false],
      [doc("5", "1.5", "ABC-12"), false],
      [doc("5", "0.25", "AB-12"), false],
    ];
    for (const [text, isValid] of samples) {
      assert.equal(m.accepts(g, text), isValid, text);
      assert.equal(validateJson(JSON.parse(text), schema) === null, isValid, text);
    }
  });
});
