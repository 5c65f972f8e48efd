/**
 * The CORS rule: which browser pages may call the daemon. Pages served from
 * loopback always may (a local UI); others only when named in
 * MODEL_RUNNER_ORIGINS (`*`: any). A request with an allowed `Origin` gets
 * it back in `Access-Control-Allow-Origin` (with `Vary: Origin`); one with
 * another is refused (403, ForbiddenOriginError). Node's server and the fast
 * lane both apply it.
 */

const LOCAL_ORIGIN = /^https?:\/\/(localhost|127\.0\.0\.1|0\.0\.0\.0|\[::1\])(:\d+)?$/i;

/** Whether a browser page at `origin` may call the daemon. */
export function isOriginAllowed(origin: string, extra: readonly string[]): boolean {
  return LOCAL_ORIGIN.test(origin) || extra.includes("*") || extra.includes(origin);
}
