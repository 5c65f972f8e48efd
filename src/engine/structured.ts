import { LlamaText, type GbnfJsonSchema, type Llama, type LlamaGrammar } from "node-llama-cpp";
import { InvalidRequestError } from "../errors.ts";
import { integerGbnf, NumberGrammarError, numberGbnf, type NumberBounds } from "./gbnf-numbers.ts";
import { PatternGrammarError, patternGbnf } from "./gbnf-pattern.ts";

/**
 * Structured output: JSON schemas and GBNF grammars turned into node-llama-cpp
 * grammars for constrained sampling. A schema is accepted only if every
 * keyword in it is enforced by the grammar (or is a pure annotation), so the
 * output always validates; anything else is a 400 naming the keyword. The
 * daemon's dialects (Ollama `format`, Responses `text.format`, Anthropic
 * tool input schemas) should go through `checkJsonSchema` / `grammarForJsonSchema`.
 */

/** A schema keyword we cannot enforce, or a malformed schema: a 400 naming where. */
export class UnsupportedSchemaError extends InvalidRequestError {
  override readonly code = "unsupported_schema";
  constructor(message: string, param: string) {
    super(message, param);
  }
}

/** A GBNF grammar llama.cpp could not parse. */
export class InvalidGrammarError extends InvalidRequestError {
  override readonly code = "invalid_grammar";
}

