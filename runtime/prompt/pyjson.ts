/**
 * JSON as Python's `json` module reads and writes it, which is how mistral_common puts tools, tool calls and tool
 * results into a prompt (`json.dumps(value, ensure_ascii=False)` of what `json.loads` gave): ", " and ": " between
 * items, non-ASCII kept, numbers as Python prints them (1.0 stays 1.0, 1e20 is 1e+20, NaN is accepted), keys in
 * the order written (a later duplicate replaces the value in place). JSON.parse and JSON.stringify differ in all
 * of these, and each difference would change the prompt's tokens.
 */

/**
 * Nesting deeper than this is not read (JSON text: as if it did not parse; a request's value: TooDeepError), so
 * that nothing here recurses past the stack. Python's own json gives up near 1000 levels.
 */
export const MAX_DEPTH = 256;

/** A value nested deeper than MAX_DEPTH. */
export class TooDeepError extends RangeError {
  override name = "TooDeepError";
}

/** A number, kept as Python prints it. */
export class PyNumber {
  constructor(readonly repr: string) {}
}

export type PyValue = null | boolean | string | PyNumber | PyValue[] | Map<string, PyValue>;

/**
 * `json.loads(text)`, or undefined where Python raises JSONDecodeError; text nested deeper than MAX_DEPTH is
 * undefined too, unless `tooDeep` says to throw a TooDeepError.
 */
export function pyJsonLoads(text: string, options: { tooDeep?: "throw" } = {}): PyValue | undefined {
  const parser = new Parser(text);
  try {
    parser.space();
    const value = parser.value();
    parser.space();
    return parser.at === text.length ? value : undefined;
  } catch (err) {
    if (err instanceof SyntaxError) return undefined;
    if (err instanceof TooDeepError && options.tooDeep !== "throw") return undefined;
    throw err;
  }
}

/** `json.dumps(value, ensure_ascii=False)`. */
export function pyJsonDumps(value: PyValue): string {
  if (value === null) return "null";
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "string") return pyString(value);
  if (value instanceof PyNumber) return value.repr;
  if (Array.isArray(value)) return `[${value.map(pyJsonDumps).join(", ")}]`;
  return `{${[...value].map(([k, v]) => `${pyString(k)}: ${pyJsonDumps(v)}`).join(", ")}}`;
}

/**
 * A value JSON.parse made (a request body's), as Python would hold it had it read the same text: an integral
 * number is an int unless it was written with a fraction or exponent, which JSON.parse no longer shows.
 */
export function fromJs(value: unknown, depth = 0): PyValue {
  if (value === null || typeof value === "boolean" || typeof value === "string") return value;
  if (typeof value === "number") {
    return new PyNumber(Number.isInteger(value) ? BigInt(value).toString() : floatRepr(value));
  }
  if (depth >= MAX_DEPTH) throw new TooDeepError(`JSON nested deeper than ${MAX_DEPTH} levels`);
  if (Array.isArray(value)) return value.map((v) => fromJs(v, depth + 1));
  if (typeof value === "object") {
    return new Map(
      Object.entries(value as Record<string, unknown>).map(([k, v]) => [k, fromJs(v, depth + 1)]),
    );
  }
  throw new TypeError(`not a JSON value: ${typeof value}`);
}

/** The value at `path` inside `value` (object keys and list indices), or undefined. */
export function pyAt(value: PyValue | undefined, ...path: (string | number)[]): PyValue | undefined {
  for (const key of path) {
    if (typeof key === "number" && Array.isArray(value)) value = value[key];
    else if (typeof key === "string" && value instanceof Map) value = value.get(key);
    else return undefined;
  }
  return value;
}

/** A PyValue as a plain JavaScript value (numbers as doubles; NaN and infinities as null, as JSON.stringify). */
export function toJs(value: PyValue): unknown {
  if (value instanceof PyNumber) {
    const x = Number(value.repr);
    return Number.isFinite(x) ? x : null;
  }
  if (Array.isArray(value)) return value.map(toJs);
  if (value instanceof Map) return Object.fromEntries([...value].map(([k, v]) => [k, toJs(v)]));
  return value;
}

const ESCAPES: Record<string, string> = {
  '"': '\\"',
  "\\": "\\\\",
  "\n": "\\n",
  "\r": "\\r",
  "\t": "\\t",
  "\b": "\\b",
  "\f": "\\f",
};

