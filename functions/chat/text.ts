/**
 * Generated token ids to the text a client sees: complete UTF-8 only (a character split across tokens waits for
 * its last byte), cut at the first stop string, which is never sent, even partly. Stop strings count only in
 * text after the first `after` tokens (vLLM's `min_tokens` holds them back as it holds stop tokens).
 */
import type { StreamDecoder } from "../../runtime/tokenizer/stream.ts";

export class TextAssembler {
  #held = "";
  #stopped = false;
  #matched: string | undefined;
  #pushed = 0;

  constructor(readonly decoder: StreamDecoder, readonly stops: readonly string[], readonly after = 0) {}

  get stopped(): boolean {
    return this.#stopped;
  }

  /** The stop string that ended the text, if one did. */
  get matched(): string | undefined {
    return this.#matched;
  }

  /** The text this token releases (possibly empty). After a stop string, always empty. */
  push(id: number): string {
    if (this.#stopped) return "";
    const text = this.#held + this.decoder.push(id);
    // Before `after` tokens, text goes out whole: no stop string may begin in it.
    if (++this.#pushed <= this.after) {
      this.#held = "";
      return text;
    }
    return this.#release(text, false);
  }

  /** Whatever is still held back, at the end of the generation. */
  finish(): string {
    if (this.#stopped) return "";
    return this.#release(this.#held + this.decoder.flush(), true);
  }

  #release(text: string, final: boolean): string {
    let cut = -1;
    for (const stop of this.stops) {
      const at = text.indexOf(stop);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at, this.#matched = stop;
    }
    if (cut >= 0) {
      this.#stopped = true;
      this.#held = "";
      return text.slice(0, cut);
    }
    // Hold back the longest tail that could still grow into a stop string.
    let keep = 0;
    if (!final) {
      for (const stop of this.stops) {
        for (let n = Math.min(stop.length - 1, text.length); n > keep; n--) {
          if (text.endsWith(stop.slice(0, n))) {
            keep = n;
            break;
          }
        }
      }
    }
    this.#held = text.slice(text.length - keep);
    return text.slice(0, text.length - keep);
  }
}
