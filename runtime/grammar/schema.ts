/** JSON Schema documents as plain values: references, and the JSON types a schema allows. */

export type Schema = Record<string, unknown>;
export const isSchemaMap = (v: unknown): v is Schema =>
  typeof v === "object" && v !== null && !Array.isArray(v);

export const TYPES = new Set(["string", "number", "integer", "boolean", "null", "object", "array"]);

/** Keywords that assert nothing. */
export const ANNOTATIONS = new Set([
  "title",
  "description",
  "default",
  "examples",
  "$comment",
  "$schema",
  "$id",
  "deprecated",
  "readOnly",
  "writeOnly",
  "contentEncoding",
  "contentMediaType",
]);

/** Keywords whose value is one schema, a list of them, or a map of them. */
export const ONE = ["additionalProperties", "items", "propertyNames"];
export const LIST = ["anyOf", "oneOf", "allOf", "prefixItems"];
export const MAP = ["properties", "patternProperties", "$defs", "definitions"];

/**
 * The keys of a local reference's JSON Pointer ("#/a/b~1c/0"), unescaped as a URI fragment and then as a pointer;
 * undefined for a reference that is not local. "#" is no keys.
 */
export function pointerKeys(ref: string): string[] | undefined {
  if (ref === "#") return [];
  if (!ref.startsWith("#/")) return undefined;
  try {
    return ref.slice(2).split("/").map((part) =>
      decodeURIComponent(part).replaceAll("~1", "/").replaceAll("~0", "~")
    );
  } catch {
    return undefined; // a malformed %-escape
  }
}

/** The JSON Pointer of `key` inside the schema at `path`, escaped. */
export const pointer = (path: string, key: string | number) =>
  `${path}/${String(key).replaceAll("~", "~0").replaceAll("/", "~1")}`;

/** The schema a local reference names ("#" or a JSON Pointer "#/...", through objects and lists), or undefined. */
export function resolve(root: unknown, ref: string): unknown {
  const keys = pointerKeys(ref);
  if (!keys) return undefined;
  let at: unknown = root;
  for (const key of keys) {
    if (Array.isArray(at) && /^(0|[1-9][0-9]*)$/.test(key)) {
      at = at[Number(key)];
      continue;
    }
    // Own names only: `in` would find Object.prototype's (constructor, toString) too.
    if (!isSchemaMap(at) || !Object.hasOwn(at, key)) return undefined;
    at = at[key];
  }
  return at;
}

/** Follows references to the schema they end at; undefined for a reference that names nothing or a cycle. */
export function target(root: unknown, schema: unknown): unknown {
  const seen = new Set<unknown>();
  while (isSchemaMap(schema) && typeof schema.$ref === "string") {
    if (seen.has(schema)) return undefined;
    seen.add(schema);
    schema = resolve(root, schema.$ref);
  }
  return schema;
}

/** The only values a schema allows, where it lists them: `const`, or `enum`. */
export function listedValues(s: Schema): unknown[] | undefined {
  return "const" in s ? [s.const] : Array.isArray(s.enum) ? s.enum : undefined;
}

/** The JSON types a schema's values can have (all of them when it does not say). */
export function typesOf(root: unknown, schema: unknown): Set<string> {
  const s = target(root, schema);
  if (!isSchemaMap(s)) return new Set(TYPES);
  if (s.type !== undefined) return new Set([s.type].flat() as string[]);
  const values = listedValues(s);
  return values ? new Set(values.map(jsonType)) : new Set(TYPES);
}

/** Whether a value of `schema` can be of `type`: its own types, through references and every combination. */
export function mayBe(root: unknown, schema: unknown, type: string, seen = new Set<unknown>()): boolean {
  const s = target(root, schema);
  if (s === false) return false;
  if (!isSchemaMap(s) || seen.has(s)) return true; // anything, or being looked at already
  seen.add(s);
  const own = !("type" in s || "const" in s || "enum" in s) || typesOf(root, s).has(type);
  const all = Array.isArray(s.allOf) ? s.allOf.every((sub) => mayBe(root, sub, type, seen)) : true;
  const branches = s.anyOf ?? s.oneOf;
  const some = Array.isArray(branches) ? branches.some((sub) => mayBe(root, sub, type, seen)) : true;
  return own && all && some;
}

/** Whether a value can have one of the types of `a` and one of `b` (integers are numbers). */
export function typesOverlap(a: Set<string>, b: Set<string>): boolean {
  return [...a].some((t) =>
    b.has(t) || (t === "integer" && b.has("number")) || (t === "number" && b.has("integer"))
  );
}

export function jsonType(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  return typeof value;
}
