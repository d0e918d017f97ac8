/**
 * The Tekken tokenizer (Mistral's tiktoken-style byte-level BPE), backed by the Rust/WASM module.
 *
 * Ids below `numSpecial` are special (control) tokens such as `<s>` or `[INST]`; BPE token of rank r has id
 * `numSpecial + r`. `encode` never produces special ids: text that looks like a control token is plain text.
 */
import { loadWasm, type Wasm } from "../wasm.ts";
import { StreamDecoder } from "./stream.ts";

type Tekken = InstanceType<Wasm["Tekken"]>;

export interface DecodeOptions {
  /** Write special tokens by name (`<s>`, `[INST]`...) instead of dropping them. */
  keepSpecial?: boolean;
}

/** Image settings of a multimodal tekken.json (`multimodal` or `image` section). */
export interface ImageConfig {
  patchSize: number;
  maxImageSize: number;
  spatialMergeSize: number;
}

/** A tokenizer from raw parts, e.g. a GGUF's `tokenizer.ggml.tokens` (see `gguf.ts`). */
export interface TokenizerParts {
  /** BPE tokens' bytes in rank order; ranks 0-255 must be the single bytes 0x00-0xff. */
  tokens: readonly Uint8Array[];
  /** Special token names by id. */
  specials: readonly string[];
  /** Pre-tokenization regex; `TEKKEN_PATTERN` for Tekken. */
  pattern: string;
  /** Ids in all (specials + BPE ranks used); default: every token given. */
  vocabSize?: number;
  version?: string;
}

/** The pre-tokenization pattern of Tekken files, run by a hand-written splitter (others use a regex engine). */
export const TEKKEN_PATTERN =
  "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|" +
  "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|" +
  "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** A tokenizer file or parts that cannot make a tokenizer; the message names the problem. */
export class TokenizerError extends Error {
  override name = "TokenizerError";
}

function wrap<T>(what: string, f: () => T): T {
  try {
    return f();
  } catch (err) {
    throw new TokenizerError(`${what}: ${err instanceof Error ? err.message : err}`, { cause: err });
  }
}

export class Tokenizer {
  readonly #tekken: Tekken;
  /** Special token count: ids below it are special. */
  readonly numSpecial: number;
  /** Number of ids (specials + BPE ranks). */
  readonly vocabSize: number;
  readonly pattern: string;
  /** "v3" for Pixtral; empty when built from parts without one. */
  readonly version: string;
  readonly imageConfig: ImageConfig | undefined;

  private constructor(tekken: Tekken) {
    this.#tekken = tekken;
    this.numSpecial = tekken.numSpecial;
    this.vocabSize = tekken.vocabSize;
    this.pattern = tekken.pattern;
    this.version = tekken.version;
    const image = tekken.imageConfig();
    this.imageConfig = image.length === 3
      ? { patchSize: image[0], maxImageSize: image[1], spatialMergeSize: image[2] }
      : undefined;
  }

  /** Parses tekken.json bytes. `vocabSize` (the model's) may cut the file's `default_vocab_size`. */
  static async fromTekkenJson(json: Uint8Array, options: { vocabSize?: number } = {}): Promise<Tokenizer> {
    const { Tekken } = await loadWasm();
    return new Tokenizer(
      wrap("cannot load the tokenizer", () => Tekken.fromTekkenJson(json, options.vocabSize)),
    );
  }

  /** Rebuilds a tokenizer from `toCache()` bytes; throws if they are damaged or from another format version. */
  static async fromCache(bytes: Uint8Array): Promise<Tokenizer> {
    const { Tekken } = await loadWasm();
    return new Tokenizer(wrap("cannot read the tokenizer cache", () => Tekken.fromCache(bytes)));
  }

  static async fromParts(parts: TokenizerParts): Promise<Tokenizer> {
    const { Tekken } = await loadWasm();
    const utf8 = new TextEncoder();
    const [tokenBlob, tokenEnds] = pack(parts.tokens);
    const [specialBlob, specialEnds] = pack(parts.specials.map((name) => utf8.encode(name)));
    const vocabSize = parts.vocabSize ?? parts.specials.length + parts.tokens.length;
    return new Tokenizer(wrap("cannot build the tokenizer", () =>
      Tekken.fromParts(
        tokenBlob,
        tokenEnds,
        specialBlob,
        specialEnds,
        parts.pattern,
        checkedId(vocabSize, 2 ** 32, "vocabSize"),
        parts.version ?? "",
      )));
  }

  /** The compact binary form of this tokenizer (see `load.ts` for the cache file). */
  toCache(): Uint8Array {
    return this.#tekken.toCache();
  }

  /** Token ids of `text`. Lone UTF-16 surrogates become U+FFFD first, as in mistral_common (tiktoken). */
  encode(text: string): Uint32Array {
    if (typeof text !== "string") throw new TypeError(`encode expects a string, got ${typeof text}`);
    return this.#tekken.encode(text);
  }

  /** Text of `ids`; special tokens are dropped unless `keepSpecial`. Invalid UTF-8 becomes U+FFFD. */
  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    const checked = new Uint32Array(ids.length);
    for (let i = 0; i < ids.length; i++) checked[i] = checkedId(ids[i], this.vocabSize, `ids[${i}]`);
    return this.#tekken.decode(checked, options.keepSpecial ?? false);
  }

  /** A decoder for generation: feed ids one at a time, get only complete characters back. */
  decoder(options: DecodeOptions = {}): StreamDecoder {
    return new StreamDecoder(this, options.keepSpecial ?? false);
  }

  /** Id of a special token by name (`<s>`, `</s>`, `[INST]`, `[IMG]`...); throws for an unknown name. */
  special(name: string): number {
    const id = this.#tekken.specialId(name);
    if (id === undefined) throw new TokenizerError(`unknown special token ${JSON.stringify(name)}`);
    return id;
  }

  /** Name of a special token id, or undefined for a BPE id. */
  specialName(id: number): string | undefined {
    return this.isSpecial(id) ? this.#tekken.specialName(id) : undefined;
  }

  isSpecial(id: number): boolean {
    return checkedId(id, this.vocabSize, "token id") < this.numSpecial;
  }

  /** Releases the tokenizer's WebAssembly memory (a few MB); the tokenizer must not be used afterwards. */
  free(): void {
    this.#tekken.free();
  }

  [Symbol.dispose](): void {
    this.free();
  }

  /** Bytes of a BPE token (empty for a special token). */
  tokenBytes(id: number): Uint8Array {
    return this.isSpecial(id) ? new Uint8Array() : this.#tekken.tokenBytes(id);
  }
}

function checkedId(id: number, limit: number, what: string): number {
  if (!Number.isInteger(id) || id < 0 || id >= limit) {
    throw new RangeError(
      `${what} ${id} is not a token id: ids are integers 0..${limit - 1}` +
        (Number.isInteger(id) && id >= limit ? ` (the vocabulary has ${limit})` : ""),
    );
  }
  return id;
}

/** Items back to back, with the end offset of each. */
function pack(items: readonly Uint8Array[]): [Uint8Array, Uint32Array] {
  const ends = new Uint32Array(items.length);
  let total = 0;
  items.forEach((item, i) => ends[i] = total += item.length);
  const blob = new Uint8Array(total);
  items.forEach((item, i) => blob.set(item, ends[i] - item.length));
  return [blob, ends];
}
