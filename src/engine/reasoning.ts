/**
 * Splits generated text into a thought and an answer (llama-server's
 * `reasoning_format: deepseek`): text inside a leading `<think>`…`</think>`
 * block is reasoning, the rest is content. Streaming-safe: text that may be
 * the start of a tag is held back until it is known.
 */
export class ReasoningSplitter {
  private state: "start" | "inside" | "after";
  private held = "";
  private trimNext = false;

  constructor(
    private readonly open: string,
    private readonly close: string,
    startsInside: boolean,
  ) {
    this.state = startsInside ? "inside" : "start";
  }

  push(text: string): { reasoning: string; content: string } {
    let buffer = this.held + text;
    this.held = "";
    let reasoning = "";
    let content = "";
    for (;;) {
      if (this.state === "start") {
        const trimmed = buffer.trimStart();
        if (trimmed.startsWith(this.open)) {
          buffer = trimmed.slice(this.open.length);
          this.state = "inside";
          continue;
        }
        if (this.open.startsWith(trimmed)) {
          this.held = buffer; // could still become the opening tag
          break;
        }
        this.state = "after";
        continue;
      }
      if (this.state === "inside") {
        const at = buffer.indexOf(this.close);
        if (at >= 0) {
          reasoning += buffer.slice(0, at);
          buffer = buffer.slice(at + this.close.length);
          this.state = "after";
          this.trimNext = true;
          continue;
        }
        const keep = partialSuffix(buffer, this.close);
        reasoning += buffer.slice(0, buffer.length - keep);
        this.held = buffer.slice(buffer.length - keep);
        break;
      }
      if (this.trimNext) {
        buffer = buffer.trimStart();
        if (buffer === "") break;
        this.trimNext = false;
      }
      content += buffer;
      break;
    }
    return { reasoning, content };
  }

  /** Whatever is held back, once generation has ended. */
  flush(): { reasoning: string; content: string } {
    const rest = this.held;
    this.held = "";
    if (this.state === "inside") return { reasoning: rest, content: "" };
    return { reasoning: "", content: this.trimNext ? rest.trimStart() : rest };
  }
}

function partialSuffix(text: string, tag: string): number {
  for (let n = Math.min(tag.length - 1, text.length); n > 0; n--) {
    if (text.endsWith(tag.slice(0, n))) return n;
  }
  return 0;
}
