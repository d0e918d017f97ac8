/**
 * Output formats a request may ask for (OpenAI's and Mistral's `response_format`): a JSON object, or JSON valid
 * under a JSON Schema; or one of a list of strings, text a regular expression matches, or text a GBNF grammar matches
 * (vLLM's `guided_choice`, `guided_regex` and `guided_grammar`, llama.cpp's `grammar`). The engine keeps the output inside the format token by token (constrained decoding with
 * xgrammar, see constraints.ts). Here is what needs no grammar engine, so that the HTTP layer and the edge
 * gateway can refuse a schema at once: the check that every keyword of the schema is one the grammar enforces.
 * Keywords it would silently ignore (`not`, `if`, `multipleOf`...) are refused rather than half obeyed.
 */

import { xgrammarGrammar } from "./gbnf.ts";
import { groupDepth, type PatternTarget, xgrammarPattern } from "./regex.ts";
import {
  type Bounded,
  boundedSchemas,
  boundsOf,
  integerOnly,
  NUMBER_BOUNDS,
  uniqueItemsProblem,
} from "./bounds.ts";
import { boundsInterval, holds, nonEmpty } from "./numbers.ts";
import { FORMAT_ALIASES, FORMAT_PATTERNS, formatOf, FORMATS, URI_OPEN } from "./formats.ts";
import { mergeCombinations } from "./merge.ts";
import { log } from "../log.ts";
import {
  ANNOTATIONS,
  isSchemaMap,
  jsonType,
  LIST,
  listedValues,
  MAP,
  ONE,
  pointer,
  pointerKeys,
  resolve,
  type Schema,
  target,
  TYPES,
  typesOf,
  typesOverlap,
} from "./schema.ts";

export interface OutputFormat {
  /** The JSON Schema the output must satisfy, as JSON text; a choice's strings as a JSON list; a regex. */
  schema: string;
  /**
   * Whether object properties and array items that the schema does not list are refused even where JSON Schema
   * would allow them (`additionalProperties` left out): what OpenAI's structured outputs give.
   */
  strict: boolean;
  /**
   * Not JSON: one of the strings `schema` lists, text the regular expression `schema` matches whole, or text the
   * GBNF grammar `schema` matches from its rule `root`.
   */
  kind?: "choice" | "regex" | "grammar";
}

/** The most strings a choice may list. */
const MAX_OPTIONS = 1024;

/**
 * vLLM's `guided_choice`: the output is one of `choices`, exactly. Each is a non-empty string of text that
 * tokens can write (no control characters but tab, newline and carriage return: text may hold no token with
 * another, see vocabulary.ts).
 */
export function choiceFormat(choices: unknown): OutputFormat {
  if (!Array.isArray(choices) || choices.length === 0 || choices.length > MAX_OPTIONS) {
    throw new FormatError(`the choices must be a list of 1 to ${MAX_OPTIONS} strings`, "");
  }
  choices.forEach((choice, i) => {
    if (typeof choice !== "string" || choice === "") {
      throw new FormatError("a choice must be a non-empty string", `/${i}`);
    }
    // deno-lint-ignore no-control-regex
    if (!choice.isWellFormed() || /[\x00-\x08\x0b\x0c\x0e-\x1f]/.test(choice)) {
      throw new FormatError("a choice holds a control character or a lone UTF-16 surrogate", `/${i}`);
    }
  });
  const schema = JSON.stringify(choices);
  if (new TextEncoder().encode(schema).length > MAX_SCHEMA_BYTES) {
    throw new FormatError(`the choices are larger than ${MAX_SCHEMA_BYTES} bytes together`, "");
  }
  return { schema, strict: true, kind: "choice" };
}

/**
 * vLLM's `guided_regex`: the output is text the pattern matches whole. The pattern is checked as a JSON Schema
 * `pattern` is (see regex.ts), except that its matches need not fit in a JSON string: its sets lose only the
 * control characters no token writes.
 */
export function regexFormat(pattern: unknown): OutputFormat {
  if (typeof pattern === "string" && new TextEncoder().encode(pattern).length > MAX_SCHEMA_BYTES) {
    throw new FormatError(`the pattern is larger than ${MAX_SCHEMA_BYTES} bytes`, "");
  }
  checkPattern(pattern, "", "text");
  return { schema: pattern as string, strict: true, kind: "regex" };
}

/**
 * llama.cpp's `grammar` and vLLM's `guided_grammar`: the output is text the GBNF grammar matches (see gbnf.ts,
 * which checks and prints it for xgrammar).
 */
export function grammarFormat(grammar: unknown): OutputFormat {
  if (typeof grammar !== "string") throw new FormatError("the grammar must be GBNF text", "");
  if (new TextEncoder().encode(grammar).length > MAX_SCHEMA_BYTES) {
    throw new FormatError(`the grammar is larger than ${MAX_SCHEMA_BYTES} bytes`, "");
  }
  xgrammarGrammar(grammar);
  return { schema: grammar, strict: true, kind: "grammar" };
}

/** The key a format's compiled grammar is kept under. */
export function formatKey(format: OutputFormat): string {
  return `${format.kind ?? format.strict}:${format.schema}`;
}

/** `response_format: {type: "json_object"}`: any JSON object. */
export const JSON_OBJECT: OutputFormat = { schema: '{"type":"object"}', strict: false };

/** Schemas larger than this (as JSON text) are refused: compiling one costs the engine's thread its time. */
export const MAX_SCHEMA_BYTES = 64 * 1024;
/**
 * Subschemas nested deeper than this are refused: xgrammar's compiler recurses per level and, near 60, overflows
 * its stack (measured: 56 levels compiled, 60 broke the instance's memory).
 */
const MAX_DEPTH = 32;
/**
 * JSON nesting anywhere in a schema, annotations and constants included: 2500 levels in a `default` kept
 * xgrammar's compile from ever returning (2000 took 1 s).
 */
const MAX_VALUE_DEPTH = 128;

/**
 * Refuses a schema whose values nest deeper than `limit` (recursing no deeper than that) or whose strings hold a
 * lone UTF-16 surrogate, which no UTF-8 text can write (xgrammar fails on one, or builds a grammar no token
 * can follow).
 */
