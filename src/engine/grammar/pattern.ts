/**
 * JSON-schema `pattern` (ECMA-262 regex) → GBNF for a JSON string whose
 * decoded value matches it. Supported: literals, escapes (\d \w \s and their
 * negations, \t \n \r \f \v \0 \xHH \uHHHH, escaped punctuation), character
 * classes with ranges and negation, `.`, groups ((…), (?:…), (?<name>…)),
 * alternation, quantifiers ? * + {n} {n,} {n,m} (lazy forms too: they match
 * the same strings). `^` may start and `$` may end a top-level alternative.
 * `*`, `+` and `{n,}` repeat at most OPEN_REPEAT times beyond their minimum.
 *
 * A JSON-schema pattern is unanchored: it needs a match somewhere in the
 * string. The grammar generates strings that match the pattern as a whole,
 * which is one way of containing a match, so output always validates; it
 * never adds text around the match.
 *
 * Characters are written the way JSON needs: `"` and `\` escaped, tab/newline/
 * carriage return as \t \n \r; other control characters and characters
 * outside the Basic Multilingual Plane are never generated (a class made only
 * of them is refused). Anything else (lookarounds, backreferences, word
 * boundaries, \p{…}) throws PatternGrammarError.
 */

export class PatternGrammarError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PatternGrammarError";
  }
}

/** The most repetitions a `{n,m}` may ask for; more bloats the grammar. */
const MAX_REPEAT = 1000;
/**
 * How many times `*`, `+` and `{n,}` may repeat beyond their minimum, so that
 * output cannot run on until the token limit (a longer match is never generated).
 */
export const OPEN_REPEAT = 16;
const MAX_CODE = 0xffff;

type Range = [number, number];
type Node =
  | { kind: "set"; ranges: Range[] }
  | { kind: "alt"; branches: Node[][] }
  | { kind: "repeat"; node: Node; min: number; max: number | null };

const DIGIT: Range[] = [[0x30, 0x39]];
const WORD: Range[] = [
  [0x30, 0x39],
  [0x41, 0x5a],
  [0x5f, 0x5f],
  [0x61, 0x7a],
];
const SPACE: Range[] = [
  [0x09, 0x0d],
  [0x20, 0x20],
  [0xa0, 0xa0],
  [0x1680, 0x1680],
  [0x2000, 0x200a],
  [0x2028, 0x2029],
  [0x202f, 0x202f],
  [0x205f, 0x205f],
  [0x3000, 0x3000],
  [0xfeff, 0xfeff],
];
const LINE_TERMINATORS: Range[] = [
  [0x0a, 0x0a],
  [0x0d, 0x0d],
  [0x2028, 0x2029],
];

function normalize(ranges: Range[]): Range[] {
  const sorted = ranges.map(([a, b]) => [a, Math.min(b, MAX_CODE)] as Range).filter(([a, b]) => a <= b).sort((x, y) => x[0] - y[0]);
  const out: Range[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r[0] <= last[1] + 1) last[1] = Math.max(last[1], r[1]);
    else out.push([r[0], r[1]]);
  }
  return out;
}

function complement(ranges: Range[]): Range[] {
  const out: Range[] = [];
  let next = 0;
  for (const [a, b] of normalize(ranges)) {
    if (a > next) out.push([next, a - 1]);
    next = b + 1;
  }
  if (next <= MAX_CODE) out.push([next, MAX_CODE]);
  return out;
}

class Parser {
  private i = 0;
  constructor(private readonly src: string) {}

  parse(): Node {
    const branches: Node[][] = [];
    do {
      if (this.src[this.i] === "^") this.i++;
      const seq = this.sequence(true);
      if (this.src[this.i] === "$") this.i++;
      if (this.i < this.src.length && this.src[this.i] !== "|") throw new PatternGrammarError(`has an unmatched '${this.src[this.i]}' at position ${this.i}`);
      branches.push(seq);
    } while (this.src[this.i] === "|" && ++this.i);
    return { kind: "alt", branches };
  }

