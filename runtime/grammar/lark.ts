/**
 * Lark grammars, the syntax OpenAI's custom tools take their input's format in (Codex's `apply_patch`), as one
 * regular expression: rules and terminals written out where they are named, Lark's regular expressions (Python's
 * syntax) in JavaScript's, `common` terminals as Lark defines them, what `%ignore` ignores after every terminal of
 * a rule. A grammar whose rules do not refer to themselves describes a regular language, and the pattern matches
 * exactly its texts (as a parser without a lexer reads them: Lark's lexer would also refuse some texts where one
 * terminal's longest match takes what the next needs). A grammar Lark would not read is a FormatError; one that is valid but uses what no pattern writes
 * (recursion, templates, flags on a regular expression) is an UnwrittenGrammar, whose format is then left to the
 * model.
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
  const printer = new Printer(definitions, ignored, path);
  return `^${printer.ignore}${printer.print({ kind: "ref", name: "start" })}$`;
}

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

  const common = imports ? parse(COMMON, path, false).definitions : new Map();
  const importCommon = (name: string, as = name) => {
    const expr = common.get(name);
    if (!expr) fail(`\`common\` has no terminal ${name}`);
    definitions.set(as, expr!);
    // The terminals it names come along.
    for (const used of names(expr!)) if (!definitions.has(used)) importCommon(used);
  };

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
    const name = token.value.replace(/^[?!]/, "");
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
    else if (rest.startsWith("//")) i += rest.indexOf("\n") < 0 ? rest.length : rest.indexOf("\n");
    else if (c === '"') {
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
      const match = (begins ? /^[?!]?[A-Za-z_][A-Za-z0-9_]*/ : /^[A-Za-z_][A-Za-z0-9_]*/).exec(rest) ??
        /^[0-9]+/.exec(rest) ??
        /^(?:->|\.\.|[:|()[\]?*+~.{},])/.exec(rest);
      if (!match) fail(`unexpected \`${c}\``);
      const value = match![0];
      const type = /^[0-9]/.test(value) ? "number" : /^[?!]?[A-Za-z_]/.test(value) ? "name" : "op";
      if (value === "(" || value === "[") depth++;
      if ((value === ")" || value === "]") && depth > 0) depth--;
      tokens.push({ type, value, line });
      i += value.length;
    }
  }
  return tokens;
}

/** A Lark string's text, its escapes read as Python reads them. */
function unescape(text: string, fail: (message: string) => never): string {
  return text.replace(
    /\\(?:x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|(.))/gs,
    (_, x, u, U, c) => {
      if (x || u || U) return String.fromCodePoint(parseInt(x ?? u ?? U, 16));
      const simple: Record<string, string> = {
        n: "\n",
        t: "\t",
        r: "\r",
        f: "\f",
        v: "\v",
        b: "\b",
        0: "\0",
      };
      if (c in simple) return simple[c];
      if (c === "\\" || c === '"' || c === "'") return c;
      return fail(`the escape \\${c} in a string`);
    },
  );
}

/**
 * A Lark (Python) regular expression in JavaScript's syntax: `.` outside sets as Python's (anything but a
 * newline; with the `s` flag, anything), named groups without their P. Flags that change what it matches
 * otherwise (`i`, `x`) and what JavaScript has no form of are an UnwrittenGrammar.
 */
function pythonRegex(source: string, flags: string, path: string): string {
  for (const flag of flags) {
    if (flag === "i" || flag === "x") {
      throw new UnwrittenGrammar(`its regular expression /${source}/ has the flag ${flag}`);
    }
  }
  const dot = flags.includes("s") ? "[^]" : "[^\\n]";
  let out = "";
  for (let i = 0; i < source.length; i++) {
    const c = source[i];
    if (c === "\\") {
      const next = source[i + 1];
      if (next === undefined) {
        throw new FormatError(`the Lark grammar's /${source}/ ends in a backslash`, path);
      }
      if ("AZNg".includes(next)) {
        throw new UnwrittenGrammar(`its regular expression /${source}/ has \\${next}`);
      }
      out += c + next;
      i++;
    } else if (c === "[") {
      // A set, copied whole (a `]` first in it is a member, as in Python).
      let end = i + 1;
      if (source[end] === "^") end++;
      if (source[end] === "]") end++;
      while (end < source.length && source[end] !== "]") end += source[end] === "\\" ? 2 : 1;
      const start = source[i + 1] === "^" ? i + 2 : i + 1;
      out += source.slice(i, start) +
        (source[start] === "]" ? "\\]" + source.slice(start + 1, end + 1) : source.slice(start, end + 1));
      i = end;
    } else if (c === ".") out += dot;
    else if (source.startsWith("(?P<", i)) {
      out += "(?<";
      i += 3;
    } else if (source.startsWith("(?P=", i) || /^\(\?[aiLmsux-]/.test(source.slice(i))) {
      throw new UnwrittenGrammar(`its regular expression /${source}/ has ${source.slice(i, i + 4)}`);
    } else out += c;
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

  constructor(readonly definitions: Definitions, ignored: Expr[], readonly path: string) {
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
