/**
 * Regular expressions (JavaScript's syntax with the `u` flag, as JSON Schema and vLLM's `guided_regex` use them)
 * printed again for xgrammar 0.1.27, whose regex conversion does not mean what it reads: it matches the members
 * of a character set beyond ASCII as bytes (`[éü]` writes the byte E9, `[α-ω]` any byte of a range, code points
 * above U+00FF cut to 8 bits), lets `.`, `\S` and negated sets write any byte (a lone UTF-8 continuation, a
 * control character), ignores anchors in the middle and aborts on an empty alternative.
 *
 * A pattern is parsed here into sets of code points, sequences, alternatives and repetitions, and printed in the
 * part of the syntax xgrammar reads as written: ASCII sets as sets, every code point beyond ASCII as the UTF-8
 * byte sequences of its ranges (xgrammar does match a set of two or more byte values byte by byte; a set of one
 * it writes as that code point, so a lone byte is printed as a set of it twice), and each set cut to what the
 * output may hold. What cannot be printed so, or would cost too much to compile or to step, is refused with the
 * reason.
 */
import { FormatError } from "./format.ts";

/** Code point ranges, sorted, disjoint and not adjacent, ends included. */
export type Ranges = readonly (readonly [number, number])[];

type Node =
  | { kind: "set"; set: Ranges }
  | { kind: "seq"; items: Node[] }
  | { kind: "alt"; branches: Node[] }
  | { kind: "repeat"; body: Node; min: number; max: number }
  | { kind: "anchor"; at: "^" | "$" };

/** Where a pattern's matches go: JSON strings (between the quotes, escaped), or text. */
export type PatternTarget = "json" | "text";

const MAX_CODE_POINT = 0x10ffff;
/** Every code point UTF-8 encodes (surrogates excluded). */
export const UNIVERSE: Ranges = [[0, 0xd7ff], [0xe000, MAX_CODE_POINT]];
/**
 * What a match may hold: no control character but tab, newline and carriage return (tokens with others are
 * never allowed, see vocabulary.ts; in a JSON string they would take a \\u escape, which is not written here).
 */
export const WRITABLE: Ranges = subtract(UNIVERSE, [[0, 0x08], [0x0b, 0x0c], [0x0e, 0x1f]]);

/**
 * The characters a JSON string holds only escaped, and the letter of each one's escape (`\\n` for a newline).
 * xgrammar writes a pattern's match between the quotes as it is, so a match for a JSON string is printed with
 * them escaped: the string's value, once read, is what the pattern matches, as JSON Schema means it.
 */
const JSON_ESCAPES = new Map([[0x22, 0x22], [0x5c, 0x5c], [0x09, 0x74], [0x0a, 0x6e], [0x0d, 0x72]]);
const ESCAPED: Ranges = union([], [...JSON_ESCAPES.keys()].map((c): [number, number] => [c, c]));

const DIGIT: Ranges = [[0x30, 0x39]];
const WORD: Ranges = [[0x30, 0x39], [0x41, 0x5a], [0x5f, 0x5f], [0x61, 0x7a]];
/** JavaScript's \s: white space and line terminators. */
const SPACE: Ranges = [
  [0x09, 0x0d],
  [0x20, 0x20],
  [0xa0, 0xa0],
  [0x1680, 0x1680],
  [0x2000, 0x200a],
  [0x2028, 0x2029],
  [0x202f, 0x202f],
  [0x205f, 0x205f],
  [0x3000, 0x3000],
  [0xfeff, 0xfeff],
];
/** JavaScript's `.`: anything but a line terminator. */
const DOT = subtract(UNIVERSE, [[0x0a, 0x0a], [0x0d, 0x0d], [0x2028, 0x2029]]);

/**
 * Compile cost, in byte sets after repetitions are spelled out: xgrammar writes `x{0,m}` as m copies of x.
 * Measured over Pixtral's vocabulary on a 2-core machine (helpers running): `[a-z]{0,800}` compiles in 0.7 s,
 * `.{0,36}` (792) in 1.1 s, `[^,]{0,80}` (800) in 2.6 s; before this bound, a 6 KB pattern in minutes.
 */
export const MAX_COST = 800;
/**
 * Parts that may match nothing, in a row: every next token's mask looks through all of them. Measured per mask:
 * 8 `[a-z]?` 11 ms, 64 of them 0.9 s; 4 `.?` (22 byte sets each) 12 ms, 6 of them 49 ms.
 */
const MAX_OPTIONAL_RUN = { parts: 8, cost: 96 };

/**
 * `pattern` printed for xgrammar, matching what it matches whole (anchors at its ends dropped), less what is not
 * written (WRITABLE), as `target` writes it (a JSON string: escaped). Throws a FormatError (at `path`) for what
 * cannot be so. `counted`: the masks keep the string's length (bounds.ts), so a pattern that is one set repeated
 * (repeatedSet) is printed repeated freely.
 */
export function xgrammarPattern(
  pattern: string,
  target: PatternTarget,
  path: string,
  counted = false,
): string {
  // Agents send the same tools with every request, and a request's schemas are checked more than once.
  const key = `${target}\0${counted}\0${pattern}`;
  let printed = recent.get(key);
  if (printed === undefined) {
    try {
      printed = printedPattern(pattern, target, counted);
    } catch (err) {
      if (!(err instanceof FormatError)) throw err;
      printed = { refused: err.message };
    }
    if (recent.size >= RECENT) recent.delete(recent.keys().next().value!);
  } else recent.delete(key);
  recent.set(key, printed);
  if (typeof printed === "object") throw new FormatError(printed.refused, path);
  return printed;
}

/** Patterns printed (or refused, and why) most recently, by target, count and text; the oldest first. */
const recent = new Map<string, string | { refused: string }>();
const RECENT = 256;