// deno-lint-ignore no-control-regex
const NEEDS_ESCAPE = /["\\\x00-\x1f]/g;

function pyString(s: string): string {
  return `"${pyEscaped(s)}"`;
}

/** A string's characters as `json.dumps` writes them between its quotes. */
export function pyEscaped(s: string): string {
  const escape = (c: string) => ESCAPES[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`;
  return s.replace(NEEDS_ESCAPE, escape);
}

/** Python's repr of a float: the shortest digits that read back, positional for exponents -4..15. */
export function floatRepr(x: number): string {
  if (Number.isNaN(x)) return "NaN";
  if (!Number.isFinite(x)) return x > 0 ? "Infinity" : "-Infinity";
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const [mantissa, exp] = Math.abs(x).toExponential().split("e");
  const digits = mantissa.replace(".", "");
  const e = Number(exp);
  const sign = x < 0 ? "-" : "";
  if (e < -4 || e >= 16) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    return `${sign}${m}e${e < 0 ? "-" : "+"}${String(Math.abs(e)).padStart(2, "0")}`;
  }
  if (e < 0) return `${sign}0.${"0".repeat(-e - 1)}${digits}`;
  const whole = digits.slice(0, e + 1).padEnd(e + 1, "0");
  return `${sign}${whole}.${digits.slice(e + 1) || "0"}`;
}

const NUMBER = /-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;
const WORDS: [string, PyValue | "nan" | "inf" | "-inf"][] = [
  ["null", null],
  ["true", true],
  ["false", false],
  ["NaN", "nan"],
  ["Infinity", "inf"],
  ["-Infinity", "-inf"],
];

class Parser {
  at = 0;
  #depth = 0;
  constructor(readonly text: string) {}

  space(): void {
    while (" \t\n\r".includes(this.text[this.at] ?? "x")) this.at++;
  }

  value(): PyValue {
    const c = this.text[this.at];
    if (c === "{" || c === "[") {
      if (++this.#depth > MAX_DEPTH) throw new TooDeepError(`nested deeper than ${MAX_DEPTH} levels`);
      const value = c === "{" ? this.object() : this.array();
      this.#depth--;
      return value;
    }
    if (c === '"') return this.string();
    for (const [word, value] of WORDS) {
      if (this.text.startsWith(word, this.at)) {
        this.at += word.length;
        if (value === "nan") return new PyNumber("NaN");
        if (value === "inf") return new PyNumber("Infinity");
        if (value === "-inf") return new PyNumber("-Infinity");
        return value;
      }
    }
    NUMBER.lastIndex = this.at;
    const m = NUMBER.exec(this.text);
    if (!m) throw new SyntaxError(`unexpected character at ${this.at}`);
    this.at += m[0].length;
    if (m[1] === undefined && m[2] === undefined) return new PyNumber(BigInt(m[0]).toString());
    return new PyNumber(floatRepr(Number(m[0])));
  }

  object(): Map<string, PyValue> {
    const out = new Map<string, PyValue>();
    this.at++;
    this.space();
    if (this.text[this.at] === "}") {
      this.at++;
      return out;
    }
    while (true) {
      this.space();
      if (this.text[this.at] !== '"') throw new SyntaxError("expected a key");
      const key = this.string();
      this.space();
      this.expect(":");
      this.space();
      out.set(key, this.value());
      this.space();
      if (this.text[this.at] === "}") {
        this.at++;
        return out;
      }
      this.expect(",");
    }
  }

  array(): PyValue[] {
    const out: PyValue[] = [];
    this.at++;
    this.space();
    if (this.text[this.at] === "]") {
      this.at++;
      return out;
    }
    while (true) {
      this.space();
      out.push(this.value());
      this.space();
      if (this.text[this.at] === "]") {
        this.at++;
        return out;
      }
      this.expect(",");
    }
  }

  string(): string {
    // JSON.parse reads a string literal exactly as Python does (escapes, lone surrogates, no raw controls).
    const start = this.at++;
    while (true) {
      const quote = this.text.indexOf('"', this.at);
      if (quote < 0) throw new SyntaxError("unterminated string");
      let backslashes = 0;
      while (this.text[quote - 1 - backslashes] === "\\") backslashes++;
      this.at = quote + 1;
      if (backslashes % 2 === 0) break;
    }
    return JSON.parse(this.text.slice(start, this.at));
  }

  expect(c: string): void {
    if (this.text[this.at] !== c) throw new SyntaxError(`expected ${c} at ${this.at}`);
    this.at++;
  }
}
