/**
 * `allOf`, and keywords beside a reference or a union, made one schema: xgrammar enforces only the first schema
 * of an allOf and nothing beside a combination. zod's intersections (`.and()`), OpenAPI's inheritance
 * (`allOf: [{$ref: Base}, {properties: ...}]`) and "one of these properties" (`required` in `anyOf` branches
 * beside `properties`) are written so.
 *
 * Two schemas merge keyword by keyword: types and listed values intersect, required properties add up, the
 * tighter of two bounds holds, properties merge by name (a name one side does not declare meets that side's
 * additionalProperties), items by place. A union among them is distributed (`A and (B or C)` is `A and B, or A
 * and C`), dropping the branches nothing satisfies. Keywords that cannot be merged (two different patterns) are a
 * FormatError.
 */
import {
  ANNOTATIONS,
  isSchemaMap,
  jsonType,
  LIST,
  MAP,
  ONE,
  pointer,
  resolve,
  type Schema,
} from "./schema.ts";

/** A schema error at a place in the schema; format.ts's FormatError. */
type Fail = (message: string, path: string) => Error;

/** The most branches a distributed union may have. */
const MAX_BRANCHES = 64;
/** The most merges one schema may take: unions distributed over each other multiply them (8 of 4 branches: 65536). */
const MAX_MERGES = 1024;

/** Keywords that assert nothing, kept from the first schema that has them. */
const FIRST = new Set([...ANNOTATIONS, "discriminator"]);
const LOWER = ["minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties"];
const UPPER = ["maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties"];
const UNIONS = ["anyOf", "oneOf"];

/** Nothing satisfies the schemas together: a union's branch that is dropped, else an error. */
class Unsatisfiable extends Error {}

/**
 * `root` with every allOf, and every schema with assertions beside `$ref`, `anyOf` or `oneOf`, merged into one
 * schema (`tidy`, normalise, applied to each merged one); `fail` makes the error of what cannot be merged.
 */
export function mergeCombinations(root: unknown, tidy: (s: Schema) => Schema, fail: Fail): unknown {
  const merger = new Merger(root, tidy, fail);
  return merger.walk(root, "");
}

class Merger {
  constructor(readonly root: unknown, readonly tidy: (s: Schema) => Schema, readonly fail: Fail) {}

  /** The schema at `path` merged, then its subschemas. */
  walk(schema: unknown, path: string): unknown {
    if (!isSchemaMap(schema)) return schema;
    let s = schema;
    if (combined(s)) {
      try {
        this.#merges = 0; // counted per combined schema: unions multiply there, not across a large schema
        s = this.merge(this.members(s, path), path);
      } catch (err) {
        if (err instanceof Unsatisfiable) {
          throw this.fail(`no value satisfies the schemas together: ${err.message}`, path);
        }
        throw err;
      }
      // Definitions stay where references find them.
      for (const key of ["$defs", "definitions"]) if (key in schema) s = { ...s, [key]: schema[key] };
    }
    const out: Schema = { ...s };
    for (const [key, value] of Object.entries(s)) {
      const at = pointer(path, key);
      if (ONE.includes(key)) out[key] = this.walk(value, at);
      else if (LIST.includes(key) && Array.isArray(value)) {
        out[key] = value.map((sub, i) => this.walk(sub, pointer(at, i)));
      } else if (MAP.includes(key) && isSchemaMap(value)) {
        out[key] = Object.fromEntries(
          Object.entries(value).map(([name, sub]) => [name, this.walk(sub, pointer(at, name))]),
        );
      }
    }
    return out;
  }

