/**
 * Bounds kept by the masks rather than by the grammar: the lengths of JSON strings (`minLength`, `maxLength`),
 * the ranges of numbers (`minimum`, `maximum` and their exclusive forms, `multipleOf` on integers), and the items
 * of arrays that must differ (`uniqueItems`).
 *
 * xgrammar spells a length bound out as a chain of states, each with its own mask over the vocabulary: over
 * Pixtral's, one string with `maxLength: 80` took 2.5 s to compile and 256 took 5.9 s. Its bounded numbers let
 * values outside the bounds through. Here the grammar gets strings and numbers unbounded, and a BoundsTracker,
 * following the JSON written so far through the schema, cuts each mask to the tokens that keep the value within
 * its bounds: any bound, at no compile cost. So too for a pattern that is one set repeated (`^.{1,80}$`): the
 * grammar repeats the set freely, and the masks count. numbers.ts decides a number's text against its bounds.
 *
 * The tracker must know which schema a value follows. It does wherever the schema says so: through properties,
 * items, references, and unions whose branches differ in type (a string or null) or are objects that begin with
 * a required property of distinct constant values (a tool call's function name comes before its arguments; the
 * grammar writes properties in the order the schema lists them). A string a union reaches otherwise keeps its
 * bounds in the grammar (boundedSchemas says which); a number there may have none.
 *
 * Lengths are counted in code points, as JSON Schema does: an escape as one, an escaped UTF-16 pair as one.
 */
import {
  isSchemaMap,
  listedValues,
  resolve,
  type Schema,
  target,
  TYPES,
  typesOf,
  typesOverlap,
} from "./schema.ts";
import { repeatedSetBounds } from "./regex.ts";
import { formatOf } from "./formats.ts";
import { boundsInterval, intersect, type Interval, reachable, within } from "./numbers.ts";
import type { Vocabulary } from "./vocabulary.ts";

/** The keywords of numeric bounds (a multiple too: the masks keep it as they keep the others). */
export const NUMBER_BOUNDS = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"];

/** What a value may follow: a schema with no reference, allOf or union left in it, or `true` (anything). */
type Candidate = Schema | true;

interface Bounds {
  min: number;
  max: number;
}

/** The schemas `schema` stands for: references followed, allOf's one schema, each branch of a union. */
function expand(root: unknown, schema: unknown, seen = new Set<unknown>()): Candidate[] {
  if (schema === true) return [true];
  if (!isSchemaMap(schema) || seen.has(schema)) return [];
  seen.add(schema);
  if (typeof schema.$ref === "string") return expand(root, resolve(root, schema.$ref), seen);
  if (Array.isArray(schema.allOf)) return expand(root, schema.allOf[0], seen);
  const branches = schema.anyOf ?? schema.oneOf;
  if (Array.isArray(branches)) return branches.flatMap((branch) => expand(root, branch, seen));
  return [schema];
}

const typesOfAll = (root: unknown, candidates: readonly Candidate[]) =>
  new Set(candidates.flatMap((c) => [...(c === true ? TYPES : typesOf(root, c))]));

/** A string schema's only values: `const`, or an `enum` of strings (pydantic's tag of several values). */
function constants(root: unknown, schema: unknown): string[] | undefined {
  const s = target(root, schema);
  if (!isSchemaMap(s)) return undefined;
  const values = listedValues(s);
  return values?.every((v) => typeof v === "string") ? values as string[] : undefined;
}

/** The required first property of an object schema whose values are string constants: [name, values]. */
function leadingConstant(root: unknown, schema: Candidate): [string, string[]] | undefined {
  if (schema === true || !isSchemaMap(schema.properties)) return undefined;
  const first = Object.keys(schema.properties)[0];
  const values = constants(root, schema.properties[first]);
  const required = Array.isArray(schema.required) && schema.required.includes(first);
  return first !== undefined && required && values !== undefined ? [first, values] : undefined;
}

/**
 * For each branch of a union, whether the tracker tells it from the others: by the type of its value (no other
 * branch may have one of its types), or, among branches that are each one object schema, by a leading constant
 * that differs from every other's. Linear in the branches (a union may have thousands).
 */
function discriminated(root: unknown, branches: readonly Candidate[][]): boolean[] {
  // Integers are numbers: the two types are one here.
  const types = branches.map((b) =>
    new Set([...typesOfAll(root, b)].map((t) => t === "integer" ? "number" : t))
  );
  const owners = new Map<string, number>();
  for (const set of types) for (const t of set) owners.set(t, (owners.get(t) ?? 0) + 1);
  // The branches that may be objects, told apart when each is one object schema beginning with the same required
  // property, of distinct constant values.
  const objects = branches.flatMap((_, i) => types[i].has("object") ? [i] : []);
  const leads = objects.map((i) =>
    branches[i].length === 1 && types[i].size === 1 ? leadingConstant(root, branches[i][0]) : undefined
  );
  const values = leads.flatMap((lead) => lead?.[1] ?? []);
  const byConstant = leads.every((lead) => lead !== undefined && lead[0] === leads[0]![0]) &&
    new Set(values).size === values.length;
  return types.map((set) =>
    [...set].every((t) => owners.get(t) === 1) || (byConstant && set.size === 1 && set.has("object"))
  );
}

/**
 * The length bounds the masks can keep for a string schema: minLength, maxLength, and those of a pattern that is
 * one set repeated. Not beside another pattern or a format: cut at a bound, a text that has yet to match one
 * could not be finished (the schema check refuses those together; a URL is the exception); nor beside enum or
 * const, which say it all.
 */
