/**
 * The model's vocabulary as xgrammar takes it, and what the server enforces on xgrammar's masks itself: bytes
 * JSON never holds, UTF-8 continuation ranges across tokens, and runs of whitespace between JSON tokens.
 *
 * Whitespace runs are bounded here rather than in the grammar: xgrammar's own bound (`max_whitespace_cnt`)
 * makes every place whitespace may go a chain of states, each with a mask over the vocabulary. Measured over
 * Pixtral's vocabulary, a list of calls to 4 small functions compiled in 3.2 s with a bound of 20 and 16
 * functions ran out of memory; unbounded, 0.37 s and 0.35 s (64 functions: 0.68 s).
 */
import { gpt2TokenString, type Tokenizer } from "../tokenizer/mod.ts";
import type { BoundsTracker } from "./bounds.ts";

/** Whitespace characters allowed in a row between JSON tokens: more would let a model loop on newlines. */
const MAX_WHITESPACE = 20;

/**
 * Whether a token may appear in JSON output at all: no control character but the newline, and no byte that never
 * occurs in UTF-8 (C0, C1, F5-FF). xgrammar 0.1.27 lets strings with length bounds hold raw control characters
 * (its class there is [^"\\\r\n]), which JSON forbids, and takes those bytes in strings; outside strings control
 * characters are whitespace, where a space or a newline does as well.
 */
const jsonSafe = safeWith([0x0a]);
/** Whether a token may appear in text (a choice, a regular expression's match): tab and carriage return too. */
const textSafe = safeWith([0x09, 0x0a, 0x0d]);

function safeWith(controls: readonly number[]): (bytes: Uint8Array) => boolean {
  return (bytes) =>
    bytes.every((b) => (b >= 0x20 || controls.includes(b)) && b !== 0xc0 && b !== 0xc1 && b < 0xf5);
}

/**
 * Lead bytes after which UTF-8 allows only part of the continuation bytes, and that part: xgrammar 0.1.27 takes
 * any continuation byte, which lets tokens write overlong forms (E0 80, F0 80), UTF-16 surrogates (ED A0) and
 * code points beyond U+10FFFF (F4 90). No token holds such a pair; a token that ends with one of these leads
 * can be followed by one that begins with the wrong continuation.
 */
const RESTRICTED_LEADS: readonly { lead: number; from: number; to: number }[] = [
  { lead: 0xe0, from: 0xa0, to: 0xbf },
  { lead: 0xed, from: 0x80, to: 0x9f },
  { lead: 0xf0, from: 0x90, to: 0xbf },
  { lead: 0xf4, from: 0x80, to: 0x8f },
];

/**
 * Where JSON text stands, lexically: between tokens (with the whitespace run so far), in a string, after `\`,
 * after `\u`, after `\uD`.
 */
interface Lexical {
  at: "between" | "string" | "escape" | "unicode" | "surrogate";
  /** Whitespace characters in a row just written, between tokens. */
  run: number;
}

const isSpace = (b: number) => b === 0x20 || b === 0x0a || b === 0x09 || b === 0x0d;
/** 8-9, A-F, a-f: after `\uD`, a UTF-16 surrogate. */
const surrogateDigit = (b: number) =>
  (b >= 0x38 && b <= 0x39) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66);

/**
 * `state` after `bytes`, the longest whitespace run between tokens the bytes complete or extend, and whether they
 * write a UTF-16 surrogate as an escape (`\ud83d`). xgrammar writes any escape; a lone surrogate is no text
 * (pydantic and serde refuse the JSON), and one of a pair is what a raw UTF-8 character says as well, so strings
 * hold none.
 */
function lex(state: Lexical, bytes: Uint8Array): { state: Lexical; longest: number; surrogate: boolean } {
  let { at, run } = state;
  let longest = 0, surrogate = false;
  for (const b of bytes) {
    if (at === "escape") at = b === 0x75 ? "unicode" : "string";
    else if (at === "unicode") at = b === 0x44 || b === 0x64 ? "surrogate" : "string";
    else if (at === "surrogate") {
      surrogate ||= surrogateDigit(b);
      at = "string";
    } else if (at === "string") at = b === 0x5c ? "escape" : b === 0x22 ? "between" : "string";
    else if (isSpace(b)) longest = Math.max(longest, ++run);
    else {
      run = 0;
      if (b === 0x22) at = "string";
    }
  }
  return { state: { at, run }, longest, surrogate };
}

export interface Vocabulary {
  /** Each token in GPT-2's byte alphabet, special tokens empty: a byte-level vocabulary as xgrammar takes one. */
  tokens: string[];
  /** Every token's bytes, one after the other: token `id` is bytes[offsets[id]] up to bytes[offsets[id + 1]]. */
  bytes: Uint8Array;
  offsets: Uint32Array;
  /** The tokens jsonSafe allows, a bit per id. */
  safe: Uint32Array;
  /** The tokens textSafe allows. */
  text: Uint32Array;
  /** Per token, 1 + the index in RESTRICTED_LEADS of the lead byte it ends with; 0 when it ends otherwise. */
  leads: Uint8Array;
  /** Per restricted lead, the tokens that may follow it: those beginning with a continuation byte it allows. */
  follows: Uint32Array[];
  /**
   * Between JSON tokens after a whitespace run of MAX_WHITESPACE - k (k = 0..MAX_WHITESPACE), the tokens that keep
   * every run within the bound and write no surrogate escape; then so from each place in a string (lex's states).
   */
  spaced: Uint32Array[];
  inString: Record<"string" | "escape" | "unicode" | "surrogate", Uint32Array>;
}

