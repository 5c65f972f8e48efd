/**
 * Stop sequences matched by the daemon on streamed text, for the dialects
 * whose reply names the sequence that ended it (Anthropic's
 * `stop_sequence`): llama-server's chat completions stop on `stop` strings
 * but do not say which one matched, so the daemon matches them itself, on
 * either engine, and stops reading (which stops the generation).
 *
 * Text that could be the start of a stop sequence is held back until the
 * next piece shows it is not (as llama-server does with its stop strings),
 * so nothing after a match is ever sent.
 */
export class StopSequenceMatcher {
  private held = "";
  /** The stop sequence that matched, once one has. */
  matched: string | null = null;

  constructor(private readonly sequences: readonly string[]) {}

  /** The text safe to send now. After a match, the text before it; then nothing. */
  push(text: string): string {
    if (this.matched !== null) return "";
    const buffer = this.held + text;
    let at = -1;
    for (const s of this.sequences) {
      const i = buffer.indexOf(s);
      if (i >= 0 && (at < 0 || i < at || (i === at && s.length > this.matched!.length))) {
        at = i;
        this.matched = s;
      }
    }
    if (this.matched !== null) {
      this.held = "";
      return buffer.slice(0, at);
    }
    let keep = 0;
    for (const s of this.sequences) {
      for (let n = Math.min(s.length - 1, buffer.length); n > keep; n--) {
        if (buffer.endsWith(s.slice(0, n))) {
          keep = n;
          break;
        }
      }
    }
    this.held = buffer.slice(buffer.length - keep);
    return buffer.slice(0, buffer.length - keep);
  }

  /** What is still held back, when the answer ended without a match. */
  flush(): string {
    const text = this.held;
    this.held = "";
    return text;
  }
}
