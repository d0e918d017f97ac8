/**
 * The model's calls read as it writes them, so that a stream can send each call's name as soon as it is written
 * and its arguments as they come, as Anthropic's Messages and OpenAI's Responses streams carry them (a client
 * shows a long argument, the text of a file to write, while it is written).
 *
 * After [TOOL_CALLS] the model writes a JSON list of `{"name", "arguments"}`, in that order under the calls'
 * grammar. The arguments are passed on as Python's `json.dumps` would write what `json.loads` reads of them (the
 * form the prompt takes them back in: ", " and ": ", numbers as Python prints them, non-ASCII kept), built piece
 * by piece: a string as its characters come, a number once it ends. Two differences from dumping the whole value,
 * neither of which changes the prompt the arguments make when sent back: a key written twice stays twice (Python
 * keeps the last value), and a number past a double stays as written (Python would print `Infinity`, which is
 * not JSON).
 *
 * Anything else (calls the grammar did not check: a lone object, keys in another order, a name that is not a
 * tool's) stops the reading; what was passed on stands (completion.ts reads such calls whole at the end).
 */
import { floatRepr, pyEscaped, pyJsonLoads } from "../../runtime/prompt/pyjson.ts";

/**
 * What a push adds to a call (`call`: its place among the answer's calls): its id and name when it begins, then
 * more of its arguments.
 */
export type CallDelta =
  | { call: number; id: string; name: string; arguments: string }
  | { call: number; id?: undefined; name?: undefined; arguments: string };

interface ReadCall {
  id: string;
  name: string;
  arguments: string;
  /** Whether its arguments were read whole (an object Python reads). */
  whole?: boolean;
}

type Where =
  | "list" // before the list's `[`
  | "item" // after `[` or `,`: a call's `{`
  | "key" // a key of the call's object (name first, arguments second)
  | "colon"
  | "comma" // after the name
  | "value" // the name's string, or the arguments' `{`
  | "arguments" // inside the arguments
  | "close" // after the arguments: the call's `}`
  | "next" // after a call: `,` or `]`
  | "after"; // after the list: whitespace only

const SPACE = " \t\n\r";
const SHORT_ESCAPES: Record<string, string> = {
  '"': '"',
  "\\": "\\",
  "/": "/",
  b: "\b",
  f: "\f",
  n: "\n",
  r: "\r",
  t: "\t",
};
const NUMBER = /^-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$/;
const SCALAR = /[-+.eE0-9a-z]/;

/** A complete number or word as Python writes what it reads; undefined when it is not JSON. */
function scalar(text: string): string | undefined {
  if (text === "true" || text === "false" || text === "null") return text;
  const m = NUMBER.exec(text);
  if (!m) return undefined;
  if (m[1] === undefined && m[2] === undefined) return BigInt(text).toString();
  const x = Number(text);
  return Number.isFinite(x) ? floatRepr(x) : text;
}

/** Reads a JSON string character by character: decoded characters out, escapes held until whole. */
export class StringReader {
  /** Whether the closing quote came. */
  ended = false;
  #escape: string | undefined;
  /** A \uD800-\uDBFF escape waiting for the low half of its pair. */
  #high = "";

  /** The characters `c` completes; undefined when the string is not JSON. */
  push(c: string): string | undefined {
    if (this.#escape === undefined) {
      if (c === "\\") {
        this.#escape = "";
        return "";
      }
      if (c < " ") return undefined; // raw control characters are not JSON (Python reads strictly)
      this.ended = c === '"';
      return this.#flush() + (this.ended ? "" : c);
    }
    const e = this.#escape += c;
    if (e[0] !== "u") {
      this.#escape = undefined;
      return SHORT_ESCAPES[e] === undefined ? undefined : this.#flush() + SHORT_ESCAPES[e];
    }
    if (!/^u[0-9a-fA-F]*$/.test(e)) return undefined;
    if (e.length < 5) return "";
    this.#escape = undefined;
    const unit = String.fromCharCode(parseInt(e.slice(1), 16));
    if (this.#high && unit >= "\udc00" && unit <= "\udfff") return this.#flush() + unit;
    const before = this.#flush();
    if (unit >= "\ud800" && unit <= "\udbff") {
      this.#high = unit;
      return before;
    }
    return before + unit;
  }

  #flush(): string {
    const high = this.#high;
    this.#high = "";
    return high;
  }
}

/** Reads the answer's call lists ([TOOL_CALLS] again begins another) and says what each push adds. */
export class CallReader {
  readonly calls: ReadCall[] = [];
  #where: Where = "list";
  #failed = false;
  /** The keys of the current call read so far: "name" first, then "arguments". */
  #keys = 0;
  /** A key or the name being read, or a string inside the arguments. */
  #string: StringReader | undefined;
  #text = "";
  /** Inside the arguments: the brackets open, a number or word being read, and whether a value just ended. */
  #open: string[] = [];
  #scalar = "";
  #ended = false;
  /** Lists read whole so far. */
  #lists = 0;