/** The model's vocabulary for xgrammar (`vocabSize`, the logits' width, may exceed the tokenizer's). */
export function vocabulary(tokenizer: Tokenizer, vocabSize: number): Vocabulary {
  const words = Math.ceil(vocabSize / 32);
  const tokens: string[] = [];
  const pieces: Uint8Array[] = [];
  const offsets = new Uint32Array(vocabSize + 1);
  const safe = new Uint32Array(words), text = new Uint32Array(words);
  const leads = new Uint8Array(vocabSize);
  const follows = RESTRICTED_LEADS.map(() => new Uint32Array(words));
  const spaced = Array.from({ length: MAX_WHITESPACE + 1 }, () => new Uint32Array(words));
  const places = ["string", "escape", "unicode", "surrogate"] as const;
  const inString = Object.fromEntries(
    places.map((at) => [at, new Uint32Array(words)]),
  ) as Vocabulary["inString"];
  const set = (mask: Uint32Array, id: number) => mask[id >> 5] |= 1 << (id & 31);
  const empty = new Uint8Array();
  for (let id = 0; id < vocabSize; id++) {
    const bytes = id < tokenizer.vocabSize && !tokenizer.isSpecial(id) ? tokenizer.tokenBytes(id) : undefined;
    tokens.push(bytes ? gpt2TokenString(bytes) : "");
    if (bytes && jsonSafe(bytes)) set(safe, id);
    if (bytes && textSafe(bytes)) set(text, id);
    const piece = bytes ?? empty;
    pieces.push(piece);
    offsets[id + 1] = offsets[id] + piece.length;
    // From the start of a run: the longest run a token makes alone, and the one its leading whitespace begins.
    const alone = lex({ at: "between", run: 0 }, piece);
    let leading = 0;
    while (leading < piece.length && isSpace(piece[leading])) leading++;
    for (let k = 0; k <= MAX_WHITESPACE; k++) {
      // After a run of MAX_WHITESPACE - k, the leading whitespace extends it; later runs stand alone.
      if (alone.longest <= MAX_WHITESPACE && !alone.surrogate && leading <= k) set(spaced[k], id);
    }
    for (const at of places) {
      const from = lex({ at, run: 0 }, piece);
      if (from.longest <= MAX_WHITESPACE && !from.surrogate) set(inString[at], id);
    }
    if (!piece.length) continue;
    leads[id] = RESTRICTED_LEADS.findIndex(({ lead }) => lead === piece.at(-1)) + 1;
    RESTRICTED_LEADS.forEach(({ from, to }, i) => {
      if (piece[0] >= from && piece[0] <= to) set(follows[i], id);
    });
  }
  const all = new Uint8Array(offsets[vocabSize]);
  pieces.forEach((piece, id) => all.set(piece, offsets[id]));
  return { tokens, bytes: all, offsets, safe, text, leads, follows, spaced, inString };
}

/**
 * What a sequence's text so far allows of the next token, beyond the grammar: follows the tokens taken and
 * narrows xgrammar's masks.
 */
export class TokenGuard {
  #lexical: Lexical = { at: "between", run: 0 };
  /** The restricted lead byte the text ends with (1 + its index), or 0. */
  #lead = 0;

  /**
   * `json`: the text is JSON, whose whitespace runs are bounded (a choice's text is the grammar's alone);
   * `bounds`: the schema's strings and numbers whose bounds the masks keep.
   */
  constructor(readonly vocabulary: Vocabulary, readonly json = true, readonly bounds?: BoundsTracker) {}

  take(id: number): void {
    const { bytes, offsets, leads } = this.vocabulary;
    if (id >= leads.length || offsets[id] === offsets[id + 1]) return; // a special token writes nothing
    const piece = bytes.subarray(offsets[id], offsets[id + 1]);
    if (this.json) this.#lexical = lex(this.#lexical, piece).state;
    this.bounds?.take(piece);
    this.#lead = leads[id];
  }

  /** Narrows `mask` (already cut to the tokens safe in JSON, or in text) in place. */
  narrow(mask: Uint32Array): void {
    const { follows, spaced, inString } = this.vocabulary;
    const { at, run } = this.#lexical;
    const lexical = at === "between" ? spaced[Math.max(0, MAX_WHITESPACE - run)] : inString[at];
    if (this.json) { for (let w = 0; w < mask.length; w++) mask[w] &= lexical[w]; }
    if (this.#lead) { for (let w = 0; w < mask.length; w++) mask[w] &= follows[this.#lead - 1][w]; }
    this.bounds?.narrow(mask);
  }
}
