/**
 * Output formats a request may ask for (OpenAI's and Mistral's `response_format`): a JSON object, or JSON valid
 * under a JSON Schema. The engine keeps the output inside the format token by token (constrained decoding with
 * xgrammar, see constraints.ts). Here is what needs no grammar engine, so that the HTTP layer and the edge
 * gateway can refuse a schema at once: the check that every keyword of the schema is one the grammar enforces.
 * Keywords it would silently ignore (`not`, `uniqueItems`, `if`...) are refused rather than half obeyed.
 */

export interface OutputFormat {
  /** The JSON Schema the output must satisfy, as JSON text. */
  schema: string;
  /**
   * Whether object properties and array items that the schema does not list are refused even where JSON Schema
   * would allow them (`additionalProperties` left out): what OpenAI's structured outputs give.
   */
  strict: boolean;
}

/** `response_format: {type: "json_object"}`: any JSON object. */
export const JSON_OBJECT: OutputFormat = { schema: '{"type":"object"}', strict: false };

/** Schemas larger than this (as JSON text) are refused: compiling one costs the engine's thread its time. */
export const MAX_SCHEMA_BYTES = 64 * 1024;
const MAX_DEPTH = 64;

/** A schema the server cannot enforce; `path` points into it (JSON Pointer). */
export class FormatError extends Error {
  override name = "FormatError";
  constructor(message: string, readonly path: string) {
    super(path ? `${message} (at ${path})` : message);
  }
}

const TYPES = new Set(["string", "number", "integer", "boolean", "null", "object", "array"]);
/**
 * String formats the grammar spells out (others would be plain strings); those that random walks through
 * xgrammar 0.1.27's own grammars found producing invalid values (minute 60 in a date-time, leading zeros in an
 * IPv4 address, emails a validator refuses) go to it as the patterns of FORMAT_PATTERNS instead.
 */
const FORMATS = new Set([
  "date",
  "date-time",
  "time",
  "duration",
  "uuid",
  "email",
  "hostname",
  "uri-reference",
  "ipv4",
  "ipv6",
]);
/** Assertions the grammar does not enforce (it would ignore them), with what to do instead where there is one. */
const UNSUPPORTED: Record<string, string> = {
  not: "",
  if: "",
  then: "",
  else: "",
  contains: "",
  minContains: "",
  maxContains: "",
  uniqueItems: "",
  dependentRequired: "",
  dependentSchemas: "",
  unevaluatedItems: "",
  $dynamicRef: "",
  $recursiveRef: "",
  nullable: ': write "type": [..., "null"] instead',
  multipleOf: "",
};
const FORMAT_PATTERNS: Record<string, string> = {
  "date-time": "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]" +
    "(\\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$",
  time: "^([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$",
  ipv4:
    "^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$",
  email:
    "^[A-Za-z0-9_+-]{1,32}(\\.[A-Za-z0-9_+-]{1,32}){0,4}@([A-Za-z0-9]([A-Za-z0-9-]{0,30}[A-Za-z0-9])?\\.){1,4}" +
    "[A-Za-z]{2,16}$",
};
const BOUNDS = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"];
/** Keywords whose value is one schema, a list of them, or a map of them. */
const ONE = ["additionalProperties", "items", "propertyNames"];
const LIST = ["anyOf", "oneOf", "allOf", "prefixItems"];
const MAP = ["properties", "patternProperties", "$defs", "definitions"];

/** `response_format: {type: "json_schema"}`: checks the schema's keywords and keeps it as text. */
export function jsonSchemaFormat(schema: unknown): OutputFormat {
  const text = JSON.stringify(schema);
  if (text === undefined) throw new FormatError("the schema must be a JSON object or a boolean", "");
  if (new TextEncoder().encode(text).length > MAX_SCHEMA_BYTES) {
    throw new FormatError(`the schema is larger than ${MAX_SCHEMA_BYTES} bytes`, "");
  }
  if (schema === false) throw new FormatError("the schema `false` allows nothing", "");
  checkSchema(schema, "", 0);
  const rewritten = mapSchemas(schema, (s) => {
    if (typeof s.format !== "string" || !(s.format in FORMAT_PATTERNS)) return s;
    const { format, ...rest } = s;
    return { ...rest, pattern: FORMAT_PATTERNS[format] };
  });
  return { schema: JSON.stringify(rewritten), strict: true };
}

type Schema = Record<string, unknown>;
const isSchemaMap = (v: unknown): v is Schema => typeof v === "object" && v !== null && !Array.isArray(v);

