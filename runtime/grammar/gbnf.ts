/**
 * GBNF grammars, llama.cpp's syntax (its server's `grammar`; vLLM's `guided_grammar` with the xgrammar backend
 * reads the same): rules `name ::= ...` of literals ("..."), character classes ([a-z], [^"]), `.`, rule names,
 * groups, alternatives (|) and repetitions (*, +, ?, {m}, {m,}, {m,n}); `#` comments; a rule ends at the end of
 * its line unless a group or a `|` goes on. The output is matched from the rule `root`.
 *
 * xgrammar 0.1.27 reads its own EBNF (a superset of this) with the quirks regex.ts describes: a class with members
 * beyond ASCII matches bytes, `.` is not read at all, and a syntax error aborts the instance. So a grammar is
 * parsed here, checked, and printed again in the part of that syntax xgrammar reads as written: classes beyond
 * ASCII as their UTF-8 byte ranges, each cut to what tokens may write, rules renamed (xgrammar wants a name to
 * begin with a letter). What cannot be printed so, or would cost too much to compile, is refused with the reason.
 */
import { FormatError } from "./format.ts";
import {
  asciiClass,
  byteClass,
  disjointHeads,
  factored,
  intersect,
  MAX_COST,
  MAX_SPREAD_TRIES,
  quantifier,
  type Ranges,
  spreadHeads,
  type Spreading,
  spreadParts,
  subtract,
  union,
  UNIVERSE,
  utf8Ranges,
  WRITABLE,
} from "./regex.ts";

type Expr =
  | { kind: "set"; set: Ranges }
  /** A literal: its code points in order. */
  | { kind: "text"; codes: number[] }
  | { kind: "seq"; items: Expr[] }
  | { kind: "alt"; branches: Expr[] }
  | { kind: "repeat"; body: Expr; min: number; max: number }
  | { kind: "ref"; name: string; line: number };

/** The largest bound a repetition may give (xgrammar spells bounded repetitions out copy by copy). */
const MAX_BOUND = 10_000;
/**
 * Compile cost in units of MAX_COST (measured over Pixtral's vocabulary on this 2-core machine, per position a
 * bounded repetition spells out): a class costs with the tokens it can begin, so an ASCII class a unit per 8 members
 * (`[a-z]` 0.6 ms, `[ -~]` 6 ms), a class beyond ASCII a unit per byte class it prints as; literal characters and
 * rule references a thirty-second of a unit (25000 literal characters 75 ms).
 */
const ASCII_PER_UNIT = 8;
const CHARS_PER_UNIT = 32;