/** Keywords with no effect on validation (annotations); accepted and ignored. */
const ANNOTATIONS = new Set([
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

const BASIC_TYPES = new Set(["string", "number", "integer", "boolean", "null"]);
const STRING_FORMATS = new Set(["date-time", "time", "date"]);
/** Numeric keywords, enforced by our own digit-by-digit grammars (gbnf-numbers.ts). */
const NUMBER_KEYWORDS = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"] as const;
/** The most properties/items/length a bound may name; larger ones bloat the grammar. */
const MAX_BOUND = 1000;

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Obj = Record<string, unknown>;

const isObject = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
const isPrimitive = (v: unknown) => v === null || ["string", "number", "boolean"].includes(typeof v);

/**
 * Checks a JSON schema and rewrites it into the subset node-llama-cpp's grammar
 * generator understands (`anyOf` → `oneOf`, `definitions` → `$defs`, type
 * unions → `oneOf`, `nullable`). Throws UnsupportedSchemaError naming the
 * first keyword that cannot be enforced, with `param` as the path prefix
 * (e.g. `response_format.json_schema.schema`).
 *
 * Semantics worth knowing: every declared property is always generated (so
 * `required` is always met) and no undeclared one is, unless
 * `additionalProperties` allows it.
 */
export function checkJsonSchema(schema: unknown, param: string): GbnfJsonSchema {
  if (schema === true || (isObject(schema) && Object.keys(schema).length === 0)) {
    return { type: "object", additionalProperties: true } as unknown as GbnfJsonSchema; // "any JSON", as an object
  }
  if (!isObject(schema)) throw new UnsupportedSchemaError(`'${param}' must be a JSON schema object.`, param);
  const defs: Obj = { ...(isObject(schema.$defs) ? schema.$defs : {}), ...(isObject(schema.definitions) ? schema.definitions : {}) };
  const out = convert(schema, param, defs, true) as Obj;
  const convertedDefs: Obj = {};
  for (const [name, def] of Object.entries(defs)) {
    const where = `${param}.${isObject(schema.$defs) && name in schema.$defs ? "$defs" : "definitions"}.${name}`;
    convertedDefs[name] = convert(def, where, defs, false);
  }
  // Only definitions the schema reaches (allOf may have inlined the others).
  const reached = new Set<string>();
  const visit = (node: unknown): void => {
    if (Array.isArray(node)) return node.forEach(visit);
    if (!isObject(node)) return;
    if (typeof node.$ref === "string") {
      const name = node.$ref.slice("#/$defs/".length);
      if (!reached.has(name)) {
        reached.add(name);
        visit(convertedDefs[name]);
      }
    }
    for (const [k, v] of Object.entries(node)) if (k !== "const" && k !== "enum") visit(v);
  };
  visit(out);
  const used = Object.fromEntries(Object.entries(convertedDefs).filter(([name]) => reached.has(name)));
  if (Object.keys(used).length > 0) out.$defs = used;
  return out as unknown as GbnfJsonSchema;
}

function unsupported(param: string, keyword: string, why = "is not supported for constrained output"): never {
  throw new UnsupportedSchemaError(`JSON schema keyword '${keyword}' at '${param}' ${why}.`, `${param}.${keyword}`);
}

function convert(schema: unknown, param: string, defs: Obj, isRoot: boolean): Json {
  if (schema === true) return anyJson();
  if (!isObject(schema)) throw new UnsupportedSchemaError(`'${param}' must be a JSON schema object.`, param);
  const out: Obj = {};
  for (const key of Object.keys(schema)) {
    if (ANNOTATIONS.has(key) || key === "$defs" || key === "definitions") {
      if (!isRoot && (key === "$defs" || key === "definitions")) unsupported(param, key, "is only supported at the schema's root");
      if (key === "description" && typeof schema.description === "string") out.description = schema.description;
      continue;
    }
    if (!KNOWN.has(key)) unsupported(param, key);
  }
  if ("not" in schema) unsupported(param, "not", "is not supported for constrained output (a grammar cannot exclude what a schema matches)");
  if ("allOf" in schema) return convert(mergeAllOf(schema, param, defs), param, defs, isRoot);
  if ("$ref" in schema) {
    const ref = schema.$ref;
    const m = typeof ref === "string" ? /^#\/(\$defs|definitions)\/([^/]+)$/.exec(ref) : null;
    if (!m) unsupported(param, "$ref", `must point into '#/$defs/' or '#/definitions/' (got ${JSON.stringify(ref)})`);
    if (!(m[2]! in defs)) unsupported(param, "$ref", `points to a missing definition "${m[2]}"`);
    if (Object.keys(schema).some((k) => k !== "$ref" && !ANNOTATIONS.has(k))) unsupported(param, "$ref", "cannot be combined with other keywords");
    return { $ref: `#/$defs/${m[2]}` };
  }
  const alternatives = schema.anyOf ?? schema.oneOf;
  if (alternatives !== undefined) {
    const keyword = schema.anyOf !== undefined ? "anyOf" : "oneOf";
    if (schema.anyOf !== undefined && schema.oneOf !== undefined) unsupported(param, "oneOf", "cannot be combined with anyOf");
    if (!Array.isArray(alternatives) || alternatives.length === 0) unsupported(param, keyword, "must be a non-empty array");
    const rest = Object.keys(schema).filter((k) => k !== keyword && !ANNOTATIONS.has(k) && k !== "$defs" && k !== "definitions");
    if (rest.length > 0) {
      // Keywords beside anyOf/oneOf apply to every alternative: A ∧ (B ∨ C) = (A ∧ B) ∨ (A ∧ C).
      const shared = Object.fromEntries(rest.map((k) => [k, schema[k]]));
      return { oneOf: alternatives.map((alt, i) => convert({ allOf: [alt, shared] }, `${param}.${keyword}.${i}`, defs, false)) };
    }
    return { oneOf: alternatives.map((alt, i) => convert(alt, `${param}.${keyword}.${i}`, defs, false)) };
  }
  if ("const" in schema || "enum" in schema) return convertValues(schema, param);
  let type = schema.type;
  if (type === undefined) {
    // Untyped schemas are allowed only when the keywords say which type they mean.
    if ("properties" in schema || "additionalProperties" in schema) type = "object";
    else if ("items" in schema || "prefixItems" in schema) type = "array";
    // Untyped string or number keywords also let other types through; generating that type alone is a valid subset.
    else if (["pattern", "minLength", "maxLength", "format"].some((k) => k in schema)) type = "string";
    else if (NUMBER_KEYWORDS.some((k) => k in schema)) type = "number";
    else if (Object.keys(schema).every((k) => ANNOTATIONS.has(k))) return anyJson();
    else unsupported(param, "type", "is required alongside these keywords");
  }
  const nullable = schema.nullable === true;
  if (Array.isArray(type)) {
    if (type.length === 0) unsupported(param, "type", "must not be empty");
    for (const t of type) if (typeof t !== "string") unsupported(param, "type", "must name types as strings");
    const types = [...new Set(type as string[])];
    if (types.every((t) => BASIC_TYPES.has(t)) && !TYPED_LEAF_KEYWORDS.some((k) => k in schema)) {
      return withDescription({ type: nullable && !types.includes("null") ? [...types, "null"] : types }, schema);
    }
    return { oneOf: types.map((t) => convert({ ...schema, type: t, nullable: false }, param, defs, false)) };
  }
  if (typeof type !== "string") unsupported(param, "type", "must be a string or an array of strings");
  const single = convertTyped(schema, type, param, defs);
  return nullable && type !== "null" ? { oneOf: [single, { type: "null" }] } : single;
}

const KNOWN = new Set([
  "type", "properties", "required", "additionalProperties", "items", "prefixItems", "minItems", "maxItems",
  "minLength", "maxLength", "format", "enum", "const", "anyOf", "oneOf", "$ref", "nullable", "minProperties", "maxProperties",
  "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "pattern", "allOf", "not",
]);

/** Keywords that make a basic type need its own grammar (so a type union is split into alternatives). */
const TYPED_LEAF_KEYWORDS = ["minLength", "maxLength", "format", "pattern", ...NUMBER_KEYWORDS];

/** Any JSON value: node-llama-cpp has no "any" schema, so spell it out. */
const anyJson = (): Json =>
  ({ oneOf: [{ type: ["string", "number", "boolean", "null"] }, { type: "array" }, { type: "object", additionalProperties: true }] }) as Json;

function withDescription(out: Obj, schema: Obj): Json {
  if (typeof schema.description === "string") out.description = schema.description;
  return out as Json;
}

function bound(schema: Obj, key: string, param: string): number | undefined {
  const v = schema[key];
  if (v === undefined) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0) unsupported(param, key, "must be a non-negative integer");
  if (v > MAX_BOUND) unsupported(param, key, `must be at most ${MAX_BOUND}`);
  return v;
}

// Keywords of other types than the one generated are ignored: JSON schema
// applies them only to instances of their own type.

function convertTyped(schema: Obj, type: string, param: string, defs: Obj): Json {
  switch (type) {
    case "object": {
      const props = schema.properties ?? {};
      if (!isObject(props)) unsupported(param, "properties", "must be an object");
      const properties: Obj = {};
      for (const [name, sub] of Object.entries(props)) properties[name] = convert(sub, `${param}.properties.${name}`, defs, false);
      if (schema.required !== undefined) {
        if (!Array.isArray(schema.required)) unsupported(param, "required", "must be an array of property names");
        for (const [i, name] of schema.required.entries()) {
          if (typeof name !== "string" || !(name in props)) {
            unsupported(param, `required.${i}`, `names ${JSON.stringify(name)}, which is not in 'properties'`);
          }
        }
      }
      const out: Obj = { type: "object", properties, required: Object.keys(properties) };
      const extra = schema.additionalProperties;
      if (extra !== undefined && extra !== false) {
        out.additionalProperties = extra === true ? true : convert(extra, `${param}.additionalProperties`, defs, false);
        const min = bound(schema, "minProperties", param);
        const max = bound(schema, "maxProperties", param);
        if (min !== undefined) out.minProperties = Math.max(min, Object.keys(properties).length);
        if (max !== undefined) {
          if (max < Object.keys(properties).length) unsupported(param, "maxProperties", "is below the number of declared properties");
          out.maxProperties = max;
        }
      } else {
        // Without additional properties, exactly the declared ones are generated.
        const n = Object.keys(properties).length;
        const min = bound(schema, "minProperties", param);
        const max = bound(schema, "maxProperties", param);
        if (min !== undefined && min > n) unsupported(param, "minProperties", "exceeds the declared properties and additionalProperties is false");
        if (max !== undefined && max < n) unsupported(param, "maxProperties", "is below the number of declared properties");
      }
      return withDescription(out, schema);
    }
    case "array": {
      const out: Obj = { type: "array" };
      if (schema.items !== undefined && schema.items !== true) {
        if (schema.items === false) out.maxItems = 0;
        else if (Array.isArray(schema.items)) unsupported(param, "items", "as an array (draft 4 tuples) is not supported; use prefixItems");
        else out.items = convert(schema.items, `${param}.items`, defs, false);
      }
      if (schema.prefixItems !== undefined) {
        if (!Array.isArray(schema.prefixItems)) unsupported(param, "prefixItems", "must be an array");
        out.prefixItems = schema.prefixItems.map((s, i) => convert(s, `${param}.prefixItems.${i}`, defs, false));
      }
      const min = bound(schema, "minItems", param);
      const max = bound(schema, "maxItems", param);
      if (min !== undefined && max !== undefined && max < min) unsupported(param, "maxItems", "is below minItems");
      if (min !== undefined) out.minItems = min;
      if (max !== undefined && out.maxItems === undefined) out.maxItems = max;
      return withDescription(out, schema);
    }
    case "string": {
      if (schema.pattern !== undefined) {
        if (typeof schema.pattern !== "string") unsupported(param, "pattern", "must be a string");
        for (const k of ["format", "minLength", "maxLength"]) if (k in schema) unsupported(param, k, "cannot be combined with pattern");
        try {
          patternGbnf(schema.pattern);
        } catch (error) {
          if (error instanceof PatternGrammarError) unsupported(param, "pattern", error.message);
          throw error;
        }
        return withDescription({ type: "string", pattern: schema.pattern }, schema);
      }
      if (schema.format !== undefined) {
        if (typeof schema.format !== "string" || !STRING_FORMATS.has(schema.format)) {
          unsupported(param, "format", `"${String(schema.format)}" cannot be enforced (supported: ${[...STRING_FORMATS].join(", ")})`);
        }
        if ("minLength" in schema || "maxLength" in schema) unsupported(param, "format", "cannot be combined with minLength/maxLength");
        return withDescription({ type: "string", format: schema.format }, schema);
      }
      const min = bound(schema, "minLength", param);
      const max = bound(schema, "maxLength", param);
      if (min !== undefined && max !== undefined && max < min) unsupported(param, "maxLength", "is below minLength");
      return withDescription({ type: "string", ...(min !== undefined ? { minLength: min } : {}), ...(max !== undefined ? { maxLength: max } : {}) }, schema);
    }
    case "number":
    case "integer": {
      const bounds = numberBounds(schema, param);
      if (Object.keys(bounds).length > 0) {
        try {
          if (type === "integer") integerGbnf(bounds);
          else numberGbnf(bounds);
        } catch (error) {
          if (error instanceof NumberGrammarError) unsupported(param, error.keyword, error.message);
          throw error;
        }
      }
      return withDescription({ type, ...bounds }, schema);
    }
    case "boolean":
    case "null":
      return withDescription({ type }, schema);
    default:
      return unsupported(param, "type", `"${type}" is not a JSON schema type`);
  }
}

/**
 * The numeric keywords of a schema in draft-6+ form: draft-4 boolean
 * `exclusiveMinimum`/`exclusiveMaximum` turn `minimum`/`maximum` exclusive.
 */
function numberBounds(schema: Obj, param: string): NumberBounds {
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

const isEqualJson = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** `const`/`enum`, with the values the schema's other keywords rule out removed. */
function convertValues(schema: Obj, param: string): Json {
  let values: unknown[];
  if ("const" in schema) {
    if (!isPrimitive(schema.const)) unsupported(param, "const", "must be a string, number, boolean or null here");
    values = [schema.const];
  } else {
    if (!Array.isArray(schema.enum) || schema.enum.length === 0) unsupported(param, "enum", "must be a non-empty array");
    const bad = schema.enum.findIndex((v) => !isPrimitive(v));
    if (bad >= 0) unsupported(param, `enum.${bad}`, "must be a string, number, boolean or null");
    values = schema.enum;
  }
  if ("const" in schema && "enum" in schema) {
    if (!Array.isArray(schema.enum)) unsupported(param, "enum", "must be a non-empty array");
    values = values.filter((v) => (schema.enum as unknown[]).some((e) => isEqualJson(e, v)));
  }
  const checks: Array<(v: unknown) => boolean> = [];
  for (const key of Object.keys(schema)) {
    if (ANNOTATIONS.has(key) || key === "const" || key === "enum" || key === "$defs" || key === "definitions") continue;
    if (key === "type") {
      const types = Array.isArray(schema.type) ? (schema.type as unknown[]) : [schema.type];
      checks.push((v) => types.some((t) => (t === "integer" ? Number.isInteger(v) : t === "null" ? v === null : typeof v === t)) || (schema.nullable === true && v === null));
    } else if (key === "nullable") continue;
    else if ((NUMBER_KEYWORDS as readonly string[]).includes(key)) {
      const b = numberBounds(schema, param);
      checks.push(
        (v) =>
          typeof v !== "number" ||
          ((b.minimum === undefined || v >= b.minimum) &&
            (b.maximum === undefined || v <= b.maximum) &&
            (b.exclusiveMinimum === undefined || v > b.exclusiveMinimum) &&
            (b.exclusiveMaximum === undefined || v < b.exclusiveMaximum) &&
            (b.multipleOf === undefined || Number.isInteger(v / b.multipleOf))),
      );
    } else if (key === "minLength" || key === "maxLength") {
      const n = bound(schema, key, param)!;
      checks.push((v) => typeof v !== "string" || (key === "minLength" ? [...v].length >= n : [...v].length <= n));
    } else if (key === "pattern" && typeof schema.pattern === "string") {
      let re: RegExp;
      try {
        re = new RegExp(schema.pattern, "u");
      } catch {
        return unsupported(param, "pattern", "is not a valid regular expression");
      }
      checks.push((v) => typeof v !== "string" || re.test(v));
    } else if (["properties", "required", "additionalProperties", "items", "prefixItems", "minItems", "maxItems", "minProperties", "maxProperties"].includes(key)) {
      continue; // apply to objects and arrays only; the values are primitives
    } else unsupported(param, key, `cannot be combined with ${"const" in schema ? "const" : "enum"}`);
  }
  values = values.filter((v) => checks.every((check) => check(v)));
  if (values.length === 0) unsupported(param, "const" in schema ? "const" : "enum", "leaves no value that the schema's other keywords allow");
  return values.length === 1 ? { const: values[0] as Json } : { enum: values as Json[] };
}

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
function mergeAllOf(schema: Obj, param: string, defs: Obj): Obj {
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

/** A leaf the grammar generator cannot write: our own GBNF for it, spliced in by schemaGbnf. */
function leafGbnf(node: Obj, name: string, rules: string[]): string | null {
  if (node.type === "string" && typeof node.pattern === "string") return patternGbnf(node.pattern);
  if (node.type !== "integer" && node.type !== "number") return null;
  const bounds: NumberBounds = {};
  for (const k of NUMBER_KEYWORDS) if (typeof node[k] === "number") bounds[k] = node[k] as number;
  if (Object.keys(bounds).length === 0) return null;
  return node.type === "integer" ? integerGbnf(bounds, name, rules) : numberGbnf(bounds, name, rules);
}

/**
 * Replaces each leaf with our own grammar by a string constant that cannot
 * occur elsewhere, so node-llama-cpp writes the document's structure
 * (objects, arrays, whitespace, $defs) and we write the leaves.
 */
function withPlaceholders(schema: unknown, nonce: string, leaves: Map<string, { name: string; gbnf: string }>, rules: string[]): unknown {
  if (Array.isArray(schema)) return schema.map((s) => withPlaceholders(s, nonce, leaves, rules));
  if (!isObject(schema)) return schema;
  const name = `leaf${leaves.size}`;
  const gbnf = leafGbnf(schema, name, rules);
  if (gbnf !== null) {
    const placeholder = `${nonce}${name}`;
    leaves.set(placeholder, { name, gbnf });
    return { const: placeholder };
  }
  const out: Obj = {};
  for (const [k, v] of Object.entries(schema)) {
    // Walk schema positions only; `properties`/`$defs` map names to schemas, `enum`/`const` are values.
    if (k === "const" || k === "enum" || k === "required" || k === "description") out[k] = v;
    else if ((k === "properties" || k === "$defs") && isObject(v)) {
      out[k] = Object.fromEntries(Object.entries(v).map(([n, sub]) => [n, withPlaceholders(sub, nonce, leaves, rules)]));
    } else out[k] = withPlaceholders(v, nonce, leaves, rules);
  }
  return out;
}

/** node-llama-cpp's number exponent (node_modules/node-llama-cpp/dist/utils/gbnfJson/terminals/GbnfNumber.js). */
const EXPONENT = ' ([eE] [-+]? ("0" | [1-9] [0-9]{0,15}))?';

/**
 * node-llama-cpp lets numbers carry exponents of up to 16 digits: `1e606`
 * parses to Infinity and `5e-3` is no integer. Integers get no exponent;
 * other numbers at most two exponent digits, which doubles hold.
 */
export function boundNumbers(gbnf: string): string {
  return gbnf
    .split("\n")
    .map((line) => (line.includes(EXPONENT) ? line.replace(EXPONENT, line.includes('"."') ? " ([eE] [-+]? [0-9]{1,2})?" : "") : line))
    .join("\n");
}

/**
 * GBNF text (start rule `root`) for a schema already passed through
 * `checkJsonSchema`. Other grammars (tool calls) embed it by renaming its rules.
 */
export async function schemaGbnf(llama: Llama, schema: GbnfJsonSchema): Promise<string> {
  const text = JSON.stringify(schema);
  let nonce = "mrleaf";
  while (text.includes(nonce)) nonce += "x";
  const leaves = new Map<string, { name: string; gbnf: string }>();
  const rules: string[] = [];
  const structure = withPlaceholders(schema, nonce, leaves, rules);
  const base = await llama.createGrammarForJsonSchema(structure as never);
  let gbnf = boundNumbers(base.grammar);
  for (const [placeholder, leaf] of leaves) {
    const literal = `"\\"${placeholder}\\""`;
    if (!gbnf.includes(literal)) throw new Error(`schemaGbnf: node-llama-cpp's grammar lost the placeholder for ${leaf.name}`);
    gbnf = gbnf.replaceAll(literal, leaf.name);
    rules.push(`${leaf.name} ::= ${leaf.gbnf}`);
  }
  return rules.length === 0 ? gbnf : `${gbnf}\n${rules.join("\n")}`;
}

/**
 * Compiled grammars by key (schema JSON or GBNF text). Compiling a grammar
 * costs milliseconds; agents send the same schema on every request.
 */
export class GrammarCache {
  private readonly entries = new Map<string, Promise<LlamaGrammar>>();
  constructor(
    private readonly llama: Llama,
    private readonly capacity = 64,
  ) {}

  /** A grammar for a schema already passed through `checkJsonSchema`. */
  forSchema(schema: GbnfJsonSchema): Promise<LlamaGrammar> {
    return this.get(`json:${JSON.stringify(schema)}`, async () => {
      // As node-llama-cpp's own JSON-schema grammars: stop on a run of newlines.
      return this.llama.createGrammar({
        grammar: await schemaGbnf(this.llama, schema),
        stopGenerationTriggers: [LlamaText(["\n".repeat(4)])],
        trimWhitespaceSuffix: true,
      });
    });
  }

  /** A grammar for tool calls, by a key that identifies the GBNF `make` builds. */
  forToolCalls(key: string, make: () => Promise<string>): Promise<LlamaGrammar> {
    return this.get(`calls:${key}`, async () => this.llama.createGrammar({ grammar: await make() }));
  }

  /** A grammar for GBNF text; rejects with InvalidGrammarError naming `param` if llama.cpp cannot parse it. */
  forGbnf(gbnf: string, param: string): Promise<LlamaGrammar> {
    return this.get(`gbnf:${gbnf}`, async () => {
      try {
        return await this.llama.createGrammar({ grammar: gbnf });
      } catch (error) {
        throw new InvalidGrammarError(`'${param}' is not a valid GBNF grammar: ${(error as Error).message}`, param, { cause: error });
      }
    });
  }

  private get(key: string, make: () => Promise<LlamaGrammar>): Promise<LlamaGrammar> {
    let entry = this.entries.get(key);
    if (entry) {
      this.entries.delete(key); // most recently used goes last
    } else {
      entry = make();
      entry.catch(() => this.entries.delete(key));
    }
    this.entries.set(key, entry);
    while (this.entries.size > this.capacity) this.entries.delete(this.entries.keys().next().value!);
    return entry;
  }
}

/**
 * Turns a JSON schema into a grammar, or throws UnsupportedSchemaError (400)
 * naming the keyword it cannot enforce. `param` prefixes the error's path.
 */
export async function grammarForJsonSchema(cache: GrammarCache, schema: unknown, param: string): Promise<LlamaGrammar> {
  return cache.forSchema(checkJsonSchema(schema, param));
}