/** `schema` with `f` applied to it and to every schema inside it (through the keywords that hold schemas). */
function mapSchemas(schema: unknown, f: (s: Schema) => Schema): unknown {
  if (!isSchemaMap(schema)) return schema;
  const s = { ...f(schema) };
  for (const key of ONE) if (key in s) s[key] = mapSchemas(s[key], f);
  for (const key of LIST) if (Array.isArray(s[key])) s[key] = s[key].map((sub) => mapSchemas(sub, f));
  for (const key of MAP) {
    const map = s[key];
    if (isSchemaMap(map)) {
      s[key] = Object.fromEntries(Object.entries(map).map(([name, sub]) => [name, mapSchemas(sub, f)]));
    }
  }
  return s;
}

const pointer = (path: string, key: string | number) =>
  `${path}/${String(key).replaceAll("~", "~0").replaceAll("/", "~1")}`;

function checkSchema(schema: unknown, path: string, depth: number): void {
  if (typeof schema === "boolean") return;
  if (!isSchemaMap(schema)) throw new FormatError("a schema must be a JSON object or a boolean", path);
  if (depth > MAX_DEPTH) throw new FormatError(`the schema nests deeper than ${MAX_DEPTH}`, path);
  const s = schema;
  for (const [key, hint] of Object.entries(UNSUPPORTED)) {
    // `uniqueItems: false` and `nullable: false` assert nothing.
    if (key in s && s[key] !== false) {
      throw new FormatError(`"${key}" is not supported by this server's constrained decoding${hint}`, path);
    }
  }
  if (s.unevaluatedProperties !== undefined && s.unevaluatedProperties !== false) {
    throw new FormatError('"unevaluatedProperties" is supported only as false', path);
  }
  // xgrammar's grammar for bounded numbers (not integers) lets through values outside the bounds.
  if (BOUNDS.some((key) => key in s) && s.type !== "integer") {
    throw new FormatError('numeric bounds are supported only with "type": "integer"', path);
  }
  if ("type" in s) {
    const types = Array.isArray(s.type) ? s.type : [s.type];
    for (const type of types) {
      if (typeof type !== "string" || !TYPES.has(type)) {
        throw new FormatError(`unknown type ${JSON.stringify(type)}`, pointer(path, "type"));
      }
    }
  }
  if ("format" in s && !(typeof s.format === "string" && FORMATS.has(s.format))) {
    throw new FormatError(
      `string format ${JSON.stringify(s.format)} is not supported (supported: ${[...FORMATS].join(", ")})`,
      pointer(path, "format"),
    );
  }
  if ("pattern" in s) checkPattern(s.pattern, pointer(path, "pattern"));
  // The grammar keeps only the first of a pattern, a format and length bounds on one string.
  const shapes = ["pattern", "format", "minLength|maxLength"].filter((k) =>
    k.split("|").some((key) => key in s)
  );
  if (shapes.length > 1) {
    throw new FormatError(
      `a string with ${shapes.join(" and ").replace("|", "/")} is not supported: give one of them`,
      path,
    );
  }
  if ("$ref" in s && !(typeof s.$ref === "string" && s.$ref.startsWith("#"))) {
    throw new FormatError(
      `only references inside the schema ("#/$defs/...") are supported`,
      pointer(path, "$ref"),
    );
  }
  // xgrammar lets any value through under names that propertyNames admits, whatever else the schema says.
  if (
    "propertyNames" in s && ["properties", "patternProperties", "additionalProperties"].some((k) => k in s)
  ) {
    throw new FormatError(
      '"propertyNames" is supported only without properties, patternProperties and additionalProperties',
      path,
    );
  }
  if (Array.isArray(s.allOf) && s.allOf.length > 1) {
    throw new FormatError('"allOf" with more than one schema is not supported', pointer(path, "allOf"));
  }
  if (Array.isArray(s.items)) {
    throw new FormatError('"items" as a list is not supported: use "prefixItems"', pointer(path, "items"));
  }
  for (const key of ["enum", "required"]) {
    if (key in s && !Array.isArray(s[key])) {
      throw new FormatError(`"${key}" must be a list`, pointer(path, key));
    }
  }
  for (const key of ONE) if (key in s) checkSchema(s[key], pointer(path, key), depth + 1);
  for (const key of LIST) {
    if (!(key in s)) continue;
    const list = s[key];
    if (!Array.isArray(list) || list.length === 0) {
      throw new FormatError(`"${key}" must be a non-empty list of schemas`, pointer(path, key));
    }
    list.forEach((sub, i) => checkSchema(sub, pointer(pointer(path, key), i), depth + 1));
  }
  for (const key of MAP) {
    if (!(key in s)) continue;
    const map = s[key];
    if (!isSchemaMap(map)) throw new FormatError(`"${key}" must map names to schemas`, pointer(path, key));
    for (const [name, sub] of Object.entries(map)) {
      if (key === "patternProperties") checkPattern(name, pointer(pointer(path, key), name));
      checkSchema(sub, pointer(pointer(path, key), name), depth + 1);
    }
  }
}