  private fail(what: string): never {
    throw new PatternGrammarError(`uses ${what}, which constrained output does not support`);
  }

  private sequence(isTop: boolean): Node[] {
    const items: Node[] = [];
    while (this.i < this.src.length) {
      const c = this.src[this.i]!;
      if (c === "|" || c === ")") break;
      if (c === "$") {
        if (isTop && (this.i + 1 === this.src.length || this.src[this.i + 1] === "|")) break;
        this.fail("'$' other than at the end of the pattern or of a top-level alternative");
      }
      if (c === "^") this.fail("'^' other than at the start of the pattern or of a top-level alternative");
      items.push(this.quantified(this.atom()));
    }
    return items;
  }

  private quantified(atom: Node): Node {
    const c = this.src[this.i];
    let min: number;
    let max: number | null;
    if (c === "?") [min, max] = [0, 1];
    else if (c === "*") [min, max] = [0, null];
    else if (c === "+") [min, max] = [1, null];
    else if (c === "{" && /^\{\d+(,\d*)?\}/.test(this.src.slice(this.i))) {
      const m = /^\{(\d+)(,(\d*))?\}/.exec(this.src.slice(this.i))!;
      min = Number(m[1]);
      max = m[2] === undefined ? min : m[3] === "" ? null : Number(m[3]);
      if (max !== null && max < min) throw new PatternGrammarError(`has a quantifier ${m[0]} whose maximum is below its minimum`);
      if (min > MAX_REPEAT || (max ?? 0) > MAX_REPEAT) throw new PatternGrammarError(`repeats more than ${MAX_REPEAT} times`);
      this.i += m[0].length - 1;
    } else return atom;
    this.i++;
    if (this.src[this.i] === "?") this.i++; // lazy: matches the same strings
    if (/^([?*+]|\{\d+(,\d*)?\})/.test(this.src.slice(this.i))) this.fail("a quantifier on a quantifier");
    return { kind: "repeat", node: atom, min, max };
  }

  private atom(): Node {
    const c = this.src[this.i]!;
    if (c === "(") {
      this.i++;
      if (this.src[this.i] === "?") {
        const rest = this.src.slice(this.i);
        if (rest.startsWith("?:")) this.i += 2;
        else if (/^\?<[A-Za-z_$][\w$]*>/.test(rest)) this.i += /^\?<[A-Za-z_$][\w$]*>/.exec(rest)![0].length;
        else if (/^\?(=|!|<=|<!)/.test(rest)) this.fail("a lookaround assertion");
        else this.fail(`a group modifier '(${rest.slice(0, 3)}'`);
      }
      const branches: Node[][] = [];
      do branches.push(this.sequence(false));
      while (this.src[this.i] === "|" && ++this.i);
      if (this.src[this.i] !== ")") throw new PatternGrammarError("has an unclosed group");
      this.i++;
      return { kind: "alt", branches };
    }
    if (c === "[") return this.charClass();
    if (c === ".") {
      this.i++;
      return { kind: "set", ranges: complement(LINE_TERMINATORS) };
    }
    if (c === "\\") return { kind: "set", ranges: this.escape(false) };
    if (c === "*" || c === "+" || c === "?" || c === "{") {
      if (c === "{" && !/^\{\d+(,\d*)?\}/.test(this.src.slice(this.i))) {
        this.i++;
        return { kind: "set", ranges: [[0x7b, 0x7b]] };
      }
      this.fail(`a quantifier '${c}' with nothing to repeat`);
    }
    const code = this.src.codePointAt(this.i)!;
    this.i += code > 0xffff ? 2 : 1;
    if (code > MAX_CODE) this.fail("a character outside the Basic Multilingual Plane");
    return { kind: "set", ranges: [[code, code]] };
  }

