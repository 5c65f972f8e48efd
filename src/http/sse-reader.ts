/** One event as read: its `event` name (null when it has none) and its `data` lines joined with "\n". */
export interface SseMessage {
  event: string | null;
  data: string;
}

/**
 * The one SSE reader (the daemon reads engines' streams with it, `mr` the
 * daemon's): text in (any chunk boundaries), complete events out. Framing as the SSE spec has it: lines
 * end with LF, CRLF or CR; a blank line ends an event; `data:` lines are
 * joined with "\n"; one space after the colon is dropped; `:` lines are
 * comments; an event without data is none.
 */
export class SseReader {
  private buffer = "";
  private event: string | null = null;
  private data: string[] = [];

  /** The events that `text` completes. */
  push(text: string): SseMessage[] {
    this.buffer += text;
    const out: SseMessage[] = [];
    let start = 0;
    for (let i = 0; i < this.buffer.length; i++) {
      const c = this.buffer.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      // A CR at the end of the text may be the first half of a CRLF: wait for the next chunk.
      if (c === 13 && i === this.buffer.length - 1) break;
      this.line(this.buffer.slice(start, i), out);
      if (c === 13 && this.buffer.charCodeAt(i + 1) === 10) i++;
      start = i + 1;
    }
    this.buffer = this.buffer.slice(start);
    return out;
  }

  /** The events of a whole text, the last one counted even without its blank line. */
  static readAll(text: string): SseMessage[] {
    const reader = new SseReader();
    return reader.push(`${text}\n\n`);
  }

  private line(line: string, out: SseMessage[]): void {
    if (line === "") {
      if (this.data.length > 0) out.push({ event: this.event, data: this.data.join("\n") });
      this.event = null;
      this.data = [];
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.event = value;
  }
}