/** `grammar` printed for xgrammar (its root rule `root`), matching what it matches. Throws a FormatError. */
export function xgrammarGrammar(grammar: string): string {
  const rules = new GbnfParser(grammar).parse();
  if (!rules.has("root")) {
    throw new FormatError('the grammar has no rule "root", where the output starts', "");
  }
  // Only rules the root reaches are printed (and paid for): each named r1, r2... in the order first reached.
  const names = new Map([["root", "root"]]);
  const order = ["root"];
  // Breadth first, by a work list: a chain of thousands of rules must not recurse as deep.
  for (let next = 0; next < order.length; next++) {
    for (const ref of refsOf(rules.get(order[next])!)) {
      if (!rules.has(ref.name)) {
        throw new FormatError(
          `line ${ref.line} names the rule "${ref.name}", which the grammar does not define`,
          "",
        );
      }
      if (!names.has(ref.name)) {
        names.set(ref.name, `r${names.size}`);
        order.push(ref.name);
      }
    }
  }
  const cut = new Map(order.map((name) => [name, cutToText(rules.get(name)!, name)]));

  const shortest = shortestLengths(cut);
  if (shortest.get("root") === Infinity) {
    throw new FormatError(
      'the grammar matches no text: every way through "root" goes on forever (a rule that names itself needs an ' +
        "alternative that does not)",
      "",
    );
  }
  const ranges = (of: (e: Expr, facts: Map<string, Ranges>) => Ranges) =>
    fixedPoint<Ranges>(cut, [], of, union, sameRanges);
  const first = ranges((e, firsts) => firstOf(e, shortest, firsts));
  const goesOn = ranges((e, later) => repeatsAt("end", e, shortest, first, later));
  const leadsOn = ranges((e, leading) => repeatsAt("start", e, shortest, first, leading));
  const known = { rules: cut, runs: new Map(), ruleRuns: new Map(), shortest, first, goesOn, leadsOn };
  const facts: Facts = { ...known, spreading: spreading(known) };
  for (const [name, expr] of cut) cut.set(name, simplify(expr, facts));
  // Rules reached last first, so that a rule's optional parts are weighed before the rules that name it (those
  // named on a cycle or further down count as nothing): one pass, without recursion from rule to rule.
  for (const name of [...order].reverse()) {
    const simpler = cut.get(name)!;
    const at = `the rule "${name}"`;
    if (depthOf(simpler) > MAX_DEPTH) {
      throw new FormatError(
        `${at} nests its parts deeper than ${MAX_DEPTH} (xgrammar's parser overflows)`,
        "",
      );
    }
    const split = splittable(simpler, facts);
    if (split) {
      throw new FormatError(
        `${at} repeats a part whose copies can divide the same text in more than one way (${split}), which ` +
          "makes each token's mask slower as the text grows: make what ends a copy required, e.g. " +
          '`(w " ")* w` rather than `(w " "?)+`, `[a-z]+` rather than `([a-z]+)+`',
        "",
      );
    }
    const run = optionalRun(simpler, facts);
    facts.ruleRuns.set(name, run);
    if (run.parts > MAX_OPTIONAL_RUN.parts || run.cost > MAX_OPTIONAL_RUN.cost) {
      throw new FormatError(
        `${at} has ${run.parts} optional parts in a row that may begin with a class (cost ` +
          `${
            Math.round(run.cost)
          }), more than the ${MAX_OPTIONAL_RUN.parts} (cost ${MAX_OPTIONAL_RUN.cost}) that ` +
          "compile in time (24 `[a-z]?` took 3.7 s): nest them, e.g. (a (b (c)?)?)?",
        "",
      );
    }
  }
  let total = 0;
  for (const expr of cut.values()) total += cost(expr);
  if (total > MAX_COST) {
    throw new FormatError(
      `the grammar would take too long to compile: its repetitions spell out more than ${MAX_COST} character ` +
        `classes (an ASCII class counts one per ${ASCII_PER_UNIT} members, a class beyond ASCII one per UTF-8 ` +
        `byte of each of its ranges: \`.\` 21; every ${CHARS_PER_UNIT} literal characters one): lower the ` +
        "bounds, or use + or *",
      "",
    );
  }
  const factoredRules = order.map((name) => [name, factor(cut.get(name)!, facts)] as const);
  for (const [name, expr] of factoredRules) {
    if (depthOf(expr) > MAX_DEPTH) {
      throw new FormatError(
        `the rule "${name}", its alternatives written with their common beginnings once, nests its parts deeper ` +
          `than ${MAX_DEPTH} (xgrammar's parser overflows)`,
        "",
      );
    }
  }
  // A rule whose every use was spread into the rules naming it is not printed.
  const used = new Set(["root"]);
  for (const [name, expr] of factoredRules) {
    if (used.has(name)) { for (const ref of refsOf(expr)) used.add(ref.name); }
  }
  return factoredRules.filter(([name]) => used.has(name)).map(([name, expr]) =>
    `${names.get(name)} ::= ${print(expr, names)}`
  ).join("\n");
}

/**
 * A rule with the alternatives of every group factored, literals character by character (see regex.ts's
 * factored: xgrammar 0.1.27 lets `"axxb" | "axb"` take "axxxb"). An alternative whose beginning may be another's
 * and hides in its first part is spread first (see regex.ts's spreadHeads): `("Mr" | "Dr") "s." | "Mr."` took "Mrsss.".
 */
function factor(e: Expr, facts: Facts): Expr {
  switch (e.kind) {
    case "seq":
      return { kind: "seq", items: e.items.map((item) => factor(item, facts)) };
    case "repeat":
      return { ...e, body: factor(e.body, facts) };
    case "alt":
      return factored(
        e.branches.map((b) => itemsOf(b, facts)),
        (items) => ({ kind: "seq", items: joinTexts(items) }),
        (branches) => ({ kind: "alt", branches }),
        (branches) => disjointHeads(spreadHeads(branches, facts.spreading), facts.spreading),
      );
    default:
      return e;
  }
}

/**
 * An alternative as factored compares it: flat, one-character classes as literals, its groups factored and taken
 * apart where that leaves a sequence (`("Mrs" | "Mrx")` is M, r, then the group of s and x).
 */
function itemsOf(e: Expr, facts: Facts): Expr[] {
  return flat(e).flatMap((item): Expr[] =>
    item.kind === "set" && item.set.length === 1 && item.set[0][0] === item.set[0][1]
      ? [{ kind: "text", codes: [item.set[0][0]] }]
      : item.kind === "text"
      ? [item]
      : flat(factor(item, facts))
  );
}

const seqOf = (items: Expr[]): Expr => ({ kind: "seq", items });

/**
 * What hides a beginning from factored in a grammar (see regex.ts's spreadHeads): a group, a bounded repetition,
 * and a rule naming no rule (xgrammar takes such a rule's text into the rule that names it and runs on as with
 * literals: `t "." | "Mr."` with `t ::= "Mrs"` took "Mrssss."). Spreading may add 64 units of compile cost to
 * the grammar at most, splitting (disjointHeads) half of MAX_COST.
 */
