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

export type InitInput = RequestInfo | URL | Response | BufferSource | WebAssembly.Module;

export interface InitOutput {
  readonly memory: WebAssembly.Memory;
  readonly imageGrid: (a: number, b: number, c: number, d: number, e: number) => void;
  readonly imageTokenLayout: (a: number, b: number, c: number, d: number, e: number, f: number) => void;
  readonly __wbindgen_add_to_stack_pointer: (a: number) => number;
  readonly __wbindgen_export_0: (a: number, b: number) => void;
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
