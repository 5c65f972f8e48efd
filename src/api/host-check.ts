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
