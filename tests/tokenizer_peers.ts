/**
 * Peer tokenizers loaded with the same Tekken ranks and pattern, for the differential test and the benchmark:
 * npm `tiktoken` (OpenAI's Rust tiktoken compiled to WASM, the engine mistral_common runs) and
 * `@microsoft/tiktokenizer` (TypeScript BPE over a JavaScript RegExp).
 */
import { TikTokenizer } from "@microsoft/tiktokenizer";
import { Tiktoken } from "tiktoken";

export interface TekkenRanks {
  pattern: string;
  numSpecial: number;
  /** base64 token bytes of the ranks in use (after truncation to the vocab size) */
  tokens: string[];
}

export async function readTekkenRanks(path: string | URL): Promise<TekkenRanks> {
  const file = JSON.parse(await Deno.readTextFile(path));
  const numSpecial = file.config.default_num_special_tokens;
  const tokens = file.vocab
    .slice(0, file.config.default_vocab_size - numSpecial)
    .map((v: { token_bytes: string }) => v.token_bytes);
  return { pattern: file.config.pattern, numSpecial, tokens };
}

export interface Peer {
  name: string;
  /** Token ids (rank + number of special tokens). */
  encode(text: string): ArrayLike<number>;
  decode(ids: number[]): string;
  /** Drops any state from earlier texts (piece caches), so the next text is unseen. */
  reset(): void;
}

export function tiktokenPeer(ranks: TekkenRanks): Peer {
  const encoder = new Tiktoken(ranks.tokens.map((t, rank) => `${t} ${rank}`).join("\n"), {}, ranks.pattern);
  const utf8 = new TextDecoder();
  return {
    name: "tiktoken (npm, WASM)",
    encode: (text) => encoder.encode_ordinary(text).map((rank) => rank + ranks.numSpecial),
    decode: (ids) => utf8.decode(encoder.decode(Uint32Array.from(ids, (id) => id - ranks.numSpecial))),
    reset: () => {}, // no piece cache
  };
}

export function microsoftPeer(ranks: TekkenRanks): Peer {
  const table = new Map(
    ranks.tokens.map((t, rank) => [Uint8Array.from(atob(t), (c) => c.charCodeAt(0)), rank]),
  );
  let tokenizer = new TikTokenizer(table, new Map(), ranks.pattern);
  return {
    name: "@microsoft/tiktokenizer",
    encode: (text) => tokenizer.encode(text).map((rank) => rank + ranks.numSpecial),
    decode: (ids) => tokenizer.decode(ids.map((id) => id - ranks.numSpecial)),
    reset: () => tokenizer = new TikTokenizer(table, new Map(), ranks.pattern), // a fresh LRU piece cache
  };
}
