/**
 * Lark grammars, the syntax OpenAI's custom tools take their input's format in (Codex's `apply_patch`), as one
 * regular expression: rules and terminals written out where they are named, Lark's regular expressions (Python's
 * syntax) in JavaScript's, `common` terminals as Lark defines them, what `%ignore` ignores after every terminal of
 * a rule. A grammar whose rules do not refer to themselves describes a regular language, and the pattern matches
 * its texts, as what the grammar says: a terminal's regular expression takes every text it matches (Lark's parser
 * tries only its first match and that match's beginnings, so that it refuses `ab` for `/a|ab/`, and reads lazy
 * repetitions as short as they go), and no lexer picks a terminal's longest match. Where it differs from Python
 * otherwise, see pythonRegex. A grammar Lark would not read is a FormatError; one that is valid but uses what no
 * pattern writes (recursion, templates, possessive repetitions) is an UnwrittenGrammar, whose format is then left
 * to the model.
 */
import { FormatError } from "./format.ts";
import { quantifier } from "./regex.ts";

/** A valid grammar that no pattern here writes; `message` says why. */
export class UnwrittenGrammar extends Error {
  override name = "UnwrittenGrammar";
}

type Expr =
  | { kind: "text"; text: string; caseless: boolean }
  | { kind: "regex"; source: string }
  | { kind: "range"; from: string; to: string }
  | { kind: "ref"; name: string }
  | { kind: "seq"; items: Expr[] }
  | { kind: "alt"; branches: Expr[] }
  | { kind: "repeat"; body: Expr; min: number; max: number };

/** A pattern longer than this is not written (rules named from many places are copied to each). */
const MAX_PATTERN_CHARS = 32 * 1024;

/**
 * Lark's `common` terminals (lark/grammars/common.lark), ESCAPED_STRING without its look-behind and the comments
 * with `.` as Python's (not a newline).
 */
const COMMON = String.raw`
DIGIT: "0".."9"
HEXDIGIT: "a".."f"|"A".."F"|DIGIT
INT: DIGIT+
SIGNED_INT: ["+"|"-"] INT
DECIMAL: INT "." INT? | "." INT
_EXP: ("e"|"E") SIGNED_INT
FLOAT: INT _EXP | DECIMAL _EXP?
SIGNED_FLOAT: ["+"|"-"] FLOAT
NUMBER: FLOAT | INT
SIGNED_NUMBER: ["+"|"-"] NUMBER
_STRING_INNER: /.*?/
ESCAPED_STRING: "\"" (/[^"\\\n]/ | "\\" /./)* "\""
LCASE_LETTER: "a".."z"
UCASE_LETTER: "A".."Z"
LETTER: UCASE_LETTER | LCASE_LETTER
WORD: LETTER+
CNAME: ("_"|LETTER) ("_"|LETTER|DIGIT)*
WS_INLINE: (" "|/\t/)+
WS: /[ \t\f\r\n]/+
CR: /\r/
LF: /\n/
NEWLINE: (CR? LF)+
SH_COMMENT: /#[^\n]*/
CPP_COMMENT: /\/\/[^\n]*/
C_COMMENT: "/*" /(.|\n)*?/ "*/"
SQL_COMMENT: /--[^\n]*/
`;

type Token =
  | { type: "name" | "op" | "directive" | "number"; value: string; line: number }
  | { type: "string"; value: string; caseless: boolean; line: number }
  | { type: "regex"; value: string; flags: string; line: number }
  | { type: "newline"; value: "\n"; line: number };

/** The grammar's definitions, by name (rules and terminals alike). */
type Definitions = Map<string, Expr>;

/** `definition`, a Lark grammar, as a pattern (JavaScript's syntax) that its `start` rule's texts match whole. */
export function larkPattern(definition: string, path: string): string {
  const { definitions, ignored } = parse(definition, path, true);
  if (!definitions.has("start")) throw new FormatError("the Lark grammar has no `start` rule", path);
  const printer = new Printer(definitions, ignored);
  return `^${printer.ignore}${printer.print({ kind: "ref", name: "start" })}$`;
}

/** COMMON, read once. */
let commonTerminals: Definitions | undefined;

/** Whether a name is a terminal's (upper case), not a rule's. */
const isTerminal = (name: string) => /^_*[A-Z]/.test(name);

