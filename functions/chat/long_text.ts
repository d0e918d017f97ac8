/**
 * Text tokenized on the server's thread, with a guard: texts far longer than the context are refused before they
 * are tokenized whole. Random letters tokenize at about 5 MB/s here, so 60 MB held the server (health checks, every
 * stream) for 12 s, to answer a 400 anyway. A long text is counted in slices first, stopping once past the limit.
 */
import type { Tokenizer } from "../../runtime/tokenizer/tokenizer.ts";
import { RequestError } from "../schema/chat.ts";

const SLICE = 65536;
/** Texts of more than this many contexts together are refused (they could never be a prompt). */
const MARGIN = 4;
/** What /tokenize counts at least (random letters: about 2 MB of them). */
const TOKENIZE_LIMIT = 2 ** 20;

/** Counts the tokens texts take, refusing (as `param`) once they pass the limit. */
export class TextBudget {
  #used = 0;
  readonly limit: number;

  /** `counting`: for /tokenize, which counts texts up to TOKENIZE_LIMIT tokens whatever the context. */
  constructor(
    readonly tokenizer: Tokenizer,
    readonly context: number,
    readonly param: string,
    counting = false,
  ) {
    this.limit = counting ? Math.max(MARGIN * context, TOKENIZE_LIMIT) : MARGIN * context;
  }

  encode(text: string): number[] {
    if (text.length > SLICE) {
      // A slice's tokens are its share of the whole's, near enough (they differ only where a slice is cut).
      let count = this.#used;
      for (let start = 0; start < text.length;) {
        let end = Math.min(text.length, start + SLICE);
        if (end < text.length && (text.charCodeAt(end - 1) & 0xfc00) === 0xd800) end--; // not inside a pair
        count += this.tokenizer.encode(text.slice(start, end)).length;
        this.#check(count, "about ");
        start = end;
      }
    }
    const ids = [...this.tokenizer.encode(text)];
    this.#used += ids.length;
    this.#check(this.#used, "");
    return ids;
  }

  #check(count: number, about: string): void {
    if (count <= this.limit) return;
    throw new RequestError(
      `the prompt has ${about}${count} tokens or more; this server's context is ${this.context} tokens`,
      this.param,
      "context_length_exceeded",
    );
  }
}
