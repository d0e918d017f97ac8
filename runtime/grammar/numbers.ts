/**
 * Numeric bounds (`minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`, and `multipleOf` on integers) decided on a JSON number's text
 * as it is written, digit by digit: whether a prefix can still be finished inside the bounds, and whether it is a
 * number inside them. xgrammar's own grammar for bounded numbers lets values outside them through; its integer
 * ranges are exact but cost a state per digit. Arithmetic is exact (decimals as BigInt), so that "0.1" meets
 * `minimum: 0.1`.
 *
 * A bound is the shortest decimal that reads back as the schema's double (what the schema's text said; from 2^53
 * up, the double's exact value, see inclusive). An exclusive bound is pushed out to halfway to the next double,
 * so that a validator that reads the answer as a double (Python's jsonschema, Ajv) never finds it equal to the
 * bound: "0.10000000000000001" is not above 0.1 once read, nor 9007199254740993 above 2^53. On integers the
 * bounds are then made whole: `minimum: 0.5` is 1, `exclusiveMaximum: 10` is 9.
 *
 * Bounded numbers are written without an exponent ("1e-3" is 0.001): the sets of values a prefix can still reach
 * are then intervals, which is what makes the decision cheap.
 */

/** A finite decimal: n / 10^scale. */
export interface Decimal {
  n: bigint;
  scale: number;
}

/** Values between two ends, each missing (unbounded), closed or open; whole multiples of `step` if given. */
export interface Interval {
  lo?: Decimal;
  loOpen?: boolean;
  hi?: Decimal;
  hiOpen?: boolean;
  step?: bigint;
}

const powers: bigint[] = [1n];
function pow10(k: number): bigint {
  while (powers.length <= k) powers.push(powers.at(-1)! * 10n);
  return powers[k];
}

function compare(a: Decimal, b: Decimal): number {
  const x = a.n * pow10(Math.max(0, b.scale - a.scale)), y = b.n * pow10(Math.max(0, a.scale - b.scale));
  return x < y ? -1 : x > y ? 1 : 0;
}

const negate = (d: Decimal): Decimal => ({ n: -d.n, scale: d.scale });

/** A decimal from plain JSON number text or JavaScript's String(number) ("1e-7", "1.5e+300"). */
function decimal(text: string): Decimal {
  const m = /^(-?)(\d+)(?:\.(\d+))?(?:e([+-]?\d+))?$/i.exec(text);
  if (!m) throw new RangeError(`not a number: ${text}`);
  const fraction = m[3] ?? "";
  let n = BigInt(m[2] + fraction);
  let scale = fraction.length - Number(m[4] ?? 0);
  if (scale < 0) {
    n *= pow10(-scale);
    scale = 0;
  }
  return { n: m[1] ? -n : n, scale };
}

/** The exact value of a double. */
function exact(x: number): Decimal {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  const bits = view.getBigUint64(0);
  const exponent = Number((bits >> 52n) & 0x7ffn);
  let mantissa = bits & 0xfffffffffffffn;
  if (exponent) mantissa |= 1n << 52n;
  const e = (exponent || 1) - 1075;
  const n = e >= 0 ? mantissa << BigInt(e) : mantissa * 5n ** BigInt(-e);
  return { n: bits >> 63n ? -n : n, scale: Math.max(0, -e) };
}

/** The next double above `x` (finite). */
function nextUp(x: number): number {
  if (x === 0) return Number.MIN_VALUE;
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  view.setBigInt64(0, view.getBigInt64(0) + (x > 0 ? 1n : -1n));
  return view.getFloat64(0);
}

/** Halfway between two doubles, exactly. */
function halfway(a: number, b: number): Decimal {
  const x = exact(a), y = exact(b);
  const scale = Math.max(x.scale, y.scale);
  const sum = x.n * pow10(scale - x.scale) + y.n * pow10(scale - y.scale);
  return { n: sum * 5n, scale: scale + 1 };
}

/** The larger of two lower ends (the tighter); at one value, open if either is. */
function tighterLow(a: Interval, b: Interval): Interval {
  if (!a.lo) return b;
  if (!b.lo) return a;
  const c = compare(a.lo, b.lo);
  return { lo: c >= 0 ? a.lo : b.lo, loOpen: c > 0 ? a.loOpen : c < 0 ? b.loOpen : a.loOpen || b.loOpen };
}

