/**
 * The head of an HTTP/1.1 request (request line and headers), read by the
 * daemon's fast lane (src/api/fast-lane.ts) from raw bytes. It is strict on
 * purpose: anything out of the ordinary (another HTTP version, folded or
 * repeated framing headers, a malformed line) reads as `unusual`, and the
 * connection goes to Node's HTTP server, which knows every corner of the
 * protocol and answers errors properly.
 */
import { HEAD_END } from "./response-framer.ts";

export interface RequestHead {
  method: string;
  /** The request target as sent (path and query). */
  target: string;
  /** Header values by lowercase name; a repeated header's values joined with ", " (RFC 9110). */
  headers: Map<string, string>;
  /** Bytes of the head, the blank line included: the body starts there. */
  length: number;
}

/** Node's limit for a request head (its `--max-http-header-size` default). */
export const MAX_HEAD_BYTES = 16 * 1024;

/** Headers that may appear once only: a repeat makes the framing ambiguous. */
const SINGLE = new Set(["content-length", "host", "authorization", "content-type"]);
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * The head at the start of `data`: null when it is not complete yet,
 * `unusual` when it is not a plain HTTP/1.1 request head (or longer than
 * MAX_HEAD_BYTES).
 */
export function readRequestHead(data: Buffer): RequestHead | null | "unusual" {
  const end = data.indexOf(HEAD_END);
  if (end < 0) return data.length > MAX_HEAD_BYTES ? "unusual" : null;
  if (end + 4 > MAX_HEAD_BYTES) return "unusual";
  const lines = data.toString("latin1", 0, end).split("\r\n");
  const requestLine = /^([A-Z]+) (\/[^ ]*) HTTP\/1\.1$/.exec(lines[0]!);
  if (requestLine === null) return "unusual";
  const headers = new Map<string, string>();
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(":");
    if (colon <= 0) return "unusual";
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) return "unusual"; // also a folded line (leading space or tab)
    const key = name.toLowerCase();
    const value = line.slice(colon + 1).trim();
    // Control characters (bare CR or LF in particular) are not valid in a field value.
    if (/[\x00-\x08\x0a-\x1f\x7f]/.test(value)) return "unusual";
    const seen = headers.get(key);
    if (seen !== undefined) {
      if (SINGLE.has(key)) return "unusual";
      headers.set(key, `${seen}, ${value}`);
    } else headers.set(key, value);
  }
  return { method: requestLine[1]!, target: requestLine[2]!, headers, length: end + 4 };
}