export function boundsOf(s: Schema): Bounds | undefined {
  if ("enum" in s || "const" in s || "format" in s) return undefined;
  // A URL can be cut anywhere past its first few characters (formats.ts); format.ts refuses a maxLength below.
  const open = formatOf(s.pattern) === "uri";
  const pattern = typeof s.pattern === "string" && !open ? repeatedSetBounds(s.pattern) : undefined;
  if (s.pattern !== undefined && !pattern && !open) return undefined;
  if (!pattern && !("minLength" in s) && !("maxLength" in s)) return undefined;
  return {
    min: Math.max((s.minLength as number | undefined) ?? 0, pattern?.min ?? 0),
    max: Math.min((s.maxLength as number | undefined) ?? Infinity, pattern?.max ?? Infinity),
  };
}

/**
 * Why the masks cannot keep the items of an array schema with `uniqueItems` apart, or undefined if they can. They
 * follow each item as it is written and refuse the token that would end it as one written already, and any token
 * after which it could only become one: strings of any value or of listed values, and numbers without bounds (an
 * item of other values, or a bounded one, could be left with nothing it may still become).
 */
export function uniqueItemsProblem(root: unknown, s: Schema): string | undefined {
  const places = [...(Array.isArray(s.prefixItems) ? s.prefixItems : []), s.items ?? true];
  const all = new Set<string>();
  let finite = true;
  for (const place of places) {
    if (place === false) continue;
    const candidates = expand(root, place);
    if (candidates.some((c) => c === true)) return "give its items a schema";
    const types = typesOfAll(root, candidates);
    const strings = [...types].every((t) => t === "string");
    if (!strings && ![...types].every((t) => t === "integer" || t === "number")) {
      return "its items must be strings or numbers, one or the other";
    }
    for (const c of candidates as Schema[]) {
      const values = listedValues(c);
      // A URL can always go on (formats.ts), up to a maxLength long enough that no answer reaches it.
      const url = formatOf(c.pattern) === "uri" && ((c.maxLength as number | undefined) ?? Infinity) >= 64;
      if (strings && !values && !url && ["pattern", "format", "minLength", "maxLength"].some((k) => k in c)) {
        return "its items may be strings with a pattern, a format or length bounds only as an enum or URLs";
      }
      // An item of one place could take the last value another place may have.
      if (values && Array.isArray(s.prefixItems)) {
        return "items with listed values need one schema for every place";
      }
      if (!strings && (values || NUMBER_BOUNDS.some((k) => k in c))) {
        return "its items may be numbers without bounds or listed values only";
      }
      if (values) values.forEach((v) => all.add(v as string));
      else finite = false;
    }
  }
  if (finite && typeof s.minItems === "number" && s.minItems > all.size) {
    return `"minItems" asks for more items than there are different values (${all.size})`;
  }
  return undefined;
}

/** Whether a number's values are whole: its type says integer, and not number. */
export function integerOnly(s: Schema): boolean {
  const types = s.type === undefined ? [] : [s.type].flat();
  return types.includes("integer") && !types.includes("number");
}

/** Bounded schemas of a schema, by identity: those the tracker keeps, and those it cannot tell (ambiguous). */
export interface Bounded {
  guarded: Set<Schema>;
  ambiguous: Set<Schema>;
}

/**
 * The bounded string and number schemas of `root` a value can reach (`reachedFrom`, if known), by identity:
 * those the tracker keeps (`guarded`) and those it cannot (`ambiguous`: strings' bounds are left to the grammar).
 * Unreachable ones (an unused definition) are in neither.
 */
export function boundedSchemas(
  root: unknown,
  reachedFrom = reached(root),
): { strings: Bounded; numbers: Bounded; unique: Bounded } {
  const all = [...reachedFrom];
  const strings = all.filter(([s]) => "minLength" in s || "maxLength" in s || "pattern" in s);
  const numbers = all.filter(([s]) => NUMBER_BOUNDS.some((key) => key in s));
  const unique = all.filter(([s]) => s.uniqueItems === true);
  return {
    unique: {
      guarded: new Set(unique.filter(([, ambiguous]) => !ambiguous).map(([s]) => s)),
      ambiguous: new Set(unique.filter(([, ambiguous]) => ambiguous).map(([s]) => s)),
    },
    strings: {
      guarded: new Set(strings.filter(([s, ambiguous]) => !ambiguous && boundsOf(s)).map(([s]) => s)),
      ambiguous: new Set(strings.filter(([s, ambiguous]) => ambiguous || !boundsOf(s)).map(([s]) => s)),
    },
    numbers: {
      guarded: new Set(numbers.filter(([, ambiguous]) => !ambiguous).map(([s]) => s)),
      ambiguous: new Set(numbers.filter(([, ambiguous]) => ambiguous).map(([s]) => s)),
    },
  };
}

