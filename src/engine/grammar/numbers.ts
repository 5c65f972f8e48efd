/**
 * GBNF for JSON numbers within bounds, written digit by digit (the idea of
 * llama.cpp's `_generate_min_max_int`, extended to decimal fractions). Every
 * string the expressions match is a JSON number inside the bounds; not every
 * number inside the bounds is matched (no exponents, at most 15 significant
 * digits), which keeps the output exact when read back as a double.
 *
 * Functions here return one GBNF expression (no rule definitions) or throw
 * `NumberGrammarError` saying why the bounds cannot be enforced.
 */

/** Bounds that cannot be enforced exactly; `keyword` names the schema keyword at fault. */
export class NumberGrammarError extends Error {
  constructor(
    readonly keyword: string,
    message: string,
  ) {
    super(message);
    this.name = "NumberGrammarError";
  }
}

/** Significant digits a generated number may have: any such decimal reads back as a distinct double (DBL_DIG). */
export const MAX_DIGITS = 15;
/** The largest magnitude a bounded integer may take (15 digits, so below 2^53). */
const MAX_INT = 10n ** BigInt(MAX_DIGITS) - 1n;
/** Integer digits of a bounded number whose upper side is open. */
const OPEN_INT_DIGITS = 9;
/** The most multiples a bounded `multipleOf` may list. */
const MAX_LISTED_MULTIPLES = 64;
/** The largest `multipleOf` enforced by a digit automaton (one rule per remainder and length). */
const MAX_AUTOMATON_DIVISOR = 25;

export interface NumberBounds {
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  multipleOf?: number;
}

const group = (alts: string[]): string => (alts.length === 1 ? alts[0]! : `(${alts.join(" | ")})`);
const digitsOf = (n: bigint): number => n.toString().length;
const rep = (n: number): string => (n === 1 ? "[0-9]" : `[0-9]{${n}}`);
const charRange = (a: number, b: number): string => (a === b ? `"${a}"` : b === a + 1 ? `[${a}${b}]` : `[${a}-${b}]`);

/** Alternatives matching the digit strings of equal length n between a and b (a <= b, both n digits). */
function sameLength(a: string, b: string): string[] {
  if (a === b) return [`"${a}"`];
  let i = 0;
  while (a[i] === b[i]) i++;
  const prefix = a.slice(0, i);
  const restA = a.slice(i + 1);
  const restB = b.slice(i + 1);
  const n = restA.length;
  const d1 = Number(a[i]);
  const d2 = Number(b[i]);
  const loFull = /^0*$/.test(restA);
  const hiFull = /^9*$/.test(restB);
  const parts: string[] = [];
  if (!loFull) parts.push(`"${d1}" ${group(sameLength(restA, "9".repeat(n)))}`);
  const from = loFull ? d1 : d1 + 1;
  const to = hiFull ? d2 : d2 - 1;
  if (from <= to) parts.push(n === 0 ? charRange(from, to) : `${charRange(from, to)} ${rep(n)}`);
  if (!hiFull) parts.push(`"${d2}" ${group(sameLength("0".repeat(n), restB))}`);
  return prefix ? [`"${prefix}" ${group(parts)}`] : parts;
}

/** Alternatives matching the decimal strings (no leading zeros) of the integers in [lo, hi], 0 <= lo <= hi. */
export function unsignedRange(lo: bigint, hi: bigint): string[] {
  const lenLo = digitsOf(lo);
  const lenHi = digitsOf(hi);
  if (lenLo === lenHi) return sameLength(lo.toString(), hi.toString());
  const alts: string[] = [];
  const lowestOf = (len: number) => (len === 1 ? 0n : 10n ** BigInt(len - 1));
  let firstFull = lenLo;
  if (lo !== lowestOf(lenLo)) {
    alts.push(...sameLength(lo.toString(), "9".repeat(lenLo)));
    firstFull = lenLo + 1;
  }
  const lastFull = hi === 10n ** BigInt(lenHi) - 1n ? lenHi : lenHi - 1;
  if (firstFull <= lastFull) {
    // Every number of lengths firstFull..lastFull.
    if (firstFull === 1) alts.push(`"0"`);
    const lo1 = Math.max(firstFull, 1) - 1;
    const hi1 = lastFull - 1;
    alts.push(hi1 === 0 ? "[1-9]" : `[1-9] [0-9]{${lo1},${hi1}}`);
  }
  if (lastFull < lenHi) alts.push(...sameLength(lowestOf(lenHi).toString(), hi.toString()));
  return alts;
}

