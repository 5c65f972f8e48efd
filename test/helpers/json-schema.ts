/**
 * A small JSON-schema validator for the keywords the engine accepts for
 * constrained output (type, properties, required, additionalProperties,
 * items, prefixItems, min/maxItems, min/maxLength, format date/time/date-time,
 * enum, const, anyOf/oneOf, allOf, not, $ref into $defs/definitions, nullable,
 * pattern, minimum/maximum/exclusiveMinimum/exclusiveMaximum (draft-4 boolean
 * and draft-6 numeric forms), multipleOf). Returns
 * the first problem as "path: message", or null when `value` is valid.
 * Written independently of the engine so a grammar bug cannot hide itself.
 */
type Schema = Record<string, unknown> | boolean;

export function validateJson(value: unknown, schema: Schema, root: Schema = schema, path = "$"): string | null {
  if (schema === true) return null;
  if (schema === false) return `${path}: no value allowed`;
  const s = schema as Record<string, any>;
  if (s.$ref) {
    const name = String(s.$ref).replace(/^#\/(\$defs|definitions)\//, "");
    const r = root as Record<string, any>;
    return validateJson(value, (r.$defs ?? {})[name] ?? (r.definitions ?? {})[name], root, path);
  }
  if (s.nullable === true && value === null) return null;
  if (s.allOf) {
    for (const [i, sub] of (s.allOf as Schema[]).entries()) {
      const e = validateJson(value, sub, root, path);
      if (e) return `${e} (allOf ${i})`;
    }
  }
  if (s.not !== undefined && validateJson(value, s.not, root, path) === null) return `${path}: matches 'not'`;
  if (s.anyOf || s.oneOf) {
    const alts: Schema[] = s.anyOf ?? s.oneOf;
    const ok = alts.filter((a) => validateJson(value, a, root, path) === null).length;
    if (s.oneOf ? ok !== 1 : ok === 0) return `${path}: matches ${ok} of the alternatives`;
  }
  if ("const" in s && value !== s.const) return `${path}: expected const ${JSON.stringify(s.const)}`;
  if (s.enum && !s.enum.includes(value)) return `${path}: ${JSON.stringify(value)} not in enum`;
  if (s.type !== undefined) {
    const types: string[] = Array.isArray(s.type) ? s.type : [s.type];
    if (!types.some((t) => typeOk(value, t))) return `${path}: expected ${types.join("|")}, got ${JSON.stringify(value)}`;
  }
  if (typeof value === "string") {
    const n = [...value].length;
    if (s.minLength !== undefined && n < s.minLength) return `${path}: shorter than ${s.minLength}`;
    if (s.maxLength !== undefined && n > s.maxLength) return `${path}: longer than ${s.maxLength}`;
    if (s.format === "date" && !/^\d{4}-\d{2}-\d{2}$/.test(value)) return `${path}: not a date`;
    if (s.format === "time" && !/^\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?$/.test(value)) return `${path}: not a time`;
    if (s.format === "date-time" && Number.isNaN(Date.parse(value))) return `${path}: not a date-time`;
  }
  if (typeof value === "string" && typeof s.pattern === "string" && !new RegExp(s.pattern, "u").test(value)) {
    return `${path}: ${JSON.stringify(value)} does not match /${s.pattern}/`;
  }
  if (typeof value === "number") {
    const exclMin = s.exclusiveMinimum === true ? s.minimum : typeof s.exclusiveMinimum === "number" ? s.exclusiveMinimum : undefined;
    const exclMax = s.exclusiveMaximum === true ? s.maximum : typeof s.exclusiveMaximum === "number" ? s.exclusiveMaximum : undefined;
    if (s.minimum !== undefined && s.exclusiveMinimum !== true && value < s.minimum) return `${path}: ${value} below minimum ${s.minimum}`;
    if (s.maximum !== undefined && s.exclusiveMaximum !== true && value > s.maximum) return `${path}: ${value} above maximum ${s.maximum}`;
    if (exclMin !== undefined && value <= exclMin) return `${path}: ${value} not above ${exclMin}`;
    if (exclMax !== undefined && value >= exclMax) return `${path}: ${value} not below ${exclMax}`;
    if (s.multipleOf !== undefined && !Number.isInteger(value / s.multipleOf)) return `${path}: ${value} not a multiple of ${s.multipleOf}`;
  }
  if (Array.isArray(value)) {
    if (s.minItems !== undefined && value.length < s.minItems) return `${path}: fewer than ${s.minItems} items`;
    if (s.maxItems !== undefined && value.length > s.maxItems) return `${path}: more than ${s.maxItems} items`;
    for (const [i, item] of value.entries()) {
      const sub = s.prefixItems?.[i] ?? s.items;
      if (sub !== undefined) {
        const e = validateJson(item, sub, root, `${path}[${i}]`);
        if (e) return e;
      }
    }
  }
  if (typeof value === "object" && value !== null && !Array.isArray(value)) {
    const obj = value as Record<string, unknown>;
    for (const key of s.required ?? []) if (!(key in obj)) return `${path}: missing required "${key}"`;
    for (const [key, v] of Object.entries(obj)) {
      const sub = s.properties?.[key] ?? s.additionalProperties ?? (s.properties ? true : true);
      if (!(key in (s.properties ?? {})) && s.additionalProperties === false) return `${path}: unexpected property "${key}"`;
      const e = validateJson(v, sub as Schema, root, `${path}.${key}`);
      if (e) return e;
    }
  }
  return null;
}

function typeOk(value: unknown, type: string): boolean {
  switch (type) {
    case "string":
      return typeof value === "string";
    case "number":
      return typeof value === "number" && Number.isFinite(value);
    case "integer":
      return Number.isInteger(value);
    case "boolean":
      return typeof value === "boolean";
    case "null":
      return value === null;
    case "array":
      return Array.isArray(value);
    case "object":
      return typeof value === "object" && value !== null && !Array.isArray(value);
    default:
      return false;
  }
}