/** The schemas a value can reach, by identity, and whether some path reaches each where the tracker cannot tell. */
function reached(root: unknown): Map<Schema, boolean> {
  const reached = new Map<Schema, boolean>();
  const walk = (schema: unknown, ambiguous: boolean): void => {
    if (!isSchemaMap(schema)) return;
    const before = reached.get(schema);
    if (before !== undefined && (before || !ambiguous)) return;
    reached.set(schema, ambiguous);
    if (typeof schema.$ref === "string") walk(resolve(root, schema.$ref), ambiguous);
    if (Array.isArray(schema.allOf)) walk(schema.allOf[0], ambiguous);
    const branches = schema.anyOf ?? schema.oneOf;
    if (Array.isArray(branches)) {
      const told = discriminated(root, branches.map((branch) => expand(root, branch)));
      branches.forEach((branch, i) => walk(branch, ambiguous || !told[i]));
    }
    walk(schema.items, ambiguous);
    walk(schema.additionalProperties, ambiguous);
    if (Array.isArray(schema.prefixItems)) schema.prefixItems.forEach((s) => walk(s, ambiguous));
    if (isSchemaMap(schema.properties)) Object.values(schema.properties).forEach((s) => walk(s, ambiguous));
    // A name that matches several patterns follows all their schemas: the tracker keeps all their bounds.
    if (isSchemaMap(schema.patternProperties)) {
      Object.values(schema.patternProperties).forEach((s) => walk(s, ambiguous));
    }
    walk(schema.propertyNames, true); // names are keys, which the tracker does not bound
  };
  walk(root, false);
  return reached;
}

/** A format's schema as the tracker reads it. */
export class BoundsPlan {
  readonly root: unknown;
  /** The guarded string schemas and their bounds. */
  readonly guarded: Map<Schema, Bounds>;
  /** The guarded number schemas and their ranges. */
  readonly numbers: Map<Schema, Interval>;
  /** The array schemas whose items must differ (`uniqueItems`), all guarded (format.ts checks). */
  readonly unique: Set<Schema>;
  /**
   * Whether some string's values are listed (enum, const): the masks keep such a string to them, since xgrammar
   * 0.1.27 lets through texts that begin as one listed value and go on as another (`"AABA"` for `["AAA", "AA",
   * "A", "BBB", "BB", "B"]`, `"xxx"` for `["xx", "x"]`).
   */
  readonly listed: boolean;
  /** Whether some number's values are listed: kept so too (`[1001, 101]` wrote 10001). */
  readonly listedNumbers: boolean;
  readonly #patterns = new Map<string, RegExp>();

  constructor(schema: string) {
    this.root = JSON.parse(schema);
    const schemas = reached(this.root);
    const { strings, numbers, unique } = boundedSchemas(this.root, schemas);
    this.guarded = new Map([...strings.guarded].map((s) => [s, boundsOf(s)!]));
    this.numbers = new Map([...numbers.guarded].map((s) => [s, boundsInterval(s, integerOnly(s))]));
    this.unique = unique.guarded;
    const listed = [...schemas.keys()].map((s) => listedValues(s) ?? []);
    this.listed = listed.some((values) => values.some((v) => typeof v === "string"));
    this.listedNumbers = listed.some((values) => values.some((v) => typeof v === "number"));
  }

  /** The plan of a JSON format's schema, or undefined when no bounds are left to the masks. */
  static of(schema: string): BoundsPlan | undefined {
    const plan = new BoundsPlan(schema);
    return plan.guarded.size || plan.numbers.size || plan.unique.size || plan.listed || plan.listedNumbers
      ? plan
      : undefined;
  }

  /**
   * The values a string following one of `strings` may only take (each lists its values: enum or const), sorted;
   * undefined if one lists none.
   */
  choices(strings: readonly Candidate[]): string[] | undefined {
    return this.#listed(strings, "strings");
  }

  /**
   * The texts a number following one of `numbers` may only be (as xgrammar writes them: JSON), sorted; undefined
   * if one lists none, or one is written with an exponent (which the masks do not follow).
   */
  numberChoices(numbers: readonly Candidate[]): string[] | undefined {
    const texts = this.#listed(numbers, "numbers");
    return texts?.some((t) => /e/i.test(t)) ? undefined : texts;
  }

  /** The listed values of each of `candidates` that `text` writes, together and sorted (see choices). */
  /** The listed values of each of `candidates` of a kind, together and sorted (see choices). */
  #listed(candidates: readonly Candidate[], kind: "strings" | "numbers"): string[] | undefined {
    if (!candidates.length) return undefined;
    const lists = candidates.map((c) => c === true ? undefined : this.#texts(c)?.[kind]);
    if (lists.some((list) => !list)) return undefined;
    // One schema (the usual case) gives its own list, sorted once per format rather than at every string.
    return lists.length === 1 ? lists[0] : [...new Set(lists.flat() as string[])].sort();
  }

  readonly #listedTexts = new Map<Schema, { strings: string[]; numbers: string[] } | undefined>();

  /** A schema's listed values as the texts a string or a number writes (JSON for numbers), each sorted. */
  #texts(s: Schema): { strings: string[]; numbers: string[] } | undefined {
    if (this.#listedTexts.has(s)) return this.#listedTexts.get(s);
    const t = target(this.root, s);
    const values = isSchemaMap(t) ? listedValues(t) : undefined;
    const texts = values && {
      strings: [...new Set(values.filter((v) => typeof v === "string") as string[])].sort(),
      numbers: [...new Set(values.filter((v) => typeof v === "number").map((v) => JSON.stringify(v)))].sort(),
    };
    this.#listedTexts.set(s, texts);
    return texts;
  }

  top(): Candidate[] {
    return expand(this.root, this.root);
  }

