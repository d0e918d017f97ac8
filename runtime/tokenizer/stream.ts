/**
 * Incremental detokenization for generation. Token boundaries fall inside UTF-8 characters (byte tokens,
 * partial CJK or emoji), so bytes wait until their character is complete; a sequence that can no longer be
 * completed becomes U+FFFD, exactly where a whole-sequence `decode` would put it.
 */
import type { Tokenizer } from "./tokenizer.ts";

export class StreamDecoder {
  readonly #tokenizer: Tokenizer;
  readonly #keepSpecial: boolean;
  // ignoreBOM keeps a leading U+FEFF as text, as decode() does.
  #utf8 = new TextDecoder("utf-8", { ignoreBOM: true });

  constructor(tokenizer: Tokenizer, keepSpecial: boolean) {
    this.#tokenizer = tokenizer;
    this.#keepSpecial = keepSpecial;
  }

  /** Text completed by token `id` (often "", never half a character). */
  push(id: number): string {
    if (this.#tokenizer.isSpecial(id)) {
      // A special token ends the byte run: decode() replaces what is left of it, so do the same here.
      const rest = this.#utf8.decode();
      return this.#keepSpecial ? rest + this.#tokenizer.specialName(id) : rest;
    }
    return this.#utf8.decode(this.#tokenizer.tokenBytes(id), { stream: true });
  }

  /** The end of the sequence: bytes still waiting for their character become U+FFFD. Resets the decoder. */
  flush(): string {
    return this.#utf8.decode();
  }
}
