/**
 * Word wrap for answers streamed to a terminal, as `ollama run` does it:
 * text is written as it arrives, and when a word runs past the right margin
 * the cursor moves back over it, clears it (`ESC[nD`, `ESC[K`) and the word
 * goes on at the start of the next line. Lines end 5 columns before the
 * terminal's edge (Ollama's margin), so the terminal never wraps by itself.
 * A word wider than a whole line is broken where it reaches the margin; a
 * space that would start a line is dropped (the line break stands for it).
 * Terminals narrower than 10 columns get the text unwrapped, as in Ollama.
 *
 * One wrapper per answer: it assumes the answer starts at column 0 and that
 * nothing else writes to the terminal until it ends.
 */
export class WordWrapper {
  private column = 0;
  /** The word being written: the characters after the last break on the current line. */
  private word = "";
  private wordWidth = 0;

  /** `columns` is read at each write, so a resized terminal wraps at its new width. */
  constructor(private readonly columns: () => number | undefined) {}

  /** What to write to the terminal for `text`, the next piece of the answer. */
  wrap(text: string): string {
    const columns = this.columns() ?? 0;
    const limit = columns >= 10 ? columns - 5 : Infinity;
    let out = "";
    for (const ch of text) {
      if (ch === "\n" || ch === "\r") {
        out += ch;
        this.column = 0;
        this.endWord();
        continue;
      }
      if (ch === " " || ch === "\t") {
        const width = ch === "\t" ? 8 - (this.column % 8) : 1;
        this.endWord();
        if (this.column + width > limit) {
          out += "\n";
          this.column = 0;
        } else {
          out += ch;
          this.column += width;
        }
        continue;
      }
      const width = charWidth(ch.codePointAt(0)!);
      if (this.column + width > limit) {
        if (this.word !== "" && this.wordWidth + width <= limit) {
          // Take the word back off this line and start the next one with it.
          out += `\x1b[${this.wordWidth}D\x1b[K\n${this.word}`;
          this.column = this.wordWidth;
        } else {
          // Nothing to move, or a word longer than a line: break here.
          out += "\n";
          this.column = 0;
          this.endWord();
        }
      }
      out += ch;
      this.column += width;
      if (width >= 2) {
        // Wide characters (CJK) stand alone: a line may break after any of them, as Ollama does.
        this.endWord();
      } else {
        this.word += ch;
        this.wordWidth += width;
      }
    }
    return out;
  }

  private endWord(): void {
    this.word = "";
    this.wordWidth = 0;
  }
}

/** Columns a code point takes on a terminal: 0 for combining marks and controls, 2 for wide (CJK, emoji), else 1. */
export function charWidth(cp: number): number {
  if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0)) return 0;
  const ch = String.fromCodePoint(cp);
  if (/[\p{Mn}\p{Me}\u200b-\u200f\ufe00-\ufe0f]/u.test(ch)) return 0;
  if (
    (cp >= 0x1100 && cp <= 0x115f) ||
    (cp >= 0x2e80 && cp <= 0xa4cf && cp !== 0x303f) ||
    (cp >= 0xac00 && cp <= 0xd7a3) ||
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0xfe30 && cp <= 0xfe4f) ||
    (cp >= 0xff00 && cp <= 0xff60) ||
    (cp >= 0xffe0 && cp <= 0xffe6) ||
    (cp >= 0x1f300 && cp <= 0x1faff) ||
    (cp >= 0x20000 && cp <= 0x3fffd)
  ) {
    return 2;
  }
  return 1;
}

/** A wrapper for one answer written to `out`: only on a terminal, and unless wrapping is off (`--nowordwrap`). */
export function answerWrapper(out: { isTTY?: boolean; columns?: number }, isWordWrapped: boolean): WordWrapper | null {
  return isWordWrapped && out.isTTY === true ? new WordWrapper(() => out.columns) : null;
}
