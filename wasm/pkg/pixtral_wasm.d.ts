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
* Format and size from the header alone: `{ format, width, height }`.
* @param {Uint8Array} bytes
* @returns {ImageHeader}
*/
export function imageHeader(bytes: Uint8Array): ImageHeader;
/**
* Decodes an image to 8-bit RGB over white (the first frame of an animation), as mistral_common does before
* resizing.
* @param {Uint8Array} bytes
* @param {number} max_pixels
* @returns {DecodedImage}
*/
export function decodeRgb(bytes: Uint8Array, max_pixels: number): DecodedImage;
/**
* Decodes, turns, resizes and normalizes an image. `mode` is "mistral" or "hf", `dtype` "f32" or "f16",
* `orientation` "exif" (turned as its EXIF tag says) or "ignore" (as stored); `max_pixels` (a JS number)
* bounds width·height as declared by the header.
* @param {Uint8Array} bytes
* @param {string} mode
* @param {number} max_image_size
* @param {number} patch_size
* @param {number} max_pixels
* @param {string} dtype
* @param {string} orientation
* @returns {PreprocessedImage}
*/
export function preprocessImage(bytes: Uint8Array, mode: string, max_image_size: number, patch_size: number, max_pixels: number, dtype: string, orientation: string): PreprocessedImage;
/**
* What `preprocessImage` would make of an image, from its header alone: its size and patch grid (the decoded
* image always has the header's size). An edge gateway lays out an image's tokens so and leaves the decoding to
* the GPU host.
* @param {Uint8Array} bytes
* @param {string} mode
* @param {number} max_image_size
* @param {number} patch_size
* @param {number} max_pixels
* @param {string} orientation
* @returns {MeasuredImage}
*/
export function measureImage(bytes: Uint8Array, mode: string, max_image_size: number, patch_size: number, max_pixels: number, orientation: string): MeasuredImage;
/**
*/
export class DecodedImage {
  free(): void;
/**
* Interleaved RGB rows, moved out once.
* @returns {Uint8Array}
*/
  takePixels(): Uint8Array;
/**
*/
  height: number;
/**
*/
  width: number;
}
/**
*/
export class ImageHeader {
  free(): void;
/**
*/
  readonly format: string;
/**
*/
  height: number;
/**
*/
  width: number;
}
/**
*/
export class MeasuredImage {
  free(): void;
/**
*/
  cols: number;
/**
*/
  height: number;
/**
*/
  rows: number;
/**
*/
  width: number;
}
/**
* The result of `preprocessImage`: the decoded size, the patch grid, and the tensor `[3, rows·patch,
* cols·patch]`, moved out once with `takePixelsF32` or `takePixelsF16` (whichever dtype was asked for).
*/
export class PreprocessedImage {
  free(): void;
/**
* @returns {Float32Array}
*/
  takePixelsF32(): Float32Array;
/**
* IEEE half-precision bit patterns.
* @returns {Uint16Array}
*/
  takePixelsF16(): Uint16Array;
/**
*/
  cols: number;
/**
*/
  height: number;
/**
*/
  rows: number;
/**
*/
  width: number;
}
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
  readonly imageHeader: (a: number, b: number, c: number) => void;
  readonly __wbg_imageheader_free: (a: number) => void;
  readonly __wbg_get_imageheader_width: (a: number) => number;
  readonly __wbg_set_imageheader_width: (a: number, b: number) => void;
  readonly __wbg_get_imageheader_height: (a: number) => number;
  readonly __wbg_set_imageheader_height: (a: number, b: number) => void;
  readonly imageheader_format: (a: number, b: number) => void;
  readonly decodeRgb: (a: number, b: number, c: number, d: number) => void;
  readonly __wbg_decodedimage_free: (a: number) => void;
  readonly __wbg_get_decodedimage_width: (a: number) => number;
  readonly __wbg_set_decodedimage_width: (a: number, b: number) => void;
  readonly __wbg_get_decodedimage_height: (a: number) => number;
  readonly __wbg_set_decodedimage_height: (a: number, b: number) => void;
  readonly decodedimage_takePixels: (a: number, b: number) => void;
  readonly preprocessImage: (a: number, b: number, c: number, d: number, e: number, f: number, g: number, h: number, i: number, j: number, k: number, l: number) => void;
  readonly measureImage: (a: number, b: number, c: number, d: number, e: number, f: number, g: number, h: number, i: number, j: number) => void;
  readonly __wbg_measuredimage_free: (a: number) => void;
  readonly __wbg_get_measuredimage_cols: (a: number) => number;
  readonly __wbg_set_measuredimage_cols: (a: number, b: number) => void;
  readonly __wbg_get_measuredimage_rows: (a: number) => number;
  readonly __wbg_set_measuredimage_rows: (a: number, b: number) => void;
  readonly __wbg_preprocessedimage_free: (a: number) => void;
  readonly preprocessedimage_takePixelsF32: (a: number, b: number) => void;
  readonly preprocessedimage_takePixelsF16: (a: number, b: number) => void;
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
  readonly __wbg_get_measuredimage_height: (a: number) => number;
  readonly __wbg_get_preprocessedimage_height: (a: number) => number;
  readonly __wbg_get_preprocessedimage_cols: (a: number) => number;
  readonly __wbg_get_preprocessedimage_rows: (a: number) => number;
  readonly __wbg_get_measuredimage_width: (a: number) => number;
  readonly __wbg_get_preprocessedimage_width: (a: number) => number;
  readonly __wbg_set_measuredimage_width: (a: number, b: number) => void;
  readonly __wbg_set_preprocessedimage_width: (a: number, b: number) => void;
  readonly __wbg_set_measuredimage_height: (a: number, b: number) => void;
  readonly __wbg_set_preprocessedimage_height: (a: number, b: number) => void;
  readonly __wbg_set_preprocessedimage_cols: (a: number, b: number) => void;
  readonly __wbg_set_preprocessedimage_rows: (a: number, b: number) => void;
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