function parse(
  source: string,
  path: string,
  imports: boolean,
): { definitions: Definitions; ignored: Expr[] } {
  const definitions: Definitions = new Map();
  // What `%ignore` lets come between any two terminals.
  const ignored: Expr[] = [];
  const tokens = tokenize(source, path);
  let at = 0;
  const fail = (message: string): never => {
    const token = tokens[Math.min(at, tokens.length - 1)];
    throw new FormatError(`the Lark grammar is not valid: ${message} (line ${token?.line ?? 1})`, path);
  };
  const peek = () => tokens[at];
  const isOp = (value: string) => peek()?.type === "op" && peek().value === value;
  const skipNewlines = () => {
    while (peek()?.type === "newline") at++;
  };

  const common = imports ? commonTerminals ??= parse(COMMON, "", false).definitions : new Map();
  const importCommon = (name: string, as = name) => {
    const expr = common.get(name) ?? fail(`\`common\` has no terminal ${name}`);
    if (definitions.has(as)) fail(`${as} is defined twice`);
    definitions.set(as, ownParts(expr));
  };
  // The terminals a common one names come along under names of their own (`LETTER@common`), apart from the
  // grammar's, as Lark keeps them.
  const ownParts = (expr: Expr): Expr =>
    renamed(expr, (name) => {
      const own = `${name}@common`;
      if (!definitions.has(own)) definitions.set(own, ownParts(common.get(name)!));
      return own;
    });

  const expansions = (): Expr => {
    const branches = [alias()];
    for (;;) {
      // A `|` may begin the next line.
      const mark = at;
      skipNewlines();
      if (!isOp("|")) {
        at = mark;
        break;
      }
      at++;
      branches.push(alias());
    }
    return branches.length === 1 ? branches[0] : { kind: "alt", branches };
  };
  const alias = (): Expr => {
    const items: Expr[] = [];
    for (;;) {
      const item = expr();
      if (!item) break;
      items.push(item);
    }
    if (isOp("->")) {
      at++;
      if (peek()?.type !== "name") fail("`->` names no alias");
      at++; // an alias names the tree's node, not the text
    }
    return items.length === 1 ? items[0] : { kind: "seq", items };
  };
  const expr = (): Expr | undefined => {
    let body = atom();
    if (!body) return undefined;
    for (;;) {
      if (isOp("?") || isOp("*") || isOp("+")) {
        const op = tokens[at++].value;
        body = { kind: "repeat", body, min: op === "+" ? 1 : 0, max: op === "?" ? 1 : Infinity };
      } else if (isOp("~")) {
        at++;
        const count = (): number => {
          const token = tokens[at++];
          if (token?.type !== "number") fail("`~` takes a count");
          return Number(token.value);
        };
        const min = count();
        const max = isOp("..") ? (at++, count()) : min;
        if (max < min) fail(`the repetition ~ ${min}..${max} counts down`);
        body = { kind: "repeat", body, min, max };
      } else return body;
    }
  };
  const atom = (): Expr | undefined => {
    const token = peek();
    if (!token) return undefined;
    if (token.type === "string") {
      at++;
      if (isOp("..")) {
        at++;
        const to = tokens[at++];
        if (to?.type !== "string") fail("a range `..` ends in no string");
        const [a, b] = [[...token.value], [...(to as { value: string }).value]];
        if (a.length !== 1 || b.length !== 1) fail("a range's ends must be one character each");
        if (a[0].codePointAt(0)! > b[0].codePointAt(0)!) fail(`the range "${a[0]}".."${b[0]}" runs down`);
        return { kind: "range", from: a[0], to: b[0] };
      }
      return { kind: "text", text: token.value, caseless: token.caseless };
    }
    if (token.type === "regex") {
      at++;
      return { kind: "regex", source: pythonRegex(token.value, token.flags, path) };
    }
    if (token.type === "name") {
      const next = tokens[at + 1];
      if (next?.type === "op" && next.value === "{") {
        throw new UnwrittenGrammar(`its template ${token.value}{...} is not written as a pattern here`);
      }
      // Not a reference but a definition, which begins no expansion (`name:`, `name.2:`).
      if (next?.type === "op" && (next.value === ":" || next.value === ".")) return undefined;
      at++;
      return { kind: "ref", name: token.value };
    }
    if (isOp("(") || isOp("[")) {
      const close = token.value === "(" ? ")" : "]";
      at++;
      skipNewlines();
      const inner = expansions();
      skipNewlines();
      if (!isOp(close)) fail(`a \`${token.value}\` is not closed`);
      at++;
      return token.value === "(" ? inner : { kind: "repeat", body: inner, min: 0, max: 1 };
    }
    return undefined;
  };

  while (at < tokens.length) {
    skipNewlines();
    const token = peek();
    if (!token) break;
    if (token.type === "directive") {
      at++;
      if (token.value === "%ignore") {
        ignored.push(expansions());
        if (at < tokens.length && peek().type !== "newline") fail(`unexpected \`${peek().value}\``);
        continue;
      }
      const line: Token[] = [];
      while (at < tokens.length && peek().type !== "newline") line.push(tokens[at++]);
      if (token.value === "%import") {
        const words = line.map((t) => t.value);
        // %import common.NAME [-> ALIAS], or %import common (A, B)
        const dotted = /^common\.([A-Z_][A-Z0-9_]*)$/.exec(words.join(""));
        if (dotted) importCommon(dotted[1]);
        else if (words[0] === "common" && words[1] === "." && words.length >= 3) {
          const [name, arrow, as] = [words[2], words[3], words[4]];
          if (arrow !== "->" || !as || words.length !== 5) fail("an %import this grammar does not read");
          importCommon(name, as);
        } else if (words[0] === "common" && words[1] === "(" && words.at(-1) === ")") {
          for (const name of words.slice(2, -1).filter((w) => w !== ",")) importCommon(name);
        } else if (words[0] === "common") fail("an %import of `common` this grammar does not read");
        else throw new UnwrittenGrammar(`it imports \`${words.join("")}\`, which is not at hand here`);
        continue;
      }
      throw new UnwrittenGrammar(`its ${token.value} is not written as a pattern here`);
    }
    if (token.type !== "name") fail(`a definition begins with \`${token.value}\``);
    at++;
    const name = token.value.replace(/^[?!]+/, "");
    if (isOp("{")) throw new UnwrittenGrammar(`its template ${name}{...} is not written as a pattern here`);
    if (isOp(".")) {
      at++; // a priority orders the lexer's choices, not the texts
      if (peek()?.type !== "number") fail(`${name}'s priority is no number`);
      at++;
    }
    if (!isOp(":")) fail(`${name} is not followed by \`:\``);
    at++;
    if (definitions.has(name)) fail(`${name} is defined twice`);
    definitions.set(name, expansions());
    if (at < tokens.length && peek().type !== "newline") fail(`unexpected \`${peek().value}\``);
  }
  for (const [name, expr] of [...definitions, ...ignored.map((expr) => ["%ignore", expr] as const)]) {
    for (const used of names(expr)) {
      if (!definitions.has(used)) fail(`${name} names ${used}, which is not defined`);
      if (name === "%ignore" || isTerminal(name)) {
        if (!isTerminal(used)) fail(`${name} names the rule ${used}: a terminal is made of terminals only`);
      }
    }
  }
  return { definitions, ignored };
}

