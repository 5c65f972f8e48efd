import { unsupported } from "./errors.ts";
import { ANNOTATIONS, isEqualJson, isObject, numberBounds, type Obj } from "./schema-keywords.ts";

/** The raw schema a `$ref` points to (or the schema itself); allOf branches are merged after this. */
function resolveRef(schema: unknown, param: string, defs: Obj, depth = 0): unknown {
  if (!isObject(schema) || !("$ref" in schema)) return schema;
  if (depth > 16) unsupported(param, "$ref", "is too deeply nested (or recursive) inside allOf");
  const m = typeof schema.$ref === "string" ? /^#\/(\$defs|definitions)\/([^/]+)$/.exec(schema.$ref) : null;
  if (!m || !(m[2]! in defs)) unsupported(param, "$ref", `must point to a definition in '#/$defs/' or '#/definitions/' (got ${JSON.stringify(schema.$ref)})`);
  if (Object.keys(schema).some((k) => k !== "$ref" && !ANNOTATIONS.has(k))) unsupported(param, "$ref", "cannot be combined with other keywords");
  return resolveRef(defs[m[2]!], param, defs, depth + 1);
}

const LOWER_BOUNDS = new Set(["minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties"]);
const UPPER_BOUNDS = new Set(["maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties"]);

/**
 * `allOf` as one schema: an instance must match every branch, so properties
 * merge (a property named by several branches must match all of them),
 * `required` is the union, bounds take the tighter value, `type` and `enum`
 * intersect, `multipleOf` takes the least common multiple of integers.
 * Anything whose conjunction is not one of these (two patterns, two
 * different formats, anyOf in two branches, ...) is a 400.
 */
export function mergeAllOf(schema: Obj, param: string, defs: Obj): Obj {
  const all = schema.allOf;
  if (!Array.isArray(all) || all.length === 0) unsupported(param, "allOf", "must be a non-empty array");
  const { allOf: _, ...rest } = schema;
  let merged: Obj = rest;
  for (const [i, raw] of all.entries()) {
    const where = `${param}.allOf.${i}`;
    const resolved = resolveRef(raw, where, defs);
    if (resolved === true) continue;
    if (!isObject(resolved)) unsupported(param, `allOf.${i}`, "must be a JSON schema object");
    let branch: Obj = resolved;
    if ("$defs" in branch || "definitions" in branch) unsupported(where, "$defs" in branch ? "$defs" : "definitions", "is only supported at the schema's root");
    if ("allOf" in branch) branch = mergeAllOf(branch, where, defs);
    merged = mergeTwo(merged, branch, where);
  }
  return merged;
}

function mergeTwo(rawA: Obj, rawB: Obj, param: string): Obj {
  // Bounds in draft-6 form first, so that draft-4 boolean exclusives merge like the rest.
  const normalized = (s: Obj): Obj => {
    const { minimum: _a, maximum: _b, exclusiveMinimum: _c, exclusiveMaximum: _d, ...rest } = s;
    return { ...rest, ...numberBounds(s, param) };
  };
  const a = normalized(rawA);
  const b = normalized(rawB);
  const out: Obj = { ...a };
  const hasObject = (s: Obj) => "properties" in s || "additionalProperties" in s;
  if (hasObject(a) || hasObject(b)) {
    const pa = isObject(a.properties) ? a.properties : {};
    const pb = isObject(b.properties) ? b.properties : {};
    const properties: Obj = {};
    for (const name of new Set([...Object.keys(pa), ...Object.keys(pb)])) {
      const parts: unknown[] = [];
      for (const [props, extra] of [[pa, a.additionalProperties], [pb, b.additionalProperties]] as const) {
        if (name in props) parts.push(props[name]);
        else if (extra === false) unsupported(param, `properties.${name}`, "is ruled out by another allOf branch's additionalProperties: false");
        else if (isObject(extra)) parts.push(extra);
      }
      properties[name] = parts.length === 1 ? parts[0] : { allOf: parts };
    }
    out.properties = properties;
    const ea = a.additionalProperties;
    const eb = b.additionalProperties;
    const open = (e: unknown) => e === undefined || e === true;
    const extra = open(ea) ? eb : open(eb) ? ea : ea === false || eb === false ? false : { allOf: [ea, eb] };
    if (extra === undefined) delete out.additionalProperties;
    else out.additionalProperties = extra;
  }
  for (const [key, vb] of Object.entries(b)) {
    if (key === "properties" || key === "additionalProperties") continue;
    const va = out[key];
    if (va === undefined || ANNOTATIONS.has(key)) {
      if (va === undefined) out[key] = vb;
      continue;
    }
    if (LOWER_BOUNDS.has(key) || UPPER_BOUNDS.has(key)) {
      if (typeof va !== "number" || typeof vb !== "number") unsupported(param, key, "must be a number");
      out[key] = LOWER_BOUNDS.has(key) ? Math.max(va, vb) : Math.min(va, vb);
    } else if (key === "type") {
      const list = (t: unknown) => (Array.isArray(t) ? (t as unknown[]) : [t]);
      const tb = list(vb);
      const both = list(va).flatMap((t) => (tb.includes(t) ? [t] : t === "integer" && tb.includes("number") ? ["integer"] : t === "number" && tb.includes("integer") ? ["integer"] : []));
      const types = [...new Set(both)];
      if (types.length === 0) unsupported(param, "type", "of the allOf branches have no type in common");
      out.type = types.length === 1 ? types[0] : types;
    } else if (key === "required") {
      if (!Array.isArray(va) || !Array.isArray(vb)) unsupported(param, "required", "must be an array of property names");
      out.required = [...new Set([...va, ...vb])];
    } else if (key === "multipleOf") {
      if (!Number.isInteger(va) || !Number.isInteger(vb)) {
        if (va !== vb) unsupported(param, "multipleOf", "of allOf branches can only be combined when they are integers");
      } else {
        const gcd = (x: number, y: number): number => (y === 0 ? x : gcd(y, x % y));
        out.multipleOf = ((va as number) / gcd(va as number, vb as number)) * (vb as number);
      }
    } else if (key === "enum") {
      if (!Array.isArray(va) || !Array.isArray(vb)) unsupported(param, "enum", "must be a non-empty array");
      const common = va.filter((v) => vb.some((w) => isEqualJson(v, w)));
      if (common.length === 0) unsupported(param, "enum", "of the allOf branches have no value in common");
      out.enum = common;
    } else if (key === "items") {
      out.items = { allOf: [va, vb] };
    } else if (!isEqualJson(va, vb)) {
      unsupported(param, key, "differs between allOf branches, and their conjunction cannot be enforced");
    }
  }
  return out;
}