  /** What the value of property `key` may follow, in an object that follows one of `objects`. */
  property(objects: readonly Candidate[], key: string): Candidate[] {
    return objects.flatMap((c) => {
      if (c === true) return [true];
      if (isSchemaMap(c.properties) && Object.hasOwn(c.properties, key)) {
        return expand(this.root, c.properties[key]);
      }
      if (isSchemaMap(c.patternProperties)) {
        const matched = Object.entries(c.patternProperties).filter(([p]) => this.#pattern(p).test(key));
        if (matched.length) return matched.flatMap(([, s]) => expand(this.root, s));
      }
      return expand(this.root, c.additionalProperties ?? true);
    });
  }

  /** What item `index` may follow, in an array that follows one of `arrays`. */
  item(arrays: readonly Candidate[], index: number): Candidate[] {
    return arrays.flatMap((c) => {
      if (c === true) return [true];
      const prefix = Array.isArray(c.prefixItems) ? c.prefixItems : [];
      return expand(this.root, index < prefix.length ? prefix[index] : c.items ?? true);
    });
  }

  /** Whether the schema of a property's value depends on its name, in an object following one of `objects`. */
  keyed(objects: readonly Candidate[]): boolean {
    return objects.some((c) => c !== true && ("properties" in c || "patternProperties" in c));
  }

  /**
   * The most bytes a string constant that some of `objects` fix property `key` to may take as JSON text (each
   * character escaped as \uXXXX); 0 when none fixes it.
   */
  constantBytes(objects: readonly Candidate[], key: string): number {
    let most = 0;
    for (const c of objects) {
      if (c === true || !isSchemaMap(c.properties) || !Object.hasOwn(c.properties, key)) continue;
      for (const value of constants(this.root, c.properties[key]) ?? []) {
        most = Math.max(most, 6 * [...value].length * 2);
      }
    }
    return most;
  }

  /**
   * Objects among `objects` whose property `key` may hold `value` (a string; undefined: one longer than any
   * constant): a differing constant rules out.
   */
  holding(objects: readonly Candidate[], key: string, value: string | undefined): Candidate[] {
    return objects.filter((c) => {
      if (c === true || !isSchemaMap(c.properties) || !Object.hasOwn(c.properties, key)) return true;
      const fixed = constants(this.root, c.properties[key]);
      return fixed === undefined || (value !== undefined && fixed.includes(value));
    });
  }

  /** Candidates whose values may be of `type`. */
  ofType(candidates: readonly Candidate[], type: string): Candidate[] {
    const wanted = new Set([type]);
    return candidates.filter((c) => c === true || typesOverlap(typesOf(this.root, c), wanted));
  }

  /** The bounds a string following one of `strings` keeps: those of the guarded ones, together. */
  bounds(strings: readonly Candidate[]): Bounds | undefined {
    let bounds: Bounds | undefined;
    for (const s of strings) {
      const own = s === true ? undefined : this.guarded.get(s);
      if (!own) continue;
      bounds ??= { min: 0, max: Infinity };
      bounds.min = Math.max(bounds.min, own.min);
      bounds.max = Math.min(bounds.max, own.max);
    }
    // Bounds that allow no string (a name matching two patterns' schemas) are kept: the answer then fails
    // ("allows no next token") rather than break one of them.
    return bounds;
  }

  /** The range a number following one of `numbers` keeps: those of the guarded ones, together (as `bounds`). */
  range(numbers: readonly Candidate[]): Interval | undefined {
    let range: Interval | undefined;
    for (const s of numbers) {
      const own = s === true ? undefined : this.numbers.get(s);
      if (own) range = range ? intersect(range, own) : own;
    }
    return range;
  }

  #pattern(pattern: string): RegExp {
    let re = this.#patterns.get(pattern);
    if (!re) this.#patterns.set(pattern, re = new RegExp(pattern, "u"));
    return re;
  }
}

/** Where a string stands: its characters so far, and the counting state (STEP) at its end. */
interface Str {
  key: boolean;
  bounds?: Bounds;
  count: number;
  state: number;
  /**
   * The bytes so far as a binary string (copied for free), kept for keys, and for values that may rule out
   * objects by a constant: at most `keep` bytes of those (longer, it is no constant: `long`).
   */
  text?: string;
  keep?: number;
  long?: boolean;
  /** Its only values (sorted), where every schema it may follow lists them. */
  choices?: string[];
  /** An item of an array whose items differ (the frame's `seen`). */
  item?: boolean;
}

/** A bounded number, or an item of an array whose items differ: its text so far and its range. */
interface Num {
  text: string;
  range: Interval;
  /** An item of an array whose items differ (the frame's `seen`), and whether it is whole. */
  item?: { integer: boolean };
  /** Its only texts, where every schema it may follow lists its values. */
  choices?: string[];
}

/** Whether a number may end with its text: inside its range, and one of its listed values if it has them. */
function numberEnds(number: Num): boolean {
  return within(number.text, number.range) && (!number.choices || number.choices.includes(number.text));
}

/** An open object or array, and what it may follow. */
interface Frame {
  kind: "object" | "array";
  candidates: Candidate[];
  /** The last key read (objects), the current item (arrays). */
  key?: string;
  index: number;
  /** In an array whose items must differ, the items so far (seenKey). */
  seen?: ReadonlySet<string>;
}

/**
 * Counting characters in a string's bytes: a state per place in an escape, and for each state and byte the next
 * state and whether a character was counted. A character counts at its first byte, an escape at its backslash;
 * an escaped UTF-16 pair (`\ud83d\ude00`) is one code point, so the escape after a high surrogate counts only if
 * it turns out not to be the low half.
 *
 *   0 text            1 after \           2 after \u         3, 5, 7 after 1-3 hex digits
 *   4 after \uD        6, 8 after \uD8-\uDB and one more digit (a high surrogate)
 *   9 text after a high surrogate       10 after its \     11 after its \u     12 after its \uD
 *   13, 14 in the low surrogate's last two digits
 */
