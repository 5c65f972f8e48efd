/**
 * Reads an HTTP/1.1 response as it arrives in pieces: its head, then where
 * its body's bytes are and where they end, by Content-Length, chunked
 * framing, or the connection's close. It parses no more than that, so the
 * daemon's relay (src/api/engine/relay.ts) can send an engine's answer on
 * byte for byte, framing included, and still know when it is complete and
 * what the body said.
 */
export interface ResponseHead {
  status: number;
  contentType: string;
  /** The body's length when the head gives one; null for chunked or read-until-close bodies. */
  contentLength: number | null;
  chunked: boolean;
  /** Whether the connection can carry another request after this answer. */
  keepAlive: boolean;
  /** The server's `Keep-Alive: timeout=N`, in ms, when it sends one. */
  keepAliveTimeoutMs: number | null;
}

/** What one piece of the connection's bytes held. */
export interface FramedPiece {
  /** The head, in the piece that completes it. */
  head?: ResponseHead;
  /** The body's bytes in this piece as sent (chunk framing included). */
  raw: Buffer[];
  /** The body's content in this piece (chunk framing removed). */
  content: Buffer[];
  /** The answer is complete. */
  done: boolean;
}

export class MalformedResponseError extends Error {
  override readonly name = "MalformedResponseError";
}

const MAX_HEAD_BYTES = 64 * 1024;

type State = "head" | "length" | "size" | "data" | "data-crlf" | "trailers" | "until-close" | "done";

export class ResponseFramer {
  private state: State = "head";
  private pending: Buffer | null = null;
  /** Body bytes (or chunk data bytes) still to come in the current part. */
  private remaining = 0;
  private head: ResponseHead | null = null;

  get complete(): boolean {
    return this.state === "done";
  }

  /** Whether any byte of the head has arrived (an answer begun cannot be retried elsewhere). */
  get started(): boolean {
    return this.head !== null || this.pending !== null;
  }

  /** The connection ended: completes a read-until-close body; anything else cut short is an error. */
  end(): FramedPiece {
    if (this.state === "until-close") {
      this.state = "done";
      return { raw: [], content: [], done: true };
    }
    if (this.state !== "done") throw new MalformedResponseError("the connection closed before the answer was complete");
    return { raw: [], content: [], done: true };
  }

  push(data: Buffer): FramedPiece {
    const piece: FramedPiece = { raw: [], content: [], done: false };
    let buf = this.pending === null ? data : Buffer.concat([this.pending, data]);
    this.pending = null;
    let at = 0;
    if (this.state === "head") {
      const end = buf.indexOf(HEAD_END);
      if (end < 0) {
        if (buf.length > MAX_HEAD_BYTES) throw new MalformedResponseError("the answer's head is over 64 KiB");
        this.pending = buf;
        return piece;
      }
      const head = parseHead(buf.toString("latin1", 0, end));
      this.head = head;
      piece.head = head;
      at = end + 4;
      if (head.status < 200) throw new MalformedResponseError(`an interim answer (${head.status}) was not expected`);
      if (head.status === 204 || head.status === 304) this.state = "done";
      else if (head.chunked) this.state = "size";
      else if (head.contentLength !== null) {
        this.remaining = head.contentLength;
        this.state = head.contentLength === 0 ? "done" : "length";
      } else this.state = "until-close";
    }
    const bodyStart = at;
    while (at < buf.length && this.state !== "done") {
      switch (this.state) {
        case "length":
        case "data": {
          const n = Math.min(this.remaining, buf.length - at);
          piece.content.push(buf.subarray(at, at + n));
          at += n;
          this.remaining -= n;
          if (this.remaining === 0) this.state = this.state === "length" ? "done" : "data-crlf";
          break;
        }
        case "until-close":
          piece.content.push(buf.subarray(at));
          at = buf.length;
          break;
        case "data-crlf":
          // The CRLF after a chunk's data: read as two bytes (a token stream has one per chunk).
          if (buf[at] !== CR || (at + 1 < buf.length && buf[at + 1] !== LF)) throw new MalformedResponseError("a chunk is longer than its size says");
          if (at + 1 === buf.length) return this.keepLine(piece, buf, bodyStart, at);
          at += 2;
          this.state = "size";
          break;
        case "size":
        case "trailers": {
          const eol = lineEnd(buf, at);
          if (eol < 0) {
            if (buf.length - at > 4096) throw new MalformedResponseError("a chunk-size or trailer line is over 4 KiB");
            return this.keepLine(piece, buf, bodyStart, at);
          }
          if (this.state === "size") {
            const size = chunkSize(buf, at, eol);
            if (size < 0) throw new MalformedResponseError(`a bad chunk-size line: ${JSON.stringify(buf.toString("latin1", at, eol).slice(0, 40))}`);
            this.remaining = size;
            this.state = size === 0 ? "trailers" : "data";
          } else if (eol === at) this.state = "done";
          at = eol + 2;
          break;
        }
      }
    }
    if (at < buf.length) throw new MalformedResponseError("bytes followed the end of the answer");
    if (at > bodyStart) piece.raw.push(buf.subarray(bodyStart, at));
    piece.done = this.state === "done";
    return piece;
  }