/** Integers in [lo, hi]; "-0" is never generated. */
export function integerRange(lo: bigint, hi: bigint): string {
  const alts: string[] = [];
  if (lo < 0n) {
    const magnitudeLo = hi < 0n ? -hi : 1n;
    alts.push(`"-" ${group(unsignedRange(magnitudeLo, -lo))}`);
  }
  if (hi >= 0n) alts.push(...unsignedRange(lo < 0n ? 0n : lo, hi));
  return group(alts);
}

/** A non-negative decimal: integer part and fraction digits without trailing zeros. */
interface Dec {
  int: bigint;
  frac: string;
}
interface Limit {
  at: Dec;
  isStrict: boolean;
}

/** The exact decimal value of a double's shortest representation, split into sign, digits and significant digit count. */
export function toDecimal(x: number): { isNegative: boolean; dec: Dec; significant: number } {
  const s = Math.abs(x).toString();
  const m = /^(\d+)(?:\.(\d+))?(?:e([-+]\d+))?$/.exec(s);
  if (!m) throw new Error(`unexpected number text ${s}`);
  let digits = m[1]! + (m[2] ?? "");
  let point = m[1]!.length + Number(m[3] ?? 0);
  if (point < 0) {
    digits = "0".repeat(-point) + digits;
    point = 0;
  }
  if (point > digits.length) digits += "0".repeat(point - digits.length);
  const int = BigInt(digits.slice(0, point) || "0");
  const frac = digits.slice(point).replace(/0+$/, "");
  const significant = (m[1]! + (m[2] ?? "")).replace(/^0+/, "").replace(/0+$/, "").length;
  return { isNegative: x < 0, dec: { int, frac }, significant };
}

function compareDec(a: Dec, b: Dec): number {
  if (a.int !== b.int) return a.int < b.int ? -1 : 1;
  const n = Math.max(a.frac.length, b.frac.length);
  const fa = a.frac.padEnd(n, "0");
  const fb = b.frac.padEnd(n, "0");
  return fa === fb ? 0 : fa < fb ? -1 : 1;
}

interface FracLimit {
  digits: string;
  isStrict: boolean;
}

/** Whether an empty fraction (value 0) meets the limits on 0.F. */
function allowsZero(lo: FracLimit | null, hi: FracLimit | null): boolean {
  const loOk = lo === null || (lo.digits === "" && !lo.isStrict);
  const hiOk = hi === null || hi.digits !== "" || !hi.isStrict;
  return loOk && hiOk;
}

/** Digit strings F of length 1..n with lo <= 0.F <= hi (strict where marked); null when there is none. */
function fractionDigits(n: number, lo: FracLimit | null, hi: FracLimit | null): string | null {
  if (n === 0) return null;
  if (lo && lo.digits === "" && !lo.isStrict) lo = null;
  if (hi && hi.digits === "") return hi.isStrict || lo ? null : `"0"{1,${n}}`;
  if (!lo && !hi) return n === 1 ? "[0-9]" : `[0-9]{1,${n}}`;
  const l0 = lo ? Number(lo.digits[0] ?? "0") : -1;
  const h0 = hi ? Number(hi.digits[0]) : 10;
  const alts: string[] = [];
  // Digits below l0 fail the lower limit and above h0 the upper; between them the rest is free.
  const tail = (nextLo: FracLimit | null, nextHi: FracLimit | null): string | null => {
    const rest = fractionDigits(n - 1, nextLo, nextHi);
    const zeroOk = allowsZero(nextLo, nextHi);
    if (rest === null) return zeroOk ? "" : null;
    return zeroOk ? ` (${rest})?` : ` ${rest.includes(" ") ? `(${rest})` : rest}`;
  };
  const loRest = lo ? { digits: lo.digits.slice(1), isStrict: lo.isStrict } : null;
  const hiRest = hi ? { digits: hi.digits.slice(1), isStrict: hi.isStrict } : null;
  if (l0 === h0) {
    const t = tail(loRest, hiRest);
    if (t !== null) alts.push(`"${l0}"${t}`);
  } else {
    if (l0 >= 0) {
      const t = tail(loRest, null);
      if (t !== null) alts.push(`"${l0}"${t}`);
    }
    if (l0 + 1 <= h0 - 1) {
      const t = tail(null, null);
      alts.push(`${charRange(l0 + 1, h0 - 1)}${t}`);
    }
    if (h0 <= 9) {
      const t = tail(null, hiRest);
      if (t !== null) alts.push(`"${h0}"${t}`);
    }
  }
  return alts.length === 0 ? null : group(alts);
}