const STATES = 15;
const isHex = (b: number) => (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66);
const hexIn = (b: number, from: number, to: number) =>
  isHex(b) && parseInt(String.fromCharCode(b), 16) >= from &&
  parseInt(String.fromCharCode(b), 16) <= to;

function transition(state: number, b: number): [next: number, counted: number] {
  const text = (b & 0xc0) !== 0x80 ? 1 : 0; // a continuation byte goes on a character already counted
  switch (state) {
    case 0:
    case 9:
      if (b === 0x5c) return state === 0 ? [1, 1] : [10, 0];
      return [0, text];
    case 1:
      return [b === 0x75 ? 2 : 0, 0];
    case 2:
      return [hexIn(b, 13, 13) ? 4 : 3, 0];
    case 4:
      return [hexIn(b, 8, 11) ? 6 : 5, 0];
    case 6:
      return [8, 0];
    case 8:
      return [9, 0];
    case 10: // an escape after a high surrogate: counted now unless it is \u
      return b === 0x75 ? [11, 0] : [0, 1];
    case 11:
      return hexIn(b, 13, 13) ? [12, 0] : [3, 1];
    case 12:
      return hexIn(b, 12, 15) ? [13, 0] : [hexIn(b, 8, 11) ? 6 : 5, 1];
    case 13:
      return [14, 0];
    default: // 3, 5, 7, 14: the next hex digit
      return [state === 7 || state === 14 ? 0 : state + 2, 0];
  }
}

/** transition() as a table: next state * 2 + counted, by state * 256 + byte. */
const STEP = Uint8Array.from({ length: STATES * 256 }, (_, i) => {
  const [next, counted] = transition(Math.floor(i / 256), i % 256);
  return next * 2 + counted;
});

/** Whether a quote in this state ends the string (else it is escaped). */
const ends = (state: number) => state === 0 || state === 9;

/**
 * Per vocabulary: for tokens without a quote, the characters each adds to a string it is written into, from
 * each escape state; the tokens with a quote, which the tracker follows one by one; and, made when first
 * needed, for each escape state and room left, the tokens that fit.
 */
interface Counts {
  added: Uint8Array[];
  /** The most characters a quote-free token adds, per escape state. */
  longest: number[];
  quoted: Int32Array;
  /** The tokens with a quote, a bit per id; those without a quote that hold a digit or a minus; those empty. */
  quotedMask: Uint32Array;
  numeric: Uint32Array;
  empty: Int32Array;
  /**
   * Per state, for each token of `quoted` written inside a string: the characters it adds to the string (before
   * the quote that ends it, if one does), and whether it ends it: 0 no (its quotes are escaped), 1 yes, 2 yes and
   * a quote follows, beginning another string (such tokens are followed byte by byte).
   */
  before: Uint8Array[];
  closes: Uint8Array[];
  fits: Map<number, Uint32Array>;
}

const counted = new WeakMap<Vocabulary, Counts>();

function counts(vocab: Vocabulary): Counts {
  let c = counted.get(vocab);
  if (c) return c;
  const n = vocab.offsets.length - 1;
  const added = Array.from({ length: STATES }, () => new Uint8Array(n));
  const longest = new Array(STATES).fill(0);
  const quoted: number[] = [];
  const quotedMask = new Uint32Array(Math.ceil(n / 32)), numeric = new Uint32Array(Math.ceil(n / 32));
  const empty: number[] = [];
  const before: number[][] = Array.from({ length: STATES }, () => []);
  const closes: number[][] = Array.from({ length: STATES }, () => []);
  for (let id = 0; id < n; id++) {
    const bytes = vocab.bytes.subarray(vocab.offsets[id], vocab.offsets[id + 1]);
    if (!bytes.length) empty.push(id);
    if (bytes.some((b) => b === 0x2d || (b >= 0x30 && b <= 0x39))) numeric[id >> 5] |= 1 << (id & 31);
    if (bytes.includes(0x22)) {
      quoted.push(id);
      quotedMask[id >> 5] |= 1 << (id & 31);
      for (let start = 0; start < STATES; start++) {
        let state = start, count = 0, end = -1;
        for (let i = 0; i < bytes.length && end < 0; i++) {
          if (bytes[i] === 0x22 && ends(state)) end = i;
          else {
            const step = STEP[state * 256 + bytes[i]];
            count += step & 1;
            state = step >> 1;
          }
        }
        before[start].push(Math.min(count, 255));
        closes[start].push(end < 0 ? 0 : bytes.subarray(end + 1).includes(0x22) ? 2 : 1);
      }
      continue;
    }
    for (let start = 0; start < STATES; start++) {
      let state = start, count = 0;
      for (const b of bytes) {
        const step = STEP[state * 256 + b];
        count += step & 1;
        state = step >> 1;
      }
      added[start][id] = Math.min(count, 255);
      longest[start] = Math.min(255, Math.max(longest[start], count));
    }
  }
  counted.set(
    vocab,
    c = {
      added,
      longest,
      quoted: Int32Array.from(quoted),
      quotedMask,
      numeric,
      empty: Int32Array.from(empty),
      before: before.map((list) => Uint8Array.from(list)),
      closes: closes.map((list) => Uint8Array.from(list)),
      fits: new Map(),
    },
  );
  return c;
}