/** An expression with the names it refers to renamed. */
function renamed(expr: Expr, rename: (name: string) => string): Expr {
  switch (expr.kind) {
    case "ref":
      return { kind: "ref", name: rename(expr.name) };
    case "seq":
      return { kind: "seq", items: expr.items.map((item) => renamed(item, rename)) };
    case "alt":
      return { kind: "alt", branches: expr.branches.map((branch) => renamed(branch, rename)) };
    case "repeat":
      return { ...expr, body: renamed(expr.body, rename) };
    default:
      return expr;
  }
}

/** The names an expression refers to. */
function names(expr: Expr): string[] {
  switch (expr.kind) {
    case "ref":
      return [expr.name];
    case "seq":
      return expr.items.flatMap(names);
    case "alt":
      return expr.branches.flatMap(names);
    case "repeat":
      return names(expr.body);
    default:
      return [];
  }
}

function tokenize(source: string, path: string): Token[] {
  const tokens: Token[] = [];
  let line = 1, depth = 0;
  const fail = (message: string): never => {
    throw new FormatError(`the Lark grammar is not valid: ${message} (line ${line})`, path);
  };
  for (let i = 0; i < source.length;) {
    const c = source[i];
    const rest = source.slice(i);
    if (c === "\n") {
      // Inside brackets a line goes on.
      if (depth === 0 && tokens.at(-1)?.type !== "newline") {
        tokens.push({ type: "newline", value: "\n", line });
      }
      line++;
      i++;
    } else if (/\s/.test(c)) i++;
    else if (/^\\[ \t]*\r?\n/.test(rest)) {
      // A line ended by a backslash goes on.
      i += /^\\[ \t]*\r?\n/.exec(rest)![0].length;
      line++;
    } else if (rest.startsWith("//") || c === "#") {
      i += rest.indexOf("\n") < 0 ? rest.length : rest.indexOf("\n");
    } else if (c === '"') {
      let end = i + 1;
      while (end < source.length && source[end] !== '"') end += source[end] === "\\" ? 2 : 1;
      if (end >= source.length) fail("a string is not closed");
      const caseless = source[end + 1] === "i";
      tokens.push({ type: "string", value: unescape(source.slice(i + 1, end), fail), caseless, line });
      i = end + (caseless ? 2 : 1);
    } else if (c === "/") {
      let end = i + 1;
      while (end < source.length && source[end] !== "/" && source[end] !== "\n") {
        end += source[end] === "\\" ? 2 : 1;
      }
      if (source[end] !== "/") fail("a regular expression is not closed");
      const flags = /^[imslux]*/.exec(source.slice(end + 1))![0];
      tokens.push({ type: "regex", value: source.slice(i + 1, end), flags, line });
      i = end + 1 + flags.length;
    } else if (c === "%") {
      const word = /^%[a-z]+/.exec(rest)?.[0] ?? fail("a `%` names no directive");
      tokens.push({ type: "directive", value: word, line });
      i += word.length;
    } else {
      // `?rule` and `!rule` only where a definition begins (`a?b` is `a`, `?`, `b`).
      const begins = tokens.length === 0 || tokens.at(-1)!.type === "newline";
      const match = (begins ? /^[?!]{0,2}[A-Za-z_][A-Za-z0-9_]*/ : /^[A-Za-z_][A-Za-z0-9_]*/).exec(rest) ??
        /^-?[0-9]+/.exec(rest) ??
        /^(?:->|\.\.|[:|()[\]?*+~.{},])/.exec(rest);
      if (!match) fail(`unexpected \`${c}\``);
      const value = match![0];
      const type = /^-?[0-9]/.test(value) ? "number" : /^[?!]*[A-Za-z_]/.test(value) ? "name" : "op";
      if (value === "(" || value === "[") depth++;
      if ((value === ")" || value === "]") && depth > 0) depth--;
      tokens.push({ type, value, line });
      i += value.length;
    }
  }
  return tokens;
}

