/**
 * Data types of GPU tensors: plain element types and the block formats weights are stored in.
 *
 * A block-format tensor has shape [..., K]: each row of K weights is stored as K / blockSize consecutive blocks
 * (GGUF formats, exactly as in the file) or, for our own `q4`, as one row record (codes, then scales). Rows are
 * contiguous, so a row range is a byte range.
 */

export type ElementType = "f32" | "f16" | "bf16" | "u32" | "i32";
export type BlockFormat = keyof typeof GGUF_BLOCKS | "q4";
export type DType = ElementType | BlockFormat;

/** Element types that kernels compute with (activations, f32/f16 weights). */
export type FloatType = "f32" | "f16";

const ELEMENT_BYTES: Record<ElementType, number> = { f32: 4, f16: 2, bf16: 2, u32: 4, i32: 4 };

/** GGUF block layouts (ggml-common.h): weights per block and bytes per block. */
export const GGUF_BLOCKS = {
  /** `{ f16 d; i8 qs[32]; }`: w = d * qs[i]. */
  q8_0: { size: 32, bytes: 34 },
  // The legacy blocks of 32: 4-bit codes (Q5: a fifth bit each in qh), less 8 (16) or plus a min.
  /** `{ f16 d; u8 qs[16]; }`: w = d * (q - 8). */
  q4_0: { size: 32, bytes: 18 },
  /** `{ f16 d; f16 m; u8 qs[16]; }`: w = d * q + m. */
  q4_1: { size: 32, bytes: 20 },
  /** `{ f16 d; u32 qh; u8 qs[16]; }`: w = d * (q - 16). */
  q5_0: { size: 32, bytes: 22 },
  /** `{ f16 d; f16 m; u32 qh; u8 qs[16]; }`: w = d * q + m. */
  q5_1: { size: 32, bytes: 24 },
  /** `{ u8 scales[16]; u8 qs[64]; f16 d; f16 dmin; }`: 16 sub-blocks of 16 with 4-bit scales and mins. */
  q2_k: { size: 256, bytes: 84 },
  /** `{ u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d; }`: 16 sub-blocks of 16 with 6-bit scales, 3-bit codes. */
  q3_k: { size: 256, bytes: 110 },
  /** `{ f16 d; f16 dmin; u8 scales[12]; u8 qs[128]; }`: 8 sub-blocks of 32 with 6-bit scales and mins. */
  q4_k: { size: 256, bytes: 144 },
  /** Q4_K's fields and `u8 qh[32]` before qs: each code's fifth bit. */
  q5_k: { size: 256, bytes: 176 },
  /** `{ u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d; }`: 16 sub-blocks of 16 with 8-bit scales. */
  q6_k: { size: 256, bytes: 210 },
  /** `{ f16 d; u8 qs[16]; }`: w = d * IQ4_LEVELS[4-bit code]. */
  iq4_nl: { size: 32, bytes: 18 },
  /** `{ f16 d; u16 scales_h; u8 scales_l[4]; u8 qs[128]; }`: 8 IQ4_NL-like sub-blocks with 6-bit scales. */
  iq4_xs: { size: 256, bytes: 136 },
  // The i-quants of grids (ops/iq.ts): per 8 weights a grid row, with signs or a shift, scaled per 16 or 32.
  /** `{ f16 d; u16 qs[32]; }`: per 32 weights four 8-bit rows, four 7-bit sign patterns and a 4-bit scale. */
  iq2_xxs: { size: 256, bytes: 66 },
  /** `{ f16 d; u16 qs[32]; u8 scales[8]; }`: per 8 weights a 9-bit row and a 7-bit sign pattern. */
  iq2_xs: { size: 256, bytes: 74 },
  /** `{ f16 d; u8 qs[32]; u8 signs[32]; u8 qh[8]; u8 scales[8]; }`: 10-bit rows, sign bytes. */
  iq2_s: { size: 256, bytes: 82 },
  /** `{ f16 d; u8 qs[64]; u32 signs_scales[8]; }`: rows of 4, per 32 weights four sign patterns and a scale. */
  iq3_xxs: { size: 256, bytes: 98 },
  /** `{ f16 d; u8 qs[64]; u8 qh[8]; u8 signs[32]; u8 scales[4]; }`: 9-bit rows of 4, sign bytes. */
  iq3_s: { size: 256, bytes: 110 },
  /** `{ f16 d; u8 qs[32]; u16 qh[8]; }`: 11-bit rows of {-1, 0, 1}, a shift of ±1/8 and a 3-bit scale per 32. */
  iq1_s: { size: 256, bytes: 50 },
  /** `{ u8 qs[32]; u8 qh[16]; u16 scales[4]; }`: IQ1_S's rows, a shift per 8 and a scale per 16; d in scales. */
  iq1_m: { size: 256, bytes: 56 },
} as const;