function tighterHigh(a: Interval, b: Interval): Interval {
  if (!a.hi) return b;
  if (!b.hi) return a;
  const c = compare(a.hi, b.hi);
  return { hi: c <= 0 ? a.hi : b.hi, hiOpen: c < 0 ? a.hiOpen : c > 0 ? b.hiOpen : a.hiOpen || b.hiOpen };
}

const gcd = (a: bigint, b: bigint): bigint => b ? gcd(b, a % b) : a;

/** Values in both. */
export function intersect(a: Interval, b: Interval): Interval {
  const { lo, loOpen } = tighterLow(a, b), { hi, hiOpen } = tighterHigh(a, b);
  const step = a.step && b.step ? a.step / gcd(a.step, b.step) * b.step : a.step ?? b.step;
  return { lo, loOpen, hi, hiOpen, step };
}

/** Whether an interval holds a value (then a finite decimal: its ends are finite decimals). */
export function nonEmpty(i: Interval): boolean {
  if (i.step) return multipleIn(i, i.step);
  if (!i.lo || !i.hi) return true;
  const c = compare(i.lo, i.hi);
  return c < 0 || (c === 0 && !i.loOpen && !i.hiOpen);
}

/** Whether an interval holds a whole multiple of `step`. */
function multipleIn(i: Interval, step: bigint): boolean {
  if (!i.lo || !i.hi) return true;
  const wholes = whole(i);
  const first = -floorDiv(-wholes.lo!.n, step) * step; // the least multiple at or above the lower end
  return first <= wholes.hi!.n;
}

const contains = (i: Interval, d: Decimal) => nonEmpty(intersect(i, { lo: d, hi: d }));

const floorDiv = (n: bigint, d: bigint) => n >= 0n ? n / d : -((-n + d - 1n) / d);

/** The whole numbers of an interval, as a closed interval of them. */
function whole(i: Interval): Interval {
  const out: Interval = { step: i.step };
  if (i.lo) {
    const p = pow10(i.lo.scale);
    const floor = floorDiv(i.lo.n, p);
    out.lo = { n: floor * p === i.lo.n && !i.loOpen ? floor : floor + 1n, scale: 0 };
  }
  if (i.hi) {
    const p = pow10(i.hi.scale);
    const floor = floorDiv(i.hi.n, p);
    out.hi = { n: floor * p === i.hi.n && i.hiOpen ? floor - 1n : floor, scale: 0 };
  }
  return out;
}

/**
 * A schema's bounds as an interval (see the module's comment); `integer`: its values are whole. The bounds must be
 * finite numbers (the schema check says so).
 */
export function boundsInterval(s: Record<string, unknown>, integer: boolean): Interval {
  const num = (key: string) => typeof s[key] === "number" ? s[key] as number : undefined;
  const min = num("minimum"),
    max = num("maximum"),
    xmin = num("exclusiveMinimum"),
    xmax = num("exclusiveMaximum");
  let i: Interval = {};
  if (min !== undefined) i = intersect(i, { lo: inclusive(min) });
  if (max !== undefined) i = intersect(i, { hi: inclusive(max) });
  if (xmin !== undefined) i = intersect(i, { lo: halfway(xmin, nextUp(xmin)), loOpen: true });
  if (xmax !== undefined) i = intersect(i, { hi: halfway(-nextUp(-xmax), xmax), hiOpen: true });
  // On whole numbers, by a whole number (format.ts allows no other multipleOf).
  // Below 2^53, where a validator that reads answers as doubles (Ajv) divides them exactly.
  const step = num("multipleOf");
  if (integer && step !== undefined && Number.isSafeInteger(step) && step > 1) {
    const safe = { n: BigInt(Number.MAX_SAFE_INTEGER), scale: 0 };
    i = intersect(i, { lo: negate(safe), hi: safe, step: BigInt(step) });
  }
  return integer ? whole(i) : i;
}

/**
 * An inclusive bound: the shortest decimal of its double, which is what the schema wrote; from 2^53 up its exact
 * value (every double there is whole): a validator that reads whole answers exactly (Python's) compares them with
 * that, and 10^23 is above `maximum: 1e23` (99999999999999991611392). Below 2^53 no whole number lies between the
 * two, and one that reads answers as doubles agrees with either.
 */