  constructor(
    readonly names: readonly string[],
    readonly single: boolean,
    readonly newId: () => string,
  ) {}

  /**
   * Whether every list so far was read whole and its calls are what they must be ([TOOL_CALLS] again with nothing
   * after it, cut by max_tokens, leaves them so).
   */
  get complete(): boolean {
    return !this.#failed && (this.#where === "after" || (this.#where === "list" && this.#lists > 0));
  }

  /** The model wrote [TOOL_CALLS] again: another list follows (with none written yet, this one goes on). */
  next(): void {
    if (this.#where === "after") {
      this.#where = "list";
      this.#lists++;
    } else if (this.#where !== "list") this.#failed = true;
  }

  push(text: string): CallDelta[] {
    const out: CallDelta[] = [];
    for (const c of text) {
      if (this.#failed) break;
      if (!(this.#where === "arguments" ? this.#argument(c, out) : this.#call(c, out))) this.#failed = true;
    }
    return out;
  }

  /** A character of the list or of a call's object outside its arguments. */
  #call(c: string, out: CallDelta[]): boolean {
    if (this.#string) {
      const got = this.#string.push(c);
      if (got === undefined) return false;
      this.#text += got;
      if (!this.#string.ended) return true;
      this.#string = undefined;
      return this.#where === "key" ? this.#key() : this.#name(out);
    }
    if (SPACE.includes(c)) return true;
    const where = this.#where;
    switch (where) {
      case "list":
        this.#where = "item";
        return c === "[";
      case "item":
        this.#where = "key";
        this.#keys = 0;
        return c === "{" && !(this.single && this.calls.length > 0);
      case "comma":
        this.#where = "key";
        return c === ",";
      case "colon":
        this.#where = "value";
        return c === ":";
      case "key":
      case "value":
        if (where === "value" && this.#keys === 2) {
          if (c !== "{") return false;
          this.#where = "arguments";
          this.#open = ["{"];
          this.#ended = false;
          this.#emit(out, "{");
          return true;
        }
        this.#string = new StringReader();
        this.#text = "";
        return c === '"';
      case "close":
        this.#where = "next";
        return c === "}";
      case "next":
        this.#where = c === "," ? "item" : "after";
        return c === "," || c === "]";
      default:
        return false;
    }
  }

  #key(): boolean {
    this.#where = "colon";
    return this.#text === ["name", "arguments"][this.#keys++];
  }

  /** The name, read whole: the call begins. */
  #name(out: CallDelta[]): boolean {
    this.#where = "comma";
    if (!this.names.includes(this.#text)) return false;
    const call = { id: this.newId(), name: this.#text, arguments: "" };
    this.calls.push(call);
    out.push({ call: this.calls.length - 1, id: call.id, name: call.name, arguments: "" });
    return true;
  }

  /** A character inside a call's arguments, passed on as `json.dumps` writes it. */
  #argument(c: string, out: CallDelta[]): boolean {
    if (this.#string) {
      const got = this.#string.push(c);
      if (got === undefined) return false;
      this.#emit(out, pyEscaped(got) + (this.#string.ended ? '"' : ""));
      if (this.#string.ended) {
        this.#string = undefined;
        this.#ended = true;
      }
      return true;
    }
    if (SCALAR.test(c)) {
      // A value right after another (`1 2`, which spaces hid once written) is not JSON.
      if (!this.#scalar && this.#ended) return false;
      this.#scalar += c;
      return true;
    }
    if (this.#scalar) {
      const value = scalar(this.#scalar);
      this.#scalar = "";
      if (value === undefined) return false;
      this.#emit(out, value);
      this.#ended = true;
    }
    if (SPACE.includes(c)) return true;
    switch (c) {
      case '"':
        if (this.#ended) return false;
        this.#string = new StringReader();
        this.#emit(out, '"');
        return true;
      case "{":
      case "[":
        if (this.#ended) return false;
        this.#open.push(c);
        this.#emit(out, c);
        return true;
      case "}":
      case "]":
        if (this.#open.pop() !== (c === "}" ? "{" : "[")) return false;
        this.#emit(out, c);
        this.#ended = true;
        if (this.#open.length > 0) return true;
        this.#where = "close";
        // The brackets were followed, not the whole syntax: what was written must be an object Python reads.
        if (!(pyJsonLoads(this.calls.at(-1)!.arguments) instanceof Map)) return false;
        this.calls.at(-1)!.whole = true;
        return true;
      case ",":
        this.#ended = false;
        this.#emit(out, ", ");
        return true;
      case ":":
        this.#ended = false;
        this.#emit(out, ": ");
        return true;
      default:
        return false;
    }
  }

  #emit(out: CallDelta[], text: string): void {
    if (!text) return;
    const call = this.calls.length - 1;
    this.calls[call].arguments += text;
    const last = out.at(-1);
    if (last?.call === call) last.arguments += text;
    else out.push({ call, arguments: text });
  }
}