/** The quote-free tokens that add at most `room` characters from counting state `state`. */
function fitting(c: Counts, state: number, room: number): Uint32Array {
  const key = state * 256 + room;
  let mask = c.fits.get(key);
  if (!mask) {
    mask = new Uint32Array(Math.ceil(c.added[state].length / 32));
    c.added[state].forEach((count, id) => {
      if (count <= room) mask![id >> 5] |= 1 << (id & 31);
    });
    c.fits.set(key, mask);
  }
  return mask;
}

const UTF8 = new TextDecoder();
const ENCODER = new TextEncoder();

const isSpace = (b: number) => b === 0x20 || b === 0x0a || b === 0x09 || b === 0x0d;
const isDigit = (b: number) => b >= 0x30 && b <= 0x39;

/** Follows a JSON text token by token through a BoundsPlan's schema, and keeps its values within bounds. */
export class BoundsTracker {
  #stack: Frame[] = [];
  /** What the next value may follow, while one is awaited. */
  #expect?: Candidate[];
  #string?: Str;
  #number?: Num;
  #scalar = false;

  /** At the start of the text; or, `from` given, where that tracker stands. */
  constructor(readonly plan: BoundsPlan, readonly vocabulary: Vocabulary, from?: BoundsTracker) {
    if (!from) {
      this.#expect = plan.top();
      return;
    }
    this.#stack = [...from.#stack];
    this.#expect = from.#expect;
    this.#string = from.#string && { ...from.#string };
    this.#number = from.#number && { ...from.#number };
    this.#scalar = from.#scalar;
  }

  /** Follows a token's bytes; false when they break a string's bounds (the masks keep that from happening). */
  take(bytes: Uint8Array): boolean {
    for (const b of bytes) if (!this.#byte(b)) return false;
    return true;
  }

  /** Narrows `mask` to the tokens that keep every string within its bounds. */
  narrow(mask: Uint32Array): void {
    const c = counts(this.vocabulary);
    const s = this.#string;
    if (s?.bounds && s.bounds.max - s.count < c.longest[s.state]) {
      const fits = fitting(c, s.state, s.bounds.max - s.count);
      for (let w = 0; w < mask.length; w++) mask[w] &= fits[w];
    }
    // A token with a quote may end this string: within it, the characters before the quote count. One that begins
    // another string, or comes between strings, is followed byte by byte on a copy.
    const { bytes, offsets } = this.vocabulary;
    // Without string bounds, only a token that may write or end a bounded number can break a bound.
    const strings = this.plan.guarded.size > 0 || this.plan.unique.size > 0 || this.plan.listed;
    // A string of listed values, or an item that may still become one written already: followed byte by byte.
    const exact = s?.choices || (s?.item && mayEqual(s.text!, this.#stack.at(-1)!.seen!));
    c.quoted.forEach((id, k) => {
      if (!(mask[id >> 5] & (1 << (id & 31)))) return;
      if (!strings && !this.#number && !(c.numeric[id >> 5] & (1 << (id & 31)))) return;
      let fits: boolean;
      if (s && c.closes[s.state][k] < 2 && !exact) {
        const count = s.count + c.before[s.state][k];
        fits = !s.bounds || (count <= s.bounds.max && (c.closes[s.state][k] === 0 || count >= s.bounds.min));
      } else fits = this.#copy().take(bytes.subarray(offsets[id], offsets[id + 1]));
      if (!fits) mask[id >> 5] &= ~(1 << (id & 31));
    });
    if (s?.choices) this.#narrowEach(mask, (w) => mask[w] & ~c.quotedMask[w]);
    // Between items whose values run out: no comma.
    const top = this.#stack.at(-1);
    if (!s && !this.#number && top?.seen && this.#exhausted(top)) {
      this.#narrowEach(mask, (w) => mask[w] & ~c.quotedMask[w]);
    }
    if (!s && (this.plan.numbers.size || this.plan.unique.size || this.plan.listedNumbers)) {
      this.#narrowNumbers(mask, c);
    }
  }

  /**
   * Outside strings, the tokens that may begin a bounded number (those with a digit or a minus), and in one every
   * token, followed byte by byte (few: the grammar allows little there). Tokens with a quote were followed above.
   */
  #narrowNumbers(mask: Uint32Array, c: Counts): void {
    const number = this.#number;
    this.#narrowEach(mask, (w) => mask[w] & ~c.quotedMask[w] & (number ? ~0 : c.numeric[w]));
    // A number that is the whole text ends with the stop token, which writes nothing.
    if (number && !this.#stack.length && !numberEnds(number)) {
      for (const id of c.empty) mask[id >> 5] &= ~(1 << (id & 31));
    }
  }

  /** Clears from `mask` each (non-empty) token among `which(word)` that a copy of this tracker refuses. */
  #narrowEach(mask: Uint32Array, which: (w: number) => number): void {
    const { bytes, offsets } = this.vocabulary;
    for (let w = 0; w < mask.length; w++) {
      let bits = which(w);
      while (bits) {
        const bit = bits & -bits;
        bits ^= bit;
        const id = w * 32 + 31 - Math.clz32(bit);
        if (
          offsets[id] !== offsets[id + 1] && !this.#copy().take(bytes.subarray(offsets[id], offsets[id + 1]))
        ) {
          mask[w] &= ~bit;
        }
      }
    }
  }

  #copy(): BoundsTracker {
    return new BoundsTracker(this.plan, this.vocabulary, this);
  }

  #byte(b: number): boolean {
    const s = this.#string;
    if (s) return this.#stringByte(s, b);
    const number = this.#number;
    if (number) {
      if (isDigit(b) || b === 0x2e) {
        number.text += String.fromCharCode(b);
        return this.#numberGoesOn(number);
      }
      if (!(b === 0x2c || b === 0x5d || b === 0x7d || isSpace(b))) return false; // an exponent (see numbers.ts)
      this.#number = undefined;
      if (!numberEnds(number)) return false;
      if (number.item && !this.#itemDone(seenKey(number.text, "number"))) return false;
      this.#valueDone();
    } else if (this.#scalar) {
      if (!(b === 0x2c || b === 0x5d || b === 0x7d || isSpace(b))) return true;
      this.#scalar = false;
      this.#valueDone();
    }
    if (isSpace(b)) return true;
    const top = this.#stack.at(-1);
    const expected = this.#expect;
    if (expected) {
      this.#expect = undefined;
      if (b === 0x5d && top?.kind === "array" && top.index === 0) return this.#close(); // []
      return this.#begin(b, expected, top);
    }
    if (!top) return true; // after the value
    if (top.kind === "object") {
      if (b === 0x22) {
        // Kept where the key decides the value's schema (a map's values all follow one).
        const text = this.plan.keyed(top.candidates) ? "" : undefined;
        this.#string = { key: true, count: 0, state: 0, text };
      } else if (b === 0x3a) this.#expect = this.plan.property(top.candidates, top.key ?? "");
      else if (b === 0x7d) return this.#close();
    } else if (b === 0x2c) {
      if (top.seen && this.#exhausted(top)) return false;
      this.#stack[this.#stack.length - 1] = { ...top, index: top.index + 1 };
      this.#expect = this.plan.item(top.candidates, top.index + 1);
    } else if (b === 0x5d) return this.#close();
    return true;
  }

  /** The first byte of a value that may follow `candidates`. */
  #begin(b: number, candidates: Candidate[], top: Frame | undefined): boolean {
    const { plan } = this;
    if (b === 0x22) {
      const strings = plan.ofType(candidates, "string");
      // A value may rule out objects by a constant: kept as long as it could equal one.
      const choices = plan.listed ? plan.choices(strings) : undefined;
      const item = top?.seen !== undefined;
      const keep = choices || item
        ? Infinity
        : top?.kind === "object" && top.candidates.length > 1 && top.key !== undefined
        ? plan.constantBytes(top.candidates, top.key)
        : 0;
      this.#string = {
        key: false,
        bounds: plan.bounds(strings),
        count: 0,
        state: 0,
        text: keep ? "" : undefined,
        keep,
        choices,
        item,
      };
    } else if (b === 0x7b) {
      this.#stack.push({ kind: "object", candidates: plan.ofType(candidates, "object"), index: 0 });
    } else if (b === 0x5b) {
      const arrays = plan.ofType(candidates, "array");
      const seen = arrays.some((c) => c !== true && plan.unique.has(c)) ? new Set<string>() : undefined;
      this.#stack.push({ kind: "array", candidates: arrays, index: 0, seen });
      this.#expect = plan.item(arrays, 0);
    } else if (b === 0x2d || isDigit(b)) {
      const numbers = plan.ofType(candidates, "number");
      // An item that must differ from others is followed unbounded (format.ts allows no bounds there).
      const choices = plan.listedNumbers ? plan.numberChoices(numbers) : undefined;
      const range = plan.range(numbers) ?? (top?.seen || choices ? {} : undefined);
      if (!range) this.#scalar = true;
      else {
        const integer = numbers.every((c) => c !== true && integerOnly(c));
        this.#number = { text: String.fromCharCode(b), range, item: top?.seen && { integer }, choices };
        return this.#numberGoesOn(this.#number);
      }
    } else this.#scalar = true;
    return true;
  }

