/**
 * The one retry delay of the distribution layer (registry requests and blob
 * downloads): exponential from `baseMs`, at least what a `Retry-After` header
 * asks (seconds or an HTTP date), capped, with ±25 % jitter so many pulls
 * that failed together do not retry in lockstep.
 */
export function backoffMs(attempt: number, opts: { baseMs?: number; capMs?: number; retryAfter?: string | undefined; random?: () => number } = {}): number {
  const base = (opts.baseMs ?? 200) * 2 ** attempt;
  const asked = retryAfterMs(opts.retryAfter);
  const cap = opts.capMs ?? 30_000;
  return Math.min(Math.max(base, asked), cap) * (0.75 + (opts.random ?? Math.random)() * 0.5);
}

/** `Retry-After` in ms: delta-seconds or an HTTP date; 0 when absent or unreadable. */
export function retryAfterMs(value: string | undefined, now = Date.now()): number {
  if (value === undefined || value.trim() === "") return 0;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isFinite(at) ? Math.max(0, at - now) : 0;
}
