import type { NumberBounds } from "./numbers.ts";
import { unsupported } from "./errors.ts";

/** JSON-schema vocabulary shared by normalisation, allOf merging and the GBNF writer. */

/** Keywords with no effect on validation (annotations); accepted and ignored. */
export const ANNOTATIONS = new Set([
  "title",
  "description",
  "default",
  "examples",
  "$schema",
  "$id",
  "$comment",
  "deprecated",
  "readOnly",
  "writeOnly",
  "strict",
]);

/** Numeric keywords, enforced by our own digit-by-digit grammars (numbers.ts). */
export const NUMBER_KEYWORDS = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"] as const;

export type Obj = Record<string, unknown>;

export const isObject = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
export const isEqualJson = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/**
 * The numeric keywords of a schema in draft-6+ form: draft-4 boolean
 * `exclusiveMinimum`/`exclusiveMaximum` turn `minimum`/`maximum` exclusive.
 */
export function numberBounds(schema: Obj, param: string): NumberBounds {
  const out: NumberBounds = {};
  for (const k of NUMBER_KEYWORDS) {
    const v = schema[k];
    if (v === undefined || (typeof v === "boolean" && k.startsWith("exclusive"))) continue;
    if (typeof v !== "number" || !Number.isFinite(v)) unsupported(param, k, "must be a number");
    out[k] = v;
  }
  for (const [flag, plain] of [["exclusiveMinimum", "minimum"], ["exclusiveMaximum", "maximum"]] as const) {
    if (typeof schema[flag] !== "boolean") continue;
    if (schema[flag] === true) {
      if (out[plain] === undefined) unsupported(param, flag, `as a boolean (draft 4) needs '${plain}'`);
      out[flag] = out[plain];
      delete out[plain];
    }
  }
  if (out.multipleOf !== undefined && out.multipleOf <= 0) unsupported(param, "multipleOf", "must be greater than 0");
  return out;
}