  /** Keeps a partial line (from `at`) for the next piece; the body's bytes before it are sent now. */
  private keepLine(piece: FramedPiece, buf: Buffer, bodyStart: number, at: number): FramedPiece {
    if (at > bodyStart) piece.raw.push(buf.subarray(bodyStart, at));
    this.pending = buf.subarray(at);
    return piece;
  }
}

const CR = 13;
const LF = 10;
/** The blank line that ends an HTTP head, as bytes: a string needle is converted on every `Buffer.indexOf`. */
export const HEAD_END = Buffer.from("\r\n\r\n", "latin1");

/**
 * Where the line starting at `at` ends (its CR of CRLF), or -1 when it is not
 * complete in `buf`. Scanned byte by byte: these lines are a few bytes long,
 * and a string needle is converted to bytes on every `indexOf`.
 */
function lineEnd(buf: Buffer, at: number): number {
  for (let i = at; i + 1 < buf.length; i++) if (buf[i] === CR && buf[i + 1] === LF) return i;
  return -1;
}

/** The size of a chunk-size line (`buf[at, eol)`: 1–8 hex digits, blanks, an optional `;extension`), or -1 when it is none. */
function chunkSize(buf: Buffer, at: number, eol: number): number {
  let size = 0;
  let i = at;
  for (; i < eol && i - at < 9; i++) {
    const c = buf[i]!;
    const digit = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : -1;
    if (digit < 0) break;
    size = size * 16 + digit;
  }
  const digits = i - at;
  if (digits === 0 || digits > 8) return -1;
  while (i < eol && (buf[i] === 32 || buf[i] === 9)) i++;
  if (i === eol) return size;
  if (buf[i] !== 59) return -1;
  // An extension runs to the line's end; a bare CR or LF in it is no line at all.
  for (i++; i < eol; i++) if (buf[i] === CR || buf[i] === LF) return -1;
  return size;
}

function parseHead(text: string): ResponseHead {
  const lines = text.split("\r\n");
  const status = /^HTTP\/1\.([01]) (\d{3})(?: |$)/.exec(lines[0]!);
  if (status === null) throw new MalformedResponseError(`not an HTTP/1.x status line: ${JSON.stringify(lines[0]!.slice(0, 60))}`);
  let contentType = "application/json";
  let contentLength: number | null = null;
  let chunked = false;
  let connection = "";
  let keepAliveTimeoutMs: number | null = null;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(":");
    if (colon <= 0) throw new MalformedResponseError(`a bad header line: ${JSON.stringify(line.slice(0, 60))}`);
    const name = line.slice(0, colon).toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === "content-type") contentType = value;
    else if (name === "content-length") {
      if (!/^\d{1,15}$/.test(value) || (contentLength !== null && contentLength !== Number(value))) throw new MalformedResponseError(`a bad Content-Length: ${value}`);
      contentLength = Number(value);
    } else if (name === "transfer-encoding") chunked = /(^|,)\s*chunked\s*$/i.test(value);
    else if (name === "connection") connection = value.toLowerCase();
    else if (name === "keep-alive") {
      const timeout = /timeout=(\d+)/i.exec(value);
      if (timeout) keepAliveTimeoutMs = Number(timeout[1]) * 1000;
    }
  }
  // With chunked framing, a Content-Length is to be ignored (RFC 9112 6.3).
  if (chunked) contentLength = null;
  const http10 = status[1] === "0";
  const keepAlive = http10 ? connection.includes("keep-alive") : !connection.includes("close");
  // A body that runs to the connection's close leaves nothing to reuse.
  return { status: Number(status[2]), contentType, contentLength, chunked, keepAlive: keepAlive && (chunked || contentLength !== null), keepAliveTimeoutMs };
}