function printedPattern(pattern: string, target: PatternTarget, counted: boolean): string {
  const path = ""; // its errors get the caller's (xgrammarPattern)
  let root = simplify(new Parser([...pattern], path).parse());
  const repeat = counted ? repeatedSet(root) : undefined;
  if (repeat) root = { ...repeat, min: Math.min(repeat.min, 1), max: Infinity };
  const cutTo = cut(root, WRITABLE, path);
  const writable = target === "json" ? escaped(cutTo) : cutTo;
  const split = splittable(writable);
  if (split) {
    throw new FormatError(
      "the pattern repeats a part whose copies can divide the same text in more than one way (`(\\w+ ?)*` reads " +
        '"ab" as one copy or two), which makes each token\'s mask slower as the text grows: make what ends a copy ' +
        "required, e.g. `(\\w+ )*\\w*`",
      path,
    );
  }
  anchors(writable, true, true, path);
  if (length(writable, "max") === 0) throw new FormatError("the pattern matches only the empty string", path);
  if (cost(writable) > MAX_COST) {
    throw new FormatError(
      `the pattern would take too long to compile: its repetitions spell out more than ${MAX_COST} sets ` +
        "(a set beyond ASCII counts each UTF-8 byte of each of its ranges: `.` 22, `\\S` 59): lower the bounds, or use + or *",
      path,
    );
  }
  const run = optionalRun(writable);
  if (run.parts > MAX_OPTIONAL_RUN.parts || run.cost > MAX_OPTIONAL_RUN.cost) {
    throw new FormatError(
      `the pattern has ${run.parts} optional parts in a row (${run.cost} byte sets), more than the ` +
        `${MAX_OPTIONAL_RUN.parts} (${MAX_OPTIONAL_RUN.cost}) whose masks each token can be given in time: ` +
        "nest them, e.g. (a(b(c)?)?)?",
      path,
    );
  }
  // Factored by code points first, where a set shared by alternatives is one part (what their encodings share
  // need not be spread), then by bytes, for the lead bytes that sets apart still share.
  // One budget for both, so that the printed pattern stays within MAX_COST and what spreading may add.
  const budget = { cost: MAX_COST / 2, tries: MAX_SPREAD_TRIES, split: MAX_COST / 2 };
  const printed = print(
    factor(inBytes(factor(writable, regexSpreading(setCost, budget))), regexSpreading(() => 1, budget)),
  );
  if (groupDepth(printed) > MAX_PRINTED_DEPTH) {
    throw new FormatError(
      `the pattern's alternatives, written with their common beginnings once, nest deeper than ${MAX_PRINTED_DEPTH}`,
      path,
    );
  }
  return printed;
}

/** Groups nested deeper than this in a printed pattern abort xgrammar's regex conversion (300 levels did). */
const MAX_PRINTED_DEPTH = 64;

/** How deep a pattern's groups nest (escapes and sets skipped; a valid pattern). */
export function groupDepth(pattern: string): number {
  let depth = 0, deepest = 0;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === "\\") i++;
    else if (c === "[") {
      while (i < pattern.length && pattern[i] !== "]") i += pattern[i] === "\\" ? 2 : 1;
    } else if (c === "(") deepest = Math.max(deepest, ++depth);
    else if (c === ")") depth--;
  }
  return deepest;
}

/** A pattern with the alternatives of every group factored (see factored and spreadHeads). */
function factor(node: Node, how: Spreading<Node>): Node {
  switch (node.kind) {
    case "seq":
      return { kind: "seq", items: node.items.map((item) => factor(item, how)) };
    case "repeat":
      return { ...node, body: factor(node.body, how) };
    case "alt":
      return factored(
        node.branches.map((b) => items(b, how)),
        (items) => items.length === 1 ? items[0] : { kind: "seq", items },
        joined,
        (branches) => disjointHeads(spreadHeads(branches, how), how),
      );
    default:
      return node;
  }
}

/** Alternatives, as one set where each is a set (a lead byte's continuations): xgrammar steps a set faster. */
function joined(branches: Node[]): Node {
  if (!branches.every((b) => b.kind === "set")) return { kind: "alt", branches };
  return {
    kind: "set",
    set: branches.reduce((set, b) => union(set, (b as { set: Ranges }).set), [] as Ranges),
  };
}

/**
 * A pattern's spreading (see spreadHeads and disjointHeads) under `budget`, one for the whole pattern (half of
 * MAX_COST more at most by spreading, as much by splitting), a set costing `ofSet` (its byte sets as printed; one
 * over bytes).
 */
function regexSpreading(ofSet: (set: Ranges) => number, budget: Spreading<Node>["budget"]): Spreading<Node> {
  // A part is taken apart again each time spreading meets it (a repetition's copies are one node): once is enough.
  const taken = new WeakMap<Node, Node[]>();
  const how: Spreading<Node> = {
    parts: spreadParts,
    items: (part) => taken.get(part) ?? taken.set(part, items(part, how)).get(part)!,
    first: (items) => first({ kind: "seq", items }),
    cost: (items) => cost({ kind: "seq", items }, ofSet),
    set: (part) => part.kind === "set" ? part.set : undefined,
    ofSet: (set) => ({ kind: "set", set }),
    budget,
  };
  return how;
}

/** A node as the items of a sequence, nested sequences taken apart (`(?:ax)xb` is a, x, x, b). */
function flat(node: Node): Node[] {
  return node.kind === "seq" ? node.items.flatMap(flat) : [node];
}

/** An alternative as factored compares it: flat, its groups factored and taken apart where that leaves a sequence. */
function items(node: Node, how: Spreading<Node>): Node[] {
  return flat(node).flatMap((item) => flat(factor(item, how)));
}

/**
 * Alternatives (each a list of items) with their common beginnings written once (`ax(?:xb|b)` for `axxb|axb`),
 * recursively, so that no two begin with the same item: xgrammar 0.1.27 matches alternatives that share two or
 * more leading characters wrongly (`axxb|axb` also took "axxxb", `Mrs|Mr` "Mrrs"). Items are compared as JSON.
 * `spread`, given, rewrites each list of alternatives first (at every level) so that beginnings hidden in a
 * group or a rule come out where they can be compared.
 */
export function factored<T>(
  branches: T[][],
  seq: (items: T[]) => T,
  alt: (branches: T[]) => T,
  spread?: (branches: T[][]) => T[][],
): T {
  if (spread) branches = spread(branches);
  const key = (item: T) => JSON.stringify(item);
  const groups = new Map<string, T[][]>();
  for (const items of branches) {
    const k = items.length ? key(items[0]) : "";
    groups.set(k, [...groups.get(k) ?? [], items]);
  }
  const out: T[] = [];
  for (const [k, group] of groups) {
    if (k === "" || group.length === 1) {
      out.push(seq(k === "" ? [] : group[0]));
      continue;
    }
    let common = 1;
    while (group.every((items) => items.length > common && key(items[common]) === key(group[0][common]))) {
      common++;
    }
    out.push(
      seq([
        ...group[0].slice(0, common),
        factored(group.map((items) => items.slice(common)), seq, alt, spread),
      ]),
    );
  }
  return out.length === 1 ? out[0] : alt(out);
}