  /** The schemas a combined schema stands for together: its allOf's, its reference or union, and the rest. */
  members(s: Schema, path: string): unknown[] {
    for (const key of ["allOf", ...UNIONS]) {
      if (key in s && !(Array.isArray(s[key]) && (s[key] as unknown[]).length)) {
        throw this.fail(`"${key}" must be a non-empty list of schemas`, pointer(path, key));
      }
    }
    const { allOf, $ref, anyOf, oneOf, $defs: _d, definitions: _ds, ...rest } = s;
    return [
      ...(Array.isArray(allOf) ? allOf : []),
      ...($ref !== undefined ? [{ $ref }] : []),
      ...(anyOf !== undefined ? [{ anyOf }] : []),
      ...(oneOf !== undefined ? [{ oneOf }] : []),
      rest,
    ];
  }

  /** The references being inlined, by how many merges below inline each (one met again inside is a cycle). */
  readonly #inlining = new Map<string, number>();

  #merges = 0;

  /** One schema satisfied by what satisfies every member. */
  merge(members: readonly unknown[], path: string): Schema {
    if (++this.#merges > MAX_MERGES) {
      throw this.fail(
        `merging the combined schemas takes more than ${MAX_MERGES} steps: not supported`,
        path,
      );
    }
    const inlined: string[] = [];
    try {
      return this.#merge(members, path, inlined);
    } finally {
      for (const ref of inlined) this.#inlining.set(ref, this.#inlining.get(ref)! - 1);
    }
  }