/**
 * A Lark string's text, its escapes read as Lark reads them: `\\n`, `\\t`, `\\r`, `\\f`, `\\x..`, `\\u....`,
 * `\\U........`, `\\\\` and `\\"` as Python does, any other backslash as itself.
 */
function unescape(text: string, fail: (message: string) => never): string {
  return text.replace(
    /\\(?:x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|(.))/gs,
    (whole, x, u, U, c) => {
      if (x || u || U) {
        const code = parseInt(x ?? u ?? U, 16);
        return code <= 0x10ffff ? String.fromCodePoint(code) : fail(`the escape ${whole} in a string`);
      }
      const simple: Record<string, string> = { n: "\n", t: "\t", r: "\r", f: "\f", "\\": "\\", '"': '"' };
      return simple[c] ?? whole;
    },
  );
}

/** Python's `\\s` (str.isspace), which JavaScript's is not, as a set's members. */
const PYTHON_SPACE =
  "\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
/**
 * Python's `\\w` as a set's members: in Latin-1 exactly its letters and digits; beyond, every block of letters
 * and digits whole (Unicode's tables written out would cost too much to compile: a little more than Python's).
 */
const PYTHON_WORD = "0-9A-Za-z_\\xaa\\xb2\\xb3\\xb5\\xb9\\xba\\xbc-\\xbe\\xc0-\\xd6\\xd8-\\xf6\\xf8-\\u167f" +
  "\\u1681-\\u1fff\\u2070-\\u218f\\u2460-\\u24ff\\u2c00-\\u2dff\\u2e80-\\u2fff\\u3040-\\u{10ffff}";