/**
 * A regular expression the grammar can spell and whose every match a JSON string can hold as it is: xgrammar
 * writes a pattern's characters between the quotes unescaped, so a pattern that could match a quote, a
 * backslash or a control character (`.`, `[^...]`, `\\s`, `[ -~]`...) would produce invalid JSON. Valid, without
 * look-around or back-references, and its character sets without those characters.
 */
function checkPattern(pattern: unknown, path: string): void {
  if (typeof pattern !== "string") throw new FormatError("a pattern must be a string", path);
  try {
    new RegExp(pattern, "u");
  } catch (err) {
    throw new FormatError(`invalid pattern: ${(err as Error).message}`, path);
  }
  if (/\(\?<?[=!]|\\[1-9]|\\k</.test(pattern)) {
    throw new FormatError("patterns with look-around or back-references are not supported", path);
  }
  const unsafe = unsafeInJsonString(pattern);
  if (unsafe) {
    throw new FormatError(
      `the pattern's ${unsafe} could match a quote, a backslash or a control character, which this server ` +
        "would write into the JSON string unescaped: use character sets without them",
      path,
    );
  }
}

/** Code points a JSON string cannot hold unescaped. */
const unsafeCode = (lo: number, hi: number) =>
  lo < 0x20 || (lo <= 0x22 && hi >= 0x22) || (lo <= 0x5c && hi >= 0x5c);
/** Escapes that stand for a set containing such a character, or for one. */
const UNSAFE_ESCAPES = new Set(["D", "W", "S", "s", "n", "r", "t", "f", "v", "0", "c", "\\", '"', "p", "P"]);

/** The part of a (valid) pattern that could match a character unsafe in a JSON string, or undefined. */
function unsafeInJsonString(pattern: string): string | undefined {
  const chars = [...pattern];
  /** The code point an escape at chars[i] (after the backslash) stands for, and where it ends. */
  const escaped = (i: number): { code?: number; end: number; bad: boolean } => {
    const c = chars[i];
    if (c === "x") return { code: parseInt(chars.slice(i + 1, i + 3).join(""), 16), end: i + 3, bad: false };
    if (c === "u") {
      const braces = chars[i + 1] === "{";
      const hex = braces
        ? chars.slice(i + 2, chars.indexOf("}", i)).join("")
        : chars.slice(i + 1, i + 5).join("");
      return { code: parseInt(hex, 16), end: braces ? chars.indexOf("}", i) + 1 : i + 5, bad: false };
    }
    if (UNSAFE_ESCAPES.has(c)) return { end: i + 1, bad: true };
    return { code: /[dwbB]/.test(c) ? undefined : c.codePointAt(0), end: i + 1, bad: false };
  };
  for (let i = 0; i < chars.length;) {
    const c = chars[i];
    if (c === "\\") {
      const e = escaped(i + 1);
      if (e.bad || (e.code !== undefined && unsafeCode(e.code, e.code))) return `"\\${chars[i + 1]}"`;
      i = e.end;
    } else if (c === ".") {
      return '"."';
    } else if (c === '"') {
      return "quote";
    } else if (c === "[") {
      if (chars[i + 1] === "^") return "negated set";
      const start = i;
      i++;
      while (i < chars.length && chars[i] !== "]") {
        let lo: number | undefined;
        if (chars[i] === "\\") {
          const e = escaped(i + 1);
          if (e.bad) return `set ${chars.slice(start, i + 2).join("")}`;
          lo = e.code;
          i = e.end;
        } else {
          lo = chars[i].codePointAt(0)!;
          i++;
        }
        let hi = lo;
        if (chars[i] === "-" && chars[i + 1] !== "]" && lo !== undefined) {
          i++;
          if (chars[i] === "\\") {
            const e = escaped(i + 1);
            hi = e.code;
            i = e.end;
          } else {
            hi = chars[i].codePointAt(0)!;
            i++;
          }
        }
        if (lo !== undefined && hi !== undefined && unsafeCode(lo, hi)) {
          return `set ${chars.slice(start, i).join("")}`;
        }
      }
      i++;
    } else {
      i++;
    }
  }
  return undefined;
}
