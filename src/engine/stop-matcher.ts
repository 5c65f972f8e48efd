/**
 * Finds stop sequences in streamed text. Text that might be the start of a
 * stop sequence is held back until it is known not to be one, so a client
 * never sees part of a stop sequence.
 */
export class StopMatcher {
  private held = "";
  /** After a stop: the text that followed the stop sequence in the pushed text (dropped from the output). */
  after = "";

  constructor(private readonly stops: readonly string[]) {}

  /**
   * Feeds new text. Returns the text that is safe to emit and, when a stop
   * sequence completed, which one (everything after it is dropped).
   */
  push(text: string): { emit: string; stopped: string | null } {
    const buffer = this.held + text;
    let firstAt = -1;
    let first: string | null = null;
    for (const stop of this.stops) {
      const at = buffer.indexOf(stop);
      if (at >= 0 && (firstAt < 0 || at < firstAt)) [firstAt, first] = [at, stop];
    }
    if (first !== null) {
      this.held = "";
      this.after = buffer.slice(firstAt + first.length);
      return { emit: buffer.slice(0, firstAt), stopped: first };
    }
    const keep = this.partialSuffixLength(buffer);
    this.held = buffer.slice(buffer.length - keep);
    return { emit: buffer.slice(0, buffer.length - keep), stopped: null };
  }

  /** Whatever is still held back; call once generation has ended. */
  flush(): string {
    const rest = this.held;
    this.held = "";
    return rest;
  }

  /** Length of the longest suffix of `text` that is a proper prefix of a stop sequence. */
  private partialSuffixLength(text: string): number {
    let longest = 0;
    for (const stop of this.stops) {
      for (let n = Math.min(stop.length - 1, text.length); n > longest; n--) {
        if (text.endsWith(stop.slice(0, n))) {
          longest = n;
          break;
        }
      }
    }
    return longest;
  }
}