function checkValues(value: unknown, limit: number): void {
  const text = (s: string) => {
    if (!s.isWellFormed()) {
      throw new FormatError(`the schema's string ${JSON.stringify(s)} holds a lone UTF-16 surrogate`, "");
    }
  };
  if (typeof value === "string") return text(value);
  if (typeof value !== "object" || value === null) return;
  if (limit === 0) throw new FormatError(`the schema holds values nested deeper than ${MAX_VALUE_DEPTH}`, "");
  for (const [key, v] of Object.entries(value)) {
    text(key);
    checkValues(v, limit - 1);
  }
}

/** A schema the server cannot enforce; `path` points into it (JSON Pointer). */
export class FormatError extends Error {
  override name = "FormatError";
  constructor(message: string, readonly path: string) {
    super(path ? `${message} (at ${path})` : message);
  }
}

/** A schema that is no JSON Schema (a keyword's value of the wrong kind, an unknown type): not merely unsupported. */
export class InvalidSchemaError extends FormatError {
  override name = "InvalidSchemaError";
}

/** Assertions the grammar does not enforce (it would ignore them), with what to do instead where there is one. */
const UNSUPPORTED: Record<string, string> = {
  not: "",
  if: "",
  then: "",
  else: "",
  contains: "",
  minContains: "",
  maxContains: "",
  minProperties: "",
  dependentRequired: "",
  dependentSchemas: "",
  dependencies: "",
  unevaluatedItems: "",
  $dynamicRef: "",
  $recursiveRef: "",
  nullable: ': write "type": [..., "null"] instead',
};
/**
 * Length bounds on strings that the grammar keeps (those bounds.ts cannot follow) above this compile to grammars
 * that take seconds (and hundreds of MB) to build.
 */
const MAX_STRING_BOUND = 64;
const COMBINATORS = ["$ref", "anyOf", "oneOf", "allOf"];
/** Keywords beside a reference or a combination that xgrammar does not need to enforce. */
const BESIDE = new Set(["$defs", "definitions", "discriminator"]);

/**
 * `response_format: {type: "json_schema"}`: the schema, normalised (see normalise) and checked, as text. Its
 * patterns are printed for xgrammar when it compiles (xgrammarSchema).
 */
export function jsonSchemaFormat(schema: unknown): OutputFormat {
  const raw = JSON.stringify(schema);
  if (raw === undefined) throw new FormatError("the schema must be a JSON object or a boolean", "");
  // Before the checks, which take time with the schema's size (its patterns are parsed).
  if (new TextEncoder().encode(raw).length > MAX_SCHEMA_BYTES) {
    throw new FormatError(`the schema is larger than ${MAX_SCHEMA_BYTES} bytes`, "");
  }
  if (schema === false) throw new FormatError("the schema `false` allows nothing", "");
  // Before anything recurses into it: values nested thousands deep (a `default`) stall xgrammar's parser.
  checkValues(schema, MAX_VALUE_DEPTH);
  const normalised = namesAsPatterns(
    mapSchemas(merged(hoistReferences(mapSchemas(taggedFirst(schema), normalise))), declaredOnly),
  );
  checkSchema(normalised, "", 0, normalised, boundedSchemas(normalised));
  if (nesting(normalised) > MAX_DEPTH) {
    throw new FormatError(`the schema nests deeper than ${MAX_DEPTH} through its references`, "");
  }
  if (!finite(normalised)) {
    throw new FormatError(
      "the schema allows no finite value: a required property or item leads back to where it began, on every " +
        "branch (the answer would run to max_tokens)",
      "",
    );
  }
  const text = JSON.stringify(normalised);
  // Measured as the wire sends it (formats become patterns), in bytes, which its limit on characters then meets.
  if (new TextEncoder().encode(text).length > MAX_SCHEMA_BYTES) {
    throw new FormatError(`the schema is larger than ${MAX_SCHEMA_BYTES} bytes`, "");
  }
  return { schema: text, strict: true };
}

/** Whether additionalProperties allows more properties: true or a schema (anything else is refused later). */
function opens(additional: unknown): boolean {
  return additional === true || isSchemaMap(additional);
}

/**
 * Properties beside additionalProperties (pydantic's `extra="allow"`, zod's `passthrough()`): the declared ones
 * only, an answer the schema allows (more properties are allowed, not asked for); xgrammar would let a declared
 * name come again with the other schema. Empty `properties` beside them say nothing (a map). After merging, where
 * additionalProperties still meant what it says.
 */
function declaredOnly(s: Schema): Schema {
  const open = opens(s.additionalProperties);
  if (!isSchemaMap(s.properties) || !open || "patternProperties" in s) return s;
  const { properties, ...rest } = s;
  return Object.keys(properties).length ? { ...s, additionalProperties: false } : rest;
}

/**
 * pydantic's `dict[Literal["a", "b"], V]`, `dict[SomeEnum, V]` and `dict[constr(pattern=P), V]`: propertyNames that
 * list the names or give a pattern, beside additionalProperties, are patternProperties (xgrammar would let such
 * names take values of any schema).
 */
function namesAsPatterns(root: unknown): unknown {
  return mapSchemas(root, (s) => {
    const open = opens(s.additionalProperties);
    if (!("propertyNames" in s) || !open || "patternProperties" in s || "properties" in s) return s;
    const names = target(root, s.propertyNames);
    if (!isSchemaMap(names)) return s;
    const values = listedValues(names);
    const plain = Object.keys(names).every((k) => k === "pattern" || k === "type" || ANNOTATIONS.has(k));
    const pattern = values?.every((v) => typeof v === "string")
      ? `^(?:${values.map((v) => v.replace(/[\\^$.*+?()[\]{}|/]/g, "\\$&")).join("|")})$`
      : plain && typeof names.pattern === "string"
      ? names.pattern
      : undefined;
    if (pattern === undefined) return s;
    const { propertyNames: _, additionalProperties, ...rest } = s;
    return { ...rest, patternProperties: { [pattern]: additionalProperties }, additionalProperties: false };
  });
}

/** A normalised schema with allOf and keywords beside combinations merged (merge.ts). */
const merged = (schema: unknown) =>
  mergeCombinations(schema, normalise, (message, path) => new FormatError(message, path));

/**
 * For arguments the client does not hold to the schema (a function that is not `strict`, whose arguments OpenAI
 * does not enforce): the schema without what the grammar cannot enforce (the unsupported keywords, numeric bounds
 * the masks cannot tell apart or that are not numbers, keywords beside a reference or a combination), so that its
 * types, properties and required properties still hold. Throws FormatError when even that cannot be enforced.
 */