/** How an AST's alternatives are spread (see spreadHeads): one for a whole pattern or grammar. */
export interface Spreading<T> {
  /** What a part stands for as alternatives (each a list of parts) where it hides its beginning; else undefined. */
  parts(head: T): T[][] | undefined;
  /** A part as the items factored compares. */
  items(part: T): T[];
  /** The characters an alternative may begin with. */
  first(items: T[]): Ranges;
  /** An alternative's compile cost. */
  cost(items: T[]): number;
  /** The code points a part matches when it is one set (one character), else undefined; and a set as a part. */
  set(part: T): Ranges | undefined;
  ofSet(set: Ranges): T;
  /**
   * What spreading may still add to the compile cost (in `cost`'s units), how many more alternatives it may try,
   * and what splitting (disjointHeads) may still add, over the whole pattern or grammar: past any, alternatives
   * stay as written.
   */
  budget: { cost: number; tries: number; split: number };
}

/** The most alternatives one spreads into. */
const MAX_SPREAD = 64;
/** The most alternatives spreading tries in a whole pattern or grammar (each level of factored spreads again). */
export const MAX_SPREAD_TRIES = 2048;
/** A repetition at the head is spelt out (each count an alternative) up to this many copies; beyond, one is peeled. */
const MAX_SPREAD_COPIES = 8;

/**
 * What a group or a repetition stands for as alternatives (regex and GBNF trees alike): a group its branches; a
 * repetition of a few copies each count spelt out, a longer one its first copy then the rest (`?`, `*` and `+`
 * heads match as written; `{2,}` does too, `{3,}` did not).
 */
export function spreadParts<T>(head: T): T[][] | undefined {
  const h = head as { kind: string; branches?: T[]; body?: T; min?: number; max?: number };
  if (h.kind === "alt") return h.branches!.map((b) => [b]);
  if (h.kind !== "repeat" || (h.min === 0 && h.max === 1)) return undefined;
  const [min, max, body] = [h.min!, h.max!, h.body!];
  if (max === Infinity) return min > 2 ? [[body, { ...h, min: min - 1 } as T]] : undefined;
  if (max <= MAX_SPREAD_COPIES) {
    return Array.from({ length: max - min + 1 }, (_, k) => Array(min + k).fill(body));
  }
  const rest = { ...h, min: Math.max(0, min - 1), max: max - 1 } as T;
  return min === 0 ? [[], [body, rest]] : [[body, rest]];
}

/**
 * Alternatives whose beginning hides in their first part (a group, a bounded repetition, for GBNF a rule) spread
 * into the alternatives they amount to, where another alternative may begin alike: xgrammar 0.1.27 runs on there
 * as with literals (`("Mr" | "Dr") "s." | "Mr."` took "Mrsss.", `"x"{2} "yb" | "xxb"` "xxyyb"). Each stays as it
 * is where spreading it would pass MAX_SPREAD alternatives or the budget left.
 */
export function spreadHeads<T>(branches: T[][], how: Spreading<T>): T[][] {
  if (how.budget.tries <= 0 || how.budget.cost <= 0) return branches;
  const firsts = branches.map((items) => how.first(items));
  const shared = (i: number) => firsts.some((f, j) => j !== i && intersect(f, firsts[i]).length > 0);
  return branches.flatMap((items, i) => {
    if (!items.length || !how.parts(items[0]) || !shared(i)) return [items];
    const base = how.cost(items);
    const start = base + how.budget.cost;
    const left = { branches: MAX_SPREAD, cost: start };
    const spread = spreadHead(items, how, left);
    if (!spread) return [items];
    how.budget.cost -= Math.max(0, start - left.cost - base);
    return spread;
  });
}

/**
 * Alternatives that begin with sets overlapping without being equal, each split by the parts of the sets it
 * shares, so that factored writes each shared part once: xgrammar 0.1.27 mixes up what follows alternatives
 * whose first sets overlap (`a|[^b]{3,4}|[^a]x` took "bxy": the `b` of `[^a]x` went on as `[^b]{3,4}`). Each split
 * writes the rest of its alternative once more per part: one that would pass the budget left is left as written.
 */
export function disjointHeads<T>(branches: T[][], how: Spreading<T>): T[][] {
  const heads = branches.map((items) => items.length ? how.set(items[0]) : undefined);
  // The parts of the sets' union in which each code point belongs to the same sets.
  let parts: Ranges[] = [];
  for (const set of heads) {
    if (!set) continue;
    const rest = parts.reduce((left, part) => subtract(left, part), set);
    parts = parts.flatMap((part) => [intersect(part, set), subtract(part, set)].filter((p) => p.length > 0));
    if (rest.length) parts.push(rest);
  }
  return branches.flatMap((items, i) => {
    const head = heads[i];
    const own = head ? parts.filter((part) => intersect(part, head).length > 0) : [];
    if (own.length < 2) return [items];
    const more = (own.length - 1) * how.cost(items);
    if (more > how.budget.split) return [items];
    how.budget.split -= more;
    return own.map((set) => [how.ofSet(set), ...items.slice(1)]);
  });
}

function spreadHead<T>(
  items: T[],
  how: Spreading<T>,
  left: { branches: number; cost: number },
): T[][] | undefined {
  if (--how.budget.tries < 0) return undefined;
  const parts = items.length ? how.parts(items[0]) : undefined;
  if (!parts) {
    left.branches--;
    left.cost -= how.cost(items);
    return left.branches < 0 || left.cost < 0 ? undefined : [items];
  }
  const out: T[][] = [];
  for (const part of parts) {
    const spread = spreadHead([...part.flatMap((p) => how.items(p)), ...items.slice(1)], how, left);
    if (!spread) return undefined;
    out.push(...spread);
  }
  return out;
}