/** Our quantize-on-load 4-bit format: groups of 32 weights along a row, one f16 scale per group. */
export const Q4_GROUP = 32;

export function isBlockFormat(dtype: DType): dtype is BlockFormat {
  return dtype === "q4" || dtype in GGUF_BLOCKS;
}

export function elementBytes(dtype: ElementType): number {
  return ELEMENT_BYTES[dtype];
}

/** Weights per block along a row (1 for element types). */
export function blockSize(dtype: DType): number {
  if (dtype === "q4") return Q4_GROUP;
  return isBlockFormat(dtype) ? GGUF_BLOCKS[dtype].size : 1;
}

/**
 * Bytes of one row of K values. For `q4` the row is K/2 bytes of 4-bit codes followed by K/32 f16 scales,
 * padded to a multiple of 16 bytes so that every row, and every group's codes, start on a 16-byte boundary
 * (one vec4<u32> load per group of 32 weights).
 */
export function rowBytes(dtype: DType, k: number): number {
  if (!isBlockFormat(dtype)) return k * ELEMENT_BYTES[dtype];
  if (k % blockSize(dtype) !== 0) {
    throw new RangeError(`${dtype} rows need a length divisible by ${blockSize(dtype)}, got ${k}`);
  }
  if (dtype === "q4") return k / 2 + 16 * Math.ceil(k / Q4_GROUP / 8);
  const block = GGUF_BLOCKS[dtype];
  return (k / block.size) * block.bytes;
}

/** Bytes of a tensor of this shape (row-major, contiguous). */
export function byteSize(dtype: DType, shape: readonly number[]): number {
  const k = shape.length === 0 ? 1 : shape[shape.length - 1];
  const rows = shape.slice(0, -1).reduce((a, b) => a * b, 1);
  return rows * rowBytes(dtype, k);
}

export function checkShape(shape: readonly number[]): void {
  for (const n of shape) {
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`invalid tensor shape [${shape.join(", ")}]`);
  }
}

// ---- host-side conversions (CPU) ----

/** Rounds to the nearest f16 (ties to even) and returns the bits. */
export function f16Bits(values: ArrayLike<number>): Uint16Array<ArrayBuffer> {
  return new Uint16Array(Float16Array.from(values).buffer);
}

export function fromF16Bits(bits: Uint16Array): Float32Array<ArrayBuffer> {
  return Float32Array.from(new Float16Array(bits.buffer, bits.byteOffset, bits.length));
}

/** Rounds to the nearest bf16 (ties to even) and returns the bits. */
export function bf16Bits(values: ArrayLike<number>): Uint16Array<ArrayBuffer> {
  const f32 = Float32Array.from(values);
  const u32 = new Uint32Array(f32.buffer);
  const out = new Uint16Array(f32.length);
  for (let i = 0; i < u32.length; i++) {
    const u = u32[i];
    out[i] = (u & 0x7fffffff) > 0x7f800000 ? (u >>> 16) | 0x40 : (u + 0x7fff + ((u >>> 16) & 1)) >>> 16;
  }
  return out;
}

export function fromBf16Bits(bits: Uint16Array): Float32Array<ArrayBuffer> {
  const u32 = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; i++) u32[i] = bits[i] << 16;
  return new Float32Array(u32.buffer);
}

/** The value a float takes once stored in this element type (what a kernel reading it back sees). */
export function roundTo(dtype: FloatType | "bf16", values: Float32Array): Float32Array<ArrayBuffer> {
  if (dtype === "f32") return Float32Array.from(values);
  return dtype === "f16" ? fromF16Bits(f16Bits(values)) : fromBf16Bits(bf16Bits(values));
}