/** The fraction part ("." digits, maybe optional) for limits on 0.F; null when none fits. */
function fraction(n: number, lo: FracLimit | null, hi: FracLimit | null): string | null {
  const digits = fractionDigits(n, lo, hi);
  const zeroOk = allowsZero(lo, hi);
  if (digits === null) return zeroOk ? "" : null;
  return zeroOk ? ` ("." ${digits})?` : ` "." ${digits}`;
}

/** Non-negative decimals within the limits, integer part below 10^intDigits, at most fracDigits fraction digits. */
function unsignedDecimal(lo: Limit | null, hi: Limit | null, intDigits: number, fracDigits: number): string[] {
  const maxInt = 10n ** BigInt(intDigits) - 1n;
  if (hi && hi.at.int > maxInt) hi = null;
  const loI = lo?.at.int ?? 0n;
  const hiI = hi?.at.int ?? maxInt;
  if (loI > hiI) return [];
  const loF = lo ? { digits: lo.at.frac, isStrict: lo.isStrict } : null;
  const hiF = hi ? { digits: hi.at.frac, isStrict: hi.isStrict } : null;
  const alts: string[] = [];
  if (loI === hiI) {
    const f = fraction(fracDigits, loF, hiF);
    if (f !== null) alts.push(`"${loI}"${f}`);
    return alts;
  }
  let midLo = loI;
  let midHi = hiI;
  if (loF && (loF.digits !== "" || loF.isStrict)) {
    const f = fraction(fracDigits, loF, null);
    if (f !== null) alts.push(`"${loI}"${f}`);
    midLo = loI + 1n;
  }
  if (hiF) {
    midHi = hiI - 1n;
  }
  if (midLo <= midHi) {
    const any = fracDigits === 0 ? "" : ` ("." ${fracDigits === 1 ? "[0-9]" : `[0-9]{1,${fracDigits}}`})?`;
    const ints = unsignedRange(midLo, midHi);
    alts.push(`${ints.length === 1 && !any ? ints[0] : group(ints)}${any}`);
  }
  if (hiF) {
    const f = fraction(fracDigits, null, hiF);
    if (f !== null) alts.push(`"${hiI}"${f}`);
  }
  return alts;
}

interface Resolved {
  lo: { value: number; isStrict: boolean; keyword: string } | null;
  hi: { value: number; isStrict: boolean; keyword: string } | null;
}

/** The tighter of minimum/exclusiveMinimum and of maximum/exclusiveMaximum (draft-6 numeric forms). */
function resolve(b: NumberBounds): Resolved {
  const pick = (incl: number | undefined, excl: number | undefined, inclKey: string, exclKey: string, isLower: boolean) => {
    const cands: Array<{ value: number; isStrict: boolean; keyword: string }> = [];
    if (incl !== undefined) cands.push({ value: incl, isStrict: false, keyword: inclKey });
    if (excl !== undefined) cands.push({ value: excl, isStrict: true, keyword: exclKey });
    if (cands.length === 0) return null;
    cands.sort((x, y) => (x.value === y.value ? (x.isStrict ? -1 : 1) : isLower ? y.value - x.value : x.value - y.value));
    return cands[0]!;
  };
  return {
    lo: pick(b.minimum, b.exclusiveMinimum, "minimum", "exclusiveMinimum", true),
    hi: pick(b.maximum, b.exclusiveMaximum, "maximum", "exclusiveMaximum", false),
  };
}

/** The integer bounds [lo, hi] an integer schema allows, clipped to 15 digits; throws when empty. */
function integerBounds(b: NumberBounds): { lo: bigint; hi: bigint } {
  const { lo, hi } = resolve(b);
  let loI = -MAX_INT;
  let hiI = MAX_INT;
  if (lo) {
    const f = Math.floor(lo.value);
    const first = lo.isStrict || f !== lo.value ? f + 1 : f;
    if (first > Number(MAX_INT)) throw new NumberGrammarError(lo.keyword, `is too large to enforce (integers are generated with at most ${MAX_DIGITS} digits)`);
    if (first > -Number(MAX_INT)) loI = BigInt(first);
  }
  if (hi) {
    const c = Math.ceil(hi.value);
    const last = hi.isStrict || c !== hi.value ? c - 1 : c;
    if (last < -Number(MAX_INT)) throw new NumberGrammarError(hi.keyword, `is too small to enforce (integers are generated with at most ${MAX_DIGITS} digits)`);
    if (last < Number(MAX_INT)) hiI = BigInt(last);
  }
  if (loI > hiI) throw new NumberGrammarError(hi?.keyword ?? "maximum", "leaves no integer within the bounds");
  return { lo: loI, hi: hiI };
}