/**
 * The repetition a pattern is, anchors aside, when it repeats one set (`^.{1,80}$`, `[A-Za-z ]{3,40}`, `^\w+$`, a
 * set alone): each match of the set is one character, so its bounds are the string's length.
 */
function repeatedSet(node: Node): (Node & { kind: "repeat" }) | undefined {
  const items = node.kind === "seq" ? node.items : [node];
  const anchored = items.length >= 1 && items.length <= 3 &&
    items.every((n, i) => n.kind !== "anchor" || (n.at === "^" ? i === 0 : i === items.length - 1));
  const written = items.filter((n) => n.kind !== "anchor");
  if (!anchored || written.length !== 1) return undefined;
  const [one] = written;
  if (one.kind === "set") return { kind: "repeat", body: one, min: 1, max: 1 };
  return one.kind === "repeat" && one.body.kind === "set" ? one : undefined;
}

/** The length bounds of a pattern that is one set repeated (see repeatedSet), or undefined. */
export function repeatedSetBounds(pattern: string): { min: number; max: number } | undefined {
  try {
    const repeat = repeatedSet(simplify(new Parser([...pattern], "").parse()));
    return repeat && { min: repeat.min, max: repeat.max };
  } catch {
    return undefined;
  }
}

class Parser {
  #at = 0;
  constructor(readonly chars: string[], readonly path: string) {}

  parse(): Node {
    const node = this.#disjunction();
    if (this.#at < this.chars.length) this.#fail(`unexpected "${this.chars[this.#at]}"`);
    return node;
  }

  #fail(message: string): never {
    throw new FormatError(`the pattern is not supported: ${message}`, this.path);
  }

