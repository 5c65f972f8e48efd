import { createHash } from "node:crypto";
import { InvalidReferenceError } from "./errors.ts";

/** A validated content digest, `sha256:<64 lowercase hex>`. Validated once, where it enters. */
export type Digest = string & { readonly __brand: "Digest" };

const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;

export function isDigest(value: string): value is Digest {
  return DIGEST_RE.test(value);
}

/** Parses a digest from untrusted input (registry JSON, user text); throws InvalidReferenceError. */
export function parseDigest(value: string): Digest {
  if (!isDigest(value)) throw new InvalidReferenceError(value, "not a sha256 digest");
  return value;
}

/** The hex part, safe to use as a file name because it was validated. */
export function digestHex(d: Digest): string {
  return d.slice("sha256:".length);
}

export function sha256Digest(data: Buffer | string): Digest {
  return `sha256:${createHash("sha256").update(data).digest("hex")}` as Digest;
}