/**
 * GBNF for the integers a schema's bounds and `multipleOf` allow. Helper
 * rules (only for `multipleOf`) are appended to `rules`, named from `prefix`.
 */
export function integerGbnf(b: NumberBounds, prefix = "int", rules: string[] = []): string {
  const { lo, hi } = integerBounds(b);
  if (b.multipleOf === undefined || b.multipleOf === 1) return integerRange(lo, hi);
  const k = b.multipleOf;
  if (!Number.isInteger(k) || k <= 0) throw new NumberGrammarError("multipleOf", "must be a positive integer to be enforced");
  const kb = BigInt(k);
  const first = lo >= 0n ? ((lo + kb - 1n) / kb) * kb : -((-lo / kb) * kb);
  if (first > hi) throw new NumberGrammarError("multipleOf", "leaves no multiple within the bounds");
  const count = (hi - first) / kb + 1n;
  if (count <= BigInt(MAX_LISTED_MULTIPLES)) {
    const values: string[] = [];
    for (let v = first; v <= hi; v += kb) values.push(`"${v}"`);
    return group(values);
  }
  if (k > MAX_AUTOMATON_DIVISOR) {
    throw new NumberGrammarError("multipleOf", `is enforced only up to ${MAX_AUTOMATON_DIVISOR}, or when the bounds leave at most ${MAX_LISTED_MULTIPLES} multiples`);
  }
  // A digit automaton tracks the remainder and generates every multiple of one sign,
  // so a bound may only cut where no multiple is lost (between -k and k).
  const { lo: loBound, hi: hiBound } = resolve(b);
  const cutFails = (keyword: string | undefined): never => {
    throw new NumberGrammarError(keyword ?? "multipleOf", `combined with multipleOf ${k} is enforced only between -${k} and ${k}, or when it leaves at most ${MAX_LISTED_MULTIPLES} multiples`);
  };
  const allowsNegative = lo === -MAX_INT ? true : lo > -kb ? false : cutFails(loBound?.keyword);
  const allowsPositive = hi === MAX_INT ? true : hi < kb ? false : cutFails(hiBound?.keyword);
  if (allowsPositive && lo > kb) cutFails(loBound?.keyword);
  if (allowsNegative && hi < -kb) cutFails(hiBound?.keyword);
  const allowsZeroValue = lo <= 0n && hi >= 0n;
  const magnitude = multiplesAutomaton(k, prefix, rules);
  const alts: string[] = [];
  if (allowsNegative) alts.push(`"-" ${magnitude}`);
  if (allowsZeroValue) alts.push(`"0"`);
  if (allowsPositive) alts.push(magnitude);
  return group(alts);
}

/**
 * Positive multiples of k with at most 15 digits: the first digit [1-9], then
 * one rule per remainder and remaining length listing the digits that lead to
 * each next remainder, ending at remainder 0. Rules are named `<prefix>-<r>-<n>`.
 */
function multiplesAutomaton(k: number, prefix: string, rules: string[]): string {
  const names = new Map<string, string | null>();
  // The rule for non-empty digit strings of length 1..n taking remainder r to 0, or null when there is none.
  const from = (r: number, n: number): string | null => {
    const key = `${r}-${n}`;
    if (names.has(key)) return names.get(key)!;
    names.set(key, null);
    const byNext = new Map<number, number[]>();
    if (n > 0) {
      for (let d = 0; d <= 9; d++) {
        const next = (r * 10 + d) % k;
        byNext.set(next, [...(byNext.get(next) ?? []), d]);
      }
    }
    const alts: string[] = [];
    for (const [next, ds] of byNext) {
      const rest = from(next, n - 1);
      const cls = ds.length === 10 ? "[0-9]" : ds.length === 1 ? `"${ds[0]}"` : `[${ds.join("")}]`;
      if (next === 0) alts.push(rest === null ? cls : `${cls} ${rest}?`);
      else if (rest !== null) alts.push(`${cls} ${rest}`);
    }
    if (alts.length === 0) return null;
    const name = `${prefix}-${key}`;
    rules.push(`${name} ::= ${alts.join(" | ")}`);
    names.set(key, name);
    return name;
  };
  const starts: string[] = [];
  for (let d = 1; d <= 9; d++) {
    const rest = from(d % k, MAX_DIGITS - 1);
    if (d % k === 0) starts.push(rest === null ? `"${d}"` : `"${d}" ${rest}?`);
    else if (rest !== null) starts.push(`"${d}" ${rest}`);
  }
  return group(starts);
}

