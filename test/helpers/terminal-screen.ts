/**
 * What a terminal shows for `output`: the few controls the CLI writes to a
 * terminal (CR, LF, `ESC[nD` cursor left, `ESC[K` clear to end of line, SGR
 * colours ignored) applied to lines of text. Enough to check word wrap as
 * a person would see it; a line longer than `columns` is kept as one line
 * (the terminal would wrap it; tests check that it never has to).
 */
export function screenLines(output: string): string[] {
  const lines: string[][] = [[]];
  let row = 0;
  let col = 0;
  const re = /\x1b\[(\d*)([A-Za-z])|\r|\n|[^\x1b\r\n]/gu;
  for (const m of output.matchAll(re)) {
    const token = m[0];
    if (token === "\r") col = 0;
    else if (token === "\n") {
      row++;
      col = 0;
      lines[row] ??= [];
    } else if (m[2] !== undefined) {
      const n = m[1] ? Number(m[1]) : 1;
      if (m[2] === "D") col = Math.max(0, col - n);
      else if (m[2] === "K") lines[row]!.length = col;
      // m (colours) and anything else: no effect on the text.
    } else {
      const line = lines[row]!;
      while (line.length < col) line.push(" ");
      line[col++] = token;
    }
  }
  return lines.map((l) => l.join(""));
}
