/** Helpers of the GPU kernel tests: seeded data, synthetic quantized weights, tolerance checks. */
import assert from "node:assert/strict";
import { GpuContext } from "../runtime/gpu/context.ts";
import { type BlockFormat, f16Bits, GGUF_BLOCKS, rowBytes } from "../runtime/gpu/dtype.ts";
import { isIq } from "../runtime/gpu/ops/iq.ts";
import { dequantizeRef, quantize } from "../runtime/gpu/ops/quantize.ts";

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
  const halves = new Uint16Array(bytes.buffer, 0, bytes.byteLength >> 1);
  // A pool of sane f16 scales, drawn from in a scrambled order (writing 21M scales one by one is too slow).
  const random = seededRandom(seed ^ 0x5bd1e995);
  const pool = (signed: boolean) =>
    f16Bits(
      Array.from(
        { length: 1024 },
        () => (1e-3 + 9e-3 * (random() + 0.5)) * (signed && random() < 0 ? -1 : 1),
      ),
    );
  const [signedPool, positivePool] = [pool(true), pool(false)];
  let n = 0;
  const scale = (at: number, signed: boolean) => {
    halves[at >> 1] = (signed ? signedPool : positivePool)[(n++ * 7919) & 1023];
  };
  const stride = rowBytes(format, k);
  for (let r = 0; r < rows; r++) {
    if (format === "q4") {
      for (let g = 0; g < k / 32; g++) scale(r * stride + k / 2 + 2 * g, true);
      continue;
    }
    const block = GGUF_BLOCKS[format];
    for (let b = 0; b < k / block.size; b++) {
      const at = r * stride + b * block.bytes;
      if (format === "q8_0" || format === "q4_0" || format === "q5_0") scale(at, true);
      if (format === "q4_1" || format === "q5_1") {
        scale(at, true);
        scale(at + 2, true);
      }
      if (format === "q4_k" || format === "q5_k") {
        scale(at, false);
        scale(at + 2, false);
      }
      if (format === "q6_k") scale(at + 208, true);
      if (format === "q3_k") scale(at + 108, true);
      if (format === "q2_k") {
        scale(at + 80, false);
        scale(at + 82, false);
      }
      if (format === "iq4_nl" || format === "iq4_xs" || (isIq(format) && format !== "iq1_m")) scale(at, true);
      if (format === "iq1_m") {
        // IQ1_M keeps its d in the top nibbles of the four u16 scales at 48.
        const d = positivePool[(n++ * 7919) & 1023];
        for (let i = 0; i < 4; i++) {
          const h = (at + 48 + 2 * i) >> 1;
          halves[h] = (halves[h] & 0x0fff) | (((d >> (4 * i)) & 15) << 12);
        }
      }
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
  // Above the i-quants' 33 KB grid table, which is bound whole.
  windowed ??= GpuContext.create({ maxBindingSize: 65536 });
  return windowed;
}

/** ε of f32 and f16: half an ulp at 1 (relative rounding error). */
export const EPS32 = 2 ** -24;
export const EPS16 = 2 ** -11;
/** Half the spacing of f16 subnormals: the absolute rounding error of tiny values stored as f16. */
export const SUB16 = 2 ** -25;

/** The k-quants quantize-on-load writes. */
export type KQuant = "q4_k" | "q5_k" | "q6_k";

/** `x` [rows, k] in `source` quantized to a k-quant by the kernel: the blocks' bytes. */
export async function quantizeK(
  gpu: GpuContext,
  dtype: KQuant,
  x: Float32Array,
  rows: number,
  k: number,
  source: "f32" | "bf16",
): Promise<Uint8Array> {
  const src = gpu.fromFloats(source, [rows, k], x);
  const dst = gpu.tensor(dtype, [rows, k]);
  const rec = gpu.record();
  quantize(rec, dst, src);
  await rec.submit();
  const bytes = await gpu.readBytes(dst);
  gpu.release(src);
  gpu.release(dst);
  return bytes;
}

/**
 * The kernel's k-quant blocks against the reference's: each within 2% of its squared error (a GPU may fuse a
 * multiply and an add, which moves a code at a rounding tie or a near choice of the scale search), and on a
 * software adapter, which does not fuse, the same bytes in all but 2% of the blocks (WGSL's division need not be
 * correctly rounded).
 */
export function assertKQuantClose(
  gpu: GpuContext,
  dtype: KQuant,
  got: Uint8Array,
  want: Uint8Array,
  x: Float32Array,
  k: number,
) {
  assert.equal(got.length, want.length);
  const size = GGUF_BLOCKS[dtype].bytes, blocks = got.length / size, rows = x.length / k;
  const [a, b] = [dequantizeRef(dtype, got, rows, k), dequantizeRef(dtype, want, rows, k)];
  let differ = 0;
  for (let block = 0; block < blocks; block++) {
    let [ea, eb, same] = [0, 0, true];
    for (let i = 256 * block; i < 256 * block + 256; i++) {
      ea += (a[i] - x[i]) ** 2;
      eb += (b[i] - x[i]) ** 2;
    }
    for (let i = size * block; i < size * block + size && same; i++) same = got[i] === want[i];
    if (!same) differ++;
    assert.ok(ea <= 1.02 * eb + 1e-30, `block ${block}: squared error ${ea} against ${eb}`);
  }
  if (gpu.gpu.software) assert.ok(differ <= 0.02 * blocks, `${differ} of ${blocks} blocks differ`);
}