  #merge(members: readonly unknown[], path: string, inlined: string[]): Schema {
    // Flattened: references inlined, allOf and assertions beside combinations taken apart.
    const flat: Schema[] = [];
    const add = (member: unknown): void => {
      if (member === true) return;
      if (member === false || !isSchemaMap(member)) throw new Unsatisfiable("one of them is `false`");
      // A reference with annotations (pydantic's, with a description) is the schema it names.
      if (typeof member.$ref === "string" && Object.keys(member).every((k) => k === "$ref" || FIRST.has(k))) {
        // Merging recursive schemas would make a new recursive one: not done.
        if (this.#inlining.get(member.$ref)) {
          throw this.fail(
            `the schemas combined with ${JSON.stringify(member.$ref)} lead back to it: not supported`,
            path,
          );
        }
        const target = resolve(this.root, member.$ref);
        if (target === undefined) {
          throw this.fail(`the reference ${JSON.stringify(member.$ref)} names nothing in the schema`, path);
        }
        this.#inlining.set(member.$ref, (this.#inlining.get(member.$ref) ?? 0) + 1);
        inlined.push(member.$ref);
        add(target);
      } else if (combined(member) || Array.isArray(member.allOf)) {
        for (const m of this.members(member, path)) add(m);
      } else if (Object.keys(member).length) flat.push(member);
    };
    for (const member of members) add(member);
    // A union among them: each of its branches with the others, those nothing satisfies dropped.
    const u = flat.findIndex((m) => UNIONS.some((k) => k in m));
    if (u >= 0) {
      const kind = UNIONS.find((k) => k in flat[u])!;
      const others = flat.filter((_, i) => i !== u);
      const branches = (flat[u][kind] as unknown[]).flatMap((branch) => {
        try {
          return [this.merge([...others, branch], path)];
        } catch (err) {
          if (err instanceof Unsatisfiable) return [];
          throw err;
        }
      });
      if (!branches.length) throw new Unsatisfiable(`no branch of "${kind}" fits the other schemas`);
      if (branches.length > MAX_BRANCHES) {
        throw this.fail(`merged, the schemas make a union of more than ${MAX_BRANCHES} branches`, path);
      }
      // "One of these properties" (anyOf branches differing in `required` only): the first one's, which
      // satisfies the union and leaves the masks one schema to follow.
      const unrequired = (b: Schema) => JSON.stringify({ ...b, required: undefined });
      if (kind === "anyOf" && branches.every((b) => unrequired(b) === unrequired(branches[0]))) {
        return branches[0];
      }
      const annotations = others.reduce<Schema>((out, m) => ({ ...pick(m, FIRST), ...out }), {});
      return branches.length === 1 ? branches[0] : { ...annotations, [kind]: branches };
    }
    return this.tidy(flat.reduce<Schema>((a, b) => this.both(a, b, path), {}));
  }

  /** Two schemas without combinations, merged. */
  both(a: Schema, b: Schema, path: string): Schema {
    const out: Schema = { ...a };
    for (const [key, value] of Object.entries(b)) {
      if (!(key in out) || same(out[key], value) || FIRST.has(key)) {
        if (!(key in out)) out[key] = value;
        continue;
      }
      out[key] = this.keyword(key, out[key], value, path);
    }
    if (["properties", "additionalProperties", "patternProperties"].some((k) => k in a || k in b)) {
      Object.assign(out, this.objects(a, b, path));
      if (out.additionalProperties === undefined) delete out.additionalProperties;
    }
    if (["items", "prefixItems"].some((k) => k in a || k in b)) Object.assign(out, this.arrays(a, b, path));
    for (const key of ["properties", "prefixItems", "additionalProperties", "items"]) {
      if (out[key] === undefined) delete out[key];
    }
    // A const from one side and an enum from the other: the const, if the enum holds it.
    if ("const" in out && Array.isArray(out.enum)) {
      if (!out.enum.some((v) => same(v, out.const))) {
        throw new Unsatisfiable('the "const" is not in the "enum"');
      }
      delete out.enum;
    }
    // Listed values hold only where the other's type allows them.
    const values = "const" in out ? [out.const] : Array.isArray(out.enum) ? out.enum : undefined;
    if (values && out.type !== undefined) {
      const types = [out.type].flat();
      const kept = values.filter((v) =>
        types.some((t) => t === jsonType(v) || (t === "number" && jsonType(v) === "integer"))
      );
      if (!kept.length) throw new Unsatisfiable('no value of "enum" or "const" has the type');
      if ("enum" in out) out.enum = kept;
    }
    // One side's format and the other's pattern: xgrammar keeps one of them on a string.
    if ("format" in out && "pattern" in out) {
      throw this.fail('a "format" and a "pattern" from schemas combined cannot be merged into one', path);
    }
    return out;
  }

  /** The merged value of a keyword both schemas give, differently. */
  keyword(key: string, a: unknown, b: unknown, path: string): unknown {
    if (key === "type") {
      const as = [a].flat() as string[], bs = [b].flat() as string[];
      const types = as.flatMap((t) =>
        bs.includes(t)
          ? [t]
          : t === "integer" && bs.includes("number")
          ? ["integer"]
          : t === "number" && bs.includes("integer")
          ? ["integer"]
          : []
      );
      if (!types.length) {
        throw new Unsatisfiable(`the types ${JSON.stringify(a)} and ${JSON.stringify(b)} share none`);
      }
      return types.length === 1 ? types[0] : [...new Set(types)];
    }
    if (key === "enum" && !(Array.isArray(a) && Array.isArray(b))) {
      throw this.fail('"enum" must be a non-empty list', pointer(path, key));
    }
    if (key === "enum" || key === "const") {
      const as = key === "const" ? [a] : a as unknown[], bs = key === "const" ? [b] : b as unknown[];
      const kept = as.filter((v) => bs.some((w) => same(v, w)));
      if (!kept.length) throw new Unsatisfiable(`no value is in both "${key}"`);
      return key === "const" ? kept[0] : kept;
    }
    if (key === "required" && Array.isArray(a) && Array.isArray(b)) return [...new Set([...a, ...b])];
    if (LOWER.includes(key) && typeof a === "number" && typeof b === "number") return Math.max(a, b);
    if (UPPER.includes(key) && typeof a === "number" && typeof b === "number") return Math.min(a, b);
    if (key === "uniqueItems") return a === true || b === true;
    if (key === "propertyNames") return this.merge([a, b], pointer(path, key));
    if (["properties", "additionalProperties", "patternProperties", "items", "prefixItems"].includes(key)) {
      return a; // merged with what the other side implies (objects, arrays)
    }
    throw this.fail(
      `the schemas combined give "${key}" different values (${JSON.stringify(a)} and ${
        JSON.stringify(b)
      }), which ` +
        "cannot be merged into one",
      path,
    );
  }

  /** properties and additionalProperties merged: a name one side does not declare meets its additionalProperties. */
  objects(a: Schema, b: Schema, path: string): Schema {
    if (
      ("patternProperties" in a || "patternProperties" in b) &&
      !same(a.patternProperties, b.patternProperties)
    ) {
      throw this.fail('"patternProperties" in schemas combined with others are not supported', path);
    }
    const pa = isSchemaMap(a.properties) ? a.properties : {},
      pb = isSchemaMap(b.properties) ? b.properties : {};
    const required = new Set([a.required, b.required].flatMap((r) => Array.isArray(r) ? r : []));
    const properties: Schema = {};
    let forbidden = false;
    for (const name of new Set([...Object.keys(pa), ...Object.keys(pb)])) {
      const value = this.sub(
        Object.hasOwn(pa, name) ? pa[name] : a.additionalProperties ?? true,
        Object.hasOwn(pb, name) ? pb[name] : b.additionalProperties ?? true,
        pointer(`${path}/properties`, name),
      );
      if (value !== false) properties[name] = value;
      else if (required.has(name)) throw new Unsatisfiable(`required property "${name}" may not appear`);
      else forbidden = true;
    }
    const rest = this.sub(
      a.additionalProperties ?? true,
      b.additionalProperties ?? true,
      `${path}/additionalProperties`,
    );
    return {
      properties: Object.keys(properties).length || "properties" in a || "properties" in b
        ? properties
        : undefined,
      // A name that may not appear must not come back through additionalProperties: only the declared ones then.
      additionalProperties: rest === true ? undefined : forbidden ? false : rest,
    };
  }

  /** items and prefixItems merged, place by place. */
  arrays(a: Schema, b: Schema, path: string): Schema {
    const pa = Array.isArray(a.prefixItems) ? a.prefixItems : [],
      pb = Array.isArray(b.prefixItems) ? b.prefixItems : [];
    const prefix = Array.from(
      { length: Math.max(pa.length, pb.length) },
      (_, i) =>
        this.sub(
          i < pa.length ? pa[i] : a.items ?? true,
          i < pb.length ? pb[i] : b.items ?? true,
          `${path}/prefixItems/${i}`,
        ),
    );
    const items = this.sub(a.items ?? true, b.items ?? true, `${path}/items`);
    return { prefixItems: prefix.length ? prefix : undefined, items: items === true ? undefined : items };
  }

  /** Two subschemas merged (`true` and `false` as they are). */
  sub(a: unknown, b: unknown, path: string): unknown {
    if (a === true || same(a, b)) return b;
    if (b === true) return a;
    if (a === false || b === false) return false;
    try {
      return this.merge([a, b], path);
    } catch (err) {
      if (err instanceof Unsatisfiable) return false;
      throw err;
    }
  }
}

/** Whether a schema combines: an allOf, or assertions beside a reference or a union. */
function combined(s: Schema): boolean {
  // An allOf of one schema beside annotations (pydantic v1's reference with a description) stays as it is.
  if (Array.isArray(s.allOf)) {
    return s.allOf.length > 1 ||
      Object.keys(s).some((k) => k !== "allOf" && !FIRST.has(k) && k !== "$defs" && k !== "definitions");
  }
  const combinator = ["$ref", ...UNIONS].filter((k) => k in s);
  if (!combinator.length) return false;
  return combinator.length > 1 ||
    Object.keys(s).some((k) =>
      !combinator.includes(k) && !FIRST.has(k) && k !== "$defs" && k !== "definitions"
    );
}

function pick(s: Schema, keys: Set<string>): Schema {
  return Object.fromEntries(Object.entries(s).filter(([k]) => keys.has(k)));
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