/**
 * GBNF for the (non-integer) numbers within a schema's bounds: no exponent,
 * at most 15 significant digits. Throws when a bound cannot be met exactly
 * (a strict bound whose value needs more than 15 digits, or bounds so close
 * that no such number lies between them).
 */
export function numberGbnf(b: NumberBounds, prefix = "num", rules: string[] = []): string {
  if (b.multipleOf !== undefined) {
    if (!Number.isInteger(b.multipleOf) || b.multipleOf <= 0) {
      throw new NumberGrammarError("multipleOf", "is enforced only as a positive integer (decimal multiples cannot be checked exactly in binary floating point)");
    }
    return integerGbnf(b, prefix, rules);
  }
  const { lo, hi } = resolve(b);
  const toLimit = (r: NonNullable<Resolved["lo"]>) => {
    const d = toDecimal(r.value);
    if (r.isStrict && d.significant > MAX_DIGITS) {
      throw new NumberGrammarError(r.keyword, `needs more than ${MAX_DIGITS} significant digits to be enforced exactly`);
    }
    return { isNegative: d.isNegative && (d.dec.int !== 0n || d.dec.frac !== ""), at: d.dec, isStrict: r.isStrict };
  };
  const l = lo ? toLimit(lo) : null;
  const h = hi ? toLimit(hi) : null;
  if (l && h) {
    const signed = (x: typeof l) => (x.isNegative ? -1 : 1);
    const cmp = signed(l) !== signed(h) ? signed(l) - signed(h) : signed(l) * compareDec(l.at, h.at);
    if (cmp > 0 || (cmp === 0 && (l.isStrict || h.isStrict))) throw new NumberGrammarError(hi!.keyword, "leaves no number within the bounds");
  }
  const intDigits = (x: typeof l) => (x ? digitsOf(x.at.int) : 0);
  const isOpen = !l || !h;
  let intCap = Math.max(intDigits(l), intDigits(h), isOpen ? OPEN_INT_DIGITS : 1);
  if (intCap > MAX_DIGITS) intCap = MAX_DIGITS;
  const fracCap = MAX_DIGITS - intCap;
  const lowerKeyword = lo?.keyword ?? "minimum";
  if (l && !l.isNegative && l.at.int > 10n ** BigInt(intCap) - 1n) {
    throw new NumberGrammarError(lowerKeyword, `is too large to enforce (numbers are generated with at most ${MAX_DIGITS} digits)`);
  }
  const zero: Dec = { int: 0n, frac: "" };
  const alts: string[] = [];
  // Negative numbers: magnitudes above max(0, -hi), up to -lo; never "-0".
  if (!l || l.isNegative) {
    const magLo: Limit = h && h.isNegative ? { at: h.at, isStrict: h.isStrict } : { at: zero, isStrict: true };
    const magHi: Limit | null = l ? { at: l.at, isStrict: l.isStrict } : null;
    const neg = unsignedDecimal(magLo, magHi, intCap, fracCap);
    if (neg.length > 0) alts.push(`"-" ${group(neg)}`);
  }
  // Zero and positive numbers.
  if (!h || !h.isNegative) {
    const posLo: Limit | null = l && !l.isNegative ? { at: l.at, isStrict: l.isStrict } : null;
    const posHi: Limit | null = h ? { at: h.at, isStrict: h.isStrict } : null;
    alts.push(...unsignedDecimal(posLo, posHi, intCap, fracCap));
  }
  if (alts.length === 0) {
    throw new NumberGrammarError(hi?.keyword ?? lowerKeyword, `leaves no number with at most ${MAX_DIGITS} significant digits within the bounds`);
  }
  return group(alts);
}
