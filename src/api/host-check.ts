import { RunnerError } from "../errors.ts";

/**
 * The `Host` check against DNS rebinding (as Ollama does): a daemon bound to
 * loopback answers only requests addressed to a loopback name, so a web page
 * whose domain was re-pointed at 127.0.0.1 cannot read its answers. Browsers
 * always send `Host`; a request without one (HTTP/1.0; Node refuses HTTP/1.1
 * without it) did not come from a browser and is let through.
 */

/** Splits `name[:port]` or `[v6][:port]` and lowercases the name (brackets kept for IPv6). */
export function hostnameOf(host: string): string {
  const h = host.trim().toLowerCase();
  if (h.startsWith("[")) {
    const end = h.indexOf("]");
    return end < 0 ? h : h.slice(0, end + 1);
  }
  const colon = h.lastIndexOf(":");
  return (colon >= 0 ? h.slice(0, colon) : h).replace(/\.$/, "");
}

const LOOPBACK_V4 = /^127(?:\.(?:25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;

/** Whether a request naming `host` may be served: loopback names, or one of `allowed` (`*` allows all). */
export function isHostAllowed(host: string, allowed: readonly string[]): boolean {
  const name = hostnameOf(host);
  if (name === "localhost" || name === "[::1]" || LOOPBACK_V4.test(name)) return true;
  return allowed.some((a) => a === "*" || hostnameOf(a) === name);
}

export class HostNotAllowedError extends RunnerError {
  readonly code = "host_not_allowed";
  readonly status = 403;
  override readonly type = "invalid_request_error";
  constructor(host: string) {
    super(
      `Host ${JSON.stringify(host.slice(0, 200))} is not allowed: the daemon listens on loopback and answers only localhost, ` +
        "127.0.0.1 and [::1]; add the name to MODEL_RUNNER_ALLOWED_HOSTS to allow it.",
    );
  }
}

/**
 * `isHostAllowed` for one daemon's `allowed` list, remembering the Host
 * values it allowed: clients send the same one or two on every request, so
 * the common case is one Set lookup. Refusals are not remembered (any string
 * can be sent), and the memory is bounded.
 */
export function hostChecker(allowed: readonly string[]): (host: string) => boolean {
  const seen = new Set<string>();
  return (host) => {
    if (seen.has(host)) return true;
    if (!isHostAllowed(host, allowed)) return false;
    if (seen.size >= 64) seen.clear();
    seen.add(host);
    return true;
  };
}