export function relaxedSchema(schema: unknown): { schema: unknown; dropped: string[] } {
  const dropped = new Set<string>();
  // Normalised and merged first, as the check below sees it (OpenAPI's nullable as a type, draft 4's flags as
  // bounds, allOf as one schema); what cannot be merged is dropped below.
  let normalised = mapSchemas(schema, normalise);
  try {
    normalised = merged(normalised);
  } catch (err) {
    if (!(err instanceof FormatError)) throw err;
  }
  const kept = mapSchemas(normalised, (s) => {
    const out = { ...s };
    const drop = (key: string) => {
      if (!(key in out)) return;
      dropped.add(key);
      delete out[key];
    };
    for (const key of Object.keys(UNSUPPORTED)) if (key !== "nullable" && out[key] !== false) drop(key);
    if (out.unevaluatedProperties !== undefined && out.unevaluatedProperties !== false) {
      drop("unevaluatedProperties");
    }
    if (
      NUMBER_BOUNDS.some((key) => key in out && !Number.isFinite(out[key])) ||
      !nonEmpty(boundsInterval(out, integerOnly(out)))
    ) {
      NUMBER_BOUNDS.forEach(drop);
    }
    if ("multipleOf" in out && !(integerOnly(out) && Number.isSafeInteger(out.multipleOf))) {
      drop("multipleOf");
    }
    const combinator = COMBINATORS.find((k) => k in out);
    for (const key of combinator ? Object.keys(out) : []) {
      if (key !== combinator && !ANNOTATIONS.has(key) && !BESIDE.has(key)) drop(key);
    }
    return out;
  });
  // Numbers a union reaches where the masks cannot tell them apart lose their bounds, arrays whose items the
  // masks cannot keep apart their uniqueItems.
  const { numbers: { ambiguous }, unique } = boundedSchemas(kept);
  const relaxed = mapSchemas(kept, (s) => {
    const out = { ...s };
    const keys = [
      ...(ambiguous.has(s) ? NUMBER_BOUNDS : []),
      ...(s.uniqueItems === true && (unique.ambiguous.has(s) || uniqueItemsProblem(kept, s))
        ? ["uniqueItems"]
        : []),
    ];
    for (const key of keys.filter((k) => k in out)) {
      dropped.add(key);
      delete out[key];
    }
    return out;
  });
  // Keywords beside a combination go (the root's type among them): what is left must still be an object's schema,
  // or arguments could be any value, less than the plain object a failure gives.
  const root = isSchemaMap(relaxed) ? relaxed.type : undefined;
  if (root !== "object" && !(Array.isArray(root) && root.length === 1 && root[0] === "object")) {
    throw new FormatError("what the grammar can enforce of the schema does not make the value an object", "");
  }
  jsonSchemaFormat(relaxed);
  return { schema: relaxed, dropped: [...dropped] };
}

/**
 * The JSON Schema text xgrammar compiles for a (checked) JSON format: its patterns, and the patterns of its
 * patternProperties, printed as regex.ts prints them for JSON strings (which also puts an alternation in a
 * group: xgrammar binds the quotes to the first and last alternative of `a|b` otherwise); without the length
 * and numeric bounds that the masks keep (bounds.ts).
 */
export function xgrammarSchema(format: OutputFormat): string {
  const print = (pattern: string, counted = false) => xgrammarPattern(pattern, "json", "", counted);
  const root = JSON.parse(format.schema);
  const { strings: { guarded }, numbers: { guarded: numbers } } = boundedSchemas(root);
  return JSON.stringify(mapSchemas(root, (s) => {
    const out = { ...s };
    if (guarded.has(s)) {
      delete out.minLength;
      delete out.maxLength;
    }
    if (numbers.has(s)) { for (const key of NUMBER_BOUNDS) delete out[key]; }
    if (typeof s.pattern === "string") out.pattern = print(s.pattern, guarded.has(s));
    if (isSchemaMap(s.patternProperties)) {
      out.patternProperties = Object.fromEntries(
        Object.entries(s.patternProperties).map(([name, sub]) => [print(name), sub]),
      );
    }
    return out;
  }));
}

/** A function a forced tool call may name, and the schema of its arguments (checked by jsonSchemaFormat). */
export interface CallableFunction {
  name: string;
  parameters: unknown;
}

/**
 * The output of a forced tool call in Pixtral's format, what follows [TOOL_CALLS]: a JSON list of
 * `{"name": ..., "arguments": {...}}`, each call one of `functions` with arguments under its schema (`single`:
 * exactly one call). Each function's schema goes under `$defs`, its local references moved along.
 */
export function toolCallsFormat(functions: readonly CallableFunction[], single: boolean): OutputFormat {
  const defs: Record<string, unknown> = {};
  const calls = functions.map(({ name, parameters }, i) => {
    const at = `#/$defs/f${i}`;
    defs[`f${i}`] = mapSchemas(
      parameters,
      (s) => typeof s.$ref === "string" && s.$ref.startsWith("#") ? { ...s, $ref: at + s.$ref.slice(1) } : s,
    );
    return {
      type: "object",
      properties: { name: { const: name }, arguments: { $ref: at } },
      required: ["name", "arguments"],
      additionalProperties: false,
    };
  });
  return jsonSchemaFormat({
    $defs: defs,
    type: "array",
    minItems: 1,
    ...(single ? { maxItems: 1 } : {}),
    items: calls.length === 1 ? calls[0] : { anyOf: calls },
  });
}

/**
 * What common schema generators write that means the same as something xgrammar enforces: OpenAPI's
 * `nullable: true` beside a type adds "null" to it; a format on a non-string (OpenAPI's int32) is an annotation; a pattern with a format (zod) says it all; string keywords
 * alone imply a string; `propertyNames: {type: "string"}` says nothing; formats xgrammar spells wrongly become
 * patterns.
 */
/** Whether a pattern is refused for looking around (and for nothing before that). */
function looksAround(pattern: unknown): boolean {
  try {
    return typeof pattern === "string" && (xgrammarPattern(pattern, "json", ""), false);
  } catch (err) {
    if (err instanceof FormatError) return err.message.endsWith("not supported: look-around");
    throw err;
  }
}

