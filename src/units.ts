/**
 * Parsers for the units users type: durations (keep-alives) and byte sizes.
 * They live outside scheduling because configuration (src/config.ts) needs
 * them too, and configuration must not load the scheduler.
 */
import { InvalidRequestError } from "./errors.ts";

/**
 * A keep-alive: milliseconds a runner stays loaded after its last request.
 * `0` unloads right after the request; `Infinity` never unloads.
 */
export type KeepAliveMs = number;

export class InvalidDurationError extends InvalidRequestError {
  override readonly code = "invalid_duration";
  constructor(given: unknown, param: string) {
    super(
      `Invalid duration ${JSON.stringify(given)} for ${param}: use a number of seconds or a duration like "30s", "5m", "1h30m"; "0" unloads right away, "-1" never.`,
      param,
    );
  }
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * Parses a keep-alive the way Ollama and Docker Model Runner accept it: a
 * number of seconds (number or numeric string), or a Go-style duration
 * ("500ms", "30s", "5m", "1h30m"). Any negative value means forever
 * (`Infinity`), 0 means unload right after the request. This is the one
 * duration parser: configuration, `_configure` and per-request `keep_alive`
 * all go through it, so they cannot disagree.
 */
export function parseDuration(value: string | number, param = "keep_alive"): KeepAliveMs {
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new InvalidDurationError(value, param);
    return value < 0 ? Infinity : Math.round(value * 1000);
  }
  const text = value.trim();
  if (/^-?\d+(\.\d+)?$/.test(text)) return parseDuration(Number(text), param);
  const match = /^(-)?((?:\d+(?:\.\d+)?(?:ms|s|m|h))+)$/.exec(text);
  if (!match) throw new InvalidDurationError(value, param);
  let ms = 0;
  for (const part of match[2]!.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) ms += Number(part[1]) * UNIT_MS[part[2]!]!;
  if (match[1]) return ms === 0 ? 0 : Infinity;
  return Math.round(ms);
}

/** The inverse of parseDuration, for display and persistence: "5m", "90s", "0", "-1". */
export function formatDuration(ms: KeepAliveMs): string {
  if (ms === Infinity) return "-1";
  if (ms === 0) return "0";
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

const BYTE_UNITS: Record<string, number> = {
  "": 1, b: 1, k: 1e3, kb: 1e3, m: 1e6, mb: 1e6, g: 1e9, gb: 1e9, t: 1e12, tb: 1e12,
  kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3, tib: 1024 ** 4,
};

/** Parses "16GiB", "8g", "512MB", "1073741824" (MODEL_RUNNER_MEMORY). Throws InvalidRequestError naming `param`. */
export function parseByteSize(text: string, param = "MODEL_RUNNER_MEMORY"): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = match ? BYTE_UNITS[match[2]!.toLowerCase()] : undefined;
  if (!match || unit === undefined) {
    throw new InvalidRequestError(`Invalid size "${text}" for ${param}: use bytes or a unit, e.g. "16GiB", "8g", "512MB".`, param);
  }
  return Math.floor(Number(match[1]) * unit);
}