function spreading(facts: Omit<Facts, "spreading">): Spreading<Expr> {
  // A part is taken apart again each time spreading meets it (a repetition's copies are one node): once is enough.
  const taken = new WeakMap<Expr, Expr[]>();
  const how: Spreading<Expr> = {
    parts: (head) =>
      head.kind === "ref"
        ? refsOf(facts.rules.get(head.name)!).length === 0 ? [[facts.rules.get(head.name)!]] : undefined
        : spreadParts(head),
    items: (part) =>
      taken.get(part) ?? taken.set(part, itemsOf(part, { ...facts, spreading: how })).get(part)!,
    first: (items) => firstOf(seqOf(items), facts.shortest, facts.first),
    cost: (items) => cost(seqOf(items)),
    set: (part) =>
      part.kind === "set"
        ? part.set
        : part.kind === "text" && part.codes.length === 1
        ? [[part.codes[0], part.codes[0]]]
        : undefined,
    // One character as a literal, as itemsOf writes it, so that factored compares it with the literals.
    ofSet: (set) =>
      set.length === 1 && set[0][0] === set[0][1]
        ? { kind: "text", codes: [set[0][0]] }
        : { kind: "set", set },
    budget: { cost: 64, tries: MAX_SPREAD_TRIES, split: MAX_COST / 2 },
  };
  return how;
}

/**
 * An expression as the items of a sequence: nested sequences taken apart, literals character by character (`"a"
 * "xb"` is a, x, b), so that alternatives spelt differently are factored alike.
 */
function flat(e: Expr): Expr[] {
  if (e.kind === "seq") return e.items.flatMap(flat);
  return e.kind === "text" ? e.codes.map((code): Expr => ({ kind: "text", codes: [code] })) : [e];
}

/** A sequence's neighbouring literals as one. */
function joinTexts(items: Expr[]): Expr[] {
  const out: Expr[] = [];
  for (const item of items) {
    const last = out.at(-1);
    if (item.kind === "text" && last?.kind === "text") {
      out[out.length - 1] = { kind: "text", codes: [...last.codes, ...item.codes] };
    } else out.push(item);
  }
  return out;
}

/** Groups nested deeper than this are refused: the parser, and each pass after it, recurses per level. */
const MAX_NESTING = 50;
/** Parts nested deeper than this, as printed, are refused: xgrammar's parser overflowed at about 200. */
const MAX_DEPTH = 120;
/** Repetitions of a repetition (`"a"*?`) in a row, at most. */
const MAX_STACKED = 4;

class GbnfParser {
  #at = 0;
  #depth = 0;
  readonly #chars: string[];
  /** Where each line starts, for positions in messages. */
  readonly #lineStarts = [0];
  readonly #rules = new Map<string, Expr>();

  constructor(text: string) {
    this.#chars = [...text];
    this.#chars.forEach((c, i) => c === "\n" && this.#lineStarts.push(i + 1));
  }

