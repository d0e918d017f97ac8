/**
 * Tokenizer parts from a llama.cpp GGUF vocabulary (`tokenizer.ggml.model` "gpt2", `tokenizer.ggml.pre`
 * "tekken"), for models shipped without tekken.json: `tokenizer.ggml.tokens` lists the special tokens by name,
 * then the BPE tokens in rank order, each written in GPT-2's byte-to-unicode alphabet.
 */
import { TEKKEN_PATTERN, TokenizerError, type TokenizerParts } from "./tokenizer.ts";

/** `tokenizer.ggml.token_type` of control tokens. */
const CONTROL = 3;

/** GPT-2's `bytes_to_unicode`: byte -> character (printable bytes stand for themselves, the rest from U+0100). */
const CHAR_OF = (() => {
  const printable = (b: number) =>
    (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let next = 256;
  return Array.from({ length: 256 }, (_, b) => String.fromCodePoint(printable(b) ? b : next++));
})();

/** GPT-2's `bytes_to_unicode` inverted: code point -> byte. */
const BYTE_OF = new Map(CHAR_OF.map((ch, b) => [ch.codePointAt(0)!, b]));

/** Bytes written in GPT-2's byte-to-unicode alphabet, as GGUF vocabularies (and grammar engines) take tokens. */
export function gpt2TokenString(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += CHAR_OF[b];
  return s;
}

/** The bytes of one GPT-2 byte-to-unicode token string. */
export function gpt2TokenBytes(token: string): Uint8Array {
  const out = new Uint8Array(token.length);
  let n = 0;
  for (const ch of token) {
    const byte = BYTE_OF.get(ch.codePointAt(0)!);
    if (byte === undefined) {
      throw new TokenizerError(`token ${JSON.stringify(token)} is not in GPT-2's byte-to-unicode alphabet`);
    }
    out[n++] = byte;
  }
  return out.subarray(0, n);
}

export interface GgufVocab {
  /** `tokenizer.ggml.tokens` */
  tokens: readonly string[];
  /** `tokenizer.ggml.token_type`: the leading run of control tokens (type 3) are the specials. */
  tokenTypes?: ArrayLike<number>;
  /** Number of special tokens when there are no token types (Tekken: 1000). */
  numSpecial?: number;
}

export function partsFromGguf(vocab: GgufVocab): TokenizerParts {
  let numSpecial = vocab.numSpecial ?? 1000;
  if (vocab.tokenTypes) {
    if (vocab.tokenTypes.length !== vocab.tokens.length) {
      throw new TokenizerError(
        `tokenizer.ggml.token_type has ${vocab.tokenTypes.length} entries for ${vocab.tokens.length} tokens`,
      );
    }
    numSpecial = 0;
    while (numSpecial < vocab.tokens.length && vocab.tokenTypes[numSpecial] === CONTROL) numSpecial++;
  }
  return {
    specials: vocab.tokens.slice(0, numSpecial),
    tokens: vocab.tokens.slice(numSpecial).map(gpt2TokenBytes),
    pattern: TEKKEN_PATTERN,
    vocabSize: vocab.tokens.length,
  };
}