  #disjunction(): Node {
    const branches = [this.#alternative()];
    while (this.chars[this.#at] === "|") {
      this.#at++;
      branches.push(this.#alternative());
    }
    return branches.length === 1 ? branches[0] : { kind: "alt", branches };
  }

  #alternative(): Node {
    const items: Node[] = [];
    while (this.#at < this.chars.length && this.chars[this.#at] !== "|" && this.chars[this.#at] !== ")") {
      items.push(this.#term());
    }
    return items.length === 1 ? items[0] : { kind: "seq", items };
  }

  #term(): Node {
    const c = this.chars[this.#at++];
    if (c === "^" || c === "$") return { kind: "anchor", at: c };
    let atom: Node;
    if (c === "(") {
      if (this.chars[this.#at] === "?") {
        const next = this.chars[this.#at + 1];
        if (next === ":") this.#at += 2;
        else if (next === "<" && !"=!".includes(this.chars[this.#at + 2])) {
          this.#at = this.chars.indexOf(">", this.#at) + 1; // a named group: its name is not needed
        } else this.#fail("=!<".includes(next) ? "look-around" : `the group modifier "(?${next}"`);
      }
      atom = this.#disjunction();
      if (this.chars[this.#at++] !== ")") this.#fail("an unclosed group");
    } else if (c === "[") atom = { kind: "set", set: this.#class() };
    else if (c === ".") atom = { kind: "set", set: DOT };
    else if (c === "\\") atom = { kind: "set", set: this.#escape(false) };
    else atom = { kind: "set", set: this.#codePoint(c.codePointAt(0)!) };
    return this.#quantified(atom);
  }

  #quantified(body: Node): Node {
    const c = this.chars[this.#at];
    let min: number, max: number;
    if (c === "*") [min, max] = [0, Infinity];
    else if (c === "+") [min, max] = [1, Infinity];
    else if (c === "?") [min, max] = [0, 1];
    else if (c === "{") {
      // {n}, {n,} or {n,m} (the `u` flag makes any other brace a syntax error); digits read whole.
      const digits = () => {
        const start = ++this.#at;
        while (/[0-9]/.test(this.chars[this.#at] ?? "")) this.#at++;
        return this.chars.slice(start, this.#at).join("");
      };
      min = Number(digits());
      max = this.chars[this.#at] === "," ? Number(digits() || Infinity) : min;
    } else return body;
    this.#at++;
    if (this.chars[this.#at] === "?") this.#at++; // lazy: the same whole matches
    return { kind: "repeat", body, min, max };
  }

  /** A character class, after its `[`. */
  #class(): Ranges {
    const negated = this.chars[this.#at] === "^";
    if (negated) this.#at++;
    let set: Ranges = [];
    while (this.#at < this.chars.length && this.chars[this.#at] !== "]") {
      const lo = this.#classAtom();
      if (
        this.chars[this.#at] === "-" && this.chars[this.#at + 1] !== "]" && this.#at + 1 < this.chars.length
      ) {
        this.#at++;
        const hi = this.#classAtom();
        if (lo.length !== 1 || hi.length !== 1 || lo[0][0] !== lo[0][1] || hi[0][0] !== hi[0][1]) {
          this.#fail("a range between sets");
        }
        set = union(set, [[lo[0][0], hi[0][0]]]);
      } else set = union(set, lo);
    }
    this.#at++;
    return negated ? subtract(UNIVERSE, set) : set;
  }

  #classAtom(): Ranges {
    const c = this.chars[this.#at++];
    return c === "\\" ? this.#escape(true) : this.#codePoint(c.codePointAt(0)!);
  }

  /** One code point; a UTF-16 surrogate (alone, or a pair written as two \\u escapes) no UTF-8 text holds. */
  #codePoint(code: number): Ranges {
    if (code >= 0xd800 && code <= 0xdfff) {
      throw new FormatError(
        "the pattern names a UTF-16 surrogate (U+D800-U+DFFF), which no UTF-8 text holds: write the character, " +
          "or \\u{...}",
        this.path,
      );
    }
    return single(code);
  }

  /** An escape, after its backslash. */
  #escape(inClass: boolean): Ranges {
    const c = this.chars[this.#at++];
    const hex = (digits: string) => {
      if (!/^[0-9a-f]+$/i.test(digits)) this.#fail(`the escape \\${c}${digits}`);
      return this.#codePoint(parseInt(digits, 16));
    };
    if (Object.hasOwn(SET_ESCAPES, c)) return SET_ESCAPES[c];
    switch (c) {
      case "c":
        return single(this.chars[this.#at++].codePointAt(0)! % 32);
      case "x":
        return hex(this.chars.slice(this.#at, this.#at += 2).join(""));
      case "u": {
        if (this.chars[this.#at] !== "{") return hex(this.chars.slice(this.#at, this.#at += 4).join(""));
        const end = this.chars.indexOf("}", this.#at);
        const digits = this.chars.slice(this.#at + 1, end).join("");
        this.#at = end + 1;
        return hex(digits);
      }
      case "b":
        if (inClass) return single(0x08);
        return this.#fail("word boundaries (\\b)");
      case "B":
        return this.#fail("word boundaries (\\B)");
      case "p":
      case "P":
        return this.#fail("Unicode property escapes (\\p{...})");
      case "k":
        return this.#fail("back-references");
      default:
        if (/[1-9]/.test(c)) this.#fail("back-references");
        return single(c.codePointAt(0)!);
    }
  }
}

const single = (code: number): Ranges => [[code, code]];

/** Escapes that stand for one set: the classes and the control characters. */
const SET_ESCAPES: Record<string, Ranges> = {
  d: DIGIT,
  D: subtract(UNIVERSE, DIGIT),
  w: WORD,
  W: subtract(UNIVERSE, WORD),
  s: SPACE,
  S: subtract(UNIVERSE, SPACE),
  t: single(0x09),
  n: single(0x0a),
  v: single(0x0b),
  f: single(0x0c),
  r: single(0x0d),
  "0": single(0),
};

export function union(a: Ranges, b: Ranges): Ranges {
  const all = [...a, ...b].sort((x, y) => x[0] - y[0]);
  const out: [number, number][] = [];
  for (const [lo, hi] of all) {
    const last = out.at(-1);
    if (last && lo <= last[1] + 1) last[1] = Math.max(last[1], hi);
    else out.push([lo, hi]);
  }
  return out;
}

export function subtract(a: Ranges, b: Ranges): Ranges {
  let out: Ranges = a;
  for (const [lo, hi] of b) {
    out = out.flatMap(([x, y]): [number, number][] => {
      if (hi < x || lo > y) return [[x, y]];
      const parts: [number, number][] = [];
      if (x < lo) parts.push([x, lo - 1]);
      if (hi < y) parts.push([hi + 1, y]);
      return parts;
    });
  }
  return out;
}

export function intersect(a: Ranges, b: Ranges): Ranges {
  const out: [number, number][] = [];
  for (const [x, y] of a) {
    for (const [lo, hi] of b) {
      if (Math.max(x, lo) <= Math.min(y, hi)) out.push([Math.max(x, lo), Math.min(y, hi)]);
    }
  }
  return union(out, []);
}

/** `node` with every set cut to `writable`; a set left empty is an error that says what it needed. */
function cut(node: Node, writable: Ranges, path: string): Node {
  return mapSets(node, (whole) => {
    if (whole.length === 0) {
      throw new FormatError("the pattern has an empty set ([]), which matches nothing", path);
    }
    const set = intersect(whole, writable);
    if (set.length === 0) {
      const what = whole.length === 1 && whole[0][0] === whole[0][1]
        ? `U+${whole[0][0].toString(16).toUpperCase().padStart(4, "0")}`
        : "a set of such characters only";
      throw new FormatError(
        `the pattern needs ${what}, which no token may write (a control character other than tab, newline ` +
          "and carriage return; in a JSON string, where it takes a \\u escape, none is written)",
        path,
      );
    }
    return { kind: "set", set };
  });
}

/** `node` as a JSON string writes its matches: each set's members that must be escaped as their escapes. */
function escaped(node: Node): Node {
  return mapSets(node, (set) => {
    const special = intersect(set, ESCAPED);
    if (special.length === 0) return { kind: "set", set };
    const letters = special.flatMap(([lo, hi]) =>
      Array.from({ length: hi - lo + 1 }, (_, i) => JSON_ESCAPES.get(lo + i)!)
    );
    const escape: Node = {
      kind: "seq",
      items: [{ kind: "set", set: single(0x5c) }, {
        kind: "set",
        set: union([], letters.map((c): [number, number] => [c, c])),
      }],
    };
    const plain = subtract(set, ESCAPED);
    return plain.length ? { kind: "alt", branches: [{ kind: "set", set: plain }, escape] } : escape;
  });
}

/** Checks that `^` comes only where a match starts and `$` only where it ends (the match is the whole output). */
function anchors(node: Node, atStart: boolean, atEnd: boolean, path: string): void {
  switch (node.kind) {
    case "anchor":
      if (node.at === "^" ? !atStart : !atEnd) {
        throw new FormatError(
          `the pattern has "${node.at}" where something may come before it ("^") or after it ("$"): the output ` +
            "is matched whole, so they may come only at its ends",
          path,
        );
      }
      return;
    case "seq": {
      // Items before the first that can match something are at the start; after the last, at the end.
      const written = node.items.map((n) => length(n, "max") > 0);
      const first = written.indexOf(true), last = written.lastIndexOf(true);
      node.items.forEach((item, i) =>
        anchors(item, atStart && (first < 0 || i <= first), atEnd && (last < 0 || i >= last), path)
      );
      return;
    }
    case "alt":
      for (const branch of node.branches) anchors(branch, atStart, atEnd, path);
      return;
    case "repeat":
      anchors(node.body, atStart && node.max <= 1, atEnd && node.max <= 1, path);
      return;
  }
}

/** The fewest or the most characters a node matches (the most may be Infinity). */
function length(node: Node, bound: "min" | "max"): number {
  switch (node.kind) {
    case "set":
      return 1;
    case "anchor":
      return 0;
    case "seq":
      return node.items.reduce((n, item) => n + length(item, bound), 0);
    case "alt":
      return Math[bound](...node.branches.map((branch) => length(branch, bound)));
    case "repeat": {
      const body = length(node.body, bound), times = bound === "min" ? node.min : node.max;
      return body === 0 || times === 0 ? 0 : body * times;
    }
  }
}

/** Byte sets a set is printed as. */
const setCost = (set: Ranges) => printSetParts(set).reduce((n, part) => n + part.length, 0);

/** Byte sets the printed pattern spells out, repetitions multiplied by their bounds. */
function cost(node: Node, ofSet: (set: Ranges) => number = setCost): number {
  switch (node.kind) {
    case "set":
      return ofSet(node.set);
    case "anchor":
      return 0;
    case "seq":
      return node.items.reduce((n, item) => n + cost(item, ofSet), 0);
    case "alt":
      return node.branches.reduce((n, item) => n + cost(item, ofSet), 0);
    case "repeat":
      return cost(node.body, ofSet) * Math.max(1, node.max === Infinity ? node.min : node.max);
  }
}

type Run = { parts: number; cost: number };
const worse = (a: Run, b: Run): Run => ({
  parts: Math.max(a.parts, b.parts),
  cost: Math.max(a.cost, b.cost),
});

/** Of the runs, in any sequence, of parts that may match nothing: the most parts, and the highest cost. */
function optionalRun(node: Node): Run {
  switch (node.kind) {
    case "set":
    case "anchor":
      return { parts: 0, cost: 0 };
    case "seq": {
      let run = { parts: 0, cost: 0 }, longest = run;
      for (const item of node.items) {
        longest = worse(longest, optionalRun(item));
        if (length(item, "max") === 0) continue;
        const own = nullableRun(item);
        run = own ? { parts: run.parts + own.parts, cost: run.cost + own.cost } : { parts: 0, cost: 0 };
        longest = worse(longest, run);
      }
      return longest;
    }
    case "alt":
      return node.branches.map(optionalRun).reduce(worse);
    case "repeat": {
      const own = nullableRun(node);
      return own ? worse(optionalRun(node.body), own) : optionalRun(node.body);
    }
  }
}

/**
 * What a part that may match nothing adds to a run (its own run inside, at least one part; as cost, the sets it
 * may begin with, which a mask looks through); undefined for one that must match something. A repetition's copies
 * past the first cannot add to it: a repeated part that may match nothing is refused (splittable).
 */
function nullableRun(node: Node): Run | undefined {
  if (length(node, "min") > 0) return undefined;
  const inside = optionalRun(node.kind === "repeat" ? node.body : node);
  return { parts: Math.max(1, inside.parts), cost: setCost(first(node)) };
}

/** `(X*)*`, `(X+)*` and `(X*)+` as `X*`, `(X+)+` as `X+`: the same text, one way to divide it (see splittable). */
function simplify(node: Node): Node {
  switch (node.kind) {
    case "seq":
      return { kind: "seq", items: node.items.map(simplify) };
    case "alt":
      return { kind: "alt", branches: node.branches.map(simplify) };
    case "repeat": {
      const body = simplify(node.body);
      if (
        node.max === Infinity && node.min <= 1 && body.kind === "repeat" && body.max === Infinity &&
        body.min <= 1
      ) {
        return { kind: "repeat", body: body.body, min: node.min * body.min, max: Infinity };
      }
      return { ...node, body };
    }
    default:
      return node;
  }
}

/**
 * A repetition (of two copies or more) whose copies can divide one text in more than one way: a body that may
 * match nothing, or one that may end in a repetition going on with what begins the body (`(\w+ ?)*`), unless
 * the two part within LOOKAHEAD characters (Codex's patches: a hunk's `*** End of File` line or the next hunk's
 * `*** Update File:`). xgrammar's parser keeps every division alive, so each mask costs more as the text grows
 * (measured: `(.*)*x` 14 ms per mask at the first token, 3.4 s at the 24th; a common URL pattern stalled for
 * minutes); ways that part within a few characters end there.
 */
function splittable(node: Node): Node | undefined {
  switch (node.kind) {
    case "set":
    case "anchor":
      return undefined;
    case "seq":
      return node.items.map(splittable).find((n) => n);
    case "alt":
      return node.branches.map(splittable).find((n) => n);
    case "repeat": {
      if (node.max >= 2) {
        if (length(node.body, "min") === 0) return node;
        if (intersect(goesOn(node.body), first(node.body)).length && !parted(node.body)) return node;
      }
      return splittable(node.body);
    }
  }
}

/** Characters within which a repetition's next copy and a repetition going on inside the last must part. */
const LOOKAHEAD = 16;
/** Beginnings kept apart at most: past them, those of one length are merged (the check gets stricter). */
const MAX_BEGINNINGS = 32;

/** The first characters of a match, as sets; `ended`: the match may end after them. */
type Beginning = { sets: Ranges[]; ended: boolean };

/**
 * Whether, after a copy of `body`, the next copy and any repetition in the copy going on instead differ within
 * LOOKAHEAD characters (what follows such a repetition's extra copy is taken to match anything). Beginnings of
 * the latter that already differ from every beginning of the next copy are followed no further.
 */
function parted(body: Node): boolean {
  const next = beginnings(body, LOOKAHEAD);
  const alike = (a: Beginning) =>
    next.some((b) => a.sets.every((set, i) => i >= b.sets.length || intersect(set, b.sets[i]).length > 0));
  return goingOn(body, alike).length === 0;
}

/** Which beginnings to follow (all when not given). */
type Alike = ((b: Beginning) => boolean) | undefined;

/** Beginnings, those of one length and end merged (their sets joined) if there are too many. */
function kept(list: Beginning[], alike: Alike): Beginning[] {
  const followed = alike ? list.filter(alike) : list;
  if (followed.length <= MAX_BEGINNINGS) return followed;
  const merged = new Map<string, Beginning>();
  for (const b of followed) {
    const key = `${b.sets.length}:${b.ended}`, known = merged.get(key);
    merged.set(key, known ? { sets: known.sets.map((set, i) => union(set, b.sets[i])), ended: b.ended } : b);
  }
  return [...merged.values()];
}

/** Beginnings found, by node and length (all of them): a sequence asks for its items' once per length left. */
const found = new WeakMap<Node, Map<number, Beginning[]>>();

/** The beginnings of a node's matches, up to `k` characters; with `alike`, those it follows. */
function beginnings(node: Node, k: number, alike?: Alike): Beginning[] {
  if (alike) return beginningsOf(node, k, alike);
  const known = found.get(node) ?? found.set(node, new Map()).get(node)!;
  return known.get(k) ?? known.set(k, beginningsOf(node, k, undefined)).get(k)!;
}

function beginningsOf(node: Node, k: number, alike: Alike): Beginning[] {
  // Each head that ended short of k, followed by each beginning of `next` in what is left.
  const then = (heads: Beginning[], next: Node) =>
    kept(
      heads.flatMap((head) =>
        !head.ended || head.sets.length >= k
          ? [head]
          : beginnings(next, k - head.sets.length).map((tail) => ({
            sets: [...head.sets, ...tail.sets],
            ended: tail.ended,
          }))
      ),
      alike,
    );
  switch (node.kind) {
    case "set":
      return [{ sets: [node.set], ended: true }];
    case "anchor":
      return [{ sets: [], ended: true }];
    case "seq":
      return node.items.reduce(then, [{ sets: [], ended: true }]);
    case "alt":
      return kept(node.branches.flatMap((branch) => beginnings(branch, k, alike)), alike);
    case "repeat": {
      const out: Beginning[] = node.min === 0 ? [{ sets: [], ended: true }] : [];
      // Beginnings that ended after n copies short of k, which another copy goes on.
      let open: Beginning[] = [{ sets: [], ended: true }];
      for (let n = 1; n <= node.max && open.length; n++) {
        const made = then(open, node.body);
        open = made.filter((b) => b.ended && b.sets.length < k);
        // Before the fewest copies, only those cut at k are beginnings.
        out.push(...(n >= node.min ? made : made.filter((b) => !b.ended || b.sets.length >= k)));
        // Copies that match nothing leave open what was open: nothing new comes after k of them.
        if (n > k && n >= node.min) break;
      }
      return kept(out, alike);
    }
  }
}

/**
 * The beginnings (see beginnings) of what a repetition that may end a node's match would go on with instead;
 * with `alike`, those it follows.
 */
function goingOn(node: Node, alike?: Alike): Beginning[] {
  switch (node.kind) {
    case "set":
    case "anchor":
      return [];
    case "seq": {
      const out: Beginning[] = [];
      for (let i = node.items.length - 1; i >= 0; i--) {
        out.push(...goingOn(node.items[i], alike));
        if (length(node.items[i], "min") > 0) break;
      }
      return kept(out, alike);
    }
    case "alt":
      return kept(node.branches.flatMap((branch) => goingOn(branch, alike)), alike);
    case "repeat":
      return node.max <= node.min
        ? goingOn(node.body, alike)
        : kept([...goingOn(node.body, alike), ...beginnings(node.body, LOOKAHEAD, alike)], alike);
  }
}

/** The sets a node's matches may begin with. */
function first(node: Node): Ranges {
  switch (node.kind) {
    case "set":
      return node.set;
    case "anchor":
      return [];
    case "seq": {
      let out: Ranges = [];
      for (const item of node.items) {
        out = union(out, first(item));
        if (length(item, "min") > 0) break;
      }
      return out;
    }
    case "alt":
      return node.branches.reduce((out, branch) => union(out, first(branch)), [] as Ranges);
    case "repeat":
      return node.max === 0 ? [] : first(node.body);
  }
}

/** The sets with which a repetition that may end a node's match could go on instead. */
function goesOn(node: Node): Ranges {
  switch (node.kind) {
    case "set":
    case "anchor":
      return [];
    case "seq": {
      let out: Ranges = [];
      for (let i = node.items.length - 1; i >= 0; i--) {
        out = union(out, goesOn(node.items[i]));
        if (length(node.items[i], "min") > 0) break;
      }
      return out;
    }
    case "alt":
      return node.branches.reduce((out, branch) => union(out, goesOn(branch)), [] as Ranges);
    case "repeat":
      return node.max > node.min ? union(goesOn(node.body), first(node.body)) : goesOn(node.body);
  }
}

/** The pattern text of a node; "" for one that matches only the empty string. */
function print(node: Node): string {
  switch (node.kind) {
    case "anchor":
      return "";
    case "set": {
      // One piece of pattern: a byte (an ASCII character), a set of bytes, or a group of the two.
      const ascii = intersect(node.set, [[0, 0x7f]]), high = intersect(node.set, [[0x80, 0xff]]);
      const parts = [
        ...ascii.length === 1 && ascii[0][0] === ascii[0][1]
          ? [literal(ascii[0][0])]
          : ascii.length
          ? [asciiClass(ascii)]
          : [],
        ...high.length ? [high.length === 1 ? byteClass(high[0]) : `[${high.map(byteRange).join("")}]`] : [],
      ];
      return parts.length > 1 ? `(?:${parts.join("|")})` : parts[0];
    }
    case "seq":
      return node.items.map(print).join("");
    case "alt": {
      const branches = node.branches.map(print);
      const written = branches.filter((b) => b !== "");
      if (written.length === 0) return "";
      // xgrammar aborts on an empty alternative: the others become optional instead.
      return `(?:${written.join("|")})${written.length < branches.length ? "?" : ""}`;
    }
    case "repeat": {
      const body = print(node.body);
      if (body === "" || node.max === 0) return "";
      const atom = node.body.kind === "set" ? body : `(?:${body})`;
      return atom + quantifier(node.min, node.max);
    }
  }
}

/**
 * `node` over bytes: each set as the UTF-8 encodings of its members, its ASCII part one set and each range beyond
 * it a sequence of byte sets (see utf8Ranges), so that factoring and splitting (disjointHeads) part alternatives
 * by their bytes: xgrammar 0.1.27 matches bytes, and mixed up alternatives whose first sets were apart as code
 * points but shared a lead byte (`[^é]` and `é` both begin with C3).
 */
function inBytes(node: Node): Node {
  return mapSets(node, (set) => {
    const ascii = intersect(set, [[0, 0x7f]]);
    const sequences = utf8Ranges(intersect(set, [[0x80, MAX_CODE_POINT]])).map((ranges): Node => {
      // A code point alone is its bytes.
      const bytes = ranges.length === 1
        ? [...new TextEncoder().encode(String.fromCodePoint(ranges[0][0]))].map((
          b,
        ): [number, number] => [b, b])
        : ranges;
      return { kind: "seq", items: bytes.map((range): Node => ({ kind: "set", set: [range] })) };
    });
    const branches: Node[] = [...ascii.length ? [{ kind: "set", set: ascii } as Node] : [], ...sequences];
    return branches.length === 1 ? branches[0] : { kind: "alt", branches };
  });
}

/** `node` with each set replaced by what `f` makes of it. */
function mapSets(node: Node, f: (set: Ranges) => Node): Node {
  switch (node.kind) {
    case "set":
      return f(node.set);
    case "seq":
      return { kind: "seq", items: node.items.map((item) => mapSets(item, f)) };
    case "alt":
      return { kind: "alt", branches: node.branches.map((branch) => mapSets(branch, f)) };
    case "repeat":
      return { ...node, body: mapSets(node.body, f) };
    case "anchor":
      return node;
  }
}

/** A repetition's bounds as a quantifier (the same in patterns and in xgrammar's EBNF). */
export function quantifier(min: number, max: number): string {
  if (max === Infinity) return min === 0 ? "*" : min === 1 ? "+" : `{${min},}`;
  if (min === 0 && max === 1) return "?";
  return min === max ? `{${min}}` : `{${min},${max}}`;
}

/**
 * A set as alternatives, each a sequence of single-character pattern pieces: its ASCII part as one set (or one
 * character), each code point beyond ASCII alone as itself, and ranges beyond ASCII as their UTF-8 byte ranges.
 */
function printSetParts(set: Ranges): string[][] {
  const ascii = intersect(set, [[0, 0x7f]]);
  const beyond = intersect(set, [[0x80, MAX_CODE_POINT]]);
  const parts: string[][] = [];
  if (ascii.length === 1 && ascii[0][0] === ascii[0][1]) parts.push([literal(ascii[0][0])]);
  else if (ascii.length) parts.push([asciiClass(ascii)]);
  for (const bytes of utf8Ranges(beyond)) {
    parts.push(bytes.length === 1 ? [String.fromCodePoint(bytes[0][0])] : bytes.map(byteClass));
  }
  return parts;
}

/** ASCII ranges as one set, every member as \xHH (the same in patterns and in xgrammar's EBNF). */
export const asciiClass = (ascii: Ranges) =>
  `[${ascii.map(([lo, hi]) => lo === hi ? hex(lo) : `${hex(lo)}-${hex(hi)}`).join("")}]`;

/**
 * A range of byte values as a set. A set of one value xgrammar writes as that code point, not that byte: the value
 * twice is a byte set.
 */
export const byteClass = ([a, b]: readonly [number, number]) =>
  a === b ? `[${hex(a)}${hex(a)}]` : `[${byteRange([a, b])}]`;

/** A range of bytes inside a set. */
const byteRange = ([a, b]: readonly [number, number]) => a === b ? hex(a) : `${hex(a)}-${hex(b)}`;

/**
 * A byte or an ASCII character as \xHH. In a set always: xgrammar's grammar reads as many hex digits as follow
 * `\x`, so `[\x2D0-9]` would be the code point 0x2D0 and a range down to 9.
 */
const hex = (byte: number) => `\\x${byte.toString(16).toUpperCase().padStart(2, "0")}`;
/** An ASCII character outside sets: as it is, escaped, or alone in a set (see hex). */
const literal = (code: number) => {
  const c = String.fromCharCode(code);
  if (/[A-Za-z0-9 _,;:!@#%&='"<>~`-]/.test(c)) return c;
  if (/[\\^$.|?*+()[\]{}/]/.test(c)) return `\\${c}`;
  if (code === 0x09) return "\\t";
  if (code === 0x0a) return "\\n";
  if (code === 0x0d) return "\\r";
  return `[${hex(code)}${hex(code)}]`;
};

/**
 * UTF-8 blocks by length: the code points they encode, and the values their lead byte and free continuation
 * bytes spell, overlong and out-of-range forms included.
 */
const BLOCKS = [
  { bytes: 2, first: 0x80, last: 0x7ff, from: 0x80, to: 0x7ff },
  { bytes: 3, first: 0x800, last: 0xffff, from: 0, to: 0xffff },
  { bytes: 4, first: 0x10000, last: MAX_CODE_POINT, from: 0, to: 0x13ffff },
];

/**
 * The UTF-8 encodings of a set of code points beyond ASCII, as sequences of byte ranges (a code point alone: a
 * sequence of one range holding it). Where the set runs to the end of a block, its ranges are widened over the
 * forms UTF-8 forbids (overlong, surrogates, beyond U+10FFFF): no token writes them, and the byte after E0, ED,
 * F0 or F4 is kept to what UTF-8 allows by the masks (TokenGuard), so fewer, wider ranges mean the same.
 */
export function utf8Ranges(set: Ranges): [number, number][][] {
  const out: [number, number][][] = [];
  const withSurrogates = contains(set, 0xd7ff) && contains(set, 0xe000)
    ? union(set, [[0xd800, 0xdfff]])
    : set;
  for (const block of BLOCKS) {
    for (const [lo, hi] of intersect(withSurrogates, [[block.first, block.last]])) {
      if (lo === hi) out.push([[lo, lo]]);
      else split(lo === block.first ? block.from : lo, hi === block.last ? block.to : hi, block.bytes, out);
    }
  }
  return out;
}

const contains = (set: Ranges, code: number) => set.some(([lo, hi]) => lo <= code && code <= hi);

/** [lo, hi] in n-byte forms, split until its ends differ only where the continuation bytes after are free. */
function split(lo: number, hi: number, n: number, out: [number, number][][]): void {
  for (let i = 1; i < n; i++) {
    const low = (1 << (6 * i)) - 1;
    if ((lo & ~low) !== (hi & ~low)) {
      if ((lo & low) !== 0) return (split(lo, lo | low, n, out), split((lo | low) + 1, hi, n, out));
      if ((hi & low) !== low) return (split(lo, (hi & ~low) - 1, n, out), split(hi & ~low, hi, n, out));
    }
  }
  const a = encode(lo, n), b = encode(hi, n);
  out.push(a.map((x, k) => [x, b[k]]));
}

/** `code` in n bytes of UTF-8's form (overlong or out of range where it takes fewer bytes or is too large). */
function encode(code: number, n: number): number[] {
  const lead = [0, 0, 0xc0, 0xe0, 0xf0][n];
  return Array.from({ length: n }, (_, k) => {
    const bits = (code >> (6 * (n - 1 - k))) & (k === 0 ? 0x3f >> (n - 1) : 0x3f);
    return (k === 0 ? lead : 0x80) | bits;
  });
}