  parse(): Map<string, Expr> {
    if (this.#chars[0] === "\uFEFF") this.#at++; // a byte order mark, as editors save one
    this.#space(true);
    while (this.#at < this.#chars.length) {
      const line = this.#line();
      const name = this.#name();
      if (!name) this.#fail("expected a rule name");
      this.#space(false);
      if (this.#chars.slice(this.#at, this.#at + 3).join("") !== "::=") {
        this.#fail('expected "::=" after the name');
      }
      this.#at += 3;
      this.#space(true);
      if (this.#rules.has(name)) {
        this.#fail(`the rule "${name}" is defined twice (first before line ${line})`);
      }
      this.#rules.set(name, this.#alternatives(false));
      const c = this.#chars[this.#at];
      if (c !== undefined && c !== "\n" && c !== "\r") this.#fail(`unexpected "${c}"`);
      this.#space(true);
    }
    return this.#rules;
  }

  /** The line of the current position (1-based). */
  #line(): number {
    let lo = 0, hi = this.#lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.#lineStarts[mid] <= this.#at) lo = mid;
      else hi = mid - 1;
    }
    return lo + 1;
  }

  #fail(message: string): never {
    const line = this.#line(), column = this.#at - this.#lineStarts[line - 1] + 1;
    throw new FormatError(`the grammar is not valid GBNF at line ${line}, column ${column}: ${message}`, "");
  }

  /** Skips blanks and comments; line ends too when `newlines`. */
  #space(newlines: boolean): void {
    for (;;) {
      const c = this.#chars[this.#at];
      if (c === " " || c === "\t" || (newlines && (c === "\n" || c === "\r"))) this.#at++;
      else if (c === "#") {
        while (this.#at < this.#chars.length && !"\r\n".includes(this.#chars[this.#at])) this.#at++;
      } else return;
    }
  }

  #name(): string {
    const start = this.#at;
    while (/^[A-Za-z0-9_-]$/.test(this.#chars[this.#at] ?? "")) this.#at++;
    return this.#chars.slice(start, this.#at).join("");
  }

  /** Alternatives; inside a group (`nested`) they may go on over line ends. */
  #alternatives(nested: boolean): Expr {
    const branches = [this.#sequence(nested)];
    while (this.#chars[this.#at] === "|") {
      this.#at++;
      this.#space(true);
      branches.push(this.#sequence(nested));
    }
    return branches.length === 1 ? branches[0] : { kind: "alt", branches };
  }

  #sequence(nested: boolean): Expr {
    const items: Expr[] = [];
    for (;;) {
      const c = this.#chars[this.#at];
      if (c === undefined || c === "|" || c === ")" || c === "\n" || c === "\r") break;
      let atom: Expr;
      if (c === '"') {
        this.#at++;
        const codes: number[] = [];
        while (this.#chars[this.#at] !== '"') {
          if (this.#at >= this.#chars.length) this.#fail("a literal without its closing quote");
          codes.push(this.#char());
        }
        this.#at++;
        atom = { kind: "text", codes };
      } else if (c === "[") {
        this.#at++;
        atom = { kind: "set", set: this.#class() };
      } else if (c === ".") {
        this.#at++;
        atom = { kind: "set", set: UNIVERSE };
      } else if (c === "(") {
        if (++this.#depth > MAX_NESTING) this.#fail(`groups nested deeper than ${MAX_NESTING}`);
        this.#at++;
        this.#space(true);
        atom = this.#alternatives(true);
        if (this.#chars[this.#at] !== ")") this.#fail('expected ")"');
        this.#at++;
        this.#depth--;
      } else if (c === "<" || (c === "!" && this.#chars[this.#at + 1] === "<")) {
        this.#fail(
          "llama.cpp's token references (<[id]>, <token>, !<token>) are not supported: write the text",
        );
      } else {
        const line = this.#line();
        const name = this.#name();
        if (!name) this.#fail(`unexpected "${c}"`);
        atom = { kind: "ref", name, line };
      }
      this.#space(nested);
      items.push(this.#quantified(atom, nested));
    }
    return items.length === 1 ? items[0] : { kind: "seq", items };
  }

  #quantified(body: Expr, nested: boolean): Expr {
    let expr = body;
    for (let stacked = 0;; stacked++) {
      const c = this.#chars[this.#at];
      let min: number, max: number;
      if (c === "*") [min, max] = [0, Infinity];
      else if (c === "+") [min, max] = [1, Infinity];
      else if (c === "?") [min, max] = [0, 1];
      else if (c === "{") {
        const close = this.#chars.indexOf("}", this.#at);
        const bounds = /^\s*(\d+)\s*(?:(,)\s*(\d*)\s*)?$/.exec(
          this.#chars.slice(this.#at + 1, close).join(""),
        );
        if (close < 0 || !bounds) this.#fail("a repetition is written {m}, {m,} or {m,n}");
        min = Number(bounds[1]);
        max = bounds[2] ? (bounds[3] ? Number(bounds[3]) : Infinity) : min;
        if (max < min) this.#fail(`the repetition {${min},${max}} has its bounds the wrong way round`);
        if (min > MAX_BOUND || (max !== Infinity && max > MAX_BOUND)) {
          this.#fail(`a repetition bound above ${MAX_BOUND}`);
        }
        this.#at = close;
      } else return expr;
      // Each repetition nests the last: a few are a grammar's, thousands would overflow the passes' recursion.
      if (stacked === MAX_STACKED) this.#fail(`more than ${MAX_STACKED} repetitions in a row: group them`);
      this.#at++;
      this.#space(nested);
      expr = { kind: "repeat", body: expr, min, max };
    }
  }

  /** A character class, after its `[`. */
  #class(): Ranges {
    const negated = this.#chars[this.#at] === "^";
    if (negated) this.#at++;
    const members: [number, number][] = [];
    while (this.#chars[this.#at] !== "]") {
      if (this.#at >= this.#chars.length) this.#fail('a class without its closing "]"');
      const lo = this.#char();
      let hi = lo;
      if (this.#chars[this.#at] === "-" && this.#chars[this.#at + 1] !== "]") {
        this.#at++;
        hi = this.#char();
        if (hi < lo) this.#fail("a range whose end comes before its start");
      }
      members.push([lo, hi]);
    }
    this.#at++;
    // Sorted and merged once (a union per member took quadratic time over a class of thousands).
    members.sort((a, b) => a[0] - b[0]);
    const set: [number, number][] = [];
    for (const [lo, hi] of members) {
      const last = set.at(-1);
      if (last && lo <= last[1] + 1) last[1] = Math.max(last[1], hi);
      else set.push([lo, hi]);
    }
    return negated ? subtract(UNIVERSE, set) : set;
  }

  /** One character of a literal or a class, escapes read; its code point. */
  #char(): number {
    const c = this.#chars[this.#at++];
    let code: number;
    if (c !== "\\") code = c.codePointAt(0)!;
    else {
      const e = this.#chars[this.#at++];
      const digits = { x: 2, u: 4, U: 8 }[e as "x" | "u" | "U"];
      if (digits) {
        const hexDigits = this.#chars.slice(this.#at, this.#at + digits).join("");
        if (!new RegExp(`^[0-9a-fA-F]{${digits}}$`).test(hexDigits)) {
          this.#fail(`\\${e} needs ${digits} hex digits`);
        }
        this.#at += digits;
        code = parseInt(hexDigits, 16);
      } else if (Object.hasOwn(ESCAPES, e)) code = ESCAPES[e];
      else this.#fail(`the escape \\${e ?? ""}`);
    }
    if ((code >= 0xd800 && code <= 0xdfff) || code > 0x10ffff) {
      this.#fail(`U+${code.toString(16).toUpperCase()} is not a character UTF-8 can write`);
    }
    return code;
  }
}

const ESCAPES: Record<string, number> = {
  n: 0x0a,
  r: 0x0d,
  t: 0x09,
  "\\": 0x5c,
  '"': 0x22,
  "[": 0x5b,
  "]": 0x5d,
  "-": 0x2d,
};

/** `expr` with classes cut to what tokens may write; a class or literal needing anything else is an error. */
function cutToText(expr: Expr, rule: string): Expr {
  const refuse = (what: string): never => {
    throw new FormatError(
      `the rule "${rule}" needs ${what}, which no token may write (a control character other than tab, newline ` +
        "and carriage return)",
      "",
    );
  };
  switch (expr.kind) {
    case "set": {
      if (expr.set.length === 0) refuse("a class that holds nothing");
      const set = intersect(expr.set, WRITABLE);
      return set.length ? { kind: "set", set } : refuse("a class of such characters only");
    }
    case "text": {
      const bad = expr.codes.find((code) => intersect([[code, code]], WRITABLE).length === 0);
      return bad === undefined ? expr : refuse(`U+${bad.toString(16).toUpperCase().padStart(4, "0")}`);
    }
    case "seq":
      return { kind: "seq", items: expr.items.map((e) => cutToText(e, rule)) };
    case "alt":
      return { kind: "alt", branches: expr.branches.map((e) => cutToText(e, rule)) };
    case "repeat":
      return { ...expr, body: cutToText(expr.body, rule) };
    case "ref":
      return expr;
  }
}

/** The rule references in `e`, in order. */
function refsOf(e: Expr, out: (Expr & { kind: "ref" })[] = []): (Expr & { kind: "ref" })[] {
  if (e.kind === "ref") out.push(e);
  else if (e.kind === "seq") e.items.forEach((item) => refsOf(item, out));
  else if (e.kind === "alt") e.branches.forEach((branch) => refsOf(branch, out));
  else if (e.kind === "repeat") refsOf(e.body, out);
  return out;
}

/** The fewest characters each rule matches: Infinity for one that never ends. */
function shortestLengths(rules: Map<string, Expr>): Map<string, number> {
  return fixedPoint(rules, Infinity, minLength, Math.min, (a, b) => a === b);
}

/** The fewest characters `e` matches, given the rules' (`shortest`). */
function minLength(e: Expr, shortest: Map<string, number>): number {
  switch (e.kind) {
    case "set":
      return 1;
    case "text":
      return e.codes.length;
    case "seq":
      return e.items.reduce((n, item) => n + minLength(item, shortest), 0);
    case "alt":
      return Math.min(...e.branches.map((branch) => minLength(branch, shortest)));
    case "repeat":
      return e.min === 0 ? 0 : minLength(e.body, shortest) * e.min;
    case "ref":
      return shortest.get(e.name)!;
  }
}

type Facts = {
  rules: Map<string, Expr>;
  /** Optional runs weighed so far, by node and by rule (see optionalRun). */
  runs: Map<Expr, Run>;
  ruleRuns: Map<string, Run>;
  shortest: Map<string, number>;
  /** The characters each rule's matches may begin with. */
  first: Map<string, Ranges>;
  /** The characters with which an unbounded repetition ending each rule's match could go on instead. */
  goesOn: Map<string, Ranges>;
  /** The characters an unbounded repetition that may begin each rule's match repeats. */
  leadsOn: Map<string, Ranges>;
  /** How alternatives are spread before they are factored, with the grammar's budget. */
  spreading: Spreading<Expr>;
};

/**
 * A per-rule fact as a fixed point, by a work list: each rule's value moves from `bottom` by `join` until none
 * changes, and a rule is looked at again only when one it names changed.
 */
function fixedPoint<T>(
  rules: Map<string, Expr>,
  bottom: T,
  of: (e: Expr, facts: Map<string, T>) => T,
  join: (old: T, found: T) => T,
  same: (a: T, b: T) => boolean,
): Map<string, T> {
  const facts = new Map([...rules.keys()].map((name) => [name, bottom]));
  const namedBy = new Map([...rules.keys()].map((name) => [name, new Set<string>()]));
  for (const [name, expr] of rules) for (const ref of refsOf(expr)) namedBy.get(ref.name)!.add(name);
  const pending = [...rules.keys()], queued = new Set(pending);
  while (pending.length) {
    const name = pending.pop()!;
    queued.delete(name);
    const value = join(facts.get(name)!, of(rules.get(name)!, facts));
    if (same(value, facts.get(name)!)) continue;
    facts.set(name, value);
    for (const user of namedBy.get(name)!) {
      if (queued.has(user)) continue;
      queued.add(user);
      pending.push(user);
    }
  }
  return facts;
}

const sameRanges = (a: Ranges, b: Ranges) =>
  a.length === b.length && a.every(([lo, hi], i) => lo === b[i][0] && hi === b[i][1]);

/** The characters `e`'s matches may begin with. */
function firstOf(e: Expr, shortest: Map<string, number>, first: Map<string, Ranges>): Ranges {
  switch (e.kind) {
    case "set":
      return e.set;
    case "text":
      return e.codes.length ? [[e.codes[0], e.codes[0]]] : [];
    case "seq": {
      let out: Ranges = [];
      for (const item of e.items) {
        out = union(out, firstOf(item, shortest, first));
        if (minLength(item, shortest) > 0) break;
      }
      return out;
    }
    case "alt":
      return e.branches.reduce((out, branch) => union(out, firstOf(branch, shortest, first)), [] as Ranges);
    case "repeat":
      return e.max === 0 ? [] : firstOf(e.body, shortest, first);
    case "ref":
      return first.get(e.name)!;
  }
}

/**
 * The characters an unbounded repetition at one `edge` of `e`'s match repeats: at its end, those with which the
 * match could go on instead; at its start, those it begins with again. Only an unbounded repetition: what a bounded
 * one adds divides a text in a bounded number of ways, and keeps grammars such as llama.cpp's c.gbnf (an if
 * statement's optional else, then any statement) as they are.
 */
function repeatsAt(
  edge: "start" | "end",
  e: Expr,
  shortest: Map<string, number>,
  first: Map<string, Ranges>,
  rules: Map<string, Ranges>,
): Ranges {
  switch (e.kind) {
    case "set":
    case "text":
      return [];
    case "seq": {
      let out: Ranges = [];
      for (const item of edge === "start" ? e.items : e.items.toReversed()) {
        out = union(out, repeatsAt(edge, item, shortest, first, rules));
        if (minLength(item, shortest) > 0) break;
      }
      return out;
    }
    case "alt":
      return e.branches.reduce(
        (out, branch) => union(out, repeatsAt(edge, branch, shortest, first, rules)),
        [] as Ranges,
      );
    case "repeat": {
      const inner = repeatsAt(edge, e.body, shortest, first, rules);
      return e.max === Infinity ? union(inner, firstOf(e.body, shortest, first)) : inner;
    }
    case "ref":
      return rules.get(e.name)!;
  }
}

/**
 * `e` written so that xgrammar follows it faster, matching the same texts: `(X*)*`, `(X+)*` and `(X*)+` as `X*`,
 * `(X+)+` as `X+` (one way to divide a text instead of many); and a repetition of alternatives among which some
 * are classes, `(C | X)*` (or `c*` with `c ::= C | X` naming no rule), as `C* (X C*)*` where no X begins with a
 * character of C (a class run xgrammar takes at once: llama.cpp's JSON string rule went from 50 ms per token's
 * mask to under 4 ms).
 */
function simplify(e: Expr, facts: Facts): Expr {
  switch (e.kind) {
    case "seq":
      return { kind: "seq", items: e.items.map((item) => simplify(item, facts)) };
    case "alt":
      return { kind: "alt", branches: e.branches.map((branch) => simplify(branch, facts)) };
    case "repeat": {
      let body = simplify(e.body, facts);
      // A rule of alternatives among which a class (json-schema-to-grammar's `char*`) is taken in, to be rewritten.
      const named = body.kind === "ref" ? facts.rules.get(body.name)! : undefined;
      if (
        e.max === Infinity && e.min === 0 && named?.kind === "alt" &&
        named.branches.some((b) => b.kind === "set") &&
        !refsOf(named).length
      ) {
        body = named;
      }
      if (
        e.max === Infinity && e.min <= 1 && body.kind === "repeat" && body.max === Infinity && body.min <= 1
      ) {
        return { kind: "repeat", body: body.body, min: e.min * body.min, max: Infinity };
      }
      if (e.max === Infinity && e.min === 0 && body.kind === "alt") {
        const sets = body.branches.filter((b) => b.kind === "set") as (Expr & { kind: "set" })[];
        const others = body.branches.filter((b) => b.kind !== "set");
        const runs = sets.reduce((out, b) => union(out, b.set), [] as Ranges);
        const other: Expr = others.length === 1 ? others[0] : { kind: "alt", branches: others };
        if (
          sets.length && others.length && minLength(other, facts.shortest) > 0 &&
          intersect(firstOf(other, facts.shortest, facts.first), runs).length === 0
        ) {
          const run: Expr = { kind: "repeat", body: { kind: "set", set: runs }, min: 0, max: Infinity };
          return {
            kind: "seq",
            items: [run, {
              kind: "repeat",
              body: { kind: "seq", items: [other, run] },
              min: 0,
              max: Infinity,
            }],
          };
        }
      }
      return { ...e, body };
    }
    default:
      return e;
  }
}

/** How deep `e`'s parts nest (groups, alternatives, repetitions), as printed. */
function depthOf(e: Expr): number {
  switch (e.kind) {
    case "seq":
      return 1 + Math.max(0, ...e.items.map(depthOf));
    case "alt":
      return 1 + Math.max(0, ...e.branches.map(depthOf));
    case "repeat":
      return 1 + depthOf(e.body);
    default:
      return 0;
  }
}

/**
 * A repetition (of two copies or more) whose copies can divide one text in more than one way, printed: a body that
 * may match nothing, or one whose match may end in a repetition that could go on with what begins the body
 * (`(w " "?)+` with `w ::= [a-z]+`). xgrammar keeps every division alive, so masks grow slower with the text
 * (measured: `w+ "!"` 23 ms per mask at the 100th character, 320 ms at the 495th).
 */
function splittable(e: Expr, facts: Facts): string | undefined {
  switch (e.kind) {
    case "seq": {
      // Two unbounded repetitions meeting over the same characters (`w w` with `w ::= [a-z]+`): where one ends
      // and the next begins can be anywhere, and masks slow down as the text grows (166 ms at the 250th token).
      const { shortest, first, goesOn, leadsOn } = facts;
      let leading: Ranges = [];
      for (let i = e.items.length - 1; i >= 0; i--) {
        if (intersect(repeatsAt("end", e.items[i], shortest, first, goesOn), leading).length) {
          const names = new Map([...shortest.keys()].map((name) => [name, name]));
          return e.items.slice(i).map((item) => print(item, names)).join(" ").slice(0, 80);
        }
        const own = repeatsAt("start", e.items[i], shortest, first, leadsOn);
        leading = minLength(e.items[i], shortest) === 0 ? union(own, leading) : own;
      }
      return e.items.map((item) => splittable(item, facts)).find((found) => found);
    }
    case "alt":
      return e.branches.map((branch) => splittable(branch, facts)).find((found) => found);
    case "repeat": {
      if (e.max >= 2) {
        const { shortest, first, goesOn } = facts;
        if (
          minLength(e.body, shortest) === 0 ||
          intersect(repeatsAt("end", e.body, shortest, first, goesOn), firstOf(e.body, shortest, first))
            .length
        ) {
          return print(e, new Map([...shortest.keys()].map((name) => [name, name]))).slice(0, 80);
        }
      }
      return splittable(e.body, facts);
    }
    default:
      return undefined;
  }
}

/** Optional parts in a row whose masks each token must look through: as for patterns (regex.ts). */
const MAX_OPTIONAL_RUN = { parts: 8, cost: 96 };
type Run = { parts: number; cost: number };
const NO_RUN: Run = { parts: 0, cost: 0 };
const worse = (a: Run, b: Run): Run => ({
  parts: Math.max(a.parts, b.parts),
  cost: Math.max(a.cost, b.cost),
});

/**
 * Of the runs, in any sequence, of parts that may match nothing and may begin with a class (optional literals cost
 * little: 40 optional flags compiled in 0.1 s, 24 `[a-z]?` in 3.7 s), the most parts and the highest cost; an
 * optional rule named counts with the run inside it (facts.ruleRuns). Each node is weighed once (memo): nested
 * optional groups took exponential time before.
 */
function optionalRun(e: Expr, facts: Facts): Run {
  const known = facts.runs.get(e);
  if (known) return known;
  let found: Run;
  switch (e.kind) {
    case "seq": {
      let run = NO_RUN, longest = NO_RUN;
      for (const item of e.items) {
        longest = worse(longest, optionalRun(item, facts));
        const own = minLength(item, facts.shortest) === 0 ? nullableRun(item, facts) : undefined;
        run = own ? { parts: run.parts + own.parts, cost: run.cost + own.cost } : NO_RUN;
        longest = worse(longest, run);
      }
      found = longest;
      break;
    }
    case "alt":
      found = e.branches.map((branch) => optionalRun(branch, facts)).reduce(worse, NO_RUN);
      break;
    case "repeat": {
      const inside = optionalRun(e.body, facts);
      found = minLength(e, facts.shortest) === 0 ? worse(inside, nullableRun(e, facts)) : inside;
      break;
    }
    default: // a rule named is weighed as a rule of its own
      found = NO_RUN;
  }
  facts.runs.set(e, found);
  return found;
}

/**
 * What a part that may match nothing adds to a run: the run inside it, and itself when it may begin with a class
 * (more than one character), with the cost of the characters it may begin with.
 */
function nullableRun(e: Expr, facts: Facts): Run {
  const inside = e.kind === "ref"
    ? facts.ruleRuns.get(e.name) ?? NO_RUN
    : optionalRun(e.kind === "repeat" ? e.body : e, facts);
  const first = firstOf(e, facts.shortest, facts.first);
  const classes = first.reduce((n, [lo, hi]) => n + hi - lo + 1, 0) > 1;
  return {
    parts: Math.max(classes ? 1 : 0, inside.parts),
    cost: Math.max(classes ? cost({ kind: "set", set: first }) : 0, inside.cost),
  };
}

/** What a rule's body costs to compile, in the units of MAX_COST; bounded repetitions multiply. */
function cost(e: Expr): number {
  switch (e.kind) {
    case "set": {
      const ascii = intersect(e.set, [[0, 0x7f]]).reduce((n, [lo, hi]) => n + hi - lo + 1, 0);
      const beyond = utf8Ranges(intersect(e.set, [[0x80, 0x10ffff]])).reduce(
        (n, bytes) => n + bytes.length,
        0,
      );
      return (ascii ? Math.max(1, ascii / ASCII_PER_UNIT) : 0) + beyond;
    }
    case "text":
      return e.codes.length / CHARS_PER_UNIT;
    case "seq":
      return e.items.reduce((n, item) => n + cost(item), 0);
    case "alt":
      return e.branches.reduce((n, item) => n + cost(item), 0);
    case "repeat":
      return cost(e.body) * Math.max(1, e.max === Infinity ? e.min : e.max);
    case "ref":
      return 1 / CHARS_PER_UNIT;
  }
}

/** An expression in xgrammar's EBNF, as one element (a group where it has parts). */
function print(e: Expr, names: Map<string, string>): string {
  switch (e.kind) {
    case "set":
      return printSet(e.set);
    case "text":
      return e.codes.length ? `"${e.codes.map(printChar).join("")}"` : '""';
    case "seq":
      return e.items.length ? `(${e.items.map((item) => print(item, names)).join(" ")})` : '""';
    case "alt":
      return `(${e.branches.map((branch) => print(branch, names)).join(" | ")})`;
    case "repeat": {
      const body = print(e.body, names);
      return e.max === 0
        ? '""'
        : `${e.body.kind === "repeat" ? `(${body})` : body}${quantifier(e.min, e.max)}`;
    }
    case "ref":
      return names.get(e.name)!;
  }
}

/**
 * A literal's character: quote, backslash and the writable control characters escaped by letter (xgrammar reads
 * as many hex digits as follow `\x`, so "\x22a" would be U+022A), any other as itself.
 */
export function printChar(code: number): string {
  return LITERAL_ESCAPES[code] ?? String.fromCodePoint(code);
}
const LITERAL_ESCAPES: Record<number, string> = {
  0x22: '\\"',
  0x5c: "\\\\",
  0x0a: "\\n",
  0x0d: "\\r",
  0x09: "\\t",
};

/**
 * A class as alternatives: its ASCII part as one class, each code point beyond ASCII alone as a literal, and
 * ranges beyond ASCII as sequences of byte classes (a byte class of one value written twice: xgrammar reads a
 * class of one value as that code point).
 */
function printSet(set: Ranges): string {
  const ascii = intersect(set, [[0, 0x7f]]);
  const parts: string[] = [];
  if (ascii.length) parts.push(asciiClass(ascii));
  for (const bytes of utf8Ranges(intersect(set, [[0x80, 0x10ffff]]))) {
    parts.push(
      bytes.length === 1 ? `"${String.fromCodePoint(bytes[0][0])}"` : `(${bytes.map(byteClass).join(" ")})`,
    );
  }
  return parts.length === 1 ? parts[0] : `(${parts.join(" | ")})`;
}