function inclusive(x: number): Decimal {
  return Math.abs(x) >= 2 ** 53 ? exact(x) : decimal(String(x));
}

/** A number's text so far: its sign, integer digits, whether a point came, fraction digits. */
interface Parts {
  negative: boolean;
  digits: string;
  point: boolean;
  fraction: string;
}

function parts(text: string): Parts | undefined {
  const m = /^(-?)(\d*)(\.?)(\d*)$/.exec(text);
  if (!m || (m[3] && !m[2]) || (m[4] && !m[3])) return undefined;
  return { negative: m[1] === "-", digits: m[2], point: m[3] === ".", fraction: m[4] };
}

/**
 * Whether `text`, the beginning of a JSON number without exponent (a sign, digits, a point, digits), can be
 * finished to a number inside `bounds`; after a minus, to one below zero.
 */
export function reachable(text: string, bounds: Interval): boolean {
  const p = parts(text);
  if (!p) return false;
  // Work on magnitudes: a negative number's bounds mirrored, and above zero (xgrammar's integers have no "-0").
  const b: Interval = p.negative
    ? intersect(
      {
        lo: bounds.hi && negate(bounds.hi),
        loOpen: bounds.hiOpen,
        hi: bounds.lo && negate(bounds.lo),
        hiOpen: bounds.loOpen,
        step: bounds.step,
      },
      { lo: { n: 0n, scale: 0 }, loOpen: true },
    )
    : bounds;
  if (!p.digits) return nonEmpty(intersect(b, { lo: { n: 0n, scale: 0 } }));
  if (b.step && p.digits !== "0") return reachableMultiple(BigInt(p.digits), b, b.step);
  const unit = { n: 1n, scale: p.fraction.length };
  const start = decimal(`${p.digits}${p.point ? "." : ""}${p.fraction}${p.point && !p.fraction ? "0" : ""}`);
  const end = { n: start.n + pow10(start.scale - unit.scale), scale: start.scale };
  // Written so far: a point or a zero leaves [start, start + one unit of the last digit).
  if (p.point || p.digits === "0") return nonEmpty(intersect(b, { lo: start, hi: end, hiOpen: true }));
  // Digits without a point may go on: [I·10^k, (I+1)·10^k) for every k, ascending. The first that ends above the
  // lower bound is the only one that may meet the bounds, if any does.
  let k = 0;
  // (A lower bound at or below zero: the first already ends above it.)
  if (b.lo && b.lo.n > 0n) {
    const above = (k: number) => compare({ n: end.n * pow10(k), scale: 0 }, b.lo!) > 0;
    // Digits of the bound's whole part, less the prefix's: (I+1)·10^k stays below it for any smaller k.
    k = Math.max(0, b.lo.n.toString().length - b.lo.scale - p.digits.length - 1);
    while (!above(k)) k++;
  }
  return nonEmpty(
    intersect(b, {
      lo: { n: start.n * pow10(k), scale: 0 },
      hi: { n: end.n * pow10(k), scale: 0 },
      hiOpen: true,
    }),
  );
}

/**
 * Whether digits `prefix` (a magnitude, no point: whole numbers) can go on to a multiple of `step` inside `b`:
 * through the ranges [prefix·10^k, (prefix+1)·10^k), ascending, until one begins above the upper end or is wide
 * enough to hold a multiple whole.
 */
function reachableMultiple(prefix: bigint, b: Interval, step: bigint): boolean {
  for (let k = 0;; k++) {
    const range: Interval = {
      lo: { n: prefix * pow10(k), scale: 0 },
      hi: { n: (prefix + 1n) * pow10(k), scale: 0 },
      hiOpen: true,
      step,
    };
    if (b.hi && compare(range.lo!, b.hi) > 0) return false;
    if (nonEmpty(intersect(b, range))) return true;
  }
}

/** Whether a schema's number (`enum`, `const`) is inside `bounds`. */
export function holds(bounds: Interval, value: number): boolean {
  return contains(bounds, inclusive(value));
}

/** Whether `text` is a whole JSON number without exponent inside `bounds`. */
export function within(text: string, bounds: Interval): boolean {
  const p = parts(text);
  if (!p || !p.digits || (p.point && !p.fraction)) return false;
  return contains(bounds, decimal(text));
}
