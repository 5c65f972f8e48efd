/**
 * The daemon's one SSE writer: one event as its wire text. `data` is
 * JSON-encoded (so it holds no raw newline); an event name with CR or LF
 * would end the field early and let the rest read as other fields, so it
 * is refused.
 */
export function sseEvent(event: string | null, data: unknown): string {
  if (event !== null && /[\r\n]/.test(event)) throw new TypeError(`An SSE event name cannot contain CR or LF: ${JSON.stringify(event)}`);
  return `${event === null ? "" : `event: ${event}\n`}data: ${JSON.stringify(data)}\n\n`;
}
