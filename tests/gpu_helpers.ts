/** Helpers of the GPU kernel tests: seeded data, synthetic quantized weights, tolerance checks. */
import assert from "node:assert/strict";
import { GpuContext } from "../runtime/gpu/context.ts";
import { type BlockFormat, GGUF_BLOCKS, rowBytes } from "../runtime/gpu/dtype.ts";

/** A seeded generator of uniform numbers in [-0.5, 0.5). */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

export function randomFloats(n: number, seed: number, scale = 1): Float32Array<ArrayBuffer> {
  const random = seededRandom(seed);
  return Float32Array.from({ length: n }, () => 2 * scale * random());
}

/** Random bytes with the given seed (fast: one LCG step per 32-bit word). */
export function randomBytes(n: number, seed: number): Uint8Array<ArrayBuffer> {
  const words = new Uint32Array(Math.ceil(n / 4));
  let s = seed >>> 0;
  for (let i = 0; i < words.length; i++) words[i] = s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
  return new Uint8Array(words.buffer, 0, n);
}

/**
 * Synthetic weights of a block format: random bytes everywhere (quants, packed scales, any int8 including -128),
 * with the f16 scale fields overwritten by sane values (magnitudes 1e-3..1e-2, random signs where the format
 * allows them), as a file of that format could hold.
 */
export function randomBlocks(
  format: BlockFormat,
  rows: number,
  k: number,
  seed: number,
): Uint8Array<ArrayBuffer> {
  const bytes = randomBytes(rows * rowBytes(format, k), seed);
  const view = new DataView(bytes.buffer);
  const random = seededRandom(seed ^ 0x5bd1e995);
  const scale = (signed: boolean) => (1e-3 + 9e-3 * (random() + 0.5)) * (signed && random() < 0 ? -1 : 1);
  const stride = rowBytes(format, k);
  for (let r = 0; r < rows; r++) {
    if (format === "q4") {
      for (let g = 0; g < k / 32; g++) view.setFloat16(r * stride + k / 2 + 2 * g, scale(true), true);
      continue;
    }
    const block = GGUF_BLOCKS[format];
    for (let b = 0; b < k / block.size; b++) {
      const at = r * stride + b * block.bytes;
      if (format === "q8_0") view.setFloat16(at, scale(true), true);
      if (format === "q4_k") {
        view.setFloat16(at, scale(false), true);
        view.setFloat16(at + 2, scale(false), true);
      }
      if (format === "q6_k") view.setFloat16(at + 208, scale(true), true);
    }
  }
  return bytes;
}

/**
 * Asserts |actual - expected| <= tolerance(i) everywhere, naming the worst element otherwise.
 */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tolerance: number | ((i: number) => number),
  what: string,
): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  let worst = -1, worstExcess = 0;
  for (let i = 0; i < actual.length; i++) {
    const tol = typeof tolerance === "number" ? tolerance : tolerance(i);
    const excess = Math.abs(actual[i] - expected[i]) - tol;
    if (!(excess <= 0) && (worst < 0 || !(excess <= worstExcess))) [worst, worstExcess] = [i, excess];
  }
  if (worst >= 0) {
    const tol = typeof tolerance === "number" ? tolerance : tolerance(worst);
    assert.fail(`${what}: element ${worst} is ${actual[worst]}, expected ${expected[worst]} ± ${tol}`);
  }
}

/** One GPU context per test file; tests run sequentially in a file. */
let shared: Promise<GpuContext> | undefined;
export function context(): Promise<GpuContext> {
  shared ??= GpuContext.create();
  return shared;
}

/** A second context binding at most 32 KiB at once, so that small tensors take the windowed paths. */
let windowed: Promise<GpuContext> | undefined;
export function windowedContext(): Promise<GpuContext> {
  windowed ??= GpuContext.create({ maxBindingSize: 32768 });
  return windowed;
}

/** ε of f32 and f16: half an ulp at 1 (relative rounding error). */
export const EPS32 = 2 ** -24;
export const EPS16 = 2 ** -11;
/** Half the spacing of f16 subnormals: the absolute rounding error of tiny values stored as f16. */
export const SUB16 = 2 ** -25;