function normalise(schema: Schema): Schema {
  const s = { ...schema };
  // OpenAPI 3.0's nullable, where the type says what else the value may be.
  if (s.nullable === false || (s.nullable === true && typeof s.type === "string")) {
    if (s.nullable === true) s.type = [s.type, "null"];
    delete s.nullable;
  }
  const types = s.type === undefined ? undefined : [s.type].flat();
  // zod writes its own pattern for a format (email, uuid...); a URL's pattern beside one is the client's own regex,
  // which does not make it a URL. zod 4's patterns for a duration or a host name look around, which no grammar
  // writes: the format says the same.
  if ("pattern" in s && typeof s.format === "string" && FORMATS.has(s.format) && looksAround(s.pattern)) {
    log.warn("a pattern beside a format cannot be enforced; the format is", { format: s.format });
    delete s.pattern;
  }
  if ("format" in s && ((types && !types.includes("string")) || ("pattern" in s && s.format !== "uri"))) {
    delete s.format;
  }
  // Draft 4 to 7's tuples (zod's, through the AI SDK): a list of items, and what may follow them.
  if (Array.isArray(s.items)) {
    s.prefixItems = s.items;
    if ("additionalItems" in s) s.items = s.additionalItems;
    else delete s.items;
  }
  delete s.additionalItems;
  // JSON Schema draft 4's exclusive bounds: a flag on minimum or maximum.
  for (const [flag, bound] of [["exclusiveMinimum", "minimum"], ["exclusiveMaximum", "maximum"]]) {
    // A flag without its bound asserts nothing.
    if (s[flag] === false || (s[flag] === true && !(bound in s))) delete s[flag];
    if (s[flag] === true && typeof s[bound] === "number") {
      s[flag] = s[bound];
      delete s[bound];
    }
  }
  // `const` beside an `enum` that holds it says it all (the checks below keep the values that fit in one list).
  if (
    "const" in s && Array.isArray(s.enum) && s.enum.some((v) => JSON.stringify(v) === JSON.stringify(s.const))
  ) {
    delete s.enum;
  }
  // A whole multiple makes a number whole (writing integers only is an answer the schema allows); on integers, a
  // multiple of 1/2^k (exact in floating point) asserts nothing.
  const step = s.multipleOf;
  if (typeof step === "number" && step > 0 && types?.includes("number") && Number.isSafeInteger(step)) {
    s.type = Array.isArray(s.type)
      ? [...new Set(types.map((t) => t === "number" ? "integer" : t))]
      : "integer";
  }
  if (
    typeof step === "number" && step > 0 && integerOnly(s) && Number.isInteger(1 / step) &&
    Number.isInteger(Math.log2(1 / step))
  ) {
    delete s.multipleOf;
  }
  // Numeric bounds on a value that cannot be a number assert nothing.
  if (
    types && !types.some((t) => t === "number" || t === "integer") &&
    types.every((t) => typeof t === "string")
  ) {
    for (const key of NUMBER_BOUNDS) delete s[key];
  }
  // String keywords on a value that cannot be a string assert nothing.
  if (types && !types.includes("string") && types.every((t) => typeof t === "string")) {
    for (const key of ["minLength", "maxLength", "pattern"]) delete s[key];
  }
  if (
    types === undefined && ["format", "pattern", "minLength", "maxLength"].some((k) => k in s) &&
    !COMBINATORS.some((k) => k in s) && !("enum" in s) && !("const" in s)
  ) {
    s.type = "string";
  }
  const names = s.propertyNames;
  if (
    names === true ||
    (isSchemaMap(names) && Object.keys(names).every((k) => k === "type" || ANNOTATIONS.has(k)) &&
      [names.type ?? "string"].flat().includes("string"))
  ) {
    delete s.propertyNames;
  }
  // Length bounds beside enum or const: the values whose length fits (the grammar writes the values alone).
  const values = listedValues(s);
  const lengths = [s.minLength ?? 0, s.maxLength ?? 0];
  if (
    values && ("minLength" in s || "maxLength" in s) &&
    lengths.every((n) => Number.isSafeInteger(n) && (n as number) >= 0)
  ) {
    const fits = (v: unknown) =>
      typeof v !== "string" ||
      ([...v].length >= ((s.minLength as number) ?? 0) &&
        [...v].length <= ((s.maxLength as number) ?? Infinity));
    const kept = values.filter(fits);
    if (kept.length) {
      if ("enum" in s) s.enum = kept;
      delete s.minLength;
      delete s.maxLength;
    }
  }
  // Numeric bounds beside enum or const: the values inside them.
  const choices = listedValues(s);
  if (
    choices && NUMBER_BOUNDS.some((k) => k in s) &&
    NUMBER_BOUNDS.every((k) => !(k in s) || Number.isFinite(s[k]))
  ) {
    const range = boundsInterval(s, integerOnly(s));
    // A multiple as validators check it, in floating point (the range keeps one on integers only).
    const step = s.multipleOf as number | undefined;
    const multiple = (v: number) => step === undefined || (step > 0 && Number.isInteger(v / step));
    const kept = choices.filter((v) => typeof v !== "number" || (holds(range, v) && multiple(v)));
    if (kept.length) {
      if ("enum" in s) s.enum = kept;
      for (const key of NUMBER_BOUNDS) delete s[key];
    }
  }
  if (typeof s.format === "string" && Object.hasOwn(FORMAT_ALIASES, s.format)) {
    const alias = FORMAT_ALIASES[s.format];
    if (alias) s.format = alias;
    else delete s.format;
  }
  if (typeof s.format === "string" && s.format in FORMAT_PATTERNS && !("pattern" in s)) {
    // Listed values say it all: they need not fit a pattern of ours, narrower than the format (a URL's host).
    if (listedValues(s) === undefined) s.pattern = FORMAT_PATTERNS[s.format];
    delete s.format;
  }
  // A union with a branch of one scalar type alone: other branches of that type say no more (pydantic's
  // Union[HttpUrl, str]), and would leave the masks two strings to tell apart. (An object or a list alone is
  // written empty: it says less than the others.)
  if (Array.isArray(s.anyOf)) {
    const alone = (b: unknown) =>
      isSchemaMap(b) && ["string", "number", "integer", "boolean"].includes(b.type as string) &&
      Object.keys(b).every((k) => k === "type" || ANNOTATIONS.has(k));
    const plain = new Set(s.anyOf.filter(alone).map((b) => (b as Schema).type));
    const kept = s.anyOf.filter((b) => alone(b) || !(isSchemaMap(b) && plain.has(b.type) && !("$ref" in b)));
    if (kept.length < s.anyOf.length) s.anyOf = kept;
  }
  // A pattern beside enum or const: the values it matches (xgrammar writes the values and ignores the pattern).
  const listed = listedValues(s);
  if (listed && typeof s.pattern === "string") {
    let re: RegExp | undefined;
    try {
      re = new RegExp(s.pattern, "u");
    } catch { /* the check refuses it */ }
    const kept = re && listed.filter((v) => typeof v !== "string" || re.test(v));
    if (kept?.length) {
      if ("enum" in s) s.enum = kept;
      delete s.pattern;
    }
  }
  return s;
}

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

