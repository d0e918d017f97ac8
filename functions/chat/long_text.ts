/**
 * Text tokenized on the server's thread, with a guard: a text far longer than the context is refused before it is
 * tokenized whole. Random letters tokenize at about 5 MB/s here, so 60 MB held the server (health checks, every
 * stream) for 12 s, to answer a 400 anyway; the first 64 KiB tell how many tokens a text has, near enough.
 */
import type { Tokenizer } from "../../runtime/tokenizer/tokenizer.ts";
import { RequestError } from "../schema/chat.ts";

const SAMPLE = 65536;
/** What /tokenize counts at least (random letters: about 2 MB of them). */
const TOKENIZE_LIMIT = 2 ** 20;
/**
 * A text estimated at more than this many contexts is refused: an estimate from a text's start errs by less for
 * real text (random letters have 2.5 times the tokens per byte of English).
 */
const MARGIN = 4;

/** Counts the tokens texts take, refusing (as `param`) once the estimate passes MARGIN contexts. */
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
    if (text.length > SAMPLE) {
      const sample = this.tokenizer.encode(text.slice(0, SAMPLE)).length;
      const estimate = this.#used + Math.round(sample * text.length / SAMPLE);
      if (estimate > this.limit) {
        throw new RequestError(
          `the prompt has about ${estimate} tokens; this server's context is ${this.context} tokens`,
          this.param,
          "context_length_exceeded",
        );
      }
    }
    const ids = [...this.tokenizer.encode(text)];
    this.#used += ids.length;
    return ids;
  }
}
