/**
 * Tensor element types as they sit on disk. Quantized types are stored in blocks along the innermost (input)
 * dimension; the loader hands these bytes to the GPU unchanged and the kernel library decodes them.
 */

/**
 * GGUF block types (the kernels read every one as stored), and what each becomes when it must be quantized again
 * because a LoRA adapter is merged into it (lora.ts), as llama.cpp quantizes: Q6_K and Q5_K themselves, Q4_K (q4k)
 * for types of 4.5 bits a weight or fewer, q4 for Q4_0 (whose blocks are q4's), q8 for the others.
 */
export const REQUANTIZED = {
  Q8_0: { into: "q8" },
  Q6_K: { into: "q6k" },
  Q5_K: { into: "q5k" },
  Q5_1: { into: "q8" },
  Q5_0: { into: "q8" },
  Q4_1: { into: "q8" },
  Q4_0: { into: "q4" },
  Q4_K: { into: "q4k" },
  Q3_K: { into: "q4k" },
  Q2_K: { into: "q4k" },
  IQ4_NL: { into: "q4k" },
  IQ4_XS: { into: "q4k" },
  IQ3_S: { into: "q4k" },
  IQ3_XXS: { into: "q4k" },
  IQ2_S: { into: "q4k" },
  IQ2_XS: { into: "q4k" },
  IQ2_XXS: { into: "q4k" },
  IQ1_M: { into: "q4k" },
  IQ1_S: { into: "q4k" },
} as const;

export type RequantizedType = keyof typeof REQUANTIZED;

export function isRequantized(dtype: DType): dtype is RequantizedType {
  return dtype in REQUANTIZED;
}

/**
 * Codes of a checkpoint quantized with compressed-tensors (llm-compressor's FP8, W8A8 and W4A16 files) or
 * bitsandbytes (bnb.ts: N4, and I8 rows), each
 * weight beside its scales (scaled.ts): FP8 E4M3 values, int8 codes (stored as int8, or packed four to an int32
 * word with 128 added), and 4-bit codes (eight to an int32 word, 8 added). Decoded on the CPU while they load,
 * or copied as they are into q4 / q8_0 blocks where those hold them exactly, and become `into` (the format of
 * their own size) or what a `--quant` flag asks (plan.ts decodedFormat).
 */
export const SCALED_CODES = {
  F8_E4M3: { into: "q8" },
  I8: { into: "q8" },
  I4: { into: "q4" },
  // bitsandbytes' 4-bit codes into a table of 16 levels (nf4, fp4), two a byte, the first in the high nibble.
  N4: { into: "q4" },
} as const;

export type ScaledType = keyof typeof SCALED_CODES;

export type DType =
  | "F32"
  | "F16"
  | "BF16"
  | "Q8_0"
  | RequantizedType
  | ScaledType
  // compressed-tensors' and bitsandbytes' companions (packed words, zero points, group indices, shapes, quant
  // states): never a weight.
  | "I32"
  | "I64"
  | "U8";

export function isScaled(dtype: DType): dtype is ScaledType {
  return dtype in SCALED_CODES;
}

interface Layout {
  /** Elements per block (1 for plain floats). */
  blockElems: number;
  /** Bytes per block. */
  blockBytes: number;
}

/**
 * Block layouts from ggml (ggml-common.h): Q8_0 = f16 scale + 32 int8; the k-quants and i-quants but IQ4_NL =
 * 256-element super-blocks; IQ4_NL = f16 scale + 32 4-bit codes into 16 levels (runtime/gpu/dtype.ts details them).
 */
const LAYOUTS: Record<DType, Layout> = {
  F32: { blockElems: 1, blockBytes: 4 },
  F16: { blockElems: 1, blockBytes: 2 },
  BF16: { blockElems: 1, blockBytes: 2 },
  Q8_0: { blockElems: 32, blockBytes: 34 },
  Q4_0: { blockElems: 32, blockBytes: 18 },
  Q4_1: { blockElems: 32, blockBytes: 20 },
  Q5_0: { blockElems: 32, blockBytes: 22 },
  Q5_1: { blockElems: 32, blockBytes: 24 },
  Q2_K: { blockElems: 256, blockBytes: 84 },
  Q3_K: { blockElems: 256, blockBytes: 110 },
  Q4_K: { blockElems: 256, blockBytes: 144 },
  Q5_K: { blockElems: 256, blockBytes: 176 },
  Q6_K: { blockElems: 256, blockBytes: 210 },
  IQ4_NL: { blockElems: 32, blockBytes: 18 },
  IQ4_XS: { blockElems: 256, blockBytes: 136 },
  IQ3_S: { blockElems: 256, blockBytes: 110 },
  IQ3_XXS: { blockElems: 256, blockBytes: 98 },
  IQ2_S: { blockElems: 256, blockBytes: 82 },
  IQ2_XS: { blockElems: 256, blockBytes: 74 },
  IQ2_XXS: { blockElems: 256, blockBytes: 66 },
  IQ1_M: { blockElems: 256, blockBytes: 56 },
  IQ1_S: { blockElems: 256, blockBytes: 50 },
  F8_E4M3: { blockElems: 1, blockBytes: 1 },
  I8: { blockElems: 1, blockBytes: 1 },
  // One int32 word of eight codes: a row is whole words.
  I4: { blockElems: 8, blockBytes: 4 },
  N4: { blockElems: 2, blockBytes: 1 },
  U8: { blockElems: 1, blockBytes: 1 },
  I32: { blockElems: 1, blockBytes: 4 },
  I64: { blockElems: 1, blockBytes: 8 },
};

/** Plain floating-point values (everything else is codes that need scales or blocks to mean anything). */
export function isFloat(dtype: DType): boolean {
  return dtype === "F32" || dtype === "F16" || dtype === "BF16";
}

/**
 * Bytes of one row (the innermost dimension) of `rowElems` elements, or null when the row is not a whole number
 * of blocks (a quantized tensor whose row length is not a multiple of the block size cannot exist).
 */
function rowBytes(dtype: DType, rowElems: number): number | null {
  const { blockElems, blockBytes } = LAYOUTS[dtype];
  return rowElems % blockElems === 0 ? (rowElems / blockElems) * blockBytes : null;
}

/** Bytes of a tensor of `shape` (PyTorch order, innermost last), or null when its rows are not whole blocks. */
export function tensorBytes(dtype: DType, shape: readonly number[]): number | null {
  const inner = shape.length === 0 ? 1 : shape[shape.length - 1];
  const row = rowBytes(dtype, inner);
  if (row === null) return null;
  return shape.slice(0, -1).reduce((n, d) => n * d, 1) * row;
}