  #stringByte(s: Str, b: number): boolean {
    if (ends(s.state) && b === 0x22) {
      this.#string = undefined;
      const text = s.text === undefined
        ? undefined
        : UTF8.decode(Uint8Array.from(s.text, (c) => c.charCodeAt(0)));
      const value = s.choices || s.item ? jsonString(text!) ?? "" : undefined;
      if (s.choices && !s.choices.includes(value!)) return false;
      if (s.item && !this.#itemDone(seenKey(value!, "string"))) return false;
      const top = this.#stack.at(-1);
      if (s.key && top) {
        this.#stack[this.#stack.length - 1] = {
          ...top,
          key: text === undefined ? undefined : jsonString(text),
        };
      } else if (s.text !== undefined || s.long) this.#valueDone(text);
      return !s.bounds || s.count >= s.bounds.min;
    }
    const step = STEP[s.state * 256 + b];
    s.count += step & 1;
    s.state = step >> 1;
    if (s.text !== undefined) {
      if (!s.key && s.text.length >= s.keep!) {
        s.text = undefined;
        s.long = true;
      } else s.text += String.fromCharCode(b);
    }
    // Listed values: one (not written yet, for an item) must still begin so.
    if (s.choices && !mayBecome(s.text!, s.choices, s.item ? this.#stack.at(-1)!.seen : undefined)) {
      return false;
    }
    return !s.bounds || s.count <= s.bounds.max;
  }