  /** An escape after `\` (at this.i); returns its character ranges. */
  private escape(inClass: boolean): Range[] {
    this.i++;
    const c = this.src[this.i];
    if (c === undefined) throw new PatternGrammarError("ends with a lone backslash");
    this.i++;
    const one = (code: number): Range[] => [[code, code]];
    switch (c) {
      case "d":
        return DIGIT;
      case "D":
        return complement(DIGIT);
      case "w":
        return WORD;
      case "W":
        return complement(WORD);
      case "s":
        return SPACE;
      case "S":
        return complement(SPACE);
      case "t":
        return one(9);
      case "n":
        return one(10);
      case "v":
        return one(11);
      case "f":
        return one(12);
      case "r":
        return one(13);
      case "0":
        if (/\d/.test(this.src[this.i] ?? "")) this.fail("an octal escape");
        return one(0);
      case "b":
        if (inClass) return one(8);
        return this.fail("a word boundary '\\b'");
      case "x": {
        const m = /^[0-9a-fA-F]{2}/.exec(this.src.slice(this.i));
        if (!m) this.fail("a malformed '\\x' escape");
        this.i += 2;
        return one(parseInt(m[0], 16));
      }
      case "u": {
        const m = /^[0-9a-fA-F]{4}/.exec(this.src.slice(this.i));
        if (!m) this.fail("a '\\u' escape other than \\uHHHH");
        this.i += 4;
        return one(parseInt(m[0], 16));
      }
      default:
        if (/[1-9]/.test(c)) this.fail("a backreference");
        if (c === "k") this.fail("a named backreference");
        if (c === "p" || c === "P") this.fail("a Unicode property escape");
        if (c === "B") this.fail("a word boundary '\\B'");
        if (c === "c") this.fail("a control escape '\\c'");
        if (/[A-Za-z]/.test(c)) this.fail(`an unknown escape '\\${c}'`);
        return one(c.codePointAt(0)!);
    }
  }

  private charClass(): Node {
    this.i++;
    const isNegated = this.src[this.i] === "^";
    if (isNegated) this.i++;
    const ranges: Range[] = [];
    let first = true;
    for (;;) {
      const c = this.src[this.i];
      if (c === undefined) throw new PatternGrammarError("has an unclosed character class");
      if (c === "]" && !first) break;
      if (c === "]" && first) {
        // `[]` matches nothing, `[^]` anything.
        break;
      }
      first = false;
      const lo = this.classAtom();
      if (this.src[this.i] === "-" && this.src[this.i + 1] !== "]" && this.src[this.i + 1] !== undefined) {
        this.i++;
        const hi = this.classAtom();
        if (lo.length !== 1 || hi.length !== 1 || lo[0]![0] !== lo[0]![1] || hi[0]![0] !== hi[0]![1]) this.fail("a class range bounded by a class escape");
        if (hi[0]![0] < lo[0]![0]) throw new PatternGrammarError("has a character class range out of order");
        ranges.push([lo[0]![0], hi[0]![0]]);
      } else ranges.push(...lo);
    }
    this.i++;
    return { kind: "set", ranges: isNegated ? complement(ranges) : normalize(ranges) };
  }