/** The subschemas `s` holds itself (through the keywords that hold schemas); definitions too unless told not. */
function subschemas(s: Schema, definitions = true): unknown[] {
  return [
    ...ONE.map((key) => s[key]),
    ...LIST.flatMap((key) => Array.isArray(s[key]) ? s[key] : []),
    ...MAP.filter((key) => definitions || (key !== "$defs" && key !== "definitions"))
      .flatMap((key) => isSchemaMap(s[key]) ? Object.values(s[key]) : []),
  ];
}

/** Calls `f` on every schema inside `schema` and then on it, once each, without copying any. */
function eachSchema(schema: unknown, f: (s: Schema) => void, seen = new Set<Schema>()): void {
  if (!isSchemaMap(schema) || seen.has(schema)) return;
  seen.add(schema);
  for (const sub of subschemas(schema)) eachSchema(sub, f, seen);
  f(schema);
}

/**
 * Whether some value of the (checked) schema is finite: a least fixpoint over its subschemas, where an object is
 * finite when its required properties are, an array when its first minItems items are, a union when a branch is.
 */
function finite(root: unknown): boolean {
  const nodes: Schema[] = [];
  eachSchema(root, (s) => nodes.push(s));
  const known = new Set<Schema>();
  const is = (s: unknown): boolean => s === true || s === undefined || (isSchemaMap(s) && known.has(s));
  const own = (s: Schema): boolean => {
    if (typeof s.$ref === "string") return is(resolve(root, s.$ref));
    if (Array.isArray(s.allOf)) return s.allOf.every(is);
    const branches = s.anyOf ?? s.oneOf;
    if (Array.isArray(branches)) return branches.some(is);
    // Without a type, xgrammar writes an object for object keywords, an array for array keywords.
    const types = s.type !== undefined
      ? typesOf(root, s)
      : "properties" in s || "required" in s
      ? new Set(["object"])
      : "items" in s || "prefixItems" in s || "minItems" in s
      ? new Set(["array"])
      : typesOf(root, s);
    if ("const" in s || "enum" in s || [...types].some((t) => t !== "object" && t !== "array")) return true;
    if (types.has("object")) {
      const properties = isSchemaMap(s.properties) ? s.properties : {};
      return (Array.isArray(s.required) ? s.required : []).every((name) => is(properties[name as string]));
    }
    const least = typeof s.minItems === "number" ? s.minItems : 0;
    const prefix = Array.isArray(s.prefixItems) ? s.prefixItems : [];
    return Array.from({ length: Math.min(least, prefix.length + 1) }, (_, i) => prefix[i] ?? s.items).every(
      is,
    );
  };
  for (let changed = true; changed;) {
    changed = false;
    for (const s of nodes) {
      if (!known.has(s) && own(s)) {
        known.add(s);
        changed = true;
      }
    }
  }
  return is(root);
}

/**
 * The schema with each branch of a union that names its `discriminator` (pydantic's, OpenAPI's) writing the tag
 * first and always: pydantic gives the tag a default (`kind: Literal["circle"] = "circle"`), so that the schema
 * does not require it and the branches could both match an object without it; pydantic itself requires it. First,
 * the masks tell the branches apart by it (bounds.ts). Stricter than the schema, never invalid.
 */
function taggedFirst(schema: unknown): unknown {
  if (!JSON.stringify(schema)?.includes('"discriminator"')) return schema;
  const root = structuredClone(schema);
  /** The tag each branch was ordered for: a branch two unions share keeps the first's. */
  const ordered = new Map<Schema, string>();
  // Through the keywords that hold schemas only: a `const` or `default` that looks like one is data.
  eachSchema(root, (value) => {
    if (!isSchemaMap(value.discriminator)) return;
    const tag = value.discriminator.propertyName;
    const branches = (value.oneOf ?? value.anyOf) as unknown[] | undefined;
    if (typeof tag !== "string" || !Array.isArray(branches) || branches.length < 2) return;
    const targets = branches.map((branch) => target(root, branch));
    // Only where the tag is a constant in every branch (an OpenAPI tag of type string tells nothing apart).
    const tagged = targets.every((s) =>
      isSchemaMap(s) && isSchemaMap(s.properties) && Object.hasOwn(s.properties, tag) &&
      valuesOf(root, s.properties[tag]) !== undefined && (ordered.get(s) ?? tag) === tag
    );
    if (!tagged) return;
    for (const s of targets as Schema[]) {
      ordered.set(s, tag);
      const { [tag]: first, ...rest } = s.properties as Schema;
      s.properties = { [tag]: first, ...rest };
      const required = Array.isArray(s.required) ? s.required : [];
      if (!required.includes(tag)) s.required = [tag, ...required];
    }
  });
  return root;
}

/**
 * The schema with every reference xgrammar may misread made a plain `#/$defs/NAME`: its target copied under
 * `$defs` with a name of its own. xgrammar finds nothing inside lists (zod-to-json-schema's `#/properties/a/
 * anyOf/0`, what the AI SDK and LangChain.js send for a schema used twice) and reads no escapes (`~1`, `%20`).
 * References that name nothing, or no subschema, stay for the check to refuse.
 */
function hoistReferences(root: unknown): unknown {
  if (!isSchemaMap(root)) return root;
  const plain = /^#\/(\$defs|definitions)\/[A-Za-z0-9_.-]+$/;
  const refs = new Set<string>(), all = new Set<string>();
  eachSchema(root, (s) => {
    if (typeof s.$ref === "string") all.add(s.$ref);
    if (typeof s.$ref === "string" && s.$ref !== "#" && !plain.test(s.$ref)) refs.add(s.$ref);
  });
  const defs: Record<string, unknown> = isSchemaMap(root.$defs) ? { ...root.$defs } : {};
  const names = new Map<string, string>();
  let n = 0;
  for (const ref of refs) {
    const target = resolve(root, ref);
    if (target === undefined || !atSchema(ref)) continue;
    // A name neither defined nor named by a reference (one that names nothing must stay so, for the check).
    let name: string;
    do name = `ref${n++}`; while (Object.hasOwn(defs, name) || all.has(`#/$defs/${name}`));
    names.set(ref, name);
    defs[name] = target;
  }
  if (!names.size) return root;
  return mapSchemas(
    { ...root, $defs: defs },
    (s) =>
      typeof s.$ref === "string" && names.has(s.$ref) ? { ...s, $ref: `#/$defs/${names.get(s.$ref)}` } : s,
  );
}

