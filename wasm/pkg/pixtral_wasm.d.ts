/* tslint:disable */
/* eslint-disable */
/**
* Token grid `[cols, rows]` of an image of `width` x `height` pixels (mistral_common's rule).
* @param {number} width
* @param {number} height
* @param {number} max_image_size
* @param {number} patch_size
* @returns {Uint32Array}
*/
export function imageGrid(width: number, height: number, max_image_size: number, patch_size: number): Uint32Array;
/**
* Token ids for an image of `cols` x `rows` patches: each row of `[IMG]` ends in `[IMG_BREAK]`, the last in `[IMG_END]`.
* @param {number} cols
* @param {number} rows
* @param {number} img
* @param {number} img_break
* @param {number} img_end
* @returns {Uint32Array}
*/
export function imageTokenLayout(cols: number, rows: number, img: number, img_break: number, img_end: number): Uint32Array;
/**
*/
export class Tekken {
  free(): void;
/**
* Parses a tekken.json file; `vocab_size` (the model's) may cut the file's default_vocab_size.
* @param {Uint8Array} json
* @param {number | undefined} vocab_size
* @returns {Tekken}
*/
  static fromTekkenJson(json: Uint8Array, vocab_size?: number): Tekken;
/**
* Rebuilds a tokenizer from bytes written by `toCache`.
* @param {Uint8Array} bytes
* @returns {Tekken}
*/
  static fromCache(bytes: Uint8Array): Tekken;
/**
* Builds a tokenizer from raw parts: BPE token bytes in rank order (`token_ends[r]` = end of rank r in
* `token_blob`), special-token names by id (UTF-8, split the same way), the pre-tokenization pattern and
* the vocab size (specials + ranks used).
* @param {Uint8Array} token_blob
* @param {Uint32Array} token_ends
* @param {Uint8Array} special_blob
* @param {Uint32Array} special_ends
* @param {string} pattern
* @param {number} vocab_size
* @param {string} version
* @returns {Tekken}
*/
  static fromParts(token_blob: Uint8Array, token_ends: Uint32Array, special_blob: Uint8Array, special_ends: Uint32Array, pattern: string, vocab_size: number, version: string): Tekken;
/**
* @returns {Uint8Array}
*/
  toCache(): Uint8Array;
/**
* @param {string} text
* @returns {Uint32Array}
*/
  encode(text: string): Uint32Array;
/**
* @param {Uint32Array} ids
* @param {boolean} keep_special
* @returns {string}
*/
  decode(ids: Uint32Array, keep_special: boolean): string;
/**
* Bytes of a BPE token (an error for special or out-of-range ids).
* @param {number} id
* @returns {Uint8Array}
*/
  tokenBytes(id: number): Uint8Array;
/**
* @param {string} name
* @returns {number | undefined}
*/
  specialId(name: string): number | undefined;
/**
* @param {number} id
* @returns {string | undefined}
*/
  specialName(id: number): string | undefined;
/**
* `[patch_size, max_image_size, spatial_merge_size]`, or empty without an image section.
* @returns {Uint32Array}
*/
  imageConfig(): Uint32Array;
/**
*/
  readonly numSpecial: number;
/**
*/
  readonly pattern: string;
/**
*/
  readonly version: string;
/**
*/
  readonly vocabSize: number;
}

export type InitInput = RequestInfo | URL | Response | BufferSource | WebAssembly.Module;

export interface InitOutput {
  readonly memory: WebAssembly.Memory;
  readonly imageGrid: (a: number, b: number, c: number, d: number, e: number) => void;
  readonly imageTokenLayout: (a: number, b: number, c: number, d: number, e: number, f: number) => void;
  readonly __wbg_tekken_free: (a: number) => void;
  readonly tekken_fromTekkenJson: (a: number, b: number, c: number, d: number, e: number) => void;
  readonly tekken_fromCache: (a: number, b: number, c: number) => void;
  readonly tekken_fromParts: (a: number, b: number, c: number, d: number, e: number, f: number, g: number, h: number, i: number, j: number, k: number, l: number, m: number, n: number) => void;
  readonly tekken_toCache: (a: number, b: number) => void;
  readonly tekken_encode: (a: number, b: number, c: number, d: number) => void;
  readonly tekken_decode: (a: number, b: number, c: number, d: number, e: number) => void;
  readonly tekken_tokenBytes: (a: number, b: number, c: number) => void;
  readonly tekken_specialId: (a: number, b: number, c: number, d: number) => void;
  readonly tekken_specialName: (a: number, b: number, c: number) => void;
  readonly tekken_vocabSize: (a: number) => number;
  readonly tekken_numSpecial: (a: number) => number;
  readonly tekken_pattern: (a: number, b: number) => void;
  readonly tekken_version: (a: number, b: number) => void;
  readonly tekken_imageConfig: (a: number, b: number) => void;
  readonly __wbindgen_add_to_stack_pointer: (a: number) => number;
  readonly __wbindgen_export_0: (a: number, b: number) => void;
  readonly __wbindgen_export_1: (a: number) => number;
  readonly __wbindgen_export_2: (a: number, b: number, c: number) => number;
}

export type SyncInitInput = BufferSource | WebAssembly.Module;
/**
* Instantiates the given `module`, which can either be bytes or
* a precompiled `WebAssembly.Module`.
*
* @param {SyncInitInput} module
*
* @returns {InitOutput}
*/
export function initSync(module: SyncInitInput): InitOutput;

/**
* If `module_or_path` is {RequestInfo} or {URL}, makes a request and
* for everything else, calls `WebAssembly.instantiate` directly.
*
* @param {InitInput | Promise<InitInput>} module_or_path
*
* @returns {Promise<InitOutput>}
*/
export default function init (module_or_path: InitInput | Promise<InitInput>): Promise<InitOutput>;