/** Characters JavaScript's syntax escapes (with the `u` flag, only these may be escaped). */
const SYNTAX = "^$\\.*+?()[]{}|/";

/**
 * A Lark (Python) regular expression in JavaScript's syntax (with the `u` flag): `.` outside sets as Python's
 * (anything but a newline; with the `s` flag, anything), `\\s` and `\\w` as Python's (see PYTHON_WORD; `\\d` is
 * ASCII's, as a model writes digits), `\\A` and `\\Z` (`\\z`) as `^` and `$`, group names and comments left out, what
 * Python reads literally escaped (`\\-`, `{`, `]`); the flags `i` (ASCII letters in either case) and `x` (white
 * space and comments left out) written into it. Possessive repetitions and what else JavaScript has no form of
 * are an UnwrittenGrammar.
 */
/**
 * A regular expression in Python's syntax (or Rust's, which OpenAI's `regex` grammars are written in: `\\z` as
 * Python's `\\Z`) in JavaScript's; an UnwrittenGrammar where it has no form there.
 */
export function pythonPattern(source: string): string {
  return pythonRegex(source, "", "");
}

function pythonRegex(source: string, flags: string, path: string): string {
  const unwritten = (what: string): never => {
    throw new UnwrittenGrammar(`its regular expression /${source}/ has ${what}`);
  };
  const dot = flags.includes("s") ? "[^]" : "[^\\n]";
  const caseless = flags.includes("i"), verbose = flags.includes("x");
  // A letter's other case (caseless), and in a set, the other case of its members (set's end: `[a-fA-F]`).
  const other = (c: string) => c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase();
  const letter = (c: string | undefined) => c !== undefined && /^[A-Za-z]$/.test(c);
  let out = "", inSet = false, quantified = false, otherCases = "";
  for (let i = 0; i < source.length; i++) {
    const c = source[i], rest = source.slice(i);
    const wasQuantified = quantified;
    quantified = false;
    if (verbose && !inSet && /\s/.test(c)) continue;
    if (verbose && !inSet && c === "#") {
      i = source.indexOf("\n", i) < 0 ? source.length : source.indexOf("\n", i);
      continue;
    }
    if (c === "\\") {
      const next = source[++i];
      if (next === undefined) {
        throw new FormatError(`the Lark grammar's /${source}/ ends in a backslash`, path);
      }
      if (next === "w" || next === "s") {
        const members = next === "w" ? PYTHON_WORD : PYTHON_SPACE;
        out += inSet ? members : `[${members}]`;
      } else if (next === "W" || next === "S") {
        if (inSet) unwritten(`\\${next} in a set`);
        out += `[^${next === "W" ? PYTHON_WORD : PYTHON_SPACE}]`;
      } else if (next === "U") {
        out += `\\u{${source.slice(i + 1, i + 9)}}`;
        i += 8;
      } else if (!inSet && (next === "A" || next === "Z" || next === "z")) out += next === "A" ? "^" : "$";
      else if (next === "N" || next === "A" || next === "Z" || next === "z") unwritten(`\\${next}`);
      else if (/[0-9A-Za-z]/.test(next)) out += `\\${next}`;
      else out += SYNTAX.includes(next) || (inSet && next === "-") ? `\\${next}` : next;
    } else if (inSet) {
      if (c === "]") {
        inSet = false;
        out += otherCases;
        otherCases = "";
      }
      if (caseless && letter(c)) otherCases += other(c);
      if (caseless && c === "-" && letter(source[i - 1]) && letter(source[i + 1])) otherCases += "-";
      out += c === "[" ? "\\[" : c;
    } else if (c === "[") {
      inSet = true;
      const negated = source[i + 1] === "^";
      // A `]` first in a set is a member, as in Python.
      const first = source[i + (negated ? 2 : 1)] === "]";
      out += `[${negated ? "^" : ""}${first ? "\\]" : ""}`;
      i += (negated ? 1 : 0) + (first ? 1 : 0);
    } else if (c === ".") out += dot;
    else if (c === "(" && rest.startsWith("(?P<")) {
      out += "(?:";
      i = source.indexOf(">", i);
    } else if (c === "(" && rest.startsWith("(?#")) i = source.indexOf(")", i);
    else if (c === "(" && /^\(\?(?:P=|>|[aiLmsux-])/.test(rest)) unwritten(rest.slice(0, 4));
    else if (c === "{") {
      const bounds = /^\{(\d*)(,?)(\d*)\}/.exec(rest);
      if (bounds && (bounds[1] || bounds[3])) {
        out += `{${bounds[1] || "0"}${bounds[2]}${bounds[3]}}`;
        i += bounds[0].length - 1;
        quantified = true;
      } else out += "\\{";
    } else if (c === "}" || c === "]") out += `\\${c}`;
    else if (c === "+" && wasQuantified) unwritten("a possessive repetition");
    else {
      out += caseless && letter(c) ? `[${c}${other(c)}]` : c;
      quantified = c === "*" || c === "+" || c === "?";
    }
  }
  return out;
}

/**
 * Definitions written out as one pattern, each where it is named; after each terminal a rule names, what
 * `%ignore` ignores, any number of times (and before the first: `ignore`).
 */
class Printer {
  readonly ignore: string;
  #printing = new Set<string>();
  #printed = new Map<string, string>();
  #chars = 0;

  constructor(readonly definitions: Definitions, ignored: Expr[]) {
    // Repeated anyway: `WS: /[ \t]/+` as its one character, or its copies could divide a run of spaces.
    const once = (expr: Expr): Expr =>
      expr.kind === "ref"
        ? once(definitions.get(expr.name)!)
        : expr.kind === "repeat" && expr.min <= 1 && expr.max === Infinity
        ? expr.body
        : expr;
    this.ignore = ignored.length
      ? `(?:${ignored.map((expr) => `(?:${this.print(once(expr), true)})`).join("|")})*`
      : "";
  }

  /** `expr` as a pattern; `inTerminal`: as part of a terminal, which nothing ignored comes into. */
  print(expr: Expr, inTerminal = false): string {
    const token = (text: string) => inTerminal ? text : text + this.ignore;
    switch (expr.kind) {
      case "text":
        return token(
          [...expr.text].map((c) => {
            const lower = c.toLowerCase(), upper = c.toUpperCase();
            return expr.caseless && lower !== upper && [...lower].length === 1 && [...upper].length === 1
              ? `[${lower}${upper}]`
              : escape(c);
          }).join(""),
        );
      case "regex":
        return token(`(?:${expr.source})`);
      case "range":
        return token(`[${escape(expr.from, true)}-${escape(expr.to, true)}]`);
      case "seq":
        return expr.items.map((item) => this.print(item, inTerminal)).join("");
      case "alt":
        return `(?:${expr.branches.map((branch) => this.print(branch, inTerminal)).join("|")})`;
      case "repeat":
        return `(?:${this.print(expr.body, inTerminal)})${quantifier(expr.min, expr.max)}`;
      case "ref": {
        const terminal = isTerminal(expr.name);
        let text = this.#printed.get(expr.name);
        if (text === undefined) {
          if (this.#printing.has(expr.name)) {
            throw new UnwrittenGrammar(`${expr.name} refers to itself, which no pattern writes`);
          }
          this.#printing.add(expr.name);
          text = `(?:${this.print(this.definitions.get(expr.name)!, terminal)})`;
          this.#printing.delete(expr.name);
          this.#printed.set(expr.name, text);
        }
        return this.#count(terminal ? token(text) : text);
      }
    }
  }

  #count(text: string): string {
    this.#chars += text.length;
    if (this.#chars > MAX_PATTERN_CHARS) {
      throw new UnwrittenGrammar(
        `written out, its rules would make a pattern of over ${MAX_PATTERN_CHARS} characters`,
      );
    }
    return text;
  }
}

/** A character as a pattern matches it literally (in a set: `inSet`), in the syntax of the `u` flag. */
function escape(c: string, inSet = false): string {
  if ((inSet ? /[\\\]^[-]/ : /[\\^$.|?*+()[\]{}/]/).test(c)) return `\\${c}`;
  const code = c.codePointAt(0)!;
  return code < 0x20 || code === 0x7f ? `\\u{${code.toString(16)}}` : c;
}