  private classAtom(): Range[] {
    const c = this.src[this.i]!;
    if (c === "\\") {
      if (this.src[this.i + 1] === "-") {
        this.i += 2;
        return [[0x2d, 0x2d]];
      }
      return this.escape(true);
    }
    if (c === "[" && /^\[[:=.]/.test(this.src.slice(this.i))) this.fail("a POSIX class");
    const code = this.src.codePointAt(this.i)!;
    this.i += code > 0xffff ? 2 : 1;
    if (code > MAX_CODE) this.fail("a character outside the Basic Multilingual Plane");
    return [[code, code]];
  }
}

/** How one character is written inside a JSON string, or null when we never generate it. */
function jsonText(code: number): string | null {
  if (code === 0x22) return '\\"';
  if (code === 0x5c) return "\\\\";
  if (code === 0x09) return "\\t";
  if (code === 0x0a) return "\\n";
  if (code === 0x0d) return "\\r";
  if (code < 0x20 || code === 0x7f || (code >= 0xd800 && code <= 0xdfff)) return null;
  return String.fromCodePoint(code);
}

/** A GBNF string literal for text. */
export function gbnfLiteral(text: string): string {
  let out = '"';
  for (const ch of text) {
    const code = ch.codePointAt(0)!;
    if (ch === '"' || ch === "\\") out += `\\${ch}`;
    else if (code < 0x20 || code === 0x7f) out += `\\x${code.toString(16).padStart(2, "0")}`;
    else out += ch;
  }
  return `${out}"`;
}

const classChar = (code: number): string =>
  /[A-Za-z0-9]/.test(String.fromCharCode(code)) ? String.fromCharCode(code) : code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16).padStart(4, "0")}`;

/** GBNF alternatives for one character from the set, as JSON string text. */
function setGbnf(ranges: Range[]): string | null {
  const plain: Range[] = [];
  const escaped: string[] = [];
  for (const [a, b] of ranges) {
    let start = a;
    for (let code = a; code <= b + 1; code++) {
      const isPlain = code <= b && jsonText(code) === String.fromCodePoint(code);
      if (!isPlain) {
        if (code > start) plain.push([start, code - 1]);
        if (code <= b) {
          const t = jsonText(code);
          if (t !== null) escaped.push(gbnfLiteral(t));
          // Skip the rest of a run of characters we never generate (controls, surrogates).
          if (code >= 0xd800 && code <= 0xdfff) code = Math.min(b, 0xdfff);
        }
        start = code + 1;
      }
    }
  }
  const alts: string[] = [];
  if (plain.length > 0) {
    if (plain.length === 1 && plain[0]![0] === plain[0]![1]) alts.push(gbnfLiteral(String.fromCodePoint(plain[0]![0])));
    else alts.push(`[${plain.map(([a, b]) => (a === b ? classChar(a) : `${classChar(a)}-${classChar(b)}`)).join("")}]`);
  }
  alts.push(...escaped);
  if (alts.length === 0) return null;
  return alts.length === 1 ? alts[0]! : `(${alts.join(" | ")})`;
}

function render(node: Node): string | null {
  switch (node.kind) {
    case "set":
      return setGbnf(node.ranges);
    case "alt": {
      const branches: string[] = [];
      for (const seq of node.branches) {
        const parts: string[] = [];
        let isDead = false;
        for (const item of seq) {
          const r = render(item);
          if (r === null) {
            isDead = true;
            break;
          }
          if (r !== "") parts.push(r);
        }
        if (!isDead) branches.push(parts.length === 0 ? '""' : parts.join(" "));
      }
      if (branches.length === 0) return null;
      if (branches.length === 1) return branches[0]!;
      return `(${branches.join(" | ")})`;
    }
    case "repeat": {
      const inner = render(node.node);
      if (inner === null) return node.min === 0 ? "" : null;
      if (node.max === 0 || inner === "" || inner === '""') return "";
      const wrapped = /^("([^"\\]|\\.)*"|\[([^\]\\]|\\.)*\])$/.test(inner) ? inner : `(${inner})`;
      const min = node.min;
      const max = node.max ?? min + OPEN_REPEAT;
      if (min === 0 && max === 1) return `${wrapped}?`;
      if (min === max) return min === 1 ? wrapped : `${wrapped}{${min}}`;
      return `${wrapped}{${min},${max}}`;
    }
  }
}

/** GBNF for a JSON string (quotes included) whose value matches `pattern` as a whole. */
export function patternGbnf(pattern: string): string {
  let body: string | null;
  try {
    body = render(new Parser(pattern).parse());
  } catch (error) {
    if (error instanceof PatternGrammarError) throw error;
    throw new PatternGrammarError(`could not be parsed (${(error as Error).message})`);
  }
  if (body === null) throw new PatternGrammarError("matches no string that constrained output can generate");
  return body === '""' || body === "" ? '"\\"\\""' : `"\\"" ${body} "\\""`;
}