/** Whether a local reference's path goes only through keywords that hold schemas (which the check visits). */
function atSchema(ref: string): boolean {
  const parts = pointerKeys(ref);
  if (!parts) return false;
  for (let i = 0; i < parts.length; i++) {
    const key = parts[i];
    if (MAP.includes(key) || LIST.includes(key)) i++; // a name or an index follows
    else if (!ONE.includes(key)) return false;
    if (i >= parts.length) return false;
  }
  return true;
}

/**
 * The deepest nesting of subschemas, references followed (xgrammar's compiler recurses through them), a
 * reference back into its own path counted once.
 */
function nesting(root: unknown): number {
  const below = new Map<string, number>();
  const walk = (schema: unknown, path: Set<string>): number => {
    if (!isSchemaMap(schema)) return 0;
    let deepest = 0;
    const ref = schema.$ref;
    if (typeof ref === "string" && !path.has(ref)) {
      if (!below.has(ref)) {
        path.add(ref);
        below.set(ref, walk(resolve(root, ref), path));
        path.delete(ref);
      }
      deepest = below.get(ref)!;
    }
    // Definitions count where a reference reaches them.
    for (const child of subschemas(schema, false)) deepest = Math.max(deepest, 1 + walk(child, path));
    return deepest;
  };
  return walk(root, new Set());
}

/** Whether no value can satisfy both schemas: different types, or a required property with different consts. */
/**
 * Two branches of a oneOf that may both match, or undefined. In one pass for the usual shapes (a type each, or
 * objects told apart by one required property's constants: a oneOf may have hundreds of branches), else pair
 * by pair among the branches that share a type.
 */
function overlapping(root: unknown, branches: unknown[]): [number, number] | undefined {
  const types = branches.map((b) =>
    new Set([...typesOf(root, b)].map((t) => t === "integer" ? "number" : t))
  );
  const owners = new Map<string, number>();
  for (const set of types) for (const t of set) owners.set(t, (owners.get(t) ?? 0) + 1);
  const shared = branches.flatMap((_, i) => [...types[i]].some((t) => owners.get(t)! > 1) ? [i] : []);
  const constants = (i: number) => {
    const s = target(root, branches[i]);
    if (!isSchemaMap(s) || !isSchemaMap(s.properties) || !Array.isArray(s.required)) return undefined;
    return new Map(
      s.required.flatMap((name) => {
        const values = valuesOf(root, (s.properties as Schema)[name]);
        return values === undefined ? [] : [[name, values] as const];
      }),
    );
  };
  const tags = shared.map(constants);
  // Told apart by a tag whose values (one, or several: pydantic's Literal["reptile", "lizard"]) no two share.
  const told = shared.length > 0 && shared.every((i) => types[i].size === 1 && types[i].has("object")) &&
    [...tags[0]?.keys() ?? []].some((name) => {
      const values = tags.flatMap((t) => t?.get(name) ?? []);
      return tags.every((t) => t?.has(name)) && new Set(values).size === values.length;
    });
  if (told) return undefined;
  for (let a = 0; a < shared.length; a++) {
    for (let b = a + 1; b < shared.length; b++) {
      if (!exclusive(root, branches[shared[a]], branches[shared[b]])) return [shared[a], shared[b]];
    }
  }
  return undefined;
}

/** A schema's only values, as JSON texts: `const`, or an `enum`. */
function valuesOf(root: unknown, schema: unknown): string[] | undefined {
  const p = target(root, schema);
  if (!isSchemaMap(p)) return undefined;
  return listedValues(p)?.map((v) => JSON.stringify(v));
}

function exclusive(root: unknown, a: unknown, b: unknown): boolean {
  const ta = typesOf(root, a), tb = typesOf(root, b);
  if (!typesOverlap(ta, tb)) return true;
  const sa = target(root, a), sb = target(root, b);
  if (!isSchemaMap(sa) || !isSchemaMap(sb) || !isSchemaMap(sa.properties) || !isSchemaMap(sb.properties)) {
    return false;
  }
  const values = (s: Schema, name: string) =>
    Array.isArray(s.required) && s.required.includes(name)
      ? valuesOf(root, (s.properties as Schema)[name])
      : undefined;
  return Object.keys(sa.properties).some((name) => {
    const va = values(sa, name), vb = values(sb, name);
    return va !== undefined && vb !== undefined && !va.some((v) => vb.includes(v));
  });
}

/** A subschema without its annotations and the length and numeric bounds the masks keep (to compare shapes). */
function withoutBounds(schema: unknown): unknown {
  if (!isSchemaMap(schema)) return schema;
  const out = { ...schema };
  for (const key of ["minLength", "maxLength", ...NUMBER_BOUNDS, ...ANNOTATIONS]) delete out[key];
  return out;
}

/**
 * Whether no name can match both patterns: each begins with "^" and a literal prefix, and neither prefix begins
 * the other ("^x-" and "^y-").
 */
