import assert from "node:assert/strict";
import { test } from "node:test";
import { charWidth, WordWrapper } from "../../src/cli/word-wrap.ts";
import { screenLines } from "../helpers/terminal-screen.ts";

/** `text` streamed in `pieces`-character chunks through one wrapper at `columns`; the screen it leaves. */
function render(text: string, columns: number, pieces = 3): string[] {
  const w = new WordWrapper(() => columns);
  const chars = [...text];
  let out = "";
  for (let i = 0; i < chars.length; i += pieces) out += w.wrap(chars.slice(i, i + pieces).join(""));
  // A space before a break stays at the line's end, where nobody sees it.
  return screenLines(out).map((l) => l.trimEnd());
}

const width = (line: string) => [...line].reduce((n, ch) => n + charWidth(ch.codePointAt(0)!), 0);

test("streamed text wraps at the terminal width minus 5, on word boundaries, whatever the chunking", () => {
  const text = "The quick brown fox jumps over the lazy dog and keeps running through the forest until night falls.";
  for (const pieces of [1, 2, 5, 1000]) {
    const lines = render(text, 30, pieces);
    assert.ok(lines.length > 3, `wrapped: ${JSON.stringify(lines)}`);
    for (const line of lines) assert.ok(width(line) <= 25, `line within 25 columns: ${JSON.stringify(line)}`);
    // No word broken, none lost: the lines are the words again.
    assert.deepEqual(lines.join(" ").split(/\s+/).filter(Boolean), text.split(" "), `chunks of ${pieces}`);
    assert.ok(lines.every((l) => !l.startsWith(" ")), "a wrapped line does not start with the space it replaced");
  }
  assert.deepEqual(render("aaa bbb ccc ddd", 16), ["aaa bbb ccc", "ddd"]);
});

test("a newline in the text starts the count again; a word longer than a line is broken at the margin", () => {
  assert.deepEqual(render("one two\nthree four five six", 20), ["one two", "three four five", "six"]);
  const long = "x".repeat(40);
  const lines = render(`ab ${long} cd`, 20);
  assert.deepEqual(lines, ["ab", "x".repeat(15), "x".repeat(15), `${"x".repeat(10)} cd`]);
});

test("wide characters take two columns and may end a line anywhere; narrow or unknown terminals are not wrapped", () => {
  const cjk = "日本語のテキストはスペースなしで続きます";
  const lines = render(cjk, 20);
  for (const line of lines) assert.ok(width(line) <= 15, line);
  assert.equal(lines.join(""), cjk);
  assert.equal(charWidth("e".codePointAt(0)!), 1);
  assert.equal(charWidth(0x301), 0, "a combining accent");
  const text = "no wrapping on a terminal this narrow or without a width at all";
  assert.equal(new WordWrapper(() => 9).wrap(text), text);
  assert.equal(new WordWrapper(() => undefined).wrap(text), text);
});

test("the width is read at each write: a resized terminal wraps at its new width", () => {
  let columns = 80;
  const w = new WordWrapper(() => columns);
  let out = w.wrap("first words fit on a wide line ");
  columns = 20;
  out += w.wrap("and then the window got narrow so these wrap");
  const lines = screenLines(out).map((l) => l.trimEnd());
  assert.equal(lines[0], "first words fit on a wide line");
  assert.ok(lines.slice(1).every((l) => width(l) <= 15), JSON.stringify(lines));
  assert.deepEqual(lines.join(" ").split(/\s+/).filter(Boolean).join(" "), "first words fit on a wide line and then the window got narrow so these wrap");
});