  /** Whether a number's text so far can still be finished inside its range (and as no item written already). */
  #numberGoesOn(number: Num): boolean {
    // A whole number begun with 0 is 0 (xgrammar writes no "-0").
    if (
      number.item?.integer && number.text === "0" && this.#stack.at(-1)!.seen!.has(seenKey("0", "number"))
    ) {
      return false;
    }
    if (number.choices && !number.choices.some((t) => t.startsWith(number.text))) return false;
    return reachable(number.text, number.range);
  }

  /** Whether the next item of an array whose items differ has listed values only, all written already. */
  #exhausted(top: Frame): boolean {
    const next = this.plan.item(top.candidates, top.index + 1);
    const choices = this.plan.choices(next);
    return choices !== undefined && choices.every((v) => top.seen!.has(seenKey(v, "string")));
  }

  /** An item of an array whose items differ ended with `value`: false if it was written already. */
  #itemDone(value: string): boolean {
    const top = this.#stack.at(-1)!;
    if (top.seen!.has(value)) return false;
    this.#stack[this.#stack.length - 1] = { ...top, seen: new Set([...top.seen!, value]) };
    return true;
  }

  #close(): boolean {
    this.#stack.pop();
    this.#valueDone();
    return true;
  }

  /** A value ended; `text`, a string's (JSON-escaped) text where it was kept. */
  #valueDone(text?: string): void {
    const top = this.#stack.at(-1);
    if (top?.kind !== "object" || top.key === undefined) return;
    this.#stack[this.#stack.length - 1] = {
      ...top,
      candidates: this.plan.holding(
        top.candidates,
        top.key,
        text === undefined ? undefined : jsonString(text),
      ),
    };
  }
}

/**
 * How an item is told from others in its array's `seen`: a string by its value, a number by the double it reads as
 * (validators compare numbers so: 1.0000000000000001 is 1, and 1.50 is 1.5).
 */
function seenKey(value: string, type: "string" | "number"): string {
  return type === "string" ? `s${value}` : `n${Number(value)}`;
}

/**
 * What a string's text (UTF-8 bytes as a binary string, JSON escapes in it) holds for sure, and the escape it ends
 * in if that is not whole yet ("\u00" ...; "" if none). A character whose bytes are not all here is left out.
 */
function written(text: string): { prefix: string; partial: string; pending: Uint8Array } {
  let whole = text.length;
  for (let i = 0; i < text.length; i++) {
    if (text[i] !== "\\") continue;
    const end = i + (text[i + 1] === "u" ? 6 : 2);
    if (end > text.length) {
      whole = i;
      break;
    }
    i = end - 1;
  }
  const bytes = Uint8Array.from(text.slice(0, whole), (c) => c.charCodeAt(0));
  // The bytes of a character not yet whole, kept apart.
  let tail = 0;
  for (let k = 1; k <= Math.min(3, bytes.length); k++) {
    const b = bytes[bytes.length - k];
    if ((b & 0xc0) === 0x80) continue;
    tail = (b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1) > k ? k : 0;
    break;
  }
  return {
    prefix: jsonString(UTF8.decode(bytes.subarray(0, bytes.length - tail))) ?? "",
    partial: text.slice(whole),
    pending: bytes.subarray(bytes.length - tail),
  };
}

const SHORT_ESCAPES: Record<number, string> = {
  0x22: '\\"',
  0x5c: "\\\\",
  0x2f: "\\/",
  0x08: "\\b",
  0x0c: "\\f",
  0x0a: "\\n",
  0x0d: "\\r",
  0x09: "\\t",
};

/**
 * Whether an escape begun as `partial` is how xgrammar writes the UTF-16 unit `code` in a listed value: a quote,
 * backslash and slash, and the control characters JSON names by letter, escaped so, other control characters and
 * DEL as \u00XX (lowercase: picojson's), nothing else (its enum grammar, printed: "\"é\\/\\u0001\\t\\\"\\\\x\"").
 */
function escapes(partial: string, code: number): boolean {
  const hex = code < 0x20 || code === 0x7f;
  const form = SHORT_ESCAPES[code] ?? (hex ? `\\u${code.toString(16).padStart(4, "0")}` : undefined);
  return form?.startsWith(partial) ?? false;
}

/** Whether a string begun with `text` may still become one of the sorted `choices` (and none of `seen`). */
function mayBecome(text: string, choices: readonly string[], seen?: ReadonlySet<string>): boolean {
  const { prefix, partial, pending } = written(text);
  let lo = 0, hi = choices.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (choices[mid] < prefix) lo = mid + 1;
    else hi = mid;
  }
  for (let i = lo; i < choices.length && choices[i].startsWith(prefix); i++) {
    const v = choices[i];
    if (seen?.has(seenKey(v, "string"))) continue;
    if (pending.length) {
      // The next character's UTF-8 bytes must begin with those written.
      const next = v.codePointAt(prefix.length);
      const bytes = next === undefined ? [] : ENCODER.encode(String.fromCodePoint(next));
      if (pending.every((b, k) => bytes[k] === b)) return true;
    } else if (!partial || (v.length > prefix.length && escapes(partial, v.charCodeAt(prefix.length)))) {
      return true;
    }
  }
  return false;
}

/** Whether a string begun with `text` may still end as one of the strings among `seen`. */
function mayEqual(text: string, seen: ReadonlySet<string>): boolean {
  if (!seen.size) return false;
  const key = seenKey(written(text).prefix, "string");
  for (const value of seen) if (value.startsWith(key)) return true;
  return false;
}

/** A JSON string's value from its text between the quotes; undefined if it is not one (cannot happen). */
function jsonString(text: string): string | undefined {
  try {
    return JSON.parse(`"${text}"`);
  } catch {
    return undefined;
  }
}
