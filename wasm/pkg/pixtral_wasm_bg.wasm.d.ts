/* tslint:disable */
/* eslint-disable */
export const memory: WebAssembly.Memory;
export function imageGrid(a: number, b: number, c: number, d: number, e: number): void;
export function imageTokenLayout(a: number, b: number, c: number, d: number, e: number, f: number): void;
export function __wbg_tekken_free(a: number): void;
export function tekken_fromTekkenJson(a: number, b: number, c: number, d: number, e: number): void;
export function tekken_fromCache(a: number, b: number, c: number): void;
export function tekken_fromParts(a: number, b: number, c: number, d: number, e: number, f: number, g: number, h: number, i: number, j: number, k: number, l: number, m: number, n: number): void;
export function tekken_toCache(a: number, b: number): void;
export function tekken_encode(a: number, b: number, c: number, d: number): void;
export function tekken_decode(a: number, b: number, c: number, d: number, e: number): void;
export function tekken_tokenBytes(a: number, b: number, c: number): void;
export function tekken_specialId(a: number, b: number, c: number, d: number): void;
export function tekken_specialName(a: number, b: number, c: number): void;
export function tekken_vocabSize(a: number): number;
export function tekken_numSpecial(a: number): number;
export function tekken_pattern(a: number, b: number): void;
export function tekken_version(a: number, b: number): void;
export function tekken_imageConfig(a: number, b: number): void;
export function __wbindgen_add_to_stack_pointer(a: number): number;
export function __wbindgen_export_0(a: number, b: number): void;
export function __wbindgen_export_1(a: number): number;
export function __wbindgen_export_2(a: number, b: number, c: number): number;
