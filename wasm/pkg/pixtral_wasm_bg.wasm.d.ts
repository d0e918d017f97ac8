/* tslint:disable */
/* eslint-disable */
export const memory: WebAssembly.Memory;
export function imageGrid(a: number, b: number, c: number, d: number, e: number): void;
export function imageTokenLayout(a: number, b: number, c: number, d: number, e: number, f: number): void;
export function __wbindgen_add_to_stack_pointer(a: number): number;
export function __wbindgen_export_0(a: number, b: number): void;