function disjoint(a: string, b: string): boolean {
  const prefix = (pattern: string) => {
    const literal = /^\^([A-Za-z0-9_\- ]*)/.exec(pattern)?.[1] ?? "";
    // A quantifier after the last character makes it optional.
    return /^[?*{]/.test(pattern.slice(1 + literal.length)) ? literal.slice(0, -1) : literal;
  };
  const [x, y] = [prefix(a), prefix(b)];
  return a.startsWith("^") && b.startsWith("^") && !x.startsWith(y) && !y.startsWith(x);
}

function checkSchema(
  schema: unknown,
  path: string,
  depth: number,
  root: unknown,
  bounded: { strings: Bounded; numbers: Bounded; unique: Bounded },
): void {
  if (typeof schema === "boolean") return;
  if (!isSchemaMap(schema)) throw new InvalidSchemaError("a schema must be a JSON object or a boolean", path);
  if (depth > MAX_DEPTH) throw new FormatError(`the schema nests deeper than ${MAX_DEPTH}`, path);
  const s = schema;
  const at = (key: string) => pointer(path, key);
  for (const [key, hint] of Object.entries(UNSUPPORTED)) {
    // `nullable: false` asserts nothing.
    if (key in s && s[key] !== false) {
      throw new FormatError(`"${key}" is not supported by this server's constrained decoding${hint}`, path);
    }
  }
  if (s.unevaluatedProperties !== undefined && s.unevaluatedProperties !== false) {
    throw new FormatError('"unevaluatedProperties" is supported only as false', path);
  }
  // Beside a reference or a combination xgrammar ignores every other assertion.
  const combinator = COMBINATORS.find((k) => k in s);
  if (combinator) {
    const others = Object.keys(s).filter((k) => k !== combinator && !ANNOTATIONS.has(k) && !BESIDE.has(k));
    if (others.length) {
      throw new FormatError(
        `"${
          others[0]
        }" beside "${combinator}" is not supported: put it inside the referenced or combined schemas`,
        path,
      );
    }
  }
  if ("$ref" in s) {
    if (typeof s.$ref !== "string" || resolve(root, s.$ref) === undefined) {
      throw new FormatError(
        `the reference ${JSON.stringify(s.$ref)} names nothing in the schema`,
        at("$ref"),
      );
    }
    if (!atSchema(s.$ref)) {
      throw new FormatError(
        `the reference ${JSON.stringify(s.$ref)} names a value that is not a subschema (the check does not ` +
          "look there): put the schema under $defs",
        at("$ref"),
      );
    }
    if (target(root, s) === undefined) {
      throw new FormatError("the references go round in a circle", at("$ref"));
    }
  }
  const types = s.type === undefined ? undefined : [s.type].flat();
  for (const type of types ?? []) {
    if (typeof type !== "string" || !TYPES.has(type)) {
      throw new InvalidSchemaError(`unknown type ${JSON.stringify(type)}`, at("type"));
    }
  }
  // normalise dropped an `enum` that holds the `const`: one left beside it does not.
  if ("enum" in s && "const" in s) {
    throw new FormatError('"const" is not among "enum": no value satisfies both', path);
  }
  // normalise kept the values a pattern matches, and dropped it; one left matches none.
  if (("enum" in s || "const" in s) && "pattern" in s) {
    throw new FormatError('no value of "enum" or "const" matches the pattern (or the format)', path);
  }
  if (Array.isArray(s.type) && s.type.length === 0) {
    throw new InvalidSchemaError('"type" lists no type', at("type"));
  }
  for (const key of ["enum", "const"] as const) {
    if (!(key in s)) continue;
    const values = key === "const" ? [s.const] : s.enum;
    if (!Array.isArray(values) || values.length === 0) {
      throw new InvalidSchemaError(`"enum" must be a non-empty list`, at(key));
    }
    const wrong = types &&
      values.find((v) =>
        !types.includes(jsonType(v)) && !(jsonType(v) === "integer" && types.includes("number"))
      );
    if (wrong !== undefined) {
      throw new FormatError(
        `${JSON.stringify(wrong)} is not of the schema's type ${JSON.stringify(s.type)}`,
        at(key),
      );
    }
  }
  for (const key of NUMBER_BOUNDS) {
    if (key in s && !Number.isFinite(s[key])) {
      throw new InvalidSchemaError(`"${key}" must be a number`, at(key));
    }
  }
  if ("multipleOf" in s && !((s.multipleOf as number) > 0)) {
    throw new FormatError('"multipleOf" must be above 0', at("multipleOf"));
  }
  // Validators divide non-integers in floating point: 0.07 is no multiple of 0.01 to Ajv or Python's jsonschema.
  if ("multipleOf" in s && !(integerOnly(s) && Number.isSafeInteger(s.multipleOf))) {
    throw new FormatError(
      '"multipleOf" is supported on integers, by a whole number (validators divide other numbers in floating ' +
        "point, where 0.07 is no multiple of 0.01)",
      at("multipleOf"),
    );
  }
  if (NUMBER_BOUNDS.some((key) => key in s)) {
    // normalise kept the values inside, and dropped the bounds; these are left when none is.
    if ("enum" in s || "const" in s) {
      throw new FormatError('no value of "enum" or "const" is inside the bounds', path);
    }
    if (!nonEmpty(boundsInterval(s, integerOnly(s)))) {
      throw new FormatError(`the bounds allow no ${integerOnly(s) ? "integer" : "number"}`, path);
    }
    // xgrammar's grammar for bounded numbers lets values outside the bounds through, integers' too (2035 for
    // 2000-2030, a bare "-" for minimum -3: an adversarial helper's cases).
    if (bounded.numbers.ambiguous.has(s)) {
      throw new FormatError(
        "numeric bounds are not supported here: in a union whose branches the masks cannot tell apart (they " +
          'share a type, and do not begin with distinct "const" properties)',
        path,
      );
    }
  }
  const { guarded, ambiguous } = bounded.strings;
  // The grammar keeps only the first of a pattern, a format and length bounds on one string; the masks keep
  // guarded bounds (bounds.ts). (A format the grammar spells wrongly is a pattern by now.)
  const format = formatOf(s.pattern);
  const shapes = [
    ...("pattern" in s ? [format ? "format" : "pattern"] : []),
    ...("format" in s ? ["format"] : []),
    ...(!guarded.has(s) && ("minLength" in s || "maxLength" in s) ? ["minLength/maxLength"] : []),
  ];
  if (shapes.length > 1) {
    throw new FormatError(
      `a string with ${shapes.join(" and ")} is not supported: give one of them`,
      path,
    );
  }
  for (
    const [min, max, limit] of [["minLength", "maxLength", ambiguous.has(s) ? MAX_STRING_BOUND : Infinity], [
      "minItems",
      "maxItems",
      Infinity,
    ]] as const
  ) {
    for (const key of [min, max]) {
      if (key in s && !(Number.isSafeInteger(s[key]) && (s[key] as number) >= 0)) {
        throw new InvalidSchemaError(`"${key}" must be a whole number`, at(key));
      }
      if ((s[key] as number) > limit) {
        throw new FormatError(
          `"${key}" above ${limit} is not supported here: in property names, or in a union whose branches share ` +
            'a type and do not begin with distinct "const" properties, the bound goes into the grammar, which ' +
            "then takes seconds to compile; leave it out",
          at(key),
        );
      }
    }
    if ((s[min] as number) > (s[max] as number)) throw new FormatError(`"${min}" is above "${max}"`, path);
    if (min === "minLength" && (min in s || max in s) && ("enum" in s || "const" in s)) {
      // normalise kept the values that fit, and dropped the bounds; these are left when none did.
      throw new FormatError(`no value of "enum" or "const" fits "${min}"/"${max}"`, path);
    }
  }
  if ("format" in s && !(typeof s.format === "string" && FORMATS.has(s.format))) {
    throw new FormatError(
      `string format ${JSON.stringify(s.format)} is not supported (supported: ${[...FORMATS].join(", ")})`,
      at("format"),
    );
  }
  if ("pattern" in s) checkPattern(s.pattern, at("pattern"), "json", guarded.has(s));
  const lengths = guarded.has(s) ? boundsOf(s)! : undefined;
  if (lengths && format === "uri" && lengths.max < URI_OPEN) {
    throw new FormatError(
      `"maxLength" below ${URI_OPEN} is not supported with format "uri"`,
      at("maxLength"),
    );
  }
  if (lengths && lengths.min > lengths.max) {
    throw new FormatError(
      "the pattern's length and minLength/maxLength allow no string (a pattern matches the whole string here)",
      path,
    );
  }
  // Objects: xgrammar lets a declared name come again through patternProperties (with the other schema, or
  // twice), which also defeats minProperties. (Beside additionalProperties, only the declared ones are written.)
  if ("properties" in s && "patternProperties" in s) {
    throw new FormatError('"properties" with "patternProperties" is not supported', path);
  }
  // A name follows the schemas of every pattern it matches; xgrammar writes a value after the schema of the one
  // pattern it wrote the name for. Those agree when the schemas differ at most in bounds, which the masks keep
  // together (bounds.ts): otherwise a name written for "^ab$" could be a number where "b" wants a string.
  if (isSchemaMap(s.patternProperties)) {
    const entries = Object.entries(s.patternProperties);
    for (let a = 0; a < entries.length; a++) {
      for (let b = a + 1; b < entries.length; b++) {
        const [pa, sa] = entries[a], [pb, sb] = entries[b];
        if (JSON.stringify(withoutBounds(sa)) === JSON.stringify(withoutBounds(sb)) || disjoint(pa, pb)) {
          continue;
        }
        throw new FormatError(
          `patternProperties ${JSON.stringify(pa)} and ${JSON.stringify(pb)} may match one name and their ` +
            "schemas differ in more than bounds: not supported (the grammar would follow one of them); begin " +
            'each with "^" and a literal prefix of its own',
          at("patternProperties"),
        );
      }
    }
  }
  if ("propertyNames" in s && ["patternProperties", "additionalProperties"].some((k) => k in s)) {
    throw new FormatError(
      '"propertyNames" is supported only without patternProperties and additionalProperties',
      path,
    );
  }
  if (isSchemaMap(s.properties)) {
    for (const [name, sub] of Object.entries(s.properties)) {
      // deno-lint-ignore no-control-regex
      if (/["\\\x00-\x1f]/.test(name)) {
        throw new FormatError(
          "property names with quotes, backslashes or control characters are not supported",
          at("properties"),
        );
      }
      if (sub === false) {
        throw new FormatError(`property "${name}" can never appear: leave it out`, at("properties"));
      }
    }
  }
  if (Array.isArray(s.required)) {
    const declared = isSchemaMap(s.properties) ? s.properties : {};
    const missing = s.required.find((name) => typeof name !== "string" || !Object.hasOwn(declared, name));
    if (missing !== undefined) {
      throw new FormatError(`required ${JSON.stringify(missing)} is not among "properties"`, at("required"));
    }
  }
  if (Array.isArray(s.oneOf)) {
    const pair = overlapping(root, s.oneOf);
    if (pair) {
      throw new FormatError(
        `branches ${pair[0]} and ${
          pair[1]
        } of "oneOf" may both match (the grammar would take either): give ` +
          'them different types or a required property with a different "const", or write "anyOf"',
        at("oneOf"),
      );
    }
  }
  if ("uniqueItems" in s && typeof s.uniqueItems !== "boolean") {
    throw new InvalidSchemaError('"uniqueItems" must be true or false', at("uniqueItems"));
  }
  // The masks keep items apart (bounds.ts), where they know the array's schema and its items allow it.
  if (bounded.unique.ambiguous.has(s)) {
    throw new FormatError(
      '"uniqueItems" is not supported here: in a union whose branches the masks cannot tell apart (they share a ' +
        'type, and do not begin with distinct "const" properties)',
      at("uniqueItems"),
    );
  }
  const problem = s.uniqueItems === true ? uniqueItemsProblem(root, s) : undefined;
  if (problem) throw new FormatError(`"uniqueItems" is not supported here: ${problem}`, at("uniqueItems"));
  if ("required" in s && !Array.isArray(s.required)) {
    throw new InvalidSchemaError(`"required" must be a list`, at("required"));
  }
  for (const key of ONE) if (key in s) checkSchema(s[key], at(key), depth + 1, root, bounded);
  for (const key of LIST) {
    if (!(key in s)) continue;
    const list = s[key];
    if (!Array.isArray(list) || list.length === 0) {
      throw new InvalidSchemaError(`"${key}" must be a non-empty list of schemas`, at(key));
    }
    list.forEach((sub, i) => checkSchema(sub, pointer(at(key), i), depth + 1, root, bounded));
  }
  for (const key of MAP) {
    if (!(key in s)) continue;
    const map = s[key];
    if (!isSchemaMap(map)) throw new InvalidSchemaError(`"${key}" must map names to schemas`, at(key));
    for (const [name, sub] of Object.entries(map)) {
      if (key === "patternProperties") checkPattern(name, pointer(at(key), name));
      checkSchema(sub, pointer(at(key), name), depth + 1, root, bounded);
    }
  }
}

/**
 * A regular expression the grammar can spell: valid, groups nested at most MAX_GROUP_DEPTH deep, and what
 * regex.ts can print for xgrammar (`target`: in a JSON string, or text; no look-around or back-references).
 */
function checkPattern(pattern: unknown, path: string, target: PatternTarget = "json", counted = false): void {
  if (typeof pattern !== "string") throw new InvalidSchemaError("a pattern must be a string", path);
  try {
    new RegExp(pattern, "u");
  } catch (err) {
    throw new FormatError(`invalid pattern: ${(err as Error).message}`, path);
  }
  if (groupDepth(pattern) > MAX_GROUP_DEPTH) {
    throw new FormatError(`the pattern nests groups deeper than ${MAX_GROUP_DEPTH}`, path);
  }
  xgrammarPattern(pattern, target, path, counted);
}

/**
 * Groups nested deeper than this abort xgrammar's regex conversion (measured: 300 levels did) and leave its
 * memory broken for the grammars of other requests.
 */
const MAX_GROUP_DEPTH = 32;
